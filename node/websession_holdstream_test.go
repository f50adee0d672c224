package node_test

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/paddock/paddock/node"
	"github.com/paddock/paddock/node/nodetest"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
)

// heldEverywhere polls until every follower of l holds k writes.
func heldEverywhere(t *testing.T, c *nodetest.Cluster, l, k int) {
	t.Helper()
	for _, i := range c.Followers(l) {
		nodetest.Eventually(t, waitTimeout, func() error {
			if got := node.WebSessionHeld(c.Node(i)); got != k {
				return fmt.Errorf("%s holds %d writes, want %d", c.ID(i), got, k)
			}
			return nil
		})
	}
}

// The leader sends delayed writes to its backups on a stream to each; a
// backup of a version without the stream gets unary calls, and holds the
// writes all the same; a backup restarted gets a new stream, and the
// write that finds the old one broken is still backed up, not written
// through.
func TestWebSessionHoldStreams(t *testing.T) {
	c, l := dwCluster(t)
	leader := c.Node(l)
	node.SetWebSessionFlushDelay(leader, time.Minute) // held until the end
	fs := c.Followers(l)
	n := c.Node(fs[0])
	write := func(id string) {
		t.Helper()
		r := wsRead(t, n, id, true)
		wsWriteDelayed(t, n, id, "x", 0, r.GetToken())
	}
	outcome := func(o string) float64 {
		return metricValue(t, leader, "paddock_web_session_delayed_writes_total", "outcome", o)
	}

	write("hs-1")
	write("hs-2")
	heldEverywhere(t, c, l, 2)
	if open, unary := node.HoldStreams(leader); open != 2 || unary != 0 {
		t.Fatalf("leader has %d hold streams and %d unary backups, want 2 and 0", open, unary)
	}

	// An older backup: the stream is refused, the batch goes in a unary
	// call, and so do the next ones.
	node.NoHoldStreams(c.Node(fs[1]), true)
	write("hs-3")
	write("hs-4")
	heldEverywhere(t, c, l, 4)
	if open, unary := node.HoldStreams(leader); open != 1 || unary != 1 {
		t.Fatalf("with an older backup: %d hold streams and %d unary backups, want 1 and 1", open, unary)
	}
	node.NoHoldStreams(c.Node(fs[1]), false)

	// A backup restarted: its stream is gone with it. It holds nothing
	// after the restart (a backup keeps writes in memory only), and
	// takes the next write on a new stream.
	c.Stop(fs[0])
	c.Restart(fs[0])
	nodetest.Eventually(t, waitTimeout, func() error {
		f := c.Node(fs[0])
		if _, id := f.Raft().LeaderWithID(); string(id) != leader.ID() || !f.Ready() {
			return fmt.Errorf("restarted %s not following %s yet", f.ID(), leader.ID())
		}
		return nil
	})
	n = c.Node(fs[1])
	notBacked := outcome("not_backed_up")
	write("hs-5")
	if got := outcome("not_backed_up"); got != notBacked {
		t.Fatalf("a write after a backup's restart was not backed up (%v, was %v): the broken stream was not replaced", got, notBacked)
	}
	nodetest.Eventually(t, waitTimeout, func() error {
		if got := node.WebSessionHeld(c.Node(fs[0])); got != 1 {
			return fmt.Errorf("restarted %s holds %d writes, want 1", c.ID(fs[0]), got)
		}
		return nil
	})
	steady(t, c, l)
}

// A hold stream request that the backup reaches after the leader's time
// for it has run out (timeout_us, as a unary call's deadline) is refused,
// and ends the stream: the leader may be committing those writes as
// ordinary ones by then.
func TestWebSessionHoldStreamTimeout(t *testing.T) {
	c, l := dwCluster(t)
	fi := c.Followers(l)[0]
	f := c.Node(fi)
	conn, err := grpc.NewClient(c.PeerAddr(fi), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	st, err := raftv1.NewInternalServiceClient(conn).HoldWebSessionsStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	term := c.Node(l).Raft().CurrentTerm()
	hold := func(id string, timeout time.Duration) *raftv1.HoldWebSessionsStreamRequest {
		return &raftv1.HoldWebSessionsStreamRequest{
			Hold: &raftv1.HoldWebSessionsRequest{Term: term, Writes: []*raftv1.HeldWebSession{
				{Id: id, Base: 0, Version: 1, Data: []byte("x"), Seq: 1},
			}},
			TimeoutUs: uint64(timeout.Microseconds()),
		}
	}
	if err := st.Send(hold("hst-1", waitTimeout)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatalf("first hold: %v", err)
	}
	if k := node.WebSessionHeld(f); k != 1 {
		t.Fatalf("%s holds %d writes, want 1", f.ID(), k)
	}
	// The backup is busy past the second request's time (which it
	// counts from the request's arrival: far longer than the time, so
	// that a late arrival on a loaded machine does not matter).
	const timeout = 20 * time.Millisecond
	unlock := node.LockWebSessionBackup(f)
	sent := time.Now()
	if err := st.Send(hold("hst-2", timeout)); err != nil {
		unlock()
		t.Fatal(err)
	}
	for time.Since(sent) <= 50*timeout {
		time.Sleep(time.Millisecond)
	}
	unlock()
	if _, err := st.Recv(); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("hold past its time: %v, want FailedPrecondition", err)
	}
	if k := node.WebSessionHeld(f); k != 1 {
		t.Fatalf("%s holds %d writes after the late request, want 1", f.ID(), k)
	}
}

// A backup whose connection cannot be made (its host gone, a partition
// of the internal port) costs a delayed write the hold's time, not gRPC's
// connect timeout of 20 s: opening its stream is bounded by the batch's
// time, and the write goes through, answered once committed.
func TestWebSessionHoldStreamUnreachableBackup(t *testing.T) {
	var blackhole atomic.Value // raft address whose dials never connect
	blackhole.Store("")
	c, l := dwCluster(t, nodetest.WithConfig(func(cfg *node.Config) {
		dial := cfg.DialPeer
		cfg.DialPeer = func(ctx context.Context, addr string) (net.Conn, error) {
			if blackhole.Load() == addr {
				<-ctx.Done()
				return nil, ctx.Err()
			}
			return dial(ctx, addr)
		}
	}))
	leader := c.Node(l)
	fs := c.Followers(l)
	n := c.Node(fs[1])
	r := wsRead(t, n, "hsu-1", true)
	wsWriteDelayed(t, n, "hsu-1", "a", 0, r.GetToken())
	// fs[0] restarts, and the leader's connection to it cannot be made
	// again: its stream breaks, and a new one cannot open.
	blackhole.Store(string(c.RaftAddr(fs[0])))
	c.Stop(fs[0])
	c.Restart(fs[0])
	notBacked := metricValue(t, leader, "paddock_web_session_delayed_writes_total", "outcome", "not_backed_up")
	r = wsRead(t, n, "hsu-2", true)
	wsWriteDelayed(t, n, "hsu-2", "b", 0, r.GetToken()) // within 3 s
	if got := metricValue(t, leader, "paddock_web_session_delayed_writes_total", "outcome", "not_backed_up"); got != notBacked+1 {
		t.Fatalf("not_backed_up %v after a write with a backup out of reach, want %v", got, notBacked+1)
	}
	committed(t, leader, "hsu-2", "b", 1)
	steady(t, c, l)
}
