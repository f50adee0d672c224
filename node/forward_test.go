package node_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/paddock/paddock/fsm"
	"github.com/paddock/paddock/node"
	"github.com/paddock/paddock/node/nodetest"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// write is one write's outcome in the tests below.
type write struct {
	path string
	res  *fsm.Result
	err  error
}

// writeLoad is writers creating parent/1, parent/2, ... through the nodes
// nodeOf names (per writer) until finish, recording every outcome.
type writeLoad struct {
	mu     sync.Mutex
	writes []write
	ok     atomic.Int64
	stop   chan struct{}
	wg     sync.WaitGroup
}

func startWriteLoad(writers int, parent string, nodeOf func(w int) *node.Node) *writeLoad {
	l := &writeLoad{stop: make(chan struct{})}
	var next atomic.Int64
	for w := range writers {
		n := nodeOf(w)
		l.wg.Go(func() {
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				path := fmt.Sprintf("%s/%d", parent, next.Add(1))
				ctx, cancel := context.WithTimeout(context.Background(), testProposeTimeout)
				res, err := n.Propose(ctx, createCmd(path, []byte(path)))
				cancel()
				l.mu.Lock()
				l.writes = append(l.writes, write{path, res, err})
				l.mu.Unlock()
				if err == nil {
					l.ok.Add(1)
				} else {
					time.Sleep(5 * time.Millisecond) // no busy loop while there is no leader
				}
			}
		})
	}
	return l
}

// done is how many writes have ended so far.
func (l *writeLoad) done() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.writes)
}

// finish stops the writers and returns every outcome.
func (l *writeLoad) finish() []write {
	close(l.stop)
	l.wg.Wait()
	return l.writes
}

// internalCalls counts the InternalService calls of one kind a node's
// gRPC server has started.
func internalCalls(tb testing.TB, n *node.Node, method, kind string) float64 {
	tb.Helper()
	labels := "grpc_method=" + method + ",grpc_service=paddock.raft.v1.InternalService,grpc_type=" + kind
	return scrape(tb, n.Metrics())["paddock_grpc_server_started_total"][labels]
}

// internalHandled counts the InternalService calls of one kind a node's
// gRPC server has finished.
func internalHandled(tb testing.TB, n *node.Node, method, kind string) float64 {
	tb.Helper()
	labels := "grpc_method=" + method + ",grpc_service=paddock.raft.v1.InternalService,grpc_type=" + kind
	return scrape(tb, n.Metrics())["paddock_grpc_server_handling_seconds"][labels]
}

// checkCreates checks successful creates: each got its own zxid, and the
// leader has the znode, created at that zxid, with the path as its data.
func checkCreates(t *testing.T, leader *node.Node, writes []write) {
	t.Helper()
	seen := map[uint64]string{}
	for _, w := range writes {
		if w.err != nil {
			continue
		}
		resp, ok := w.res.Resp.(*paddockv1.CreateResponse)
		if !ok || resp.GetPath() != w.path || resp.GetStat().GetCzxid() != w.res.Index {
			t.Errorf("Create(%s) = %v (index %d), want its path and czxid = index", w.path, w.res.Resp, w.res.Index)
		}
		if prev, dup := seen[w.res.Index]; dup {
			t.Errorf("Create(%s) and Create(%s) both got zxid %d", prev, w.path, w.res.Index)
		}
		seen[w.res.Index] = w.path
		data, st, err := leader.FSM().Get(w.path)
		if err != nil || string(data) != w.path || st.GetCzxid() != w.res.Index {
			t.Errorf("Get(%s) on the leader = %q %v, %v; want its path as data and czxid %d", w.path, data, st, err, w.res.Index)
		}
	}
}

