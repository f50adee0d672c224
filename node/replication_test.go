package node_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/paddock/paddock/fsm"
	"github.com/paddock/paddock/node"
	"github.com/paddock/paddock/node/nodetest"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

func TestLeaderKilledNewLeaderTakesWrites(t *testing.T) {
	c := newCluster(t, 3)
	old := c.WaitLeader(t)
	before := mustPropose(t, c.Node(old), createCmd("/before", []byte("x")))

	c.Stop(old)
	leader := c.WaitLeader(t)
	if leader == old {
		t.Fatalf("stopped node %d still leads", old)
	}
	// Writes go on, on the new leader and through the surviving follower.
	for _, i := range c.Running() {
		path := fmt.Sprintf("/after-%d", i)
		res := mustPropose(t, c.Node(i), createCmd(path, []byte("y")))
		if res.Index <= before.Index {
			t.Fatalf("Propose(%s) on %s: index %d, not after %d", path, c.Node(i).ID(), res.Index, before.Index)
		}
	}

	// The old leader comes back on a new gRPC port, catches up and
	// registers its new address; leading again, it takes forwarded writes.
	c.RestartNewAddr(old)
	c.WaitLeader(t)
	c.Converged(t)
	for _, i := range c.Running() {
		if _, _, err := c.Node(old).FSM().Get(fmt.Sprintf("/after-%d", i)); i != old && err != nil {
			t.Fatalf("restarted %s: %v", c.Node(old).ID(), err)
		}
	}
	c.Transfer(t, old)
	for _, f := range c.Followers(old) {
		res := mustPropose(t, c.Node(f), createCmd(fmt.Sprintf("/via-%d", f), nil))
		if _, st, err := c.Node(old).FSM().Get(fmt.Sprintf("/via-%d", f)); err != nil || st.GetCzxid() != res.Index {
			t.Fatalf("Get(/via-%d) on the leader = %v, %v; want czxid %d", f, st, err, res.Index)
		}
	}
}

func TestFollowerWritesAreForwarded(t *testing.T) {
	c := newCluster(t, 3)
	leader := c.WaitLeader(t)
	for _, f := range c.Followers(leader) {
		path := fmt.Sprintf("/from-%s", c.Node(f).ID())
		data := []byte("data of " + path)
		res := mustPropose(t, c.Node(f), createCmd(path, data))
		resp, ok := res.Resp.(*paddockv1.CreateResponse)
		if !ok {
			t.Fatalf("Propose on %s: response %T, want *CreateResponse", c.Node(f).ID(), res.Resp)
		}
		if resp.GetPath() != path || resp.GetStat().GetCzxid() != res.Index || res.Index == 0 {
			t.Fatalf("Propose on %s = %v (index %d), want path %s and czxid = index", c.Node(f).ID(), resp, res.Index, path)
		}
		// The zxid is the leader's log index of the entry.
		if _, st, err := c.Node(leader).FSM().Get(path); err != nil || st.GetCzxid() != res.Index {
			t.Fatalf("Get(%s) on the leader = %v, %v; want czxid %d", path, st, err, res.Index)
		}
		eventually(t, waitTimeout, func() error {
			for _, i := range c.Running() {
				got, st, err := c.Node(i).FSM().Get(path)
				if err != nil {
					return fmt.Errorf("Get(%s) on %s: %w", path, c.Node(i).ID(), err)
				}
				if !bytes.Equal(got, data) || st.GetMzxid() != res.Index {
					return fmt.Errorf("Get(%s) on %s = %q mzxid %d, want %q mzxid %d", path, c.Node(i).ID(), got, st.GetMzxid(), data, res.Index)
				}
			}
			return nil
		})
	}
	// Domain errors come back through the forwarding intact.
	f := c.Followers(leader)[0]
	_, err := c.Node(f).Propose(context.Background(), createCmd(fmt.Sprintf("/from-%s", c.Node(f).ID()), nil))
	if !errors.Is(err, fsm.ErrNodeExists) {
		t.Fatalf("forwarded duplicate create: err = %v, want ErrNodeExists", err)
	}
}

