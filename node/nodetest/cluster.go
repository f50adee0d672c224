// Package nodetest runs in-process Paddock clusters for tests: real nodes
// with their own data directories, raft over in-memory transports (so
// links can be cut and faults injected), and real gRPC on 127.0.0.1 between
// them. Only tests and test helpers import it.
//
// A cluster closes itself at the test's cleanup. Callers that want no
// goroutine left behind check with go.uber.org/goleak in their TestMain, as
// package node's tests do: every node, transport, server and connection a
// cluster starts is closed by then.
package nodetest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"

	"github.com/paddock/paddock/node"
)

// Timings of the in-process cluster: fast enough that an election takes a
// fraction of a second, slow enough that -race on a loaded CI machine does
// not see spurious ones.
const (
	Heartbeat       = 250 * time.Millisecond
	MinSession      = 500 * time.Millisecond
	CheckpointEvery = 300 * time.Millisecond
	RequestTimeout  = 5 * time.Second
	// WaitTimeout bounds waits for anything that should happen "soon".
	WaitTimeout = 15 * time.Second
	// RaftAddressPrefix starts every node's in-memory raft address.
	RaftAddressPrefix = "inmem-"
)

// Cluster is an in-process Paddock cluster: every node has its own data
// directory, a raft in-memory transport wired to the others (so links can
// be cut), its internal service (forwarding, reads, keepalives) served over
// real gRPC on a listener of its own on 127.0.0.1, which its peers reach
// through Config.DialPeer, and, with WithServer, a client gRPC server on
// 127.0.0.1.
type Cluster struct {
	tb   testing.TB
	spec spec

	mu      sync.Mutex
	members []*member
}

// member is one node slot; n is nil while the node is stopped.
type member struct {
	id       string
	dir      string
	addr     raft.ServerAddress
	trans    *Transport
	grpcAddr string
	peerAddr string // where the node serves its internal service
	srv      *grpc.Server
	served   chan struct{} // closed when srv.Serve returned
	n        *node.Node
	cut      bool // partitioned
}

type spec struct {
	tune   []func(*node.Config)
	server func(*node.Node) *grpc.Server
}

// Option adjusts a cluster.
type Option func(*spec)

// WithConfig applies f to every node's configuration before it starts.
func WithConfig(f func(*node.Config)) Option {
	return func(s *spec) { s.tune = append(s.tune, f) }
}

// WithServer serves the client gRPC API of every node with the server
// newServer returns (rpc.NewServer, typically; this package does not
// import rpc so that rpc's own tests can use it). Without it a node has a
// client address that nothing serves.
func WithServer(newServer func(*node.Node) *grpc.Server) Option {
	return func(s *spec) { s.server = newServer }
}

// WithSteadyLeader slows heartbeats and elections down, so that a loaded
// machine's delays do not move leadership during a test that needs it to
// stay put.
func WithSteadyLeader() Option {
	return WithConfig(func(cfg *node.Config) {
		cfg.HeartbeatTimeout = time.Second
		cfg.ElectionTimeout = time.Second
	})
}

// WithSnapshots makes snapshots frequent and logs short.
func WithSnapshots(threshold, trailing uint64) Option {
	return WithConfig(func(c *node.Config) {
		c.SnapshotThreshold = threshold
		c.TrailingLogs = trailing
	})
}

// NewCluster starts size nodes bootstrapped with the same voter list. The
// cluster is closed by tb's cleanup.
func NewCluster(tb testing.TB, size int, opts ...Option) *Cluster {
	tb.Helper()
	c := &Cluster{tb: tb}
	for _, o := range opts {
		o(&c.spec)
	}
	for i := range size {
		id := "n" + strconv.Itoa(i+1)
		c.members = append(c.members, &member{
			id:   id,
			dir:  tb.TempDir(),
			addr: raft.ServerAddress(RaftAddressPrefix + id),
		})
	}
	// Registered after TempDir, so it runs before the directories go.
	tb.Cleanup(c.close)
	for _, m := range c.members {
		c.startTransport(m)
	}
	for _, m := range c.members {
		c.startNode(m, "127.0.0.1:0")
	}
	return c
}

func (c *Cluster) bootstrap() []raft.Server {
	var out []raft.Server
	for _, m := range c.members {
		out = append(out, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.id), Address: m.addr})
	}
	return out
}

// startTransport gives m a fresh in-memory transport at its address, linked
// both ways with every running node that is not partitioned.
func (c *Cluster) startTransport(m *member) {
	_, inner := raft.NewInmemTransport(m.addr)
	m.trans = &Transport{InmemTransport: inner}
	m.cut = false
	for _, o := range c.members {
		if o == m || o.trans == nil || o.cut {
			continue
		}
		m.trans.Connect(o.addr, o.trans.InmemTransport)
		o.trans.Connect(m.addr, m.trans.InmemTransport)
	}
}