// TestForwardStreamConcurrentWrites sends many concurrent writes through
// both followers: every one succeeds with its own result and zxid, and
// they travel on the followers' propose streams, not in unary calls.
func TestForwardStreamConcurrentWrites(t *testing.T) {
	c := newCluster(t, 3, nodetest.WithSteadyLeader())
	leader := c.WaitLeader(t)
	ln := c.Node(leader)
	term := ln.Raft().CurrentTerm()
	streamsBefore := internalCalls(t, ln, "ProposeStream", "bidi_stream")
	mustPropose(t, ln, createCmd("/fw", nil))

	const writers, each = 64, 8
	writes := make([]write, writers*each)
	fs := c.Followers(leader)
	var wg sync.WaitGroup
	for w := range writers {
		n := c.Node(fs[w%len(fs)])
		wg.Go(func() {
			for k := range each {
				path := fmt.Sprintf("/fw/w%d-%d", w, k)
				ctx, cancel := context.WithTimeout(context.Background(), testProposeTimeout)
				res, err := n.Propose(ctx, createCmd(path, []byte(path)))
				cancel()
				writes[w*each+k] = write{path, res, err}
			}
		})
	}
	wg.Wait()
	for _, w := range writes {
		if w.err != nil {
			t.Fatalf("Create(%s) through a follower: %v", w.path, w.err)
		}
	}
	c.Converged(t)
	checkCreates(t, ln, writes)

	if got := internalCalls(t, ln, "Propose", "unary"); got != 0 {
		t.Errorf("leader served %v unary Propose calls, want 0: forwarded writes go on streams", got)
	}
	// Unless leadership moved meanwhile, each follower opened at most one
	// stream (registration may have opened it before the test).
	if got := internalCalls(t, ln, "ProposeStream", "bidi_stream") - streamsBefore; ln.Raft().CurrentTerm() == term && got > float64(len(fs)) {
		t.Errorf("followers opened %v propose streams for %d writes, want at most one each", got, len(writes))
	}
}

// allowedOnLeaderLoss reports whether err is what a write forwarded to a
// leader that dies or is cut off may fail with: no leader (the connection
// broke, or nothing was sent), or an unknown outcome (the leader lost its
// leadership after appending).
func allowedOnLeaderLoss(err error) bool {
	return errors.Is(err, node.ErrNoLeader) || errors.Is(err, node.ErrUnknownOutcome)
}

// TestForwardStreamLeaderLost kills or cuts off the leader while writers
// keep writing through a follower: each write succeeds or fails with an
// error that says what happened; after the election, writes through the
// same follower reach the new leader.
func TestForwardStreamLeaderLost(t *testing.T) {
	faults := []struct {
		name  string
		fault func(c *nodetest.Cluster, leader int)
	}{
		{"killed", func(c *nodetest.Cluster, leader int) { c.Stop(leader) }},
		{"partitioned", func(c *nodetest.Cluster, leader int) { c.Partition(leader) }},
	}
	for _, tc := range faults {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 3)
			old := c.WaitLeader(t)
			fs := c.Followers(old)
			fn := c.Node(fs[0])
			mustPropose(t, c.Node(old), createCmd("/ll", nil))

			load := startWriteLoad(32, "/ll", func(int) *node.Node { return fn })
			okAtLeast := func(k int64) {
				t.Helper()
				eventually(t, waitTimeout, func() error {
					if got := load.ok.Load(); got < k {
						return fmt.Errorf("%d writes succeeded, waiting for %d", got, k)
					}
					return nil
				})
			}
			okAtLeast(200)
			tc.fault(c, old)
			leader := c.WaitLeader(t)
			if leader == fs[0] {
				c.Transfer(t, fs[1]) // keep the writes forwarded
				leader = fs[1]
			}
			okAtLeast(load.ok.Load() + 200)
			writes := load.finish()

			failed := 0
			for _, w := range writes {
				if w.err != nil {
					failed++
					if !allowedOnLeaderLoss(w.err) {
						t.Errorf("Create(%s) = %v, want success, no leader or unknown outcome", w.path, w.err)
					}
				}
			}
			t.Logf("%d writes, %d failed", len(writes), failed)
			c.Heal()
			c.WaitLeader(t)
			c.Converged(t)
			checkCreates(t, c.Node(leader), writes)
		})
	}
}

