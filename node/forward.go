package node

import (
	"context"
	"errors"
	"io"
	"math"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
)

// unaryRetry is how long a follower forwards with unary Propose calls to a
// leader that does not serve ProposeStream (an older version, during a
// rolling upgrade) before it tries a stream again.
const unaryRetry = time.Minute

// errNoStream means the leader does not serve ProposeStream: nothing was
// sent to it, and the command goes in a unary Propose instead.
var errNoStream = errors.New("node: leader has no propose stream")

// forwarder carries a follower's writes to the leader, many per message,
// on one ProposeStream per leader address (see fwdStream). When the leader
// changes, the stream to the old one takes no new proposals and closes
// once it has answered those it carries.
type forwarder struct {
	mu       sync.Mutex
	cur      *fwdStream          // stream to the latest leader asked for
	streams  map[*fwdStream]bool // every stream whose goroutines run
	noStream map[string]time.Time
	closed   bool
	wg       sync.WaitGroup
}

func newForwarder() *forwarder {
	return &forwarder{streams: map[*fwdStream]bool{}, noStream: map[string]time.Time{}}
}

// propose sends one encoded command to the leader at addr over conn and
// returns its answer, with errors as a unary Propose would return them
// (fromPeer). A command too large to share a message, or a leader without
// the stream, gets a unary Propose.
func (f *forwarder) propose(ctx context.Context, addr string, conn *grpc.ClientConn, data []byte) (*raftv1.ProposeResponse, error) {
	c := call{ctx: ctx}
	return f.proposeCall(&c, addr, conn, data)
}

// proposeCall is propose until c ends.
func (f *forwarder) proposeCall(c *call, addr string, conn *grpc.ClientConn, data []byte) (*raftv1.ProposeResponse, error) {
	if proposalSize(len(data)) > MaxMessageSize {
		return proposeUnary(c.context(), conn, data)
	}
	s, err := f.stream(addr, conn)
	var resp *raftv1.ProposeResponse
	if err == nil {
		resp, err = s.propose(c, data)
	}
	if errors.Is(err, errNoStream) {
		f.useUnary(addr)
		return proposeUnary(c.context(), conn, data)
	}
	return resp, err
}

func (f *forwarder) useUnary(addr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.noStream[addr] = time.Now().Add(unaryRetry)
}

// stream returns the open stream to addr, opening one (and retiring the
// stream to a previous leader) if there is none. It returns errNoStream
// for a leader known not to serve streams.
func (f *forwarder) stream(addr string, conn *grpc.ClientConn) (*fwdStream, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, ErrShuttingDown
	}
	if f.cur != nil && f.cur.addr == addr && !f.cur.ended() {
		return f.cur, nil
	}
	if until, ok := f.noStream[addr]; ok {
		if time.Now().Before(until) {
			return nil, errNoStream
		}
		delete(f.noStream, addr)
	}
	if f.cur != nil {
		f.cur.retire()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &fwdStream{f: f, addr: addr, ctx: ctx, cancel: cancel, wake: make(chan struct{}, 1), pending: map[uint64]chan fwdReply{}}
	f.cur = s
	f.streams[s] = true
	f.wg.Add(1)
	go s.run(conn)
	return s, nil
}

// done forgets s once its goroutines have ended.
func (f *forwarder) done(s *fwdStream) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.streams, s)
	if f.cur == s {
		f.cur = nil
	}
	f.wg.Done()
}

// close fails every proposal in flight with ErrShuttingDown, ends every
// stream and waits for their goroutines.
func (f *forwarder) close() {
	f.mu.Lock()
	f.closed = true
	var all []*fwdStream
	for s := range f.streams {
		all = append(all, s)
	}
	f.mu.Unlock()
	for _, s := range all {
		s.end(ErrShuttingDown)
	}
	f.wg.Wait()
}

