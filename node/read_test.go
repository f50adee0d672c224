package node_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/paddock/paddock/fsm"
	"github.com/paddock/paddock/node"
	"github.com/paddock/paddock/node/nodetest"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// forwarded returns n's paddock_forwarded_requests_total for kind.
func forwarded(tb testing.TB, n *node.Node, kind string) float64 {
	tb.Helper()
	v, ok := scrape(tb, n.Metrics())["paddock_forwarded_requests_total"]["kind="+kind]
	if !ok {
		tb.Fatalf("%s: paddock_forwarded_requests_total{kind=%s} missing", n.ID(), kind)
	}
	return v
}

// serializable reads the local state, with min_zxid z.
func serializable(z uint64) *paddockv1.ReadOptions {
	return &paddockv1.ReadOptions{Consistency: paddockv1.ReadConsistency_READ_CONSISTENCY_SERIALIZABLE, MinZxid: z}
}

// readCluster starts a three-node cluster where every node has applied
// /r = v1, and returns it, its leader and a follower. The tests count the
// round trips a read takes, which an election would add to: the timings
// are slower than other tests', so that a loaded machine keeps the leader.
func readCluster(t *testing.T) (c *nodetest.Cluster, leader, follower int) {
	t.Helper()
	c = newCluster(t, 3, nodetest.WithConfig(func(cfg *node.Config) {
		cfg.HeartbeatTimeout = time.Second
		cfg.ElectionTimeout = time.Second
	}))
	leader = c.WaitLeader(t)
	mustPropose(t, c.Node(leader), createCmd("/r", []byte("v1")))
	c.Converged(t)
	return c, leader, c.Followers(leader)[0]
}

// checkGet reads /r on n with opts and checks that it is want, that from
// served it, and that n forwarded reads and read index rounds doing so.
func checkGet(t *testing.T, n *node.Node, opts *paddockv1.ReadOptions, want, from string, reads, rounds float64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	r0, i0 := forwarded(t, n, "read"), forwarded(t, n, "read_index")
	r, err := n.Get(ctx, &paddockv1.GetRequest{Path: "/r", Read: opts})
	if err != nil || string(r.GetData()) != want || r.GetHeader().GetNodeId() != from {
		t.Fatalf("Get(/r) on %s = %q %v, %v; want %s from %s", n.ID(), r.GetData(), r.GetHeader(), err, want, from)
	}
	if got := forwarded(t, n, "read") - r0; got != reads {
		t.Errorf("forwarded reads rose by %v, want %v", got, reads)
	}
	if got := forwarded(t, n, "read_index") - i0; got != rounds {
		t.Errorf("read index rounds rose by %v, want %v", got, rounds)
	}
}