// TestForwardStreamCallerCancel cancels half of the writes through a
// follower at random moments, from before they are sent to after they are
// applied: the others all succeed, on the same stream.
func TestForwardStreamCallerCancel(t *testing.T) {
	c := newCluster(t, 3, nodetest.WithSteadyLeader())
	leader := c.WaitLeader(t)
	ln := c.Node(leader)
	fn := c.Node(c.Followers(leader)[0])
	mustPropose(t, fn, createCmd("/cc", nil)) // the stream is open
	term := ln.Raft().CurrentTerm()
	streamsBefore := internalCalls(t, ln, "ProposeStream", "bidi_stream")

	const writers, each = 32, 10
	writes := make([]write, writers*each)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for k := range each {
				path := fmt.Sprintf("/cc/w%d-%d", w, k)
				ctx, cancel := context.WithTimeout(context.Background(), testProposeTimeout)
				canceled := (w+k)%2 == 0
				var timer *time.Timer
				if canceled {
					timer = time.AfterFunc(time.Duration(rand.IntN(3000))*time.Microsecond, cancel)
				}
				res, err := fn.Propose(ctx, createCmd(path, []byte(path)))
				if timer != nil {
					timer.Stop()
				}
				cancel()
				switch {
				case canceled && errors.Is(err, context.Canceled):
					// The write may or may not have been applied.
				case err != nil:
					t.Errorf("Create(%s) (canceled: %v) = %v", path, canceled, err)
				default:
					writes[w*each+k] = write{path, res, nil}
				}
			}
		})
	}
	wg.Wait()
	c.Converged(t)
	var done []write
	for _, w := range writes {
		if w.res != nil {
			done = append(done, w)
		}
	}
	checkCreates(t, ln, done)
	if got := internalCalls(t, ln, "ProposeStream", "bidi_stream") - streamsBefore; ln.Raft().CurrentTerm() == term && got != 0 {
		t.Errorf("the follower opened %v more propose streams, want 0: canceled callers must not break the stream", got)
	}
}

// TestProposeStreamEndsOnCloseStreams writes through both followers while
// the leader's CloseStreams and graceful stop run: the graceful stop does
// not wait for the followers' propose streams, and a write that fails
// with "no leader" was not applied (the stream answered every proposal it
// began before it ended).
func TestProposeStreamEndsOnCloseStreams(t *testing.T) {
	c := newCluster(t, 3, nodetest.WithSteadyLeader())
	leader := c.WaitLeader(t)
	ln := c.Node(leader)
	fs := c.Followers(leader)
	mustPropose(t, ln, createCmd("/cs", nil))
	for _, f := range fs {
		mustPropose(t, c.Node(f), createCmd(fmt.Sprintf("/cs/open-%d", f), nil)) // streams open
	}

	load := startWriteLoad(16, "/cs", func(w int) *node.Node { return c.Node(fs[w%len(fs)]) })
	eventually(t, waitTimeout, func() error {
		if n := load.done(); n < 100 {
			return fmt.Errorf("%d writes done", n)
		}
		return nil
	})
	ln.CloseStreams()
	// Every propose stream the leader serves ends: none would hold a
	// graceful stop of its internal server.
	eventually(t, waitTimeout, func() error {
		started := internalCalls(t, ln, "ProposeStream", "bidi_stream")
		ended := internalHandled(t, ln, "ProposeStream", "bidi_stream")
		if ended < started {
			return fmt.Errorf("%v of %v propose streams ended after CloseStreams", ended, started)
		}
		return nil
	})
	writes := load.finish()

	// The leader still leads: a write of its own orders every entry
	// before it, so all that was appended is applied.
	mustPropose(t, ln, createCmd("/cs/last", nil))
	failed := 0
	for _, w := range writes {
		if w.err == nil {
			continue
		}
		failed++
		if !errors.Is(w.err, node.ErrNoLeader) {
			t.Errorf("Create(%s) = %v, want success or %v", w.path, w.err, node.ErrNoLeader)
		} else if _, _, err := ln.FSM().Get(w.path); !errors.Is(err, fsm.ErrNoNode) {
			t.Errorf("Create(%s) failed with %v, yet the leader has it (%v)", w.path, w.err, err)
		}
	}
	if failed == 0 {
		t.Error("no write failed after CloseStreams")
	}
	checkCreates(t, ln, writes)
}

