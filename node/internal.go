package node

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock/paddock/fsm"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
)

// internalServer serves the leader's side of forwarding. It never forwards
// again: a node that is not the leader answers Unavailable, and the
// follower retries once it learns the new leader.
type internalServer struct {
	raftv1.UnsafeInternalServiceServer
	n *Node
}

// internalStopTimeout bounds Close's graceful stop of the internal
// server: in-flight forwarded calls get their answers (raft still runs),
// new ones are refused (the node is closing); calls still running after
// it are cut, and their followers see the connection break.
const internalStopTimeout = 2 * time.Second

// newInternalServer is the node's own gRPC server for its peers, with the
// internal service alone, no reflection, and the node's gRPC series.
func newInternalServer(n *Node) *grpc.Server {
	m := n.metrics.grpc
	s := grpc.NewServer(
		grpc.MaxRecvMsgSize(MaxMessageSize),
		grpc.MaxSendMsgSize(MaxMessageSize),
		// Write buffers go back to a pool between flushes, as on rpc's
		// client server. No NumStreamWorkers here: its goroutines start
		// with the server, and New does not stop the server on every
		// error path.
		grpc.SharedWriteBuffer(true),
		grpc.ChainUnaryInterceptor(m.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(m.StreamServerInterceptor()),
	)
	raftv1.RegisterInternalServiceServer(s, &internalServer{n: n})
	m.Register(s)
	return s
}

// serveInternal serves the internal service on lis until stopInternal.
func (n *Node) serveInternal(lis net.Listener) {
	n.internalWG.Add(1)
	go func() {
		defer n.internalWG.Done()
		// After Stop, Serve closes lis and returns at once.
		_ = n.internal.Serve(lis)
	}()
}

// stopInternal stops the internal server: gracefully within
// internalStopTimeout, then at once.
func (n *Node) stopInternal() {
	stopped := make(chan struct{})
	go func() {
		n.internal.GracefulStop()
		close(stopped)
	}()
	t := time.NewTimer(internalStopTimeout)
	defer t.Stop()
	select {
	case <-stopped:
	case <-t.C:
		n.log.Warn("internal server: peers' calls still running, cutting them")
		n.internal.Stop()
		<-stopped
	}
	n.internalWG.Wait()
}

// Propose applies one forwarded command. Followers of this version use
// ProposeStream; Propose serves followers of an older version during a
// rolling upgrade, and commands too large to share a stream message.
func (s *internalServer) Propose(ctx context.Context, req *raftv1.ProposeRequest) (*raftv1.ProposeResponse, error) {
	a, resp, err := s.n.acceptForwarded(ctx, req.GetCommand())
	if a == nil {
		return resp, err
	}
	return answerForwarded(a.await(ctx))
}

// ProposeStream serves a follower's propose stream (see proposeStream).
func (s *internalServer) ProposeStream(stream raftv1.InternalService_ProposeStreamServer) error {
	return s.n.serveProposeStream(stream)
}

// acceptForwarded decodes and checks a follower's command and, if it
// passes, starts applying it, waiting for room in raft's queue until ctx
// ends. It returns either what is being applied or the answer to send at
// once: a result for invalid input, which changes nothing, or the gRPC
// error.
func (n *Node) acceptForwarded(ctx context.Context, data []byte) (*applying, *raftv1.ProposeResponse, error) {
	var cmd raftv1.Command
	if err := proto.Unmarshal(data, &cmd); err != nil {
		return nil, nil, status.Errorf(codes.InvalidArgument, "node: undecodable command: %v", err)
	}
	if !n.IsLeader() {
		return nil, nil, peerStatus(ErrNotLeader)
	}
	if err := n.validate(&cmd); err != nil {
		resp, err := encodeResult(&fsm.Result{Err: err})
		return nil, resp, err
	}
	// The follower's encoding goes to raft, with the leader's stamps
	// appended: the command it decodes to is cmd.
	a, err := n.startApply(ctx, &cmd, data)
	if errors.Is(err, fsm.ErrFeatureLevel) {
		// The follower reports it as the leader would have.
		resp, err := encodeResult(&fsm.Result{Err: err})
		return nil, resp, err
	}
	if err != nil {
		return nil, nil, peerStatus(err)
	}
	return a, nil, nil
}

// answerForwarded is the answer to a forwarded command that was applied.
func answerForwarded(res *fsm.Result, err error) (*raftv1.ProposeResponse, error) {
	if err != nil {
		return nil, peerStatus(err)
	}
	return encodeResult(res)
}

func (s *internalServer) ReadIndex(ctx context.Context, _ *raftv1.ReadIndexRequest) (*raftv1.ReadIndexResponse, error) {
	idx, err := s.n.confirmedReadIndex(ctx)
	if err != nil {
		return nil, peerStatus(err)
	}
	return &raftv1.ReadIndexResponse{Index: idx}, nil
}

func (s *internalServer) Read(ctx context.Context, req *raftv1.ReadRequest) (*raftv1.ReadResponse, error) {
	results, err := s.n.readsForPeer(ctx, req.GetQueries())
	if err != nil {
		return nil, peerStatus(err)
	}
	if req.GetMayDefer() {
		deferOverflow(results)
	}
	return &raftv1.ReadResponse{Results: results}, nil
}

func (s *internalServer) KeepAlive(ctx context.Context, req *raftv1.KeepAliveRequest) (*raftv1.KeepAliveResponse, error) {
	expired, err := s.n.KeepAliveForPeer(ctx, req.GetSessionIds())
	if err != nil {
		return nil, peerStatus(err)
	}
	return &raftv1.KeepAliveResponse{ExpiredIds: expired}, nil
}

// peerStatus maps node errors for a peer. "Not the leader" has a code of
// its own (FailedPrecondition, which no other internal error uses): it
// promises nothing was appended, so the follower may safely try again.
func peerStatus(err error) error {
	switch {
	case errors.Is(err, ErrNotLeader):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, ErrNoLeader), errors.Is(err, ErrShuttingDown):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, ErrUnknownOutcome):
		return status.Error(codes.Unknown, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// streamWindow bounds the proposals of one propose stream between the
// stages of the leader's pipeline; a follower that sends faster than raft
// commits is held back by gRPC flow control.
const streamWindow = 1024

// proposeStream is the leader's side of one follower's ProposeStream. It
// is a pipeline of three goroutines: receive starts each proposal's apply
// as it arrives (raft.Apply only queues the command, so every command of
// a message is in raft's queue before the first is committed); collect
// waits for the futures in the order they were started, the order raft
// answers them; and send, the handler's own goroutine, sends whatever
// results are ready in one message.
//
// CloseStreams makes the stream refuse new proposals (ErrShuttingDown,
// nothing appended) and end, with Unavailable, once it has sent the
// results of those it began, so a graceful stop does not wait for a
// stream that would never end by itself.
type proposeStream struct {
	n       *Node
	stream  raftv1.InternalService_ProposeStreamServer
	recvErr error // why receive stopped; read once results is closed

	mu      sync.Mutex
	open    int  // proposals begun whose results are not sent yet
	closing bool // CloseStreams was called: begin no more

	out []*raftv1.ProposalResult // send's, reused from message to message
}

// streamed is one proposal on its way through the pipeline.
type streamed struct {
	seq   uint64
	a     *applying // being applied; nil once answered
	resp  *raftv1.ProposeResponse
	err   error
	begun bool // counted in open
	// result is the answer on the wire (proposalResult), held here to
	// spare an allocation per proposal.
	result raftv1.ProposalResult
}

func (n *Node) serveProposeStream(stream raftv1.InternalService_ProposeStreamServer) error {
	s := &proposeStream{n: n, stream: stream}
	work := make(chan *streamed, streamWindow)
	results := make(chan *streamed, streamWindow)
	go s.receive(work)
	go collect(work, results)
	return s.send(results)
}

func (s *proposeStream) receive(work chan<- *streamed) {
	defer close(work)
	for {
		req, err := s.stream.Recv()
		if err != nil {
			s.recvErr = err
			return
		}
		begun := s.begin(len(req.GetProposals()))
		for _, p := range req.GetProposals() {
			item := &streamed{seq: p.GetSeq(), begun: begun}
			if begun {
				item.a, item.resp, item.err = s.n.acceptForwarded(s.stream.Context(), p.GetCommand())
			} else {
				item.err = peerStatus(ErrShuttingDown)
			}
			work <- item
		}
	}
}

func collect(work <-chan *streamed, results chan<- *streamed) {
	defer close(results)
	for item := range work {
		if item.a != nil {
			item.resp, item.err = answerForwarded(item.a.finish())
			item.a = nil
		}
		results <- item
	}
}

// send sends results until the follower ends the stream, or until
// CloseStreams and the results of every proposal begun.
func (s *proposeStream) send(results chan *streamed) error {
	closing := s.n.streamsClosed
	var batch []*streamed
	var sendErr error
	for {
		select {
		case item, ok := <-results:
			if !ok {
				if errors.Is(s.recvErr, io.EOF) {
					return nil
				}
				return s.recvErr
			}
			batch = readyOf(results, append(batch[:0], item))
			if sendErr == nil {
				// After a failed send, results are only drained.
				sendErr = s.sendResults(batch)
			}
			if s.answered(batch) {
				return s.abandon(results)
			}
		case <-closing:
			closing = nil
			if s.close() {
				return s.abandon(results)
			}
		}
	}
}

// abandon ends the stream on shutdown. The proposals still arriving are
// refused; their results are drained, unsent, so the pipeline can end.
func (s *proposeStream) abandon(results chan *streamed) error {
	go func() {
		for range results {
		}
	}()
	return peerStatus(ErrShuttingDown)
}

// begin counts k new proposals, unless the stream is closing.
func (s *proposeStream) begin(k int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.open += k
	return true
}

// answered uncounts the sent batch; it reports whether the stream is
// closing and every proposal begun has been answered.
func (s *proposeStream) answered(batch []*streamed) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, item := range batch {
		if item.begun {
			s.open--
		}
	}
	return s.closing && s.open == 0
}

// close makes the stream begin no more proposals; it reports whether none
// is waiting for its result.
func (s *proposeStream) close() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
	return s.open == 0
}

