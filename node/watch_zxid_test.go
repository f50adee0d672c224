package node_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/paddock/paddock/node"
	"github.com/paddock/paddock/node/nodetest"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// TestWatchFromNowOnFollowerSkipsApplied: a watch or poll "from now" on a
// follower starts after every change the follower knows of: one it has
// applied while its watch hub has not taken it in yet (the fsm publishes
// its applied index before it hands the batch to the hub), and one it
// knows is committed while its fsm has not applied it yet (held up behind
// the first). The old events never arrive; the next write does.
func TestWatchFromNowOnFollowerSkipsApplied(t *testing.T) {
	c := newCluster(t, 3)
	leader := c.WaitLeader(t)
	ln, f := c.Node(leader), c.Node(c.Followers(leader)[0])
	mustPropose(t, ln, createCmd("/w", nil))
	eventually(t, waitTimeout, func() error {
		if f.FSM().AppliedIndex() < ln.FSM().AppliedIndex() {
			return fmt.Errorf("%s has not applied /w", f.ID())
		}
		return nil
	})

	release := node.StallWatchHub(f)
	released := false
	defer func() {
		if !released {
			release()
		}
	}()
	old := mustPropose(t, ln, createCmd("/w/old", nil))
	eventually(t, waitTimeout, func() error {
		if got := f.FSM().AppliedIndex(); got < old.Index {
			return fmt.Errorf("%s applied %d, want %d", f.ID(), got, old.Index)
		}
		return nil
	})
	// The apply goroutine is held in the hub: the next write is
	// committed, and the follower learns it, but stays unapplied.
	older := mustPropose(t, ln, createCmd("/w/old2", nil))
	eventually(t, waitTimeout, func() error {
		if got := f.Raft().CommitIndex(); got < older.Index {
			return fmt.Errorf("%s knows commit %d, want %d", f.ID(), got, older.Index)
		}
		return nil
	})
	if got := f.FSM().AppliedIndex(); got >= older.Index {
		t.Fatalf("%s applied %d with its hub held, want < %d", f.ID(), got, older.Index)
	}

	w := startNodeWatch(t, f, &paddockv1.WatchRequest{Path: "/w", Recursive: true, ProgressIntervalMs: -1})
	if z := w.created(t); z < older.Index {
		t.Errorf("watch from now on %s created at zxid %d, before the known committed %d", f.ID(), z, older.Index)
	}
	type polled struct {
		resp *paddockv1.PollResponse
		err  error
	}
	pollDone := make(chan polled, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		resp, err := f.Poll(ctx, &paddockv1.PollRequest{Path: "/w", Recursive: true, TimeoutMs: waitTimeout.Milliseconds()})
		pollDone <- polled{resp, err}
	}()
	// The poll is registered (or about to be) while the hub still lacks
	// /w/old: make sure it is waiting before the hub catches up.
	eventually(t, waitTimeout, func() error {
		if f.WatcherCount() < 2 {
			return fmt.Errorf("%d watchers on %s, want the watch and the poll", f.WatcherCount(), f.ID())
		}
		return nil
	})
	release()
	released = true

	fresh := mustPropose(t, ln, createCmd("/w/new", nil))
	want := []string{
		fmt.Sprintf("%d EVENT_KIND_CREATED /w/new", fresh.Index),
		fmt.Sprintf("%d EVENT_KIND_CHILDREN_CHANGED /w", fresh.Index),
	}
	if got := describeAll(w.events(t, 2)); !slices.Equal(got, want) {
		t.Errorf("watch from now on %s: events %q, want %q (not the old ones)", f.ID(), got, want)
	}
	p := <-pollDone
	if p.err != nil {
		t.Fatalf("poll from now on %s: %v", f.ID(), p.err)
	}
	if got := describeAll(p.resp.GetEvents()); !slices.Equal(got, want) {
		t.Errorf("poll from now on %s: events %q, want %q (not the old ones)", f.ID(), got, want)
	}
}

// futureZxid checks that err refuses a zxid beyond the cluster's latest,
// current being the commit index it should report.
func futureZxid(t *testing.T, what string, err error, current uint64) {
	t.Helper()
	var ce *node.CanceledError
	if !errors.Is(err, node.ErrFutureZxid) || !errors.As(err, &ce) {
		t.Errorf("%s: error %v, want FUTURE_ZXID", what, err)
		return
	}
	d := ce.Detail()
	if d.GetReason() != paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_FUTURE_ZXID || d.GetCurrentZxid() != current {
		t.Errorf("%s: detail %v, want FUTURE_ZXID with current_zxid %d", what, d, current)
	}
}

// quietCommit returns the leader's commit index once it is the same
// before and after the cluster's other nodes applied it: no write is in
// flight.
func quietCommit(t *testing.T, c *nodetest.Cluster, leader int) uint64 {
	t.Helper()
	var commit uint64
	eventually(t, waitTimeout, func() error {
		commit = c.Node(leader).Raft().CommitIndex()
		for _, i := range c.Running() {
			if got := c.Node(i).FSM().AppliedIndex(); got < commit {
				return fmt.Errorf("%s applied %d of %d", c.Node(i).ID(), got, commit)
			}
		}
		if again := c.Node(leader).Raft().CommitIndex(); again != commit {
			return fmt.Errorf("commit index moved from %d to %d", commit, again)
		}
		return nil
	})
	return commit
}

