package client

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// testTimeout is a session timeout short enough for tests: keepalives go
// out every 100ms.
const testTimeout = 300 * time.Millisecond

func newTestSession(t *testing.T, c *Client) *Session {
	t.Helper()
	s, err := c.NewSession(context.Background(), testTimeout)
	if err != nil {
		t.Fatalf("NewSession() error = %v", err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func isDone(s *Session) bool {
	select {
	case <-s.Done():
		return true
	default:
		return false
	}
}

func TestSessionKeepsAliveAndCloses(t *testing.T) {
	n := startNode(t, "n")
	c := newTestClient(t, n.addr)
	s := newTestSession(t, c)

	waitFor(t, "3 keepalives", func() bool { return n.keepaliveCount() >= 3 })
	if isDone(s) {
		t.Fatalf("session done while kept alive: %v", s.Err())
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatalf("Close() error = %v", err)
	}
	if !errors.Is(s.Err(), ErrClosed) || !isDone(s) {
		t.Errorf("after Close: Err() = %v, done = %v; want ErrClosed, true", s.Err(), isDone(s))
	}
	if !slices.Equal(n.closed, []uint64{7}) {
		t.Errorf("closed sessions = %v, want [7]", n.closed)
	}
}

func TestSessionLockDelay(t *testing.T) {
	n := startNode(t, "n")
	c := newTestClient(t, n.addr)
	for _, d := range []time.Duration{0, -1, 500 * time.Microsecond, 5 * time.Second} {
		s, err := c.NewSession(context.Background(), testTimeout, WithLockDelay(d))
		if err != nil {
			t.Fatalf("NewSession(WithLockDelay(%v)) error = %v", d, err)
		}
		s.Close(context.Background())
	}
	n.mu.Lock()
	got := n.lockDelays
	n.mu.Unlock()
	// 0: the agent's default; negative: none; a fraction of a ms rounds
	// up to 1, never down to the default.
	if want := []int64{0, -1, 1, 5000}; !slices.Equal(got, want) {
		t.Errorf("lock_delay_ms sent = %v, want %v", got, want)
	}
}

func TestSessionExpiredByCluster(t *testing.T) {
	n := startNode(t, "n")
	c := newTestClient(t, n.addr)
	s := newTestSession(t, c)

	n.set(func(n *fakeNode) { n.expired = true })
	waitFor(t, "session done", func() bool { return isDone(s) })
	if !errors.Is(s.Err(), ErrSessionExpired) {
		t.Errorf("Err() = %v, want ErrSessionExpired", s.Err())
	}
}

func TestSessionExpiredOnFailedPrecondition(t *testing.T) {
	n := startNode(t, "n")
	c := newTestClient(t, n.addr)
	s := newTestSession(t, c)

	n.set(func(n *fakeNode) { n.streamErr = status.Error(codes.FailedPrecondition, "session expired") })
	waitFor(t, "session done", func() bool { return isDone(s) })
	if !errors.Is(s.Err(), ErrSessionExpired) {
		t.Errorf("Err() = %v, want ErrSessionExpired", s.Err())
	}
}

func TestSessionStreamFailsOver(t *testing.T) {
	a, b := startNode(t, "a"), startNode(t, "b")
	c := newTestClient(t, a.addr, b.addr)
	s := newTestSession(t, c)

	waitFor(t, "a keepalive on a", func() bool { return a.keepaliveCount() >= 1 })
	a.set(func(n *fakeNode) { n.streamErr = status.Error(codes.Unavailable, "shutting down") })
	waitFor(t, "3 keepalives on b", func() bool { return b.keepaliveCount() >= 3 })
	if isDone(s) {
		t.Errorf("session done after failover: %v", s.Err())
	}
}

// stateLog records the connection states a session reports.
type stateLog struct {
	mu     sync.Mutex
	states []ConnState
}

func (l *stateLog) add(cs ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.states = append(l.states, cs)
}

func (l *stateLog) kinds() []State {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []State
	for _, cs := range l.states {
		out = append(out, cs.State)
	}
	return out
}

// TestSessionNotExpiredWhileUnreachable: keepalives that fail for longer
// than the timeout (every node unreachable, then a leaderless cluster that
// answers Unavailable) do not expire the session on the client: the
// cluster may still hold it. The state callback reports disconnected,
// since the last acknowledged keepalive, then connected again; the session
// expires only when the cluster says so.
func TestSessionNotExpiredWhileUnreachable(t *testing.T) {
	n := startNode(t, "n")
	c := newTestClient(t, n.addr)
	var log stateLog
	var expired atomic.Int32
	s, err := c.NewSession(context.Background(), testTimeout,
		OnConnectionState(log.add), OnExpired(func(uint64, error) { expired.Add(1) }))
	if err != nil {
		t.Fatalf("NewSession() error = %v", err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	waitFor(t, "a keepalive", func() bool { return n.keepaliveCount() >= 1 })

	// A leaderless cluster: every keepalive stream fails with Unavailable.
	n.set(func(n *fakeNode) { n.streamErr = status.Error(codes.Unavailable, "no leader") })
	waitFor(t, "disconnected", func() bool { return s.State().State == StateDisconnected })
	since := s.State().Since
	if time.Since(since) > testTimeout {
		t.Errorf("disconnected since %v ago, want the last acknowledged keepalive", time.Since(since))
	}
	// Three timeouts without an acknowledged keepalive.
	select {
	case <-s.Done():
		t.Fatalf("session ended while the cluster could not be reached: %v", s.Err())
	case <-time.After(3 * testTimeout):
	}
	if st := s.State(); st.State != StateDisconnected || !st.Since.Equal(since) {
		t.Errorf("State() = %+v, want disconnected since %v", st, since)
	}

	// The cluster answers again and still holds the session.
	n.set(func(n *fakeNode) { n.streamErr = nil })
	waitFor(t, "connected", func() bool { return s.State().State == StateConnected })
	if isDone(s) || expired.Load() != 0 {
		t.Fatalf("session done (%v) or expired (%d) after reconnecting", s.Err(), expired.Load())
	}

	// Now the cluster says it is gone: only that expires it.
	n.set(func(n *fakeNode) { n.expired = true })
	waitFor(t, "session done", func() bool { return isDone(s) })
	if !errors.Is(s.Err(), ErrSessionExpired) {
		t.Errorf("Err() = %v, want ErrSessionExpired", s.Err())
	}
	waitFor(t, "OnExpired", func() bool { return expired.Load() == 1 })
	if got, want := log.kinds(), []State{StateDisconnected, StateConnected, StateExpired}; !slices.Equal(got, want) {
		t.Errorf("states reported = %v, want %v", got, want)
	}
}

// TestSessionNotExpiredWhenNodeDown: with its only node gone for three
// timeouts, the session is disconnected, not expired.
func TestSessionNotExpiredWhenNodeDown(t *testing.T) {
	n := startNode(t, "n")
	c := newTestClient(t, n.addr)
	s := newTestSession(t, c)
	waitFor(t, "a keepalive", func() bool { return n.keepaliveCount() >= 1 })

	n.srv.Stop()
	waitFor(t, "disconnected", func() bool { return s.State().State == StateDisconnected })
	select {
	case <-s.Done():
		t.Fatalf("session ended while its node was down: %v", s.Err())
	case <-time.After(3 * testTimeout):
	}
}

func TestClientCloseEndsSession(t *testing.T) {
	n := startNode(t, "n")
	c, err := New(context.Background(), Config{Endpoints: []string{n.addr}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.NewSession(context.Background(), testTimeout)
	if err != nil {
		t.Fatalf("NewSession() error = %v", err)
	}
	c.Close()
	waitFor(t, "session done", func() bool { return isDone(s) })
	if !errors.Is(s.Err(), ErrClosed) {
		t.Errorf("Err() = %v, want ErrClosed", s.Err())
	}
}

func TestSessionOnExpiredCalledOnce(t *testing.T) {
	n := startNode(t, "n")
	c := newTestClient(t, n.addr)
	type call struct {
		id  uint64
		err error
	}
	calls := make(chan call, 2)
	// The callback closes the session, as the contract allows: if it ran
	// before the keepalives stopped, Close would wait for them forever and
	// the call would never be reported. sess hands s to it race-free.
	sess := make(chan *Session, 1)
	closed := make(chan error, 1)
	s, err := c.NewSession(context.Background(), testTimeout, OnExpired(func(id uint64, err error) {
		calls <- call{id, err}
		closed <- (<-sess).Close(context.Background())
	}))
	if err != nil {
		t.Fatalf("NewSession() error = %v", err)
	}
	// No Close in t.Cleanup: with the bug above it would hang the test
	// binary; the client's cleanup ends the session otherwise.
	sess <- s

	n.set(func(n *fakeNode) { n.expired = true })
	select {
	case got := <-calls:
		if got.id != 7 || !errors.Is(got.err, ErrSessionExpired) {
			t.Errorf("OnExpired(%d, %v), want (7, ErrSessionExpired)", got.id, got.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OnExpired not called within 5s")
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close() in OnExpired error = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close() in OnExpired still blocked after 5s: called before the keepalives stopped")
	}
	if !isDone(s) || !errors.Is(s.Err(), ErrSessionExpired) {
		t.Errorf("after OnExpired: done = %v, Err() = %v; want true, ErrSessionExpired", isDone(s), s.Err())
	}
	if err := s.Close(context.Background()); err != nil {
		t.Errorf("Close() after expiry error = %v", err)
	}
	if got := len(calls); got != 0 {
		t.Errorf("OnExpired called %d more times, want once", got)
	}
}

func TestSessionOnExpiredNotCalledOnClose(t *testing.T) {
	n := startNode(t, "n")
	c := newTestClient(t, n.addr)
	called := make(chan struct{}, 1)
	s, err := c.NewSession(context.Background(), testTimeout, OnExpired(func(uint64, error) { called <- struct{}{} }))
	if err != nil {
		t.Fatalf("NewSession() error = %v", err)
	}
	waitFor(t, "a keepalive", func() bool { return n.keepaliveCount() >= 1 })
	if err := s.Close(context.Background()); err != nil {
		t.Fatalf("Close() error = %v", err)
	}
	if len(called) != 0 {
		t.Error("OnExpired called after Close, want not called")
	}
}
