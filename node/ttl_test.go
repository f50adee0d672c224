package node_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/paddock/paddock/fsm"
	"github.com/paddock/paddock/node"
	"github.com/paddock/paddock/node/nodetest"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

func ttlCmd(path string, ttl time.Duration) *raftv1.Command {
	return &raftv1.Command{Op: &raftv1.Command_Create{Create: &paddockv1.CreateRequest{
		Path: path, Type: paddockv1.NodeType_NODE_TYPE_TTL, TtlMs: ttl.Milliseconds(),
	}}}
}

func containerCmd(path string) *raftv1.Command {
	return &raftv1.Command{Op: &raftv1.Command_Create{Create: &paddockv1.CreateRequest{
		Path: path, Type: paddockv1.NodeType_NODE_TYPE_CONTAINER,
	}}}
}

func deleteCmd(path string) *raftv1.Command {
	return &raftv1.Command{Op: &raftv1.Command_Delete{Delete: &paddockv1.DeleteRequest{Path: path}}}
}

// gone reports whether path is missing on n.
func gone(tb testing.TB, n *node.Node, path string) bool {
	tb.Helper()
	_, _, err := n.FSM().Get(path)
	if err != nil && !errors.Is(err, fsm.ErrNoNode) {
		tb.Fatalf("Get(%s) on %s: %v", path, n.ID(), err)
	}
	return err != nil
}

// staysUntil fails tb if path disappears from n before until; it polls
// the state, it does not wait for one.
func staysUntil(tb testing.TB, n *node.Node, path string, until time.Time, why string) {
	tb.Helper()
	for time.Now().Before(until) {
		if gone(tb, n, path) {
			tb.Fatalf("%s deleted %v too early (%s)", path, time.Until(until), why)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// goneWithin waits until path is gone on every running node, failing tb if
// that takes more than d after from.
func goneWithin(tb testing.TB, c *nodetest.Cluster, path string, from time.Time, d time.Duration) {
	tb.Helper()
	eventually(tb, time.Until(from.Add(d)), func() error {
		for _, i := range c.Running() {
			if !gone(tb, c.Node(i), path) {
				return fmt.Errorf("%s still on %s", path, c.Node(i).ID())
			}
		}
		return nil
	})
}

func TestTTLNodeDeletedWhenIdle(t *testing.T) {
	c := newCluster(t, 3, nodetest.WithSteadyLeader())
	leader := c.WaitLeader(t)
	f := c.Node(c.Followers(leader)[0])
	const ttl = 600 * time.Millisecond

	start := time.Now()
	res := mustPropose(t, f, ttlCmd("/t", ttl))
	staysUntil(t, c.Node(leader), "/t", start.Add(ttl), "idle TTL node")
	goneWithin(t, c, "/t", time.Now(), ttl+2*time.Second)

	// The deletion is an ordinary event: a poll from the creation sees it.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	poll, err := f.Poll(ctx, &paddockv1.PollRequest{Path: "/t", AfterZxid: res.Index, TimeoutMs: 5000})
	if err != nil {
		t.Fatalf("Poll(/t) = %v", err)
	}
	if evs := poll.GetEvents(); len(evs) != 1 || evs[0].GetKind() != paddockv1.EventKind_EVENT_KIND_DELETED {
		t.Errorf("Poll(/t) events = %v, want one deletion", evs)
	}

	// A TTL node being modified, or with a child, stays.
	start = time.Now()
	mustPropose(t, f, ttlCmd("/busy", ttl))
	mustPropose(t, f, ttlCmd("/parent", ttl))
	mustPropose(t, f, createCmd("/parent/kid", nil))
	last := start
	for time.Since(start) < 3*ttl {
		if gone(t, c.Node(leader), "/busy") {
			t.Fatalf("/busy deleted %v after its last set, TTL %v", time.Since(last), ttl)
		}
		last = time.Now()
		mustPropose(t, f, setCmd("/busy", []byte("x")))
		time.Sleep(ttl / 4)
	}
	if gone(t, c.Node(leader), "/parent") {
		t.Fatalf("TTL node /parent deleted while it has a child")
	}
	goneWithin(t, c, "/busy", time.Now(), ttl+2*time.Second)
	start = time.Now()
	mustPropose(t, f, deleteCmd("/parent/kid"))
	staysUntil(t, c.Node(leader), "/parent", start.Add(ttl), "TTL counted from the removal of its last child")
	goneWithin(t, c, "/parent", time.Now(), ttl+2*time.Second)
	c.Converged(t)
}

func TestContainerDeletedAfterLastChild(t *testing.T) {
	c := newCluster(t, 3, nodetest.WithSteadyLeader())
	leader := c.WaitLeader(t)
	l := c.Node(leader)
	f := c.Node(c.Followers(leader)[0])
	bound := l.Config().ElectionTimeout + time.Second

	mustPropose(t, f, containerCmd("/never"))
	mustPropose(t, f, containerCmd("/c"))
	mustPropose(t, f, createCmd("/c/a", nil))
	mustPropose(t, f, createCmd("/c/b", nil))
	mustPropose(t, f, deleteCmd("/c/a"))
	staysUntil(t, l, "/c", time.Now().Add(bound), "container with a child")
	mustPropose(t, f, deleteCmd("/c/b"))
	goneWithin(t, c, "/c", time.Now(), bound)

	// An ephemeral child going with its session empties a container too.
	s := mustOpenSession(t, f, 2*time.Second)
	mustPropose(t, f, containerCmd("/e"))
	mustPropose(t, f, ephemeralCmd("/e/x", s))
	ctx, cancel := context.WithTimeout(context.Background(), testProposeTimeout)
	defer cancel()
	if _, _, err := f.CloseSession(ctx, s); err != nil {
		t.Fatalf("CloseSession = %v", err)
	}
	goneWithin(t, c, "/e", time.Now(), bound)

	if gone(t, l, "/never") {
		t.Errorf("a container never given a child was deleted")
	}
}

func TestTTLAndContainerAcrossLeaderChange(t *testing.T) {
	c := newCluster(t, 3, nodetest.WithSteadyLeader())
	leader := c.WaitLeader(t)
	f := c.Node(c.Followers(leader)[0])
	const ttl = 2 * time.Second

	created := time.Now()
	mustPropose(t, f, ttlCmd("/t", ttl))
	mustPropose(t, f, containerCmd("/c"))
	mustPropose(t, f, createCmd("/c/kid", nil))
	mustPropose(t, f, deleteCmd("/c/kid"))

	// Leadership moves before the TTL is up: the new leader gives /t its
	// full TTL from its own start, and deletes the empty container soon.
	moved := time.Now()
	next := c.Followers(leader)[1]
	c.Transfer(t, next)
	movedDone := time.Now()
	bound := c.Node(next).Config().ElectionTimeout + time.Second
	goneWithin(t, c, "/c", movedDone, bound)
	if movedDone.Before(created.Add(ttl)) {
		staysUntil(t, c.Node(next), "/t", moved.Add(ttl), "TTL restarted by the new leader")
	} else {
		t.Logf("transfer took %v: only the creation bound is checked", movedDone.Sub(moved))
		staysUntil(t, c.Node(next), "/t", created.Add(ttl), "idle TTL node")
	}
	goneWithin(t, c, "/t", movedDone, ttl+2*time.Second)
	c.Converged(t)
}
