package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// reconnectPause is how long a session waits after every endpoint in turn
// failed to take its keepalive stream, so that a cluster that is down is
// not called in a busy loop.
const reconnectPause = 200 * time.Millisecond

// errNoAck ends a keepalive stream whose last keepalive went unanswered for
// a whole interval: the node or the path to it is stuck.
var errNoAck = errors.New("client: keepalive not acknowledged")

// Session is a session kept alive in the background until it expires or is
// closed. Create ephemeral znodes with its ID.
type Session struct {
	c        *Client
	id       uint64
	timeout  time.Duration
	interval time.Duration

	onExpired func(id uint64, err error)
	onState   func(ConnState)
	lockDelay time.Duration // asked for at OpenSession (WithLockDelay)

	cancel    context.CancelFunc // stops the keepalive loop
	stopped   chan struct{}      // closed when the keepalive loop returns
	done      chan struct{}      // closed when err is set
	closeOnce sync.Once

	mu    sync.Mutex
	err   error
	state ConnState
}

// State says whether a session's keepalives reach the cluster.
type State int

const (
	// StateConnected: keepalives are acknowledged.
	StateConnected State = iota + 1
	// StateDisconnected: no node acknowledges keepalives (all down or
	// unreachable, no leader, a stream broke). The cluster may still hold
	// the session: only the cluster decides that it has expired, and says
	// so once a node answers again.
	StateDisconnected
	// StateExpired: the cluster said the session has expired. Final.
	StateExpired
)

// String is the state's name: connected, disconnected, expired.
func (st State) String() string {
	switch st {
	case StateConnected:
		return "connected"
	case StateDisconnected:
		return "disconnected"
	case StateExpired:
		return "expired"
	}
	return fmt.Sprintf("State(%d)", int(st))
}

// ConnState is a session's connection state. Since is when the session
// entered it; for StateDisconnected that is the last acknowledged
// keepalive, from which the cluster counts the session's timeout, so a
// caller that wants to give up before the cluster decides (stop work that
// must not run twice, as Curator's LOST does) can compare
// time.Since(Since) with Session.Timeout.
type ConnState struct {
	State State
	Since time.Time
}

// SessionOption tunes NewSession.
type SessionOption func(*Session)

// OnExpired has fn called when the session expires, which only the
// cluster decides: a node answers that it no longer holds the session.
// Keepalives that fail, for however long, do not expire it on the client
// side (OnConnectionState reports them). fn is called once, with the session id and Err, on the session's own goroutine
// after its keepalives have stopped (so fn may call Session.Close). It is
// not called when the session ends by Session.Close or Client.Close.
func OnExpired(fn func(id uint64, err error)) SessionOption {
	return func(s *Session) { s.onExpired = fn }
}

// OnConnectionState has fn called on every change of the session's
// ConnState: connected to disconnected (with the time of the last
// acknowledged keepalive), disconnected to connected, and to expired just
// before OnExpired's fn. The session starts connected; fn is not called
// for that. fn runs on the session's goroutine and must not block: the
// keepalives wait for it.
func OnConnectionState(fn func(ConnState)) SessionOption {
	return func(s *Session) { s.onState = fn }
}

// WithLockDelay asks for a session lock-delay (OpenSessionRequest.
// lock_delay_ms): after the session expires while leading an election or
// holding a lock, no one gets it for d. A negative d asks for none; zero
// (the default) takes the agent's --lock-delay.
func WithLockDelay(d time.Duration) SessionOption {
	return func(s *Session) { s.lockDelay = d }
}

// NewSession opens a session asking for timeout (zero takes the cluster's
// default) and keeps it alive until it expires or Close is called. ctx
// bounds only the opening call.
func (c *Client) NewSession(ctx context.Context, timeout time.Duration, opts ...SessionOption) (*Session, error) {
	s := &Session{c: c}
	for _, opt := range opts {
		opt(s)
	}
	req := &paddockv1.OpenSessionRequest{TimeoutMs: timeout.Milliseconds()}
	switch {
	case s.lockDelay < 0:
		req.LockDelayMs = -1
	case s.lockDelay > 0:
		req.LockDelayMs = max(1, s.lockDelay.Milliseconds())
	}
	resp, err := c.OpenSession(ctx, req)
	if err != nil {
		return nil, err
	}
	if granted := time.Duration(resp.TimeoutMs) * time.Millisecond; granted > 0 {
		timeout = granted
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("client: session %d: no timeout granted", resp.SessionId)
	}
	runCtx, cancel := context.WithCancel(c.ctx)
	s.id = resp.SessionId
	s.timeout = timeout
	s.interval = timeout / 3
	s.cancel = cancel
	s.stopped = make(chan struct{})
	s.done = make(chan struct{})
	s.state = ConnState{State: StateConnected, Since: time.Now()}
	go s.run(runCtx)
	return s, nil
}

// ID is the session's id, to put in CreateRequest.session_id.
func (s *Session) ID() uint64 { return s.id }

// Timeout is the session timeout the cluster granted.
func (s *Session) Timeout() time.Duration { return s.timeout }

