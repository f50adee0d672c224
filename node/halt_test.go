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

// TestHaltWriteAfterBadEntryOutcomeUnknown: a write the halted leader
// appended after the entry it stops at is committed, and the other
// replicas apply it: its caller learns that the outcome is unknown (and
// retries with its request id), not that it failed.
func TestHaltWriteAfterBadEntryOutcomeUnknown(t *testing.T) {
	c := newCluster(t, 3, withLevels(func(id string) uint32 {
		if id == "n3" {
			return 1
		}
		return 2
	}), nodetest.WithSteadyLeader())
	c.Transfer(t, 2)
	n3 := c.Node(2)
	mustPropose(t, n3, setCmd("/", []byte("before")))

	// Nothing commits until both entries are in n3's log.
	c.Transport(2).DropEntries("", true)
	last := n3.Raft().LastIndex()
	cmd := setCmd("/", []byte("from level 2"))
	cmd.FeatureLevel = 2
	cmd.TimeUnixMs = time.Now().UnixMilli()
	data, err := proto.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	n3.Raft().Apply(data, testProposeTimeout)
	proposed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), testProposeTimeout)
		defer cancel()
		_, err := n3.Propose(ctx, setCmd("/", []byte("after")))
		proposed <- err
	}()
	eventually(t, waitTimeout, func() error {
		if got := n3.Raft().LastIndex(); got < last+2 {
			return fmt.Errorf("n3 stores up to %d, want %d", got, last+2)
		}
		return nil
	})
	c.Transport(2).DropEntries("", false)
	if err := <-proposed; !errors.Is(err, node.ErrUnknownOutcome) {
		t.Errorf("Propose after the entry n3 stops at = %v, want %v", err, node.ErrUnknownOutcome)
	}
	eventually(t, waitTimeout, func() error {
		if data, _, err := c.Node(0).FSM().Get("/"); err != nil || string(data) != "after" {
			return fmt.Errorf("/ on n1 = %q, %v; want the write n3 did not apply", data, err)
		}
		return nil
	})
}
