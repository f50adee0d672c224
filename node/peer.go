package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// The raft address carries all node-to-node traffic: raft's own
// connections and the internal gRPC service (forwarded writes, reads, read
// index, keepalive batches). peerMux tells them apart by the first byte a
// dialer sends, which each protocol already fixes, so neither dialer
// writes anything of its own and a node of the previous version still
// reaches this one's raft:
//   - hashicorp/raft's NetworkTransport starts every connection with the
//     type byte of its first RPC (0 AppendEntries, 1 RequestVote,
//     2 InstallSnapshot, 3 TimeoutNow, 4 RequestPreVote in v1.7);
//   - a gRPC client starts with HTTP/2's connection preface,
//     "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".
const (
	// maxRaftType is the highest first byte handed to raft: room for
	// RPC types raft may add; raft itself closes a connection of a type
	// it does not know.
	maxRaftType = 0x0f
	// grpcFirstByte starts the HTTP/2 client preface.
	grpcFirstByte = 'P'
	// firstByteTimeout bounds the wait for a new connection's first byte.
	// Each connection waits in its own goroutine: a silent one holds
	// nothing but itself.
	firstByteTimeout = 10 * time.Second
)

// peerMux accepts connections on the raft address and routes each, by its
// first byte, to raft's stream layer or to the internal gRPC server. A
// connection that starts with anything else is closed and logged.
type peerMux struct {
	lis  net.Listener
	log  hclog.Logger
	raft *subListener
	grpc *subListener
	wg   sync.WaitGroup

	mu      sync.Mutex
	pending map[net.Conn]struct{} // waiting for their first byte
	// toRaft are the connections handed to raft and still open: raft's
	// transport never closes the connections it accepted (its handlers
	// block reading them), so close does.
	toRaft map[*peekedConn]struct{}
	closed bool
}

// errNotAdvertisable is a raft address that peers could not dial.
var errNotAdvertisable = errors.New("node: raft address is not advertisable (give a host, not 0.0.0.0 or ::)")

// listenPeers listens on addr, which is also the address advertised to
// peers, so it must name a host.
func listenPeers(addr string, log hclog.Logger) (*peerMux, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("node: raft listen: %w", err)
	}
	if a, ok := lis.Addr().(*net.TCPAddr); !ok || a.IP == nil || a.IP.IsUnspecified() {
		lis.Close()
		return nil, fmt.Errorf("%w: %s", errNotAdvertisable, addr)
	}
	m := &peerMux{
		lis: lis, log: log,
		raft:    newSubListener(lis.Addr()),
		grpc:    newSubListener(lis.Addr()),
		pending: map[net.Conn]struct{}{},
		toRaft:  map[*peekedConn]struct{}{},
	}
	m.wg.Add(1)
	go m.accept()
	return m, nil
}

func (m *peerMux) accept() {
	defer m.wg.Done()
	var delay time.Duration
	for {
		conn, err := m.lis.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off as
			// net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			m.log.Warn("raft address: accept failed", "error", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if !m.track(conn) {
			conn.Close()
			return
		}
		m.wg.Add(1)
		go m.route(conn)
	}
}

// track records conn as waiting for its first byte, unless m is closed.
func (m *peerMux) track(conn net.Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.pending[conn] = struct{}{}
	return true
}

func (m *peerMux) untrack(conn net.Conn) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.pending, conn)
}

// route reads conn's first byte and hands conn on, that byte still to be
// read.
func (m *peerMux) route(conn net.Conn) {
	defer m.wg.Done()
	var first [1]byte
	_ = conn.SetReadDeadline(time.Now().Add(firstByteTimeout))
	_, err := io.ReadFull(conn, first[:])
	m.untrack(conn)
	if err == nil {
		err = conn.SetReadDeadline(time.Time{})
	}
	if err != nil {
		m.log.Debug("raft address: connection closed before its first byte", "remote", conn.RemoteAddr().String(), "error", err)
		conn.Close()
		return
	}
	pc := &peekedConn{Conn: conn, first: first[0], unread: true}
	switch {
	case first[0] <= maxRaftType:
		if !m.handToRaft(pc) {
			conn.Close()
			return
		}
		m.raft.deliver(pc)
	case first[0] == grpcFirstByte:
		m.grpc.deliver(pc)
	default:
		m.log.Warn("raft address: closing a connection that is neither raft nor gRPC",
			"remote", conn.RemoteAddr().String(), "first_byte", fmt.Sprintf("0x%02x", first[0]))
		conn.Close()
	}
}

// handToRaft records c as raft's until it is closed, unless m is closed.
func (m *peerMux) handToRaft(c *peekedConn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.toRaft[c] = struct{}{}
	c.onClose = func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		delete(m.toRaft, c)
	}
	return true
}

// close stops accepting, closes the connections still waiting for their
// first byte, those handed to raft and both sub-listeners, and waits for
// its goroutines. gRPC closes its own connections when it stops.
func (m *peerMux) close() {
	m.mu.Lock()
	m.closed = true
	var conns []net.Conn
	for c := range m.pending {
		conns = append(conns, c)
	}
	for c := range m.toRaft {
		c.closing.Store(true)
		conns = append(conns, c)
	}
	m.mu.Unlock()
	for _, c := range conns {
		c.Close() // a peekedConn's onClose takes m.mu
	}
	m.lis.Close()
	m.raft.Close()
	m.grpc.Close()
	m.wg.Wait()
}

// raftStream is raft's StreamLayer on the mux: raft accepts the
// connections routed to it and dials peers' raft addresses directly (its
// first byte routes them on the other side).
type raftStream struct{ *subListener }

// Dial opens a connection to a peer's raft address.
func (raftStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(addr), timeout)
}

// subListener is a net.Listener fed by peerMux.
type subListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newSubListener(addr net.Addr) *subListener {
	return &subListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// deliver hands c to Accept, or closes it once l is closed.
func (l *subListener) deliver(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

// Accept returns the next connection routed here.
func (l *subListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close makes Accept fail; the mux's own listener stays open.
func (l *subListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr is the raft address.
func (l *subListener) Addr() net.Addr { return l.addr }

// peekedConn is a connection whose first byte the mux has read: Read
// returns it first.
type peekedConn struct {
	net.Conn
	first   byte
	unread  bool   // only the one goroutine that reads a conn touches it
	onClose func() // set before the conn is handed on; nil for none
	once    sync.Once
	// closing is set when the mux closes the conn: its reader sees io.EOF,
	// a peer gone, rather than an error (raft logs those).
	closing atomic.Bool
}

// Close closes the connection and tells whoever tracks it.
func (c *peekedConn) Close() error {
	err := c.Conn.Close()
	if c.onClose != nil {
		c.once.Do(c.onClose)
	}
	return err
}

func (c *peekedConn) Read(p []byte) (int, error) {
	if c.unread && len(p) > 0 {
		p[0] = c.first
		c.unread = false
		return 1, nil
	}
	n, err := c.Conn.Read(p)
	if err != nil && c.closing.Load() {
		err = io.EOF
	}
	return n, err
}

// dialPeer is the default Config.DialPeer: TCP to the peer's raft address,
// where its mux routes gRPC by the HTTP/2 preface.
func dialPeer(ctx context.Context, raftAddr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", raftAddr)
}