// fwdStream is one ProposeStream to a leader. Callers queue proposals; a
// sender goroutine sends whatever is queued in one message, with no wait
// for more (while one message is being sent, the next accumulates), and a
// receiver goroutine hands each result to its caller by seq. A caller
// that stops waiting leaves the stream alone: its proposal is not sent if
// it was still queued, and its result is dropped if it comes. When the
// stream breaks, every proposal it carries fails with the stream's error
// as fromPeer maps it, which is what a unary Propose broken the same way
// returns.
type fwdStream struct {
	f      *forwarder
	addr   string
	ctx    context.Context // the stream's; canceled when it ends
	cancel context.CancelFunc
	wake   chan struct{} // one token: proposals are queued

	mu       sync.Mutex
	queue    []*raftv1.Proposal       // not sent yet
	spare    []*raftv1.Proposal       // the last batch sent, emptied for reuse
	pending  map[uint64]chan fwdReply // queued or sent, by seq
	seq      uint64
	err      error // why the stream ended; nil while it is open
	retiring bool  // the leader changed: take nothing new, end when idle
}

// fwdReply is a proposal's answer, errors already mapped by fromPeer.
type fwdReply struct {
	resp *raftv1.ProposeResponse
	err  error
}

func (s *fwdStream) propose(c *call, data []byte) (*raftv1.ProposeResponse, error) {
	seq, ch, err := s.enqueue(data)
	if err != nil {
		return nil, err
	}
	r, err := wait(c, ch)
	if err != nil {
		s.abandon(seq)
		return nil, err
	}
	replyChans.Put(ch)
	return r.resp, r.err
}

// replyChans recycles the reply channels of proposals whose callers took
// their reply: nothing else holds such a channel then (deliver and end
// send only on a channel they remove from pending, once). A channel of a
// caller that stopped waiting is left to the garbage collector.
var replyChans = sync.Pool{New: func() any { return make(chan fwdReply, 1) }}

func (s *fwdStream) enqueue(data []byte) (uint64, chan fwdReply, error) {
	ch := replyChans.Get().(chan fwdReply)
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		replyChans.Put(ch)
		return 0, nil, err
	}
	if s.retiring {
		s.mu.Unlock()
		replyChans.Put(ch)
		return 0, nil, ErrNotLeader // nothing sent: Propose tries the new leader
	}
	s.seq++
	seq := s.seq
	s.pending[seq] = ch
	s.queue = append(s.queue, &raftv1.Proposal{Seq: seq, Command: data})
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return seq, ch, nil
}

// abandon forgets the proposal of a caller that stopped waiting.
func (s *fwdStream) abandon(seq uint64) {
	s.mu.Lock()
	delete(s.pending, seq)
	idle := s.retiring && len(s.pending) == 0
	s.mu.Unlock()
	if idle {
		s.end(ErrNotLeader)
	}
}

// retire stops s taking proposals; it ends once those it carries are
// answered.
func (s *fwdStream) retire() {
	s.mu.Lock()
	s.retiring = true
	idle := len(s.pending) == 0
	s.mu.Unlock()
	if idle {
		s.end(ErrNotLeader)
	}
}

func (s *fwdStream) ended() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err != nil
}

// end closes s, failing every proposal it carries with err.
func (s *fwdStream) end(err error) {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return
	}
	s.err = err
	pending := s.pending
	s.pending, s.queue = nil, nil
	s.mu.Unlock()
	s.cancel()
	for _, ch := range pending {
		ch <- fwdReply{err: err}
	}
}

// run opens the stream and sends until it ends.
func (s *fwdStream) run(conn *grpc.ClientConn) {
	defer s.f.done(s)
	cs, err := raftv1.NewInternalServiceClient(conn).ProposeStream(s.ctx)
	if err != nil {
		s.end(streamError(err))
		return
	}
	received := make(chan struct{})
	go func() {
		defer close(received)
		s.receive(cs)
	}()
	s.send(cs)
	<-received
}