func TestLaggingFollowerForwardsReads(t *testing.T) {
	c, l, f := readCluster(t)
	ln, fn := c.Node(l), c.Node(f)

	// f stores the entries below but never learns they are committed, so
	// its applied index stays behind the leader's commit index.
	c.Transport(l).HoldCommit(c.RaftAddr(f), true)
	first := mustPropose(t, ln, setCmd("/r", []byte("v2")))
	mustPropose(t, ln, createCmd("/r/child", nil))
	sess := mustOpenSession(t, ln, 10*time.Second)
	last := ln.Raft().LastIndex()
	eventually(t, waitTimeout, func() error {
		if got := fn.Raft().LastIndex(); got < last {
			return fmt.Errorf("%s stores up to %d, want %d", fn.ID(), got, last)
		}
		return nil
	})
	if got := fn.FSM().AppliedIndex(); got >= first.Index {
		t.Fatalf("%s applied %d although its commit index is held back (first new entry %d)", fn.ID(), got, first.Index)
	}

	// One read of every kind a follower may forward. read checks the
	// response it gets; wantErr is the error a read must fail with.
	for _, tc := range []struct {
		name    string
		read    func(ctx context.Context, n *node.Node) (*paddockv1.ResponseHeader, error)
		wantErr error
	}{
		{"get", func(ctx context.Context, n *node.Node) (*paddockv1.ResponseHeader, error) {
			r, err := n.Get(ctx, &paddockv1.GetRequest{Path: "/r"})
			if err == nil && !bytes.Equal(r.GetData(), []byte("v2")) {
				err = fmt.Errorf("Get(/r) = %q, want v2", r.GetData())
			}
			return r.GetHeader(), err
		}, nil},
		{"get missing", func(ctx context.Context, n *node.Node) (*paddockv1.ResponseHeader, error) {
			r, err := n.Get(ctx, &paddockv1.GetRequest{Path: "/missing"})
			return r.GetHeader(), err
		}, fsm.ErrNoNode},
		{"exists", func(ctx context.Context, n *node.Node) (*paddockv1.ResponseHeader, error) {
			r, err := n.Exists(ctx, &paddockv1.ExistsRequest{Path: "/r/child"})
			if err == nil && !r.GetExists() {
				err = errors.New("Exists(/r/child) = false, want true")
			}
			return r.GetHeader(), err
		}, nil},
		{"list", func(ctx context.Context, n *node.Node) (*paddockv1.ResponseHeader, error) {
			r, err := n.List(ctx, &paddockv1.ListRequest{Path: "/r"})
			if err == nil && (len(r.GetChildren()) != 1 || r.GetChildren()[0].GetName() != "child") {
				err = fmt.Errorf("List(/r) = %v, want [child]", r.GetChildren())
			}
			return r.GetHeader(), err
		}, nil},
		{"get session", func(ctx context.Context, n *node.Node) (*paddockv1.ResponseHeader, error) {
			r, err := n.GetSession(ctx, &paddockv1.GetSessionRequest{SessionId: sess})
			return r.GetHeader(), err
		}, nil},
		{"list sessions", func(ctx context.Context, n *node.Node) (*paddockv1.ResponseHeader, error) {
			r, err := n.ListSessions(ctx, &paddockv1.ListSessionsRequest{})
			if err == nil && !slices.ContainsFunc(r.GetSessions(), func(s *paddockv1.Session) bool { return s.GetId() == sess }) {
				err = fmt.Errorf("ListSessions = %v, want session %d in it", r.GetSessions(), sess)
			}
			return r.GetHeader(), err
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			reads, rounds := forwarded(t, fn, "read"), forwarded(t, fn, "read_index")
			hdr, err := tc.read(ctx, fn)
			switch {
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("error = %v, want %v", err, tc.wantErr)
				}
			case err != nil:
				t.Error(err)
			case hdr.GetNodeId() != ln.ID() || hdr.GetZxid() < last:
				t.Errorf("header = %v, want the leader %s's at zxid >= %d", hdr, ln.ID(), last)
			}
			// One round trip: the read itself, no read index first.
			if got := forwarded(t, fn, "read") - reads; got != 1 {
				t.Errorf("forwarded reads rose by %v, want 1", got)
			}
			if got := forwarded(t, fn, "read_index") - rounds; got != 0 {
				t.Errorf("read index rounds rose by %v, want 0", got)
			}
		})
	}

	// Serializable reads stay local, stale as they may be.
	checkGet(t, fn, serializable(0), "v1", fn.ID(), 0, 0)
	c.Transport(l).HoldCommit(c.RaftAddr(f), false)
}

// TestFollowerForwardsPastReadIndex: a follower that has not even received
// what the leader committed gets a read index beyond its commit index and
// has the leader serve the read at that index; one asked for a min_zxid
// it does not know to be committed forwards at once.
func TestFollowerForwardsPastReadIndex(t *testing.T) {
	c, l, f := readCluster(t)
	ln, fn := c.Node(l), c.Node(f)

	c.Transport(l).DropEntries(c.RaftAddr(f), true)
	defer c.Transport(l).DropEntries(c.RaftAddr(f), false)
	res := mustPropose(t, ln, setCmd("/r", []byte("v2")))
	if got := fn.Raft().LastIndex(); got >= res.Index {
		t.Fatalf("%s stores up to %d although entries to it are dropped (write at %d)", fn.ID(), got, res.Index)
	}

	t.Run("linearizable", func(t *testing.T) { checkGet(t, fn, nil, "v2", ln.ID(), 1, 1) })
	t.Run("min_zxid beyond the commit index", func(t *testing.T) {
		checkGet(t, fn, &paddockv1.ReadOptions{MinZxid: res.Index}, "v2", ln.ID(), 1, 0)
	})
}

