package node_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/paddock/paddock/node"
	"github.com/paddock/paddock/node/nodetest"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// TestHaltEndsReadsInFlight: a read waiting on a node for an index past
// the entry its state machine stops at ends promptly with ErrShuttingDown
// (Unavailable: the client retries elsewhere), not at its deadline.
func TestHaltEndsReadsInFlight(t *testing.T) {
	c := newCluster(t, 3, withLevels(func(id string) uint32 {
		if id == "n3" {
			return 1
		}
		return 2
	}))
	leader := c.WaitLeader(t)
	if leader == 2 {
		c.Transfer(t, 0)
		leader = c.WaitLeader(t)
	}
	n3 := c.Node(2)
	next := c.Node(leader).Raft().LastIndex() + 1

	const readTimeout = 8 * time.Second
	type out struct {
		err  error
		took time.Duration
	}
	done := make(chan out, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
		defer cancel()
		start := time.Now()
		_, err := n3.Get(ctx, &paddockv1.GetRequest{Path: "/", Read: &paddockv1.ReadOptions{
			Consistency: paddockv1.ReadConsistency_READ_CONSISTENCY_SERIALIZABLE, MinZxid: next + 5}})
		done <- out{err, time.Since(start)}
	}()

	cmd := setCmd("/", []byte("from level 2"))
	cmd.FeatureLevel = 2
	cmd.TimeUnixMs = time.Now().UnixMilli()
	data, err := proto.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Node(leader).Raft().Apply(data, testProposeTimeout).Error(); err != nil {
		t.Fatal(err)
	}
	for range 6 {
		mustPropose(t, c.Node(leader), setCmd("/", []byte("more")))
	}
	select {
	case <-n3.Halted():
	case <-time.After(waitTimeout):
		t.Fatal("n3 did not halt")
	}
	haltedAt := time.Now()
	o := <-done
	if !errors.Is(o.err, node.ErrShuttingDown) || time.Since(haltedAt) > readTimeout/2 {
		t.Errorf("read in flight on halted n3 = %v after %v (%v after the halt), want %v promptly",
			o.err, o.took, time.Since(haltedAt), node.ErrShuttingDown)
	}
}

// TestHaltLeaderHandsOver: a leader that halts hands leadership over
// before it closes, so the others need not wait out their heartbeat
// timeout (long here: an election could not be that quick).
func TestHaltLeaderHandsOver(t *testing.T) {
	const heartbeat = 6 * time.Second
	c := newCluster(t, 3, withLevels(func(id string) uint32 {
		if id == "n3" {
			return 1
		}
		return 2
	}), nodetest.WithConfig(func(cfg *node.Config) {
		cfg.HeartbeatTimeout = heartbeat
		cfg.ElectionTimeout = heartbeat
	}))
	c.Transfer(t, 2)
	n3 := c.Node(2)
	mustPropose(t, n3, setCmd("/", []byte("before")))

	cmd := setCmd("/", []byte("from level 2"))
	cmd.FeatureLevel = 2
	cmd.TimeUnixMs = time.Now().UnixMilli()
	data, err := proto.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	// Not waited for: the leader may stop before it answers.
	n3.Raft().Apply(data, testProposeTimeout)
	select {
	case <-n3.Halted():
	case <-time.After(waitTimeout):
		t.Fatal("n3 did not halt")
	}
	haltedAt := time.Now()
	eventually(t, heartbeat/2, func() error {
		for _, i := range []int{0, 1} {
			if c.Node(i).IsLeader() {
				return nil
			}
		}
		return fmt.Errorf("no leader among n1, n2 %v after n3 halted", time.Since(haltedAt))
	})
}