// startNode starts m's node and gRPC server, listening on listen.
func (c *Cluster) startNode(m *member, listen string) {
	c.tb.Helper()
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		// The old port was taken meanwhile: take any.
		lis, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		c.tb.Fatalf("listen: %v", err)
	}
	plis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		lis.Close()
		c.tb.Fatalf("listen: %v", err)
	}
	cfg := node.Config{
		DialPeer:                  c.dialPeer,
		ID:                        m.id,
		DataDir:                   m.dir,
		GRPCAddr:                  lis.Addr().String(),
		Bootstrap:                 c.bootstrap(),
		Transport:                 m.trans,
		HeartbeatTimeout:          Heartbeat,
		ElectionTimeout:           Heartbeat,
		MinSessionTimeout:         MinSession,
		SessionCheckpointInterval: CheckpointEvery,
		RequestTimeout:            RequestTimeout,
		Logger:                    testLogger(m.id),
	}
	for _, f := range c.spec.tune {
		f(&cfg)
	}
	n, err := node.New(cfg)
	if err != nil {
		lis.Close()
		plis.Close()
		c.tb.Fatalf("node.New(%s): %v", m.id, err)
	}
	n.ServeInternal(plis)
	var srv *grpc.Server
	served := make(chan struct{})
	if c.spec.server != nil {
		srv = c.spec.server(n)
		go func() {
			defer close(served)
			_ = srv.Serve(lis)
		}()
	} else {
		lis.Close()
		close(served)
	}
	c.mu.Lock()
	m.n, m.srv, m.served, m.grpcAddr, m.peerAddr = n, srv, served, cfg.GRPCAddr, plis.Addr().String()
	c.mu.Unlock()
}

// dialPeer is every node's Config.DialPeer: it connects to the internal
// listener of the node at raftAddr (its latest, if it is stopped).
func (c *Cluster) dialPeer(ctx context.Context, raftAddr string) (net.Conn, error) {
	c.mu.Lock()
	var to string
	for _, m := range c.members {
		if string(m.addr) == raftAddr {
			to = m.peerAddr
		}
	}
	c.mu.Unlock()
	if to == "" {
		return nil, fmt.Errorf("nodetest: no node at raft address %q", raftAddr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", to)
}

// testLogger discards logs unless PADDOCK_TEST_LOG names a level
// (debug, info, warn, ...).
func testLogger(id string) hclog.Logger {
	lvl := os.Getenv("PADDOCK_TEST_LOG")
	if lvl == "" {
		return hclog.NewNullLogger()
	}
	return hclog.New(&hclog.LoggerOptions{Name: id, Level: hclog.LevelFromString(lvl), Output: os.Stderr})
}

// Size is the number of node slots, running or not.
func (c *Cluster) Size() int { return len(c.members) }

// Node returns node i, or nil while it is stopped. Safe from any
// goroutine.
func (c *Cluster) Node(i int) *node.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[i].n
}

// ID is node i's raft server id.
func (c *Cluster) ID(i int) string { return c.members[i].id }

// RaftAddr is node i's raft address (in-memory: not dialable).
func (c *Cluster) RaftAddr(i int) raft.ServerAddress { return c.members[i].addr }

// GRPCAddr is node i's client gRPC address (its latest, if stopped).
func (c *Cluster) GRPCAddr(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[i].grpcAddr
}

// PeerAddr is where node i serves its internal service (its latest, if
// stopped): what its peers reach for its raft address.
func (c *Cluster) PeerAddr(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[i].peerAddr
}

// Server is node i's client gRPC server, nil while it is stopped or
// without WithServer.
func (c *Cluster) Server(i int) *grpc.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[i].srv
}

// Transport is node i's raft transport, to inject faults; nil while it is
// stopped.
func (c *Cluster) Transport(i int) *Transport {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[i].trans
}

// Running lists the indexes of the running nodes.
func (c *Cluster) Running() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for i, m := range c.members {
		if m.n != nil {
			out = append(out, i)
		}
	}
	return out
}

// Stop closes node i's gRPC server, node and transport. Its peers'
// transports drop it, so their RPCs to it fail at once.
func (c *Cluster) Stop(i int) {
	c.tb.Helper()
	m := c.members[i]
	c.mu.Lock()
	n, srv, served := m.n, m.srv, m.served
	m.n, m.srv, m.served = nil, nil, nil
	c.mu.Unlock()
	if n == nil {
		c.tb.Fatalf("Stop(%d): not running", i)
	}
	for _, o := range c.members {
		if o != m && o.trans != nil {
			o.trans.Disconnect(m.addr)
		}
	}
	if srv != nil {
		srv.Stop()
	}
	<-served
	if err := n.Close(); err != nil {
		c.tb.Errorf("Close(%s): %v", m.id, err)
	}
	m.trans.Close()
	c.mu.Lock()
	m.trans = nil
	c.mu.Unlock()
}