func TestCaughtUpFollowerReadsLocally(t *testing.T) {
	c, _, f := readCluster(t)
	fn := c.Node(f)
	t.Run("linearizable", func(t *testing.T) { checkGet(t, fn, nil, "v1", fn.ID(), 0, 1) })
	t.Run("min_zxid applied", func(t *testing.T) {
		checkGet(t, fn, &paddockv1.ReadOptions{MinZxid: fn.FSM().AppliedIndex()}, "v1", fn.ID(), 0, 1)
	})
}

// TestFollowerWaitsForUnknownMinZxid: a min_zxid that no node has makes
// the follower forward the read, learn that the leader lacks it too, and
// wait for it itself, as it did before reads were forwarded: until the
// deadline, with the error saying what it waited for.
func TestFollowerWaitsForUnknownMinZxid(t *testing.T) {
	c, _, f := readCluster(t)
	fn := c.Node(f)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	reads := forwarded(t, fn, "read")
	z := fn.Raft().LastIndex() + 1000
	_, err := fn.Get(ctx, &paddockv1.GetRequest{Path: "/r", Read: &paddockv1.ReadOptions{MinZxid: z}})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "min_zxid") {
		t.Errorf("Get(/r) with min_zxid %d = %v, want DeadlineExceeded waiting for min_zxid", z, err)
	}
	if got := forwarded(t, fn, "read") - reads; got != 1 {
		t.Errorf("forwarded reads rose by %v, want 1", got)
	}
}

// TestInternalReadServesOnlyWhatItMay: a node serves forwarded
// linearizable reads only while it leads; a follower refuses the batch
// with the code that makes the sender try again. Reads at a known read
// index (serializable, with min_zxid) any node serves, each on its own: a
// bad query or a min_zxid beyond the node's log fails that query alone.
func TestInternalReadServesOnlyWhatItMay(t *testing.T) {
	c := newCluster(t, 3)
	l := c.WaitLeader(t)
	fi := c.Followers(l)[0]
	fid := c.ID(fi)
	res := mustPropose(t, c.Node(l), createCmd("/r", []byte("v1")))
	c.Converged(t) // f's log reaches res.Index: it may serve reads at that index
	conn, err := grpc.NewClient(c.PeerAddr(fi), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	internal := raftv1.NewInternalServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	get := &raftv1.Query_Get{Get: &paddockv1.GetRequest{Path: "/r"}}

	_, err = internal.Read(ctx, &raftv1.ReadRequest{Queries: []*raftv1.Query{
		{Read: serializable(res.Index), Query: get},
		{Query: get},
	}})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("linearizable Read on follower %s: %v, want FailedPrecondition", fid, err)
	}

	beyond := c.Node(fi).Raft().LastIndex() + 1000
	r, err := internal.Read(ctx, &raftv1.ReadRequest{Queries: []*raftv1.Query{
		{Read: serializable(res.Index), Query: get},
		{Read: serializable(0)},
		{Read: serializable(beyond), Query: get},
	}})
	if err != nil || len(r.GetResults()) != 3 {
		t.Fatalf("Read on follower %s = %v, %v; want 3 results", fid, r, err)
	}
	if got := r.GetResults()[0].GetGet(); string(got.GetData()) != "v1" || got.GetHeader().GetNodeId() != fid {
		t.Errorf("Get(/r) at index %d on %s = %v, want v1 from it", res.Index, fid, got)
	}
	if got := r.GetResults()[1]; got.GetErrorCode() != raftv1.ErrorCode_ERROR_CODE_BAD_ARGUMENT {
		t.Errorf("empty query = %v, want error code BAD_ARGUMENT", got)
	}
	if got := r.GetResults()[2]; !got.GetBeyondLog() || got.GetGet() != nil {
		t.Errorf("Get(/r) at min_zxid %d = %v, want beyond_log and no result", beyond, got)
	}
}

