package node

import (
	"context"
	"errors"
	"math"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
)

// fakeLeader is an InternalService whose test decides when and how each
// forwarded proposal is answered. With stream false it is a leader of an
// older version, without ProposeStream.
type fakeLeader struct {
	raftv1.UnimplementedInternalServiceServer
	stream bool
	addr   string

	got     chan *raftv1.Proposal       // every proposal streamed in
	results chan *raftv1.ProposalResult // sent, one per message
	fail    chan error                  // ends the current stream
	ended   chan struct{}               // a stream handler returned

	mu      sync.Mutex
	unary   int
	streams int
}

// startFake serves a fakeLeader on 127.0.0.1 until the test ends.
func startFake(t *testing.T, stream bool) *fakeLeader {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &fakeLeader{
		stream: stream, addr: lis.Addr().String(),
		got: make(chan *raftv1.Proposal, 100), results: make(chan *raftv1.ProposalResult),
		fail: make(chan error), ended: make(chan struct{}, 10),
	}
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(MaxMessageSize))
	raftv1.RegisterInternalServiceServer(srv, l)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-served
	})
	return l
}

func (l *fakeLeader) Propose(context.Context, *raftv1.ProposeRequest) (*raftv1.ProposeResponse, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unary++
	return &raftv1.ProposeResponse{Index: 7}, nil
}

func (l *fakeLeader) ProposeStream(stream raftv1.InternalService_ProposeStreamServer) error {
	l.mu.Lock()
	l.streams++
	l.mu.Unlock()
	defer func() { l.ended <- struct{}{} }()
	if !l.stream {
		return status.Error(codes.Unimplemented, "unknown method ProposeStream")
	}
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				return
			}
			for _, p := range req.GetProposals() {
				l.got <- p
			}
		}
	}()
	for {
		select {
		case r := <-l.results:
			if err := stream.Send(&raftv1.ProposeStreamResponse{Results: []*raftv1.ProposalResult{r}}); err != nil {
				return err
			}
		case err := <-l.fail:
			return err
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
}

func (l *fakeLeader) counts() (unary, streams int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.unary, l.streams
}

// answer answers proposal seq with a result at index.
func (l *fakeLeader) answer(t *testing.T, seq, index uint64) {
	t.Helper()
	select {
	case l.results <- &raftv1.ProposalResult{Seq: seq, Response: &raftv1.ProposeResponse{Index: index}}:
	case <-time.After(waitFake):
		t.Fatalf("no stream took the answer to %d", seq)
	}
}

const waitFake = 10 * time.Second

func within[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitFake):
		t.Fatalf("%s: nothing after %v", what, waitFake)
	}
	panic("unreachable")
}

type forwarded struct {
	resp *raftv1.ProposeResponse
	err  error
}

// testForwarder is a forwarder with its connections, closed when the test
// ends (before the fakes it talks to).
func testForwarder(t *testing.T) (*forwarder, func(addr string) *grpc.ClientConn) {
	t.Helper()
	f, peers := newForwarder(), newPeerConns(nil)
	t.Cleanup(func() {
		f.close()
		peers.close()
	})
	return f, func(addr string) *grpc.ClientConn {
		conn, err := peers.get(addr)
		if err != nil {
			t.Fatal(err)
		}
		return conn
	}
}

// goPropose forwards data to l in the background.
func goPropose(ctx context.Context, f *forwarder, l *fakeLeader, conn *grpc.ClientConn, data string) <-chan forwarded {
	out := make(chan forwarded, 1)
	go func() {
		resp, err := f.propose(ctx, l.addr, conn, []byte(data))
		out <- forwarded{resp, err}
	}()
	return out
}

// TestForwarderCallerCancel cancels a caller whose proposal is on the
// leader: the caller returns at once, the late result is dropped, and the
// stream goes on serving the others.
func TestForwarderCallerCancel(t *testing.T) {
	l := startFake(t, true)
	f, dial := testForwarder(t)
	conn := dial(l.addr)
	ctxA, cancelA := context.WithCancel(context.Background())
	defer cancelA()
	a := goPropose(ctxA, f, l, conn, "a")
	pa := within(t, "proposal a", l.got)
	b := goPropose(context.Background(), f, l, conn, "b")
	pb := within(t, "proposal b", l.got)

	cancelA()
	if got := within(t, "a's answer", a); !errors.Is(got.err, context.Canceled) {
		t.Fatalf("canceled proposal = %v, %v; want %v", got.resp, got.err, context.Canceled)
	}
	l.answer(t, pa.GetSeq(), 1)
	l.answer(t, pb.GetSeq(), 2)
	if got := within(t, "b's answer", b); got.err != nil || got.resp.GetIndex() != 2 {
		t.Fatalf("proposal b = %v, %v; want index 2", got.resp, got.err)
	}
	c := goPropose(context.Background(), f, l, conn, "c")
	l.answer(t, within(t, "proposal c", l.got).GetSeq(), 3)
	if got := within(t, "c's answer", c); got.err != nil || got.resp.GetIndex() != 3 {
		t.Fatalf("proposal c = %v, %v; want index 3", got.resp, got.err)
	}
	if unary, streams := l.counts(); unary != 0 || streams != 1 {
		t.Errorf("leader saw %d unary calls and %d streams, want 0 and 1", unary, streams)
	}
}