// TestWatchFromFutureZxid: a poll after a zxid beyond the cluster's commit
// index, or a watch from beyond commit index + 1, is refused with
// FUTURE_ZXID and the commit index; a watch from commit index + 1 (the
// resume after a quiet spell) is accepted, on the leader and on a
// follower.
func TestWatchFromFutureZxid(t *testing.T) {
	c := newCluster(t, 3)
	leader := c.WaitLeader(t)
	mustPropose(t, c.Node(leader), createCmd("/f", nil))
	commit := quietCommit(t, c, leader)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for _, i := range []int{leader, c.Followers(leader)[0]} {
		n := c.Node(i)
		_, err := n.Poll(ctx, &paddockv1.PollRequest{Path: "/f", AfterZxid: 999999999, TimeoutMs: 100})
		futureZxid(t, "poll after 999999999 on "+n.ID(), err, commit)
		_, err = n.Poll(ctx, &paddockv1.PollRequest{Path: "/f", AfterZxid: commit + 1, TimeoutMs: 100})
		futureZxid(t, fmt.Sprintf("poll after commit+1 (%d) on %s", commit+1, n.ID()), err, commit)
		resp, err := n.Poll(ctx, &paddockv1.PollRequest{Path: "/f", AfterZxid: commit, TimeoutMs: 100})
		if err != nil || resp.GetHeader().GetZxid() != commit {
			t.Errorf("poll after the commit index %d on %s = %v, %v; want no events at zxid %d", commit, n.ID(), resp, err, commit)
		}

		w := startNodeWatch(t, n, &paddockv1.WatchRequest{Path: "/f", StartZxid: commit + 2})
		futureZxid(t, fmt.Sprintf("watch from commit+2 (%d) on %s", commit+2, n.ID()), w.end(t), commit)
		w = startNodeWatch(t, n, &paddockv1.WatchRequest{Path: "/f", StartZxid: commit + 1})
		if z := w.created(t); z != commit {
			t.Errorf("watch from commit+1 on %s created at %d, want %d", n.ID(), z, commit)
		}
		w.cancel()
	}
}

// TestWatchFromZxidOnLaggingFollower: a follower that has not learned the
// latest commit (its commit index held back) accepts a watch from the
// cluster's commit index + 1 and refuses commit index + 2, and a poll
// after a zxid committed but not yet applied there waits for it.
func TestWatchFromZxidOnLaggingFollower(t *testing.T) {
	c := newCluster(t, 3)
	leader := c.WaitLeader(t)
	fi := c.Followers(leader)[0]
	f, ln := c.Node(fi), c.Node(leader)
	c.Transport(leader).HoldCommit(c.RaftAddr(fi), true)
	held := true
	defer func() {
		if held {
			c.Transport(leader).HoldCommit(c.RaftAddr(fi), false)
		}
	}()
	x := mustPropose(t, ln, createCmd("/lag", nil))
	// Wait until the follower has stored x (but cannot apply it).
	eventually(t, waitTimeout, func() error {
		if f.Raft().LastIndex() < x.Index {
			return fmt.Errorf("%s stores up to %d, want %d", f.ID(), f.Raft().LastIndex(), x.Index)
		}
		return nil
	})
	if got := f.FSM().AppliedIndex(); got >= x.Index {
		t.Fatalf("%s applied %d with its commit index held, want < %d", f.ID(), got, x.Index)
	}
	commit := ln.Raft().CommitIndex()

	w := startNodeWatch(t, f, &paddockv1.WatchRequest{Path: "/lag", Recursive: true, StartZxid: commit + 2})
	futureZxid(t, "watch from commit+2 on the lagging follower", w.end(t), commit)
	w = startNodeWatch(t, f, &paddockv1.WatchRequest{Path: "/lag", Recursive: true, StartZxid: commit + 1, ProgressIntervalMs: -1})
	if z := w.created(t); z != commit {
		t.Errorf("watch from commit+1 on the lagging follower created at %d, want %d", z, commit)
	}
	type polled struct {
		resp *paddockv1.PollResponse
		err  error
	}
	pollDone := make(chan polled, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		resp, err := f.Poll(ctx, &paddockv1.PollRequest{Path: "/lag", Recursive: true, AfterZxid: x.Index, TimeoutMs: waitTimeout.Milliseconds()})
		pollDone <- polled{resp, err}
	}()
	select {
	case p := <-pollDone:
		t.Fatalf("poll after %d on %s, which has not applied it, returned %v, %v; want it to wait", x.Index, f.ID(), p.resp, p.err)
	case <-time.After(200 * time.Millisecond):
	}
	c.Transport(leader).HoldCommit(c.RaftAddr(fi), false)
	held = false

	y := mustPropose(t, ln, createCmd("/lag/y", nil))
	want := []string{
		fmt.Sprintf("%d EVENT_KIND_CREATED /lag/y", y.Index),
		fmt.Sprintf("%d EVENT_KIND_CHILDREN_CHANGED /lag", y.Index),
	}
	if got := describeAll(w.events(t, 2)); !slices.Equal(got, want) {
		t.Errorf("watch from commit+1 on %s: events %q, want %q", f.ID(), got, want)
	}
	p := <-pollDone
	if p.err != nil {
		t.Fatalf("poll after %d on %s: %v", x.Index, f.ID(), p.err)
	}
	if got := describeAll(p.resp.GetEvents()); !slices.Equal(got, want) {
		t.Errorf("poll after %d on %s: events %q, want %q", x.Index, f.ID(), got, want)
	}
}