func TestWriteThenLinearizableReadOnAnotherNode(t *testing.T) {
	c := newCluster(t, 3)
	c.WaitLeader(t)
	ctx := context.Background()
	for i := range 50 {
		w, r := c.Node(i%3), c.Node((i+1)%3)
		path := fmt.Sprintf("/lin-%d", i)
		data := fmt.Appendf(nil, "v%d", i)
		res := mustPropose(t, w, createCmd(path, data))
		// No polling: the first read must see the write.
		got, st, err := linearGet(ctx, r, path)
		if err != nil {
			t.Fatalf("write %d on %s, read on %s: %v", i, w.ID(), r.ID(), err)
		}
		if !bytes.Equal(got, data) || st.GetMzxid() != res.Index {
			t.Fatalf("write %d on %s, read on %s: Get(%s) = %q mzxid %d, want %q mzxid %d",
				i, w.ID(), r.ID(), path, got, st.GetMzxid(), data, res.Index)
		}
	}
}

func TestPartitionedLeader(t *testing.T) {
	// A short request timeout bounds each read index round on the
	// isolated node, so the reads below see how a round ends, not only
	// their own deadline.
	c := newCluster(t, 3, nodetest.WithConfig(func(cfg *node.Config) { cfg.RequestTimeout = 500 * time.Millisecond }))
	old := c.WaitLeader(t)
	on := c.Node(old)
	mustPropose(t, on, createCmd("/p", []byte("v1")))
	c.Converged(t)

	c.Partition(old)

	// A write on the isolated leader cannot commit.
	wctx, cancel := context.WithTimeout(context.Background(), time.Second)
	_, err := on.Propose(wctx, setCmd("/p", []byte("lost")))
	cancel()
	if err == nil {
		t.Fatal("write on the partitioned leader succeeded")
	}
	// Its linearizable reads fail soon (it cannot confirm its leadership).
	eventually(t, waitTimeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if _, _, err := linearGet(ctx, on, "/p"); err == nil {
			return errors.New("linearizable read on the partitioned leader still succeeds")
		}
		return nil
	})

	// The majority elects a leader and commits.
	leader := c.WaitLeader(t)
	if leader == old {
		t.Fatal("partitioned node leads the majority")
	}
	v2 := mustPropose(t, c.Node(leader), setCmd("/p", []byte("v2")))

	// From now on a read on the isolated node would be stale: it must
	// fail, and it can never show the new value.
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		got, _, err := linearGet(ctx, on, "/p")
		cancel()
		if err == nil {
			t.Fatalf("linearizable read on the partitioned node succeeded with %q", got)
		}
		if got, _, _ := on.FSM().Get("/p"); !bytes.Equal(got, []byte("v1")) {
			t.Fatalf("partitioned node has /p = %q, want v1", got)
		}
	}

	c.Heal()
	c.WaitLeader(t)
	c.Converged(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for _, i := range c.Running() {
		got, st, err := linearGet(ctx, c.Node(i), "/p")
		if err != nil || !bytes.Equal(got, []byte("v2")) || st.GetMzxid() != v2.Index || st.GetVersion() != 1 {
			t.Fatalf("after heal, Get(/p) on %s = %q %v, %v; want v2 at mzxid %d version 1", c.Node(i).ID(), got, st, err, v2.Index)
		}
	}
}

func TestNewLeaderReadsWaitForBarrier(t *testing.T) {
	c := newCluster(t, 3)
	a := c.WaitLeader(t)
	fs := c.Followers(a)
	b, down := fs[0], fs[1]
	an, bn := c.Node(a), c.Node(b)
	want := []byte("committed by the old leader")
	res := mustPropose(t, an, createCmd("/r", want))

	// With the third node down, b needs a's acknowledgement to commit. b's
	// entries are dropped on their way to a: once b leads, its barrier
	// cannot commit, while its heartbeats keep it leader and a its follower.
	c.Stop(down)
	c.Transport(b).DropEntries("", true)
	if err := an.Raft().LeadershipTransferToServer(raft.ServerID(bn.ID()), c.RaftAddr(b)).Error(); err != nil {
		t.Fatalf("LeadershipTransferToServer: %v", err)
	}
	eventually(t, waitTimeout, func() error {
		if !bn.IsLeader() {
			return fmt.Errorf("%s is not the leader", bn.ID())
		}
		return nil
	})
	barrier := bn.Raft().LastIndex() // the new term's no-op, then the barrier
	for range 5 {
		if !bn.IsLeader() {
			t.Fatalf("%s lost its leadership while its entries were dropped", bn.ID())
		}
		if bn.Ready() {
			t.Fatalf("%s is ready before its barrier (index %d) is applied (applied %d)", bn.ID(), barrier, bn.FSM().AppliedIndex())
		}
		for _, n := range []*node.Node{bn, an} {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			_, _, err := linearGet(ctx, n, "/r")
			cancel()
			// DeadlineExceeded (it waited) or, while b's leadership
			// watcher catches up with raft, "not the leader": any
			// error, but no read.
			if err == nil {
				t.Fatalf("linearizable read on %s succeeded before the new leader's barrier", n.ID())
			}
		}
	}

	c.Transport(b).DropEntries("", false)
	eventually(t, waitTimeout, func() error {
		if !bn.Ready() {
			return fmt.Errorf("%s not ready", bn.ID())
		}
		return nil
	})
	if got := bn.FSM().AppliedIndex(); got < barrier {
		t.Fatalf("%s ready with applied index %d, before its barrier %d", bn.ID(), got, barrier)
	}
	for _, n := range []*node.Node{bn, an} {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		got, st, err := linearGet(ctx, n, "/r")
		cancel()
		if err != nil || !bytes.Equal(got, want) || st.GetCzxid() != res.Index {
			t.Fatalf("Get(/r) on %s = %q %v, %v; want %q", n.ID(), got, st, err, want)
		}
	}
}