// TestFollowerReadsUnderWrites: while writers change /c through every
// node, readers on the followers never see a version older than the last
// write acknowledged before their read began. The followers run, in turn,
// unhindered, with their commit index held back (every read forwarded)
// and with entries dropped (every read forwarded after a read index).
func TestFollowerReadsUnderWrites(t *testing.T) {
	c := newCluster(t, 3)
	l := c.WaitLeader(t)
	mustPropose(t, c.Node(l), createCmd("/c", nil))
	lt := c.Transport(l)

	var (
		acked atomic.Int32 // highest version a write returned
		gate  sync.RWMutex // writers hold it shared: Lock pauses them
		reads atomic.Int64
		stop  = make(chan struct{})
		wg    sync.WaitGroup
		errs  = make(chan error, 16)
	)
	fail := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	stopAll := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	defer stopAll() // also when the test fails early: before the cluster closes
	for _, i := range c.Running() {
		n := c.Node(i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx := context.Background(); ; {
				select {
				case <-stop:
					return
				default:
				}
				gate.RLock()
				res, err := n.Propose(ctx, setCmd("/c", []byte(n.ID())))
				gate.RUnlock()
				if err != nil {
					continue // not acknowledged: the readers expect nothing of it
				}
				v := res.Resp.(*paddockv1.SetResponse).GetStat().GetVersion()
				for old := acked.Load(); v > old && !acked.CompareAndSwap(old, v); old = acked.Load() {
				}
			}
		}()
	}
	for _, i := range c.Followers(l) {
		n := c.Node(i)
		for r := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := 0; ; k++ {
					select {
					case <-stop:
						return
					default:
					}
					want := acked.Load()
					got, err := readVersion(n, (k+r)%3)
					if err != nil {
						fail(fmt.Errorf("read on %s: %w", n.ID(), err))
						return
					}
					if got < want {
						fail(fmt.Errorf("read on %s: version %d, but %d was acknowledged before the read began", n.ID(), got, want))
						return
					}
					reads.Add(1)
				}
			}()
		}
	}

	term := c.Node(l).Raft().CurrentTerm()
	fs := c.Followers(l)
	held, dropped := fs[0], fs[1]
	for _, ph := range []struct {
		name     string
		start    func()
		forwards int // must forward reads in this phase, if >= 0
	}{
		{"unhindered", func() {}, -1},
		{"entries dropped", func() {
			// Dropped from a quiet, caught-up state, that follower
			// knows of no entry it has not applied: its reads ask for a
			// read index first.
			gate.Lock()
			defer gate.Unlock()
			c.Converged(t)
			lt.DropEntries(c.RaftAddr(dropped), true)
		}, dropped},
		{"commit index held back", func() {
			lt.DropEntries(c.RaftAddr(dropped), false)
			lt.HoldCommit(c.RaftAddr(held), true)
		}, held},
		{"healed", func() { lt.HoldCommit(c.RaftAddr(held), false) }, -1},
	} {
		ph.start()
		var fwd float64
		if ph.forwards >= 0 {
			fwd = forwarded(t, c.Node(ph.forwards), "read")
		}
		r0, w0 := reads.Load(), acked.Load()
		eventually(t, waitTimeout, func() error {
			select {
			case err := <-errs:
				t.Fatalf("%s: %v", ph.name, err)
			default:
			}
			if r, w := reads.Load()-r0, acked.Load()-w0; r < 200 || w < 20 {
				return fmt.Errorf("%s: %d reads and %d writes in this phase, want 200 and 20", ph.name, r, w)
			}
			return nil
		})
		switch {
		case ph.forwards < 0:
		case c.Node(l).Raft().CurrentTerm() != term:
			// A loaded machine may elect a new leader, whose transport
			// injects no fault: the reads were checked all the same.
			t.Logf("%s: leadership moved, the phase's faults stopped", ph.name)
		case forwarded(t, c.Node(ph.forwards), "read") == fwd:
			t.Errorf("%s: %s forwarded no read", ph.name, c.ID(ph.forwards))
		}
	}
	stopAll()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// readVersion reads /c's version on n with a linearizable Get, Exists