// TestProposeStreamChecksInput sends a message of proposals, good and
// bad, straight to the leader's ProposeStream: each gets the answer
// Propose would give, by seq; the bad ones append nothing.
func TestProposeStreamChecksInput(t *testing.T) {
	c := newCluster(t, 3, nodetest.WithSteadyLeader())
	type answer struct {
		code codes.Code
		err  error // the state machine error, for OK
	}
	cases := []struct {
		data []byte
		want answer
	}{
		{mustMarshal(t, createCmd("/a//b", nil)), answer{codes.OK, fsm.ErrBadPath}},
		{[]byte{0xff, 0xff}, answer{codes.InvalidArgument, nil}},
		{mustMarshal(t, &raftv1.Command{}), answer{codes.OK, fsm.ErrBadArgument}},
		{mustMarshal(t, createCmd("/paddock/x", nil)), answer{codes.OK, fsm.ErrReservedPath}},
		{mustMarshal(t, createCmd("/big", make([]byte, fsm.MaxDataSize+1))), answer{codes.OK, fsm.ErrTooLarge}},
	}
	var data [][]byte
	for _, tc := range cases {
		data = append(data, tc.data)
	}
	// A leader change under a loaded machine answers "not the leader"
	// and appends a barrier: then ask the new leader.
	deadline := time.Now().Add(waitTimeout)
	for {
		leader := c.WaitLeader(t)
		c.Converged(t)
		ln := c.Node(leader)
		term, last := ln.Raft().CurrentTerm(), ln.Raft().LastIndex()
		got := streamProposals(t, c.PeerAddr(leader), data)
		if ln.Raft().CurrentTerm() != term && time.Now().Before(deadline) {
			continue
		}
		for i, tc := range cases {
			r := got[i]
			if code := codes.Code(r.GetStatusCode()); code != tc.want.code {
				t.Errorf("proposal %d: status %v %q, want %v", i, code, r.GetStatusMessage(), tc.want.code)
				continue
			}
			pr := r.GetResponse()
			if e := fsm.DecodeError(pr.GetErrorCode(), pr.GetErrorMessage(), pr.GetFailedOp()); tc.want.code == codes.OK && !errors.Is(e, tc.want.err) {
				t.Errorf("proposal %d: error %v, want %v", i, e, tc.want.err)
			}
		}
		if got := ln.Raft().LastIndex(); got != last {
			t.Errorf("leader's last log index went from %d to %d", last, got)
		}
		return
	}
}

// streamProposals sends data to addr's ProposeStream in one message, with
// seqs counting from 100, and returns the results in data's order.
func streamProposals(t *testing.T, addr string, data [][]byte) []*raftv1.ProposalResult {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(node.MaxMessageSize)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testProposeTimeout)
	defer cancel()
	stream, err := raftv1.NewInternalServiceClient(conn).ProposeStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req := &raftv1.ProposeStreamRequest{}
	for i, d := range data {
		req.Proposals = append(req.Proposals, &raftv1.Proposal{Seq: uint64(100 + i), Command: d})
	}
	if err := stream.Send(req); err != nil {
		t.Fatal(err)
	}
	out := make([]*raftv1.ProposalResult, len(data))
	for k := 0; k < len(data); {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("Recv after %d results: %v", k, err)
		}
		for _, r := range resp.GetResults() {
			i := int(r.GetSeq()) - 100
			if i < 0 || i >= len(data) || out[i] != nil {
				t.Fatalf("result for seq %d, which was not sent or already answered", r.GetSeq())
			}
			out[i] = r
			k++
		}
	}
	return out
}

func mustMarshal(tb testing.TB, m proto.Message) []byte {
	tb.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