func (s *proposeStream) sendResults(batch []*streamed) error {
	all := s.out[:0]
	for _, item := range batch {
		all = append(all, proposalResult(item))
	}
	err := s.sendAll(all)
	clear(all) // the items go: keep the array, not them
	s.out = all[:0]
	return err
}

func (s *proposeStream) sendAll(out []*raftv1.ProposalResult) error {
	for len(out) > 0 {
		k := fitting(out)
		if err := s.stream.Send(&raftv1.ProposeStreamResponse{Results: out[:k]}); err != nil {
			return err
		}
		out = out[k:]
	}
	return nil
}

// proposalResult is item's answer on the wire: what Propose would have
// answered. A response too large for a message fails as it would in
// Propose (the limit here counts the few bytes of seq and framing too).
func proposalResult(item *streamed) *raftv1.ProposalResult {
	r := &item.result
	r.Seq, r.Response = item.seq, item.resp
	err := item.err
	if err == nil && framedSize(r) > MaxMessageSize {
		err = status.Errorf(codes.ResourceExhausted, "grpc: trying to send message larger than max (%d vs. %d)", framedSize(r), MaxMessageSize)
	}
	if err != nil {
		st := status.Convert(err)
		r.Response, r.StatusCode, r.StatusMessage = nil, uint32(st.Code()), st.Message()
	}
	return r
}

// readyOf appends to batch the items ch holds now, without waiting.
func readyOf(ch <-chan *streamed, batch []*streamed) []*streamed {
	for len(batch) < streamWindow {
		select {
		case v, ok := <-ch:
			if !ok {
				return batch
			}
			batch = append(batch, v)
		default:
			return batch
		}
	}
	return batch
}
