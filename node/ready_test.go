package node_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/paddock/paddock/node"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// TestRestartedFollowerNotReadyUntilCaughtUp: a follower restarted from
// its data directory knows the leader at once, but until it has applied
// what the cluster committed it is not ready, and it refuses serializable
// reads and watches from now (ErrCatchingUp) rather than serve its empty
// tree. Once it catches up it is ready and serves them.
func TestRestartedFollowerNotReadyUntilCaughtUp(t *testing.T) {
	const writes = 20
	c := newCluster(t, 3)
	leader := c.WaitLeader(t)
	ln := c.Node(leader)
	for i := range writes {
		mustPropose(t, ln, createCmd(fmt.Sprintf("/r%d", i), nil))
	}
	fi := c.Followers(leader)[0]
	eventually(t, waitTimeout, func() error {
		if !c.Node(fi).Ready() {
			return fmt.Errorf("%s not ready before the restart", c.Node(fi).ID())
		}
		return nil
	})
	c.Stop(fi)
	// The leader keeps its commit index from the restarted follower: it
	// gets entries and heartbeats (so it knows the leader) but applies
	// nothing.
	c.Transport(leader).HoldCommit(c.RaftAddr(fi), true)
	held := true
	defer func() {
		if held {
			c.Transport(leader).HoldCommit(c.RaftAddr(fi), false)
		}
	}()
	c.Restart(fi)
	f := c.Node(fi)
	eventually(t, waitTimeout, func() error {
		if _, id := f.Raft().LeaderWithID(); string(id) != ln.ID() {
			return fmt.Errorf("restarted %s follows %q, want %s", f.ID(), id, ln.ID())
		}
		return nil
	})
	commit := ln.Raft().CommitIndex()
	if got := f.FSM().AppliedIndex(); got >= commit {
		t.Fatalf("restarted %s applied %d with its commit held, want < %d", f.ID(), got, commit)
	}
	if f.Ready() {
		t.Errorf("restarted %s is ready with applied %d of %d committed", f.ID(), f.FSM().AppliedIndex(), commit)
	}
	serializable := &paddockv1.ReadOptions{Consistency: paddockv1.ReadConsistency_READ_CONSISTENCY_SERIALIZABLE}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	resp, err := f.Get(ctx, &paddockv1.GetRequest{Path: "/r0", Read: serializable})
	if !errors.Is(err, node.ErrCatchingUp) {
		t.Errorf("serializable Get(/r0) on restarted %s = %v, %v; want ErrCatchingUp", f.ID(), resp, err)
	}
	// A poll is first refused if the node has not heard from the leader
	// within a heartbeat timeout (ErrLostLeader), which a loaded machine
	// can make happen: that is tried again, anything else fails.
	eventually(t, waitTimeout, func() error {
		_, err := f.Poll(ctx, &paddockv1.PollRequest{Path: "/r0", TimeoutMs: 100})
		switch {
		case errors.Is(err, node.ErrCatchingUp):
			return nil
		case errors.Is(err, node.ErrLostLeader):
			return err
		}
		t.Fatalf("poll from now on restarted %s = %v, want ErrCatchingUp", f.ID(), err)
		return nil
	})

	c.Transport(leader).HoldCommit(c.RaftAddr(fi), false)
	held = false
	eventually(t, waitTimeout, func() error {
		if !f.Ready() {
			return fmt.Errorf("restarted %s not ready: applied %d of %d", f.ID(), f.FSM().AppliedIndex(), commit)
		}
		return nil
	})
	if got := f.FSM().AppliedIndex(); got < commit {
		t.Errorf("restarted %s ready with applied %d, want >= %d", f.ID(), got, commit)
	}
	resp, err = f.Get(ctx, &paddockv1.GetRequest{Path: fmt.Sprintf("/r%d", writes-1), Read: serializable})
	if err != nil || resp.GetStat() == nil {
		t.Errorf("serializable Get(/r%d) on caught-up %s = %v, %v; want the znode", writes-1, f.ID(), resp, err)
	}
}