// State is the session's current connection state.
func (s *Session) State() ConnState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// setState records a new connection state and reports it to the
// OnConnectionState callback; a state equal to the current one is not
// reported again.
func (s *Session) setState(st State, since time.Time) {
	s.mu.Lock()
	if s.state.State == st || s.state.State == StateExpired {
		s.mu.Unlock()
		return
	}
	s.state = ConnState{State: st, Since: since}
	cs := s.state
	s.mu.Unlock()
	if s.onState != nil {
		s.onState(cs)
	}
}

// Done is closed when the session has ended: expired, closed, or its
// Client closed. Err then says why.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err is nil while the session is alive. Once Done is closed it is
// ErrSessionExpired (possibly wrapped with the reason) or ErrClosed.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close stops the keepalives and closes the session on the cluster, which
// deletes its ephemeral znodes. Closing a session the cluster no longer
// knows is not an error. If the cluster cannot be reached the session stays
// open there until it expires, and Close returns the error.
func (s *Session) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.cancel()
		<-s.stopped
	})
	s.end(ErrClosed)
	_, err := s.c.CloseSession(ctx, &paddockv1.CloseSessionRequest{SessionId: s.id})
	if IsNotFound(err) || IsFailedPrecondition(err) {
		return nil
	}
	return err
}

// end records why the session ended, once, and closes Done.
func (s *Session) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
		close(s.done)
	}
}

// run keeps the session alive until it ends, records why, and then calls
// the expiry callback if that is why.
func (s *Session) run(ctx context.Context) {
	err := s.keepAlive(ctx)
	if errors.Is(err, ErrSessionExpired) {
		s.setState(StateExpired, time.Now())
	}
	s.end(err)
	close(s.stopped)
	if s.onExpired != nil && errors.Is(err, ErrSessionExpired) {
		s.onExpired(s.id, err)
	}
}

// keepAlive keeps the session alive on one stream at a time, moving to the
// next endpoint whenever a stream fails, until the cluster says the
// session expired (ErrSessionExpired) or ctx is cancelled by Close or
// Client.Close (ErrClosed). It never gives up on its own: a cluster that
// loses its leader keeps its sessions through the election (the new
// leader restarts their timers), so a client that cannot reach it for a
// whole timeout does not know that the session is gone. ZooKeeper's
// client likewise learns of expiry from the server when it reconnects.
func (s *Session) keepAlive(ctx context.Context) error {
	n := len(s.c.conns)
	idx := s.c.current()
	lastAck := time.Now() // the session was just opened
	// Streams that get no acknowledgement go round the endpoints; one
	// that was acknowledged starts a new round.
	pace := pacer{n: n, first: reconnectPause, most: reconnectPause}
	for pace.next(ctx, time.Time{}) {
		before := lastAck
		err := s.stream(ctx, idx, &lastAck)
		switch {
		case ctx.Err() != nil:
			return ErrClosed
		case errors.Is(err, ErrSessionExpired):
			return err
		}
		s.setState(StateDisconnected, lastAck)
		idx = (idx + 1) % n
		if lastAck.After(before) {
			pace.reset()
		}
	}
	return ErrClosed
}

// stream sends keepalives on a KeepAliveStream to endpoint idx until the
// stream fails, stalls (errNoAck), says the session expired
// (ErrSessionExpired) or ctx is cancelled. It sets *lastAck on every
// acknowledgement.
func (s *Session) stream(ctx context.Context, idx int, lastAck *time.Time) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel: the receiver returns once the stream ends
	defer cancel()

	stream, err := paddockv1.NewSessionServiceClient(s.c.conns[idx]).KeepAliveStream(ctx)
	if err != nil {
		return err
	}
	acks := make(chan *paddockv1.KeepAliveStreamResponse)
	recvErr := make(chan error, 1)
	wg.Go(func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case acks <- resp:
			case <-ctx.Done():
				return
			}
		}
	})

	req := &paddockv1.KeepAliveStreamRequest{SessionId: s.id}
	pending := false // a keepalive was sent and not acknowledged yet
	send := func() error {
		if err := stream.Send(req); err != nil {
			if err != io.EOF {
				return err
			}
			// The stream has ended; its status comes from Recv.
			select {
			case err := <-recvErr:
				return s.expiredOr(err)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		pending = true
		return nil
	}
	if err := send(); err != nil {
		return err
	}
	ticker := time.NewTicker(s.interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-recvErr:
			return s.expiredOr(err)
		case resp := <-acks:
			if resp.Expired {
				return fmt.Errorf("%w: session %d", ErrSessionExpired, s.id)
			}
			pending = false
			*lastAck = time.Now()
			s.c.cur.Store(int64(idx))
			s.setState(StateConnected, *lastAck)
		case <-ticker.C:
			if pending {
				return errNoAck
			}
			if err := send(); err != nil {
				return err
			}
		}
	}
}

// expiredOr turns the error that ended a keepalive stream into
// ErrSessionExpired when the cluster no longer knows the session.
func (s *Session) expiredOr(err error) error {
	switch status.Code(err) {
	case codes.FailedPrecondition, codes.NotFound:
		return fmt.Errorf("%w: session %d: %v", ErrSessionExpired, s.id, status.Convert(err).Message())
	}
	return err
}