// TestForwarderStreamBreaks ends the stream while proposals are on the
// leader: each fails as a unary call broken the same way would, and the
// next proposal opens a new stream.
func TestForwarderStreamBreaks(t *testing.T) {
	l := startFake(t, true)
	f, dial := testForwarder(t)
	conn := dial(l.addr)
	a := goPropose(context.Background(), f, l, conn, "a")
	within(t, "proposal a", l.got)
	b := goPropose(context.Background(), f, l, conn, "b")
	within(t, "proposal b", l.got)

	l.fail <- status.Error(codes.Unavailable, "leader going away")
	for _, ch := range []<-chan forwarded{a, b} {
		if got := within(t, "answer", ch); !errors.Is(got.err, ErrNoLeader) {
			t.Errorf("proposal on a broken stream = %v, %v; want %v", got.resp, got.err, ErrNoLeader)
		}
	}
	c := goPropose(context.Background(), f, l, conn, "c")
	l.answer(t, within(t, "proposal c", l.got).GetSeq(), 3)
	if got := within(t, "c's answer", c); got.err != nil || got.resp.GetIndex() != 3 {
		t.Fatalf("proposal c = %v, %v; want index 3", got.resp, got.err)
	}
	if _, streams := l.counts(); streams != 2 {
		t.Errorf("leader saw %d streams, want 2", streams)
	}
}

// TestForwarderRetiresOldLeaderStream moves the leader while a proposal
// is on the old one: the new leader gets new proposals on a stream of its
// own; the old stream delivers its last answer, then closes.
func TestForwarderRetiresOldLeaderStream(t *testing.T) {
	old, cur := startFake(t, true), startFake(t, true)
	f, dial := testForwarder(t)
	a := goPropose(context.Background(), f, old, dial(old.addr), "a")
	pa := within(t, "proposal a", old.got)

	b := goPropose(context.Background(), f, cur, dial(cur.addr), "b")
	cur.answer(t, within(t, "proposal b", cur.got).GetSeq(), 2)
	if got := within(t, "b's answer", b); got.err != nil || got.resp.GetIndex() != 2 {
		t.Fatalf("proposal b = %v, %v; want index 2", got.resp, got.err)
	}
	old.answer(t, pa.GetSeq(), 1)
	if got := within(t, "a's answer", a); got.err != nil || got.resp.GetIndex() != 1 {
		t.Fatalf("proposal a = %v, %v; want index 1", got.resp, got.err)
	}
	within(t, "old leader's stream end", old.ended)
}

// TestForwarderOldLeaderGetsUnary forwards to a leader without
// ProposeStream: the proposal goes in a unary Propose, and so do the next
// ones, without another stream attempt.
func TestForwarderOldLeaderGetsUnary(t *testing.T) {
	l := startFake(t, false)
	f, dial := testForwarder(t)
	conn := dial(l.addr)
	for i := range 3 {
		resp, err := f.propose(context.Background(), l.addr, conn, []byte("x"))
		if err != nil || resp.GetIndex() != 7 {
			t.Fatalf("propose %d = %v, %v; want the unary answer, index 7", i, resp, err)
		}
	}
	if unary, streams := l.counts(); unary != 3 || streams != 1 {
		t.Errorf("leader saw %d unary calls and %d streams, want 3 and 1", unary, streams)
	}
}

// TestForwarderOversizedGetsUnary forwards a command too large for a
// stream message: it goes in a unary Propose, which fails as it always
// did, and no stream is opened.
func TestForwarderOversizedGetsUnary(t *testing.T) {
	l := startFake(t, true)
	f, dial := testForwarder(t)
	_, err := f.propose(context.Background(), l.addr, dial(l.addr), make([]byte, MaxMessageSize))
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("propose of %d bytes = %v, want ResourceExhausted", MaxMessageSize, err)
	}
	if unary, streams := l.counts(); unary != 0 || streams != 0 {
		t.Errorf("leader saw %d unary calls and %d streams, want none", unary, streams)
	}
}

func TestProposalSize(t *testing.T) {
	for _, n := range []int{1, 127, 128, 16383, 16384, MaxMessageSize} {
		want := framedSize(&raftv1.Proposal{Seq: math.MaxUint64, Command: make([]byte, n)})
		if got := proposalSize(n); got != want {
			t.Errorf("proposalSize(%d) = %d, want %d", n, got, want)
		}
	}
}

// TestFromPeerRoundTrip: an error the leader sends a follower as a status
// (peerStatus) is the same node error on the follower (fromPeer), so the
// follower's client sees it as the leader's would: a write whose outcome
// is unknown is not a bare gRPC Unknown with a Go message.
func TestFromPeerRoundTrip(t *testing.T) {
	for _, want := range []error{ErrUnknownOutcome, ErrNoLeader, ErrNotLeader, ErrShuttingDown, context.DeadlineExceeded} {
		got := fromPeer(peerStatus(want))
		if want == ErrShuttingDown {
			want = ErrNoLeader // Unavailable: the follower may try again
		}
		if !errors.Is(got, want) {
			t.Errorf("fromPeer(peerStatus(%v)) = %v, want %v", want, got, want)
		}
		if _, ok := status.FromError(got); ok {
			t.Errorf("fromPeer(peerStatus(%v)) = %v, a gRPC status", want, got)
		}
	}
}