func (s *fwdStream) send(cs raftv1.InternalService_ProposeStreamClient) {
	for {
		select {
		case <-s.wake:
		case <-s.ctx.Done():
			return
		}
		taken := s.take()
		for batch := taken; len(batch) > 0; {
			k := fitting(batch)
			if err := cs.Send(&raftv1.ProposeStreamRequest{Proposals: batch[:k]}); err != nil {
				// io.EOF: the stream ended and Recv has its status.
				if !errors.Is(err, io.EOF) {
					s.end(streamError(err))
				}
				return
			}
			batch = batch[k:]
		}
		s.recycle(taken)
	}
}

// recycle keeps a sent batch's array for the queue after next: Send has
// encoded the proposals, so the array is free.
func (s *fwdStream) recycle(batch []*raftv1.Proposal) {
	clear(batch[:cap(batch)]) // take may leave dropped proposals past len
	s.mu.Lock()
	s.spare = batch[:0]
	s.mu.Unlock()
}

// take empties the queue, leaving out proposals whose callers are gone.
func (s *fwdStream) take() []*raftv1.Proposal {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.queue[:0]
	for _, p := range s.queue {
		if _, ok := s.pending[p.GetSeq()]; ok {
			out = append(out, p)
		}
	}
	s.queue, s.spare = s.spare, nil
	return out
}

func (s *fwdStream) receive(cs raftv1.InternalService_ProposeStreamClient) {
	for {
		resp, err := cs.Recv()
		if err != nil {
			s.end(streamError(err))
			return
		}
		s.deliver(resp.GetResults())
	}
}

// deliver hands results to their callers.
func (s *fwdStream) deliver(results []*raftv1.ProposalResult) {
	s.mu.Lock()
	for _, r := range results {
		if ch, ok := s.pending[r.GetSeq()]; ok {
			delete(s.pending, r.GetSeq())
			ch <- resultReply(r)
		}
	}
	idle := s.retiring && len(s.pending) == 0
	s.mu.Unlock()
	if idle {
		s.end(ErrNotLeader)
	}
}

// resultReply is what a caller gets for r.
func resultReply(r *raftv1.ProposalResult) fwdReply {
	if c := codes.Code(r.GetStatusCode()); c != codes.OK {
		return fwdReply{err: fromPeer(status.Error(c, r.GetStatusMessage()))}
	}
	if r.GetResponse() == nil {
		return fwdReply{err: fromPeer(status.Error(codes.Internal, "node: leader sent a result without a response"))}
	}
	return fwdReply{resp: r.GetResponse()}
}

// streamError is what the proposals of a stream that ended with err fail
// with.
func streamError(err error) error {
	switch {
	case errors.Is(err, io.EOF):
		// The leader ended the stream without an error, which it does
		// not do; say so as a broken connection would.
		err = status.Error(codes.Unavailable, "node: leader ended the propose stream")
	case status.Code(err) == codes.Unimplemented:
		return errNoStream
	}
	return fromPeer(err)
}

// framedSize is m's size as an element of a message's repeated field 1.
func framedSize(m proto.Message) int {
	return protowire.SizeTag(1) + protowire.SizeBytes(proto.Size(m))
}

// proposalSize is framedSize of a Proposal carrying a command of n bytes at
// the largest seq, worked out without building one for every write (for
// n == 0 it counts the empty field proto leaves out: an upper bound).
func proposalSize(n int) int {
	inner := protowire.SizeTag(1) + protowire.SizeVarint(math.MaxUint64) + protowire.SizeTag(2) + protowire.SizeBytes(n)
	return protowire.SizeTag(1) + protowire.SizeBytes(inner)
}

// fitting is how many of items, from the first, fit in one message of at
// most MaxMessageSize; at least one.
func fitting[T proto.Message](items []T) int {
	size := 0
	for i, m := range items {
		size += framedSize(m)
		if size > MaxMessageSize && i > 0 {
			return i
		}
	}
	return len(items)
}