func TestProposeRejectsBadInput(t *testing.T) {
	const limit = 4096
	c := newCluster(t, 3, nodetest.WithConfig(func(cfg *node.Config) { cfg.MaxValueSize = limit }))
	leader := c.WaitLeader(t)
	c.Converged(t)
	ln := c.Node(leader)
	last := ln.Raft().LastIndex()
	applied := ln.FSM().AppliedIndex()

	cases := []struct {
		name string
		cmd  *raftv1.Command
		want error
	}{
		{"over the node limit", createCmd("/big", make([]byte, limit+1)), fsm.ErrTooLarge},
		{"over the state machine limit", createCmd("/huge", make([]byte, fsm.MaxDataSize+1)), fsm.ErrTooLarge},
		{"set over the limit", setCmd("/", make([]byte, limit+1)), fsm.ErrTooLarge},
		{"relative path", createCmd("a/b", nil), fsm.ErrBadPath},
		{"empty segment", createCmd("/a//b", nil), fsm.ErrBadPath},
		{"trailing slash", createCmd("/a/", nil), fsm.ErrBadPath},
		{"dot segment", createCmd("/a/../b", nil), fsm.ErrBadPath},
		{"reserved path", createCmd("/paddock/x", nil), fsm.ErrReservedPath},
		{"empty command", &raftv1.Command{}, fsm.ErrBadArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, i := range c.Running() {
				_, err := c.Node(i).Propose(context.Background(), tc.cmd)
				if !errors.Is(err, tc.want) {
					t.Errorf("Propose on %s: err = %v, want %v", c.Node(i).ID(), err, tc.want)
				}
			}
		})
	}
	// The leader checks forwarded commands too (a follower with another
	// limit, or a peer that skipped its own checks).
	conn, err := grpc.NewClient(c.PeerAddr(leader), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, tc := range cases {
		data, err := proto.Marshal(tc.cmd)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := raftv1.NewInternalServiceClient(conn).Propose(context.Background(), &raftv1.ProposeRequest{Command: data})
		if err != nil {
			t.Fatalf("InternalService.Propose(%s): %v", tc.name, err)
		}
		if got := fsm.DecodeError(resp.GetErrorCode(), resp.GetErrorMessage(), resp.GetFailedOp()); !errors.Is(got, tc.want) {
			t.Errorf("InternalService.Propose(%s): error %v, want %v", tc.name, got, tc.want)
		}
	}
	if got := ln.Raft().LastIndex(); got != last {
		t.Errorf("leader's last log index went from %d to %d", last, got)
	}
	if got := ln.FSM().AppliedIndex(); got != applied {
		t.Errorf("leader's applied index went from %d to %d", applied, got)
	}
	// An exactly-at-limit value is fine.
	mustPropose(t, c.Node(c.Followers(leader)[0]), createCmd("/max", make([]byte, limit)))
}

