package node

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
)

// Hold streams. A leader has its backups hold every delayed web session
// write before it answers it (websession_backup.go), so a batch of holds
// is on the path of every delayed write, a PHP page view's. A unary call
// per batch costs each side a gRPC stream's setup (headers, a goroutine,
// the call's context) on top of the message; the leader keeps instead one
// HoldWebSessionsStream open to each backup, and a batch is a message
// each way on it. The holds batcher runs one batch at a time, so a
// stream carries one request at a time and its answer is the next
// message. A backup of an older version, without the stream, gets unary
// calls for holdUnaryRetry before the stream is tried again (a rolling
// upgrade).
//
// The unary call's deadline meant that a backup does not take writes
// after the leader gave up on it (and may be committing them as ordinary
// writes): each stream request carries the time left (timeout_us), and
// the backup holds its writes only within it, counted from their
// arrival, as gRPC counts a deadline. A request that fails, or whose
// time runs out, ends its stream; the next batch opens a new one.

// holdUnaryRetry is how long a backup without the stream gets unary calls
// before the stream is tried again.
const holdUnaryRetry = time.Minute

// holdStreams are a leader's open hold streams, by backup address.
type holdStreams struct {
	mu       sync.Mutex
	m        map[string]*holdStream
	noStream map[string]time.Time
	closed   bool
}

// holdStream is one open stream to a backup. mu serialises its requests
// (one at a time, each with its answer).
type holdStream struct {
	mu     sync.Mutex
	cs     raftv1.InternalService_HoldWebSessionsStreamClient
	cancel context.CancelFunc
	broken atomic.Bool
}

func newHoldStreams() *holdStreams {
	return &holdStreams{m: map[string]*holdStream{}, noStream: map[string]time.Time{}}
}

// errNoHoldStream means the backup does not serve HoldWebSessionsStream:
// it held nothing, and gets a unary call instead.
var errNoHoldStream = errors.New("node: backup has no hold stream")

// hold has the backup at addr (over conn) hold reqs on its stream, within
// ctx: nil once it answered each. A stream opened earlier that fails as
// unavailable (the backup restarted, its connection was replaced) is
// replaced once: holding writes again is harmless (a backup keeps a
// session's latest by term and seq).
func (h *holdStreams) hold(ctx context.Context, addr string, conn *grpc.ClientConn, reqs []*raftv1.HoldWebSessionsRequest) error {
	for attempt := 0; ; attempt++ {
		s, fresh, err := h.stream(ctx, addr, conn)
		if err != nil {
			return err
		}
		err = h.holdOn(ctx, addr, s, reqs)
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, errNoHoldStream):
			h.useUnary(addr)
			return err
		case errors.Is(err, errStreamBroken), attempt == 0 && !fresh && status.Code(err) == codes.Unavailable:
			continue
		}
		return fromPeer(err)
	}
}

// errStreamBroken: another request broke the stream before this one
// could send on it (nothing sent).
var errStreamBroken = errors.New("node: hold stream broken")

// holdOn sends reqs on s, which is addr's, and ends s if it fails or
// ctx ends meanwhile.
func (h *holdStreams) holdOn(ctx context.Context, addr string, s *holdStream, reqs []*raftv1.HoldWebSessionsRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken.Load() {
		return errStreamBroken
	}
	// ctx ending cuts the stream: the backup then takes no more of it.
	stop := context.AfterFunc(ctx, s.cancel)
	err := s.send(ctx, reqs)
	if !stop() || err != nil {
		// Cut, or failed: a later request must not find it.
		h.drop(addr, s)
	}
	return err
}

// send sends reqs on s, each after the answer to the one before; the
// error is gRPC's.
func (s *holdStream) send(ctx context.Context, reqs []*raftv1.HoldWebSessionsRequest) error {
	for i, r := range reqs {
		req := &raftv1.HoldWebSessionsStreamRequest{Hold: r}
		if dl, ok := ctx.Deadline(); ok {
			left := time.Until(dl)
			if left <= 0 {
				return context.DeadlineExceeded
			}
			req.TimeoutUs = uint64(max(left.Microseconds(), 1))
		}
		err := s.cs.Send(req)
		if err == nil {
			_, err = s.cs.Recv()
		} else if errors.Is(err, io.EOF) {
			// The backup ended the stream: Recv has its status.
			_, err = s.cs.Recv()
		}
		if err != nil {
			if i == 0 && status.Code(err) == codes.Unimplemented {
				return errNoHoldStream
			}
			return err
		}
	}
	return nil
}

