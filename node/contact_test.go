package node_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/paddock/paddock/node"
	"github.com/paddock/paddock/node/nodetest"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// A follower cut off from the leader must not go on answering "nothing
// changed": its waiting poll and its watch end with ErrNoLeader, new ones
// are refused, so clients move to another node; once healed it serves
// them again.
func TestLostLeaderEndsPollsAndWatches(t *testing.T) {
	c := nodetest.NewCluster(t, 3, nodetest.WithSteadyLeader())
	leader := c.WaitLeader(t)
	fi := c.Followers(leader)[0]
	f := c.Node(fi)
	nodetest.Eventually(t, 5*time.Second, func() error {
		_, err := f.Poll(context.Background(), &paddockv1.PollRequest{Path: "/", TimeoutMs: 1})
		return err
	})

	ctx := context.Background()
	polled := make(chan error, 1)
	go func() {
		_, err := f.Poll(ctx, &paddockv1.PollRequest{Path: "/", Recursive: true, TimeoutMs: 60_000})
		polled <- err
	}()
	w := startNodeWatch(t, f, &paddockv1.WatchRequest{Path: "/", Recursive: true})
	defer w.cancel()
	// The watch is registered once its created response arrives.
	select {
	case <-w.resps:
	case <-time.After(10 * time.Second):
		t.Fatal("watch: no created response")
	}

	cut := time.Now()
	c.Partition(fi)
	// Out of contact after a heartbeat timeout without the leader; the
	// monitor looks every 100 ms; a second of slack for a busy machine.
	limit := f.Config().HeartbeatTimeout + 2*time.Second
	select {
	case err := <-polled:
		if !errors.Is(err, node.ErrNoLeader) {
			t.Fatalf("Poll on a cut-off follower = %v, want ErrNoLeader", err)
		}
		t.Logf("poll ended %v after the cut", time.Since(cut).Round(time.Millisecond))
	case <-time.After(limit):
		t.Fatalf("Poll on a cut-off follower still waiting %v after the cut", limit)
	}
	select {
	case <-w.ended:
		if !errors.Is(w.err, node.ErrNoLeader) {
			t.Fatalf("Watch on a cut-off follower ended with %v, want ErrNoLeader", w.err)
		}
	case <-time.After(limit):
		t.Fatalf("Watch on a cut-off follower still running %v after the cut", limit)
	}
	if _, err := f.Poll(ctx, &paddockv1.PollRequest{Path: "/", TimeoutMs: 1}); !errors.Is(err, node.ErrNoLeader) {
		t.Fatalf("new Poll on a cut-off follower = %v, want ErrNoLeader", err)
	}

	c.Heal()
	nodetest.Eventually(t, 10*time.Second, func() error {
		_, err := f.Poll(ctx, &paddockv1.PollRequest{Path: "/", TimeoutMs: 1})
		return err
	})
}