func TestLaggingFollowerCatchesUpBySnapshot(t *testing.T) {
	c := newCluster(t, 3, nodetest.WithSnapshots(64, 16))
	leader := c.WaitLeader(t)
	lag := c.Followers(leader)[0]
	c.Converged(t)
	c.Stop(lag)

	writeMany(t, c.Node(leader), "/lag", 500)
	ln := c.Node(leader)
	if err := ln.Snapshot(); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	snapIndex := raftStat(t, ln, "last_snapshot_index")
	if snapIndex == 0 {
		t.Fatal("leader has no snapshot")
	}

	c.Restart(lag)
	c.WaitLeader(t)
	c.Converged(t)
	if got, want := c.Node(lag).FSM().StateHash(), c.Node(leader).FSM().StateHash(); got != want {
		t.Fatal("lagging follower's state differs from the leader's")
	}
	// Its log could not have been replicated: the leader kept 16 entries.
	if got := raftStat(t, c.Node(lag), "last_snapshot_index"); got < snapIndex {
		t.Fatalf("lagging follower's last snapshot index is %d, want >= the leader's %d (installed)", got, snapIndex)
	}
	if _, _, err := c.Node(lag).FSM().Get("/lag/499"); err != nil {
		t.Fatalf("Get(/lag/499) on the caught-up follower: %v", err)
	}
}

func TestRestartFromSnapshotAndLog(t *testing.T) {
	c := newCluster(t, 3, nodetest.WithSnapshots(64, 16), nodetest.WithSteadyLeader())
	leader := c.WaitLeader(t)
	writeMany(t, c.Node(leader), "/s", 100)
	if err := c.Node(leader).Snapshot(); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	for i := range 30 {
		mustPropose(t, c.Node(leader), setCmd(fmt.Sprintf("/s/%d", i), []byte("after the snapshot")))
	}
	c.Converged(t)
	ln := c.Node(leader)
	want, wantIndex := contentHash(t, ln.FSM()), ln.FSM().AppliedIndex()

	for _, i := range c.Running() {
		c.Stop(i)
	}
	for i := range c.Size() {
		c.Restart(i)
	}
	c.WaitLeader(t)
	c.Converged(t)
	for _, i := range c.Running() {
		n := c.Node(i)
		if got := n.FSM().AppliedIndex(); got < wantIndex {
			t.Errorf("%s applied %d after restart, want >= %d", n.ID(), got, wantIndex)
		}
		if got := contentHash(t, n.FSM()); got != want {
			t.Errorf("%s's znodes and sessions after restart differ from before", n.ID())
		}
		// Every member's current address is registered (re-registered if
		// its port changed).
		for j := range c.Size() {
			if reg, ok := n.FSM().Member(c.ID(j)); !ok || reg.GetGrpcAddr() != c.GRPCAddr(j) {
				t.Errorf("%s: member %s registered as %v, want %s", n.ID(), c.ID(j), reg, c.GRPCAddr(j))
			}
		}
	}
}

// writeMany creates parent and count children under it through n, from 16
// writers.
func writeMany(t *testing.T, n *node.Node, parent string, count int) {
	t.Helper()
	mustPropose(t, n, createCmd(parent, nil))
	errs := make(chan error, 16)
	for w := range 16 {
		go func() {
			var err error
			for i := w; i < count && err == nil; i += 16 {
				ctx, cancel := context.WithTimeout(context.Background(), testProposeTimeout)
				_, err = n.Propose(ctx, createCmd(fmt.Sprintf("%s/%d", parent, i), []byte("some data")))
				cancel()
			}
			errs <- err
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			t.Fatalf("writing under %s: %v", parent, err)
		}
	}
}

// A leader cut off from the others must not confirm a read index, not
// even in the moment before it notices: answers to requests it sent before
// the cut do not prove it still leads (hashicorp/raft's VerifyLeader
// counts them; confirmLeadership does not).
func TestCutOffLeaderConfirmsNoRead(t *testing.T) {
	c := newCluster(t, 3)
	old := c.WaitLeader(t)
	on := c.Node(old)
	mustPropose(t, on, createCmd("/p", []byte("v1")))
	c.Converged(t)

	// Writes keep appends in flight, so that answers to them are on their
	// way back when the leader is cut off.
	wctx, stopWrites := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; wctx.Err() == nil; i++ {
				on.Propose(wctx, createCmd(fmt.Sprintf("/w-%d-%d", w, i), nil))
			}
		}()
	}
	defer func() {
		stopWrites()
		wg.Wait()
	}()
	eventually(t, waitTimeout, func() error {
		if _, _, err := on.FSM().Get("/w-0-10"); err != nil {
			return err
		}
		return nil
	})

	c.Partition(old)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	got, _, err := linearGet(ctx, on, "/p")
	cancel()
	if err == nil {
		t.Fatalf("linearizable read on the cut-off leader succeeded with %q", got)
	}
	stopWrites()
	wg.Wait()
	c.Heal()
	c.WaitLeader(t)
}