// stream returns the open stream to addr, opening one if there is none
// (fresh); errNoHoldStream for a backup known to lack it. Opening waits
// for the connection to the backup, within ctx (the batch's time): a
// backup that does not answer is the batch's failure, and holds up
// neither another backup's holds nor close.
func (h *holdStreams) stream(ctx context.Context, addr string, conn *grpc.ClientConn) (s *holdStream, fresh bool, err error) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, false, ErrShuttingDown
	}
	if s := h.m[addr]; s != nil && !s.broken.Load() {
		h.mu.Unlock()
		return s, false, nil
	}
	if until, ok := h.noStream[addr]; ok {
		if time.Now().Before(until) {
			h.mu.Unlock()
			return nil, false, errNoHoldStream
		}
		delete(h.noStream, addr)
	}
	h.mu.Unlock()
	sctx, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, cancel)
	cs, err := raftv1.NewInternalServiceClient(conn).HoldWebSessionsStream(sctx)
	if !stop() {
		// ctx ended while it opened: the stream is cancelled.
		cancel()
		return nil, false, ctx.Err()
	}
	if err != nil {
		cancel()
		return nil, false, fromPeer(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		cancel()
		return nil, false, ErrShuttingDown
	}
	if old := h.m[addr]; old != nil && !old.broken.Load() {
		cancel() // another caller opened one meanwhile
		return old, false, nil
	}
	s = &holdStream{cs: cs, cancel: cancel}
	h.m[addr] = s
	return s, true, nil
}

// drop ends s, which is addr's (the caller holds s.mu); the next
// request opens a new stream.
func (h *holdStreams) drop(addr string, s *holdStream) {
	s.broken.Store(true)
	s.cancel()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m[addr] == s {
		delete(h.m, addr)
	}
}

func (h *holdStreams) useUnary(addr string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.noStream[addr] = time.Now().Add(holdUnaryRetry)
}

// close ends every stream; holds from now on fail with ErrShuttingDown.
func (h *holdStreams) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for addr, s := range h.m {
		s.cancel()
		delete(h.m, addr)
	}
}

// HoldWebSessionsStream serves a leader's hold stream (a backup's side):
// each request is a HoldWebSessions call, answered in order; a refusal
// ends the stream with its error. CloseStreams ends it too: a node that
// is stopping takes no more holds (it would lose them as it exits), and
// the leader's writes go through until it is back.
func (s *internalServer) HoldWebSessionsStream(st raftv1.InternalService_HoldWebSessionsStreamServer) error {
	// The requests are served where they are received, without a hop to
	// another goroutine; the handler waits for the end of the stream or
	// CloseStreams. mu keeps the receiver from sending once the handler
	// has returned.
	var mu sync.Mutex
	closed := false
	done := make(chan error, 1)
	go func() {
		for {
			req, err := st.Recv()
			if err == nil && s.n.noHoldStream.Load() {
				err = status.Error(codes.Unimplemented, "unknown method HoldWebSessionsStream (a test)")
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				done <- err
				return
			}
			ctx, cancel := st.Context(), context.CancelFunc(func() {})
			if t := req.GetTimeoutUs(); t > 0 {
				ctx, cancel = context.WithTimeout(ctx, time.Duration(min(t, uint64(time.Hour/time.Microsecond)))*time.Microsecond)
			}
			mu.Lock()
			if closed {
				mu.Unlock()
				cancel()
				return
			}
			_, err = s.HoldWebSessions(ctx, req.GetHold())
			cancel()
			if err == nil {
				err = st.Send(&raftv1.HoldWebSessionsStreamResponse{})
			}
			mu.Unlock()
			if err != nil {
				done <- err
				return
			}
		}
	}()
	select {
	case err := <-done:
		return err
	case <-s.n.streamsClosed:
		mu.Lock()
		closed = true
		mu.Unlock()
		return peerStatus(ErrShuttingDown)
	}
}