// or List (of its parent), as kind says.
func readVersion(n *node.Node, kind int) (int32, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	switch kind {
	case 0:
		r, err := n.Get(ctx, &paddockv1.GetRequest{Path: "/c"})
		return r.GetStat().GetVersion(), err
	case 1:
		r, err := n.Exists(ctx, &paddockv1.ExistsRequest{Path: "/c"})
		return r.GetStat().GetVersion(), err
	}
	r, err := n.List(ctx, &paddockv1.ListRequest{Path: "/"})
	if err != nil {
		return 0, err
	}
	for _, ch := range r.GetChildren() {
		if ch.GetName() == "c" {
			return ch.GetStat().GetVersion(), nil
		}
	}
	return 0, errors.New("List(/) has no c")
}

// TestUnsafeLocalReads shows that Config.UnsafeLocalReads really breaks
// linearizability, and the normal path does not: with a follower's raft
// links cut, a value written through the leader is committed without it.
// A linearizable Get on the cut follower then returns the old value when
// reads are unsafe; otherwise it returns the new value (forwarded to the
// leader, whose gRPC the cut leaves reachable) or fails, and once the
// follower has lost its leader it fails. An unsafe read still waits for
// its min_zxid.
func TestUnsafeLocalReads(t *testing.T) {
	for _, unsafe := range []bool{false, true} {
		t.Run(fmt.Sprintf("unsafe=%t", unsafe), func(t *testing.T) {
			c := newCluster(t, 3, nodetest.WithConfig(func(cfg *node.Config) { cfg.UnsafeLocalReads = unsafe }))
			l := c.WaitLeader(t)
			mustPropose(t, c.Node(l), createCmd("/r", []byte("old")))
			c.Converged(t)
			fi := c.Followers(l)[0]
			fn := c.Node(fi)

			c.Partition(fi)
			res := mustPropose(t, c.Node(l), setCmd("/r", []byte("new")))
			if got, _, _ := fn.FSM().Get("/r"); string(got) != "old" {
				t.Fatalf("cut follower %s has /r = %q, want old", fn.ID(), got)
			}
			read := func(what string, opts *paddockv1.ReadOptions, timeout time.Duration) (*paddockv1.GetResponse, error) {
				t.Helper()
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				defer cancel()
				r, err := fn.Get(ctx, &paddockv1.GetRequest{Path: "/r", Read: opts})
				t.Logf("%s: Get(/r) on cut follower %s = %q from %s, %v", what, fn.ID(), r.GetData(), r.GetHeader().GetNodeId(), err)
				return r, err
			}
			// check reads /r linearizably with min_zxid 0; unless reads are
			// unsafe, an answer at all is wrong when mustFail.
			check := func(what string, mustFail bool) {
				t.Helper()
				r, err := read(what, nil, time.Second)
				switch {
				case unsafe && (err != nil || string(r.GetData()) != "old" || r.GetHeader().GetNodeId() != fn.ID()):
					t.Fatalf("%s, unsafe: Get(/r) on %s = %q from %s, %v; want the stale value old from %s",
						what, fn.ID(), r.GetData(), r.GetHeader().GetNodeId(), err, fn.ID())
				case !unsafe && err == nil && (mustFail || string(r.GetData()) != "new"):
					t.Fatalf("%s: linearizable Get(/r) on %s = %q after new was acknowledged, want %s",
						what, fn.ID(), r.GetData(), map[bool]string{false: "new or an error", true: "an error"}[mustFail])
				}
			}

			// At once, while the follower may still know the leader.
			check("just cut", false)
			// Once it has lost the leader, no read index can be had.
			eventually(t, waitTimeout, func() error {
				if _, id := fn.Raft().LeaderWithID(); id != "" {
					return fmt.Errorf("cut follower %s still follows %s", fn.ID(), id)
				}
				return nil
			})
			check("leader lost", true)
			// min_zxid is still honoured: the cut follower never gets there.
			lin := &paddockv1.ReadOptions{MinZxid: res.Index}
			if r, err := read("min_zxid", lin, 300*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Get(/r) with min_zxid %d on %s = %q, %v; want it to wait until its deadline", res.Index, fn.ID(), r.GetData(), err)
			}
		})
	}
}