// Restart starts node i again from its data directory, with a new
// transport at the same raft address and, if it is free, the same gRPC
// address.
func (c *Cluster) Restart(i int) { c.restart(i, c.GRPCAddr(i)) }

// RestartNewAddr is Restart on a new gRPC port: the node must register its
// new address for clients to find it.
func (c *Cluster) RestartNewAddr(i int) { c.restart(i, "127.0.0.1:0") }

func (c *Cluster) restart(i int, listen string) {
	c.tb.Helper()
	m := c.members[i]
	if c.Node(i) != nil {
		c.tb.Fatalf("Restart(%d): still running", i)
	}
	c.startTransport(m)
	c.startNode(m, listen)
}

// Partition cuts node i's raft links to every other node, both ways. gRPC
// stays up: forwarding may still reach i, which is what a real network
// split between raft ports alone would look like, and the worse case.
func (c *Cluster) Partition(i int) {
	m := c.members[i]
	m.cut = true
	for _, o := range c.members {
		if o == m || o.trans == nil || m.trans == nil {
			continue
		}
		m.trans.Disconnect(o.addr)
		o.trans.Disconnect(m.addr)
	}
}

// Heal reconnects every pair of running nodes.
func (c *Cluster) Heal() {
	for _, m := range c.members {
		m.cut = false
	}
	for _, a := range c.members {
		for _, b := range c.members {
			if a != b && a.trans != nil && b.trans != nil {
				a.trans.Connect(b.addr, b.trans.InmemTransport)
			}
		}
	}
}

// close stops every running node.
func (c *Cluster) close() {
	for _, i := range c.Running() {
		c.Stop(i)
	}
}

// WaitLeader waits until one running node outside any partition leads and
// has applied its barrier, every other such node follows it, and all of
// them know each other's current gRPC address (so no registration is still
// pending). It returns the leader's index.
func (c *Cluster) WaitLeader(tb testing.TB) int {
	tb.Helper()
	leader := -1
	Eventually(tb, WaitTimeout, func() error {
		leader = -1
		var connected []int
		for _, i := range c.Running() {
			if !c.members[i].cut {
				connected = append(connected, i)
			}
		}
		for _, i := range connected {
			if c.Node(i).IsLeader() {
				if leader >= 0 {
					return fmt.Errorf("two leaders: %s and %s", c.members[leader].id, c.members[i].id)
				}
				leader = i
			}
		}
		if leader < 0 {
			return errors.New("no leader")
		}
		l := c.members[leader]
		if !c.Node(leader).Ready() {
			return fmt.Errorf("leader %s has not applied its barrier", l.id)
		}
		for _, i := range connected {
			n := c.Node(i)
			if _, id := n.Raft().LeaderWithID(); string(id) != l.id {
				return fmt.Errorf("%s follows %q, not %s", n.ID(), id, l.id)
			}
			for _, j := range connected {
				m := c.members[j]
				if reg, ok := n.FSM().Member(m.id); !ok || reg.GetGrpcAddr() != c.GRPCAddr(j) {
					return fmt.Errorf("%s does not know %s's gRPC address %s yet", n.ID(), m.id, c.GRPCAddr(j))
				}
			}
		}
		return nil
	})
	return leader
}

// Followers returns the running nodes other than leader.
func (c *Cluster) Followers(leader int) []int {
	var out []int
	for _, i := range c.Running() {
		if i != leader {
			out = append(out, i)
		}
	}
	return out
}

// Transfer moves leadership to node to and waits for it. A transfer that
// times out (raft gives it one election timeout) is tried again.
func (c *Cluster) Transfer(tb testing.TB, to int) {
	tb.Helper()
	m := c.members[to]
	deadline := time.Now().Add(WaitTimeout)
	for {
		from := c.WaitLeader(tb)
		if from == to {
			return
		}
		err := c.Node(from).Raft().LeadershipTransferToServer(raft.ServerID(m.id), m.addr).Error()
		if err == nil && c.WaitLeader(tb) == to {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("leadership did not move to %s: last transfer: %v", m.id, err)
		}
	}
}

// Converged waits until every running node has applied the same index
// and has the same state.
func (c *Cluster) Converged(tb testing.TB) {
	tb.Helper()
	Eventually(tb, WaitTimeout, func() error {
		nodes := c.Running()
		first := c.Node(nodes[0])
		hash, idx := first.FSM().StateHashAndIndex()
		for _, i := range nodes[1:] {
			n := c.Node(i)
			got, gotIdx := n.FSM().StateHashAndIndex()
			if gotIdx != idx {
				return fmt.Errorf("%s applied %d, %s applied %d", n.ID(), gotIdx, first.ID(), idx)
			}
			if got != hash {
				return fmt.Errorf("%s and %s applied %d but their states differ", n.ID(), first.ID(), idx)
			}
		}
		return nil
	})
}

// Eventually polls f until it returns nil, failing tb with f's last error
// once timeout has passed.
func Eventually(tb testing.TB, timeout time.Duration, f func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("still failing after %v: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
