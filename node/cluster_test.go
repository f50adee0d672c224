package node_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	"github.com/paddock/paddock/fsm"
	"github.com/paddock/paddock/node"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
	"github.com/paddock/paddock/rpc"
)

// TestMain checks that no test leaves a goroutine behind: every node,
// transport, gRPC server and client connection a test starts is closed by
// its cluster's cleanup.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Timings of the in-process cluster: fast enough that an election takes a
// fraction of a second, slow enough that -race on a loaded CI machine does
// not see spurious ones.
const (
	testHeartbeat         = 250 * time.Millisecond
	testMinSession        = 500 * time.Millisecond
	testCheckpointEvery   = 300 * time.Millisecond
	testRequestTimeout    = 5 * time.Second
	waitTimeout           = 15 * time.Second // for anything that should happen "soon"
	testProposeTimeout    = 10 * time.Second
	testRaftAddressPrefix = "inmem-"
)

// cluster is an in-process Paddock cluster: every node has its own data
// directory, a raft in-memory transport wired to the others (so links can be
// cut) and a real gRPC server on 127.0.0.1 (so forwarding between nodes
// runs the production code path).
type cluster struct {
	tb   testing.TB
	spec clusterSpec

	mu      sync.Mutex
	members []*member
}

// member is one node slot; n is nil while the node is stopped.
type member struct {
	id       string
	dir      string
	addr     raft.ServerAddress
	trans    *testTransport
	grpcAddr string
	srv      *grpc.Server
	served   chan struct{} // closed when srv.Serve returned
	n        *node.Node
	cut      bool // partitioned
}

type clusterSpec struct {
	tune []func(*node.Config)
}

// clusterOption adjusts every node's configuration.
type clusterOption func(*clusterSpec)

// withConfig applies f to every node's configuration before it starts.
func withConfig(f func(*node.Config)) clusterOption {
	return func(s *clusterSpec) { s.tune = append(s.tune, f) }
}

// withSteadyLeader slows heartbeats and elections down, so that a loaded
// machine's delays do not move leadership during a test that needs it to
// stay put.
func withSteadyLeader() clusterOption {
	return withConfig(func(cfg *node.Config) {
		cfg.HeartbeatTimeout = time.Second
		cfg.ElectionTimeout = time.Second
	})
}

// withSnapshots makes snapshots frequent and logs short.
func withSnapshots(threshold, trailing uint64) clusterOption {
	return withConfig(func(c *node.Config) {
		c.SnapshotThreshold = threshold
		c.TrailingLogs = trailing
	})
}

// newCluster starts size nodes bootstrapped with the same voter list. The
// cluster is closed by tb's cleanup.
func newCluster(tb testing.TB, size int, opts ...clusterOption) *cluster {
	tb.Helper()
	c := &cluster{tb: tb}
	for _, o := range opts {
		o(&c.spec)
	}
	for i := range size {
		id := "n" + strconv.Itoa(i+1)
		c.members = append(c.members, &member{
			id:   id,
			dir:  tb.TempDir(),
			addr: raft.ServerAddress(testRaftAddressPrefix + id),
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

func (c *cluster) bootstrap() []raft.Server {
	var out []raft.Server
	for _, m := range c.members {
		out = append(out, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.id), Address: m.addr})
	}
	return out
}

// startTransport gives m a fresh in-memory transport at its address, linked
// both ways with every running node that is not partitioned.
func (c *cluster) startTransport(m *member) {
	_, inner := raft.NewInmemTransport(m.addr)
	m.trans = &testTransport{InmemTransport: inner}
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
func (c *cluster) startNode(m *member, listen string) {
	c.tb.Helper()
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		// The old port was taken meanwhile: take any.
		lis, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		c.tb.Fatalf("listen: %v", err)
	}
	cfg := node.Config{
		ID:                        m.id,
		DataDir:                   m.dir,
		GRPCAddr:                  lis.Addr().String(),
		Bootstrap:                 c.bootstrap(),
		Transport:                 m.trans,
		HeartbeatTimeout:          testHeartbeat,
		ElectionTimeout:           testHeartbeat,
		MinSessionTimeout:         testMinSession,
		SessionCheckpointInterval: testCheckpointEvery,
		RequestTimeout:            testRequestTimeout,
		Logger:                    testLogger(m.id),
	}
	for _, f := range c.spec.tune {
		f(&cfg)
	}
	n, err := node.New(cfg)
	if err != nil {
		lis.Close()
		c.tb.Fatalf("node.New(%s): %v", m.id, err)
	}
	srv := rpc.NewServer(n)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	c.mu.Lock()
	m.n, m.srv, m.served, m.grpcAddr = n, srv, served, cfg.GRPCAddr
	c.mu.Unlock()
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

// node returns node i, or nil while it is stopped. Safe from any goroutine.
func (c *cluster) node(i int) *node.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[i].n
}

// running lists the indexes of the running nodes.
func (c *cluster) running() []int {
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
func (c *cluster) Stop(i int) {
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
	srv.Stop()
	<-served
	if err := n.Close(); err != nil {
		c.tb.Errorf("Close(%s): %v", m.id, err)
	}
	m.trans.Close()
	m.trans = nil
}

// Restart starts node i again from its data directory, with a new
// transport at the same raft address and, if it is free, the same gRPC
// address.
func (c *cluster) Restart(i int) { c.restart(i, c.members[i].grpcAddr) }

// RestartNewAddr is Restart on a new gRPC port: the node must register its
// new address for the others to forward to it.
func (c *cluster) RestartNewAddr(i int) { c.restart(i, "127.0.0.1:0") }

func (c *cluster) restart(i int, listen string) {
	c.tb.Helper()
	m := c.members[i]
	if c.node(i) != nil {
		c.tb.Fatalf("Restart(%d): still running", i)
	}
	c.startTransport(m)
	c.startNode(m, listen)
}

// Partition cuts node i's raft links to every other node, both ways. gRPC
// stays up: forwarding may still reach i, which is what a real network
// split between raft ports alone would look like, and the worse case.
func (c *cluster) Partition(i int) {
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
func (c *cluster) Heal() {
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
func (c *cluster) close() {
	for _, i := range c.running() {
		c.Stop(i)
	}
}

// WaitLeader waits until one running node outside any partition leads and
// has applied its barrier, every other such node follows it, and all of
// them know each other's current gRPC address (so forwarding works and no
// registration is still pending). It returns the leader's index.
func (c *cluster) WaitLeader(tb testing.TB) int {
	tb.Helper()
	leader := -1
	eventually(tb, waitTimeout, func() error {
		leader = -1
		var connected []int
		for _, i := range c.running() {
			if !c.members[i].cut {
				connected = append(connected, i)
			}
		}
		for _, i := range connected {
			if c.node(i).IsLeader() {
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
		if !c.node(leader).Ready() {
			return fmt.Errorf("leader %s has not applied its barrier", l.id)
		}
		for _, i := range connected {
			n := c.node(i)
			if _, id := n.Raft().LeaderWithID(); string(id) != l.id {
				return fmt.Errorf("%s follows %q, not %s", n.ID(), id, l.id)
			}
			for _, j := range connected {
				m := c.members[j]
				if reg, ok := n.FSM().Member(m.id); !ok || reg.GetGrpcAddr() != m.grpcAddr {
					return fmt.Errorf("%s does not know %s's gRPC address %s yet", n.ID(), m.id, m.grpcAddr)
				}
			}
		}
		return nil
	})
	return leader
}

// followers returns the running nodes other than leader.
func (c *cluster) followers(leader int) []int {
	var out []int
	for _, i := range c.running() {
		if i != leader {
			out = append(out, i)
		}
	}
	return out
}

// transfer moves leadership to node to and waits for it. A transfer that
// times out (raft gives it one election timeout) is tried again.
func (c *cluster) transfer(tb testing.TB, to int) {
	tb.Helper()
	m := c.members[to]
	deadline := time.Now().Add(waitTimeout)
	for {
		from := c.WaitLeader(tb)
		if from == to {
			return
		}
		err := c.node(from).Raft().LeadershipTransferToServer(raft.ServerID(m.id), m.addr).Error()
		if err == nil && c.WaitLeader(tb) == to {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("leadership did not move to %s: last transfer: %v", m.id, err)
		}
	}
}

// converged waits until every running node has applied the same index
// and has the same state.
func (c *cluster) converged(tb testing.TB) {
	tb.Helper()
	eventually(tb, waitTimeout, func() error {
		nodes := c.running()
		first := c.node(nodes[0])
		hash, idx := first.FSM().StateHashAndIndex()
		for _, i := range nodes[1:] {
			n := c.node(i)
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

// eventually polls f until it returns nil, failing tb with f's last error
// once timeout has passed.
func eventually(tb testing.TB, timeout time.Duration, f func() error) {
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

// testTransport is raft's in-memory transport with two faults to inject,
// to every peer or to one:
//   - dropping the AppendEntries that carry entries (heartbeats still pass,
//     so the sender keeps its leadership and its followers stay put, but
//     nothing new reaches them);
//   - holding back the leader's commit index: entries arrive and are
//     stored, but the follower never learns they are committed, so it
//     applies none of them.
type testTransport struct {
	*raft.InmemTransport

	mu     sync.Mutex
	dropTo map[raft.ServerAddress]bool // "" is every peer
	holdTo map[raft.ServerAddress]bool
}

var errDropped = errors.New("test transport: entries dropped")

// dropEntries starts or stops dropping entries sent to target ("" for
// every peer).
func (t *testTransport) dropEntries(target raft.ServerAddress, on bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dropTo == nil {
		t.dropTo = map[raft.ServerAddress]bool{}
	}
	t.dropTo[target] = on
}

// holdCommit starts or stops hiding the commit index from target ("" for
// every peer).
func (t *testTransport) holdCommit(target raft.ServerAddress, on bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.holdTo == nil {
		t.holdTo = map[raft.ServerAddress]bool{}
	}
	t.holdTo[target] = on
}

// fault applies the faults set for target to args: it returns errDropped,
// or the request to send (a copy when it changes it: raft keeps its own).
func (t *testTransport) fault(target raft.ServerAddress, args *raft.AppendEntriesRequest) (*raft.AppendEntriesRequest, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(args.Entries) > 0 && (t.dropTo[""] || t.dropTo[target]) {
		return nil, errDropped
	}
	if t.holdTo[""] || t.holdTo[target] {
		held := *args
		held.LeaderCommitIndex = 0 // raft's "no commit index in this request"
		return &held, nil
	}
	return args, nil
}

func (t *testTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	args, err := t.fault(target, args)
	if err != nil {
		return err
	}
	return t.InmemTransport.AppendEntries(id, target, args, resp)
}

func (t *testTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	p, err := t.InmemTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	return &testPipeline{AppendPipeline: p, t: t, target: target}, nil
}

type testPipeline struct {
	raft.AppendPipeline
	t      *testTransport
	target raft.ServerAddress
}

func (p *testPipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	args, err := p.t.fault(p.target, args)
	if err != nil {
		return nil, err
	}
	return p.AppendPipeline.AppendEntries(args, resp)
}

var (
	_ raft.WithPreVote = (*testTransport)(nil)
	_ raft.WithClose   = (*testTransport)(nil)
)

// Commands.

func createCmd(path string, data []byte) *raftv1.Command {
	return &raftv1.Command{Op: &raftv1.Command_Create{Create: &paddockv1.CreateRequest{Path: path, Data: data}}}
}

func ephemeralCmd(path string, session uint64) *raftv1.Command {
	return &raftv1.Command{Op: &raftv1.Command_Create{Create: &paddockv1.CreateRequest{
		Path: path, Type: paddockv1.NodeType_NODE_TYPE_EPHEMERAL, SessionId: session,
	}}}
}

func setCmd(path string, data []byte) *raftv1.Command {
	return &raftv1.Command{Op: &raftv1.Command_Set{Set: &paddockv1.SetRequest{Path: path, Data: data}}}
}

// mustPropose proposes cmd on n and fails tb if it does not succeed.
func mustPropose(tb testing.TB, n *node.Node, cmd *raftv1.Command) *fsm.Result {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testProposeTimeout)
	defer cancel()
	res, err := n.Propose(ctx, cmd)
	if err != nil {
		tb.Fatalf("Propose on %s: %v", n.ID(), err)
	}
	return res
}

// mustOpenSession opens a session through n.
func mustOpenSession(tb testing.TB, n *node.Node, timeout time.Duration) uint64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testProposeTimeout)
	defer cancel()
	resp, _, err := n.OpenSession(ctx, timeout)
	if err != nil {
		tb.Fatalf("OpenSession on %s: %v", n.ID(), err)
	}
	if got := time.Duration(resp.GetTimeoutMs()) * time.Millisecond; got != timeout {
		tb.Fatalf("OpenSession(%v) granted %v", timeout, got)
	}
	return resp.GetSessionId()
}

// linearGet is a linearizable read of path on n.
func linearGet(ctx context.Context, n *node.Node, path string) ([]byte, *paddockv1.Stat, error) {
	resp, err := n.Get(ctx, &paddockv1.GetRequest{Path: path})
	return resp.GetData(), resp.GetStat(), err
}

// raftStat reads one of raft's numeric stats.
func raftStat(tb testing.TB, n *node.Node, key string) uint64 {
	tb.Helper()
	v, err := strconv.ParseUint(n.Raft().Stats()[key], 10, 64)
	if err != nil {
		tb.Fatalf("raft stat %s of %s: %v", key, n.ID(), err)
	}
	return v
}

// contentHash digests f's state without its applied index (which every
// new leader's barrier advances) and without the member table (client
// addresses may legitimately change across a restart): the znodes and the
// sessions, as the snapshot stream writes them.
func contentHash(tb testing.TB, f *fsm.FSM) [32]byte {
	tb.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		tb.Fatalf("Snapshot: %v", err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		tb.Fatalf("Persist: %v", err)
	}
	snap.Release()
	r := bufio.NewReader(&sink.buf)
	opts := protodelim.UnmarshalOptions{MaxSize: -1}
	if err := opts.UnmarshalFrom(r, &raftv1.SnapshotHeader{}); err != nil {
		tb.Fatalf("snapshot header: %v", err)
	}
	h := sha256.New()
	for {
		var rec raftv1.SnapshotRecord
		err := opts.UnmarshalFrom(r, &rec)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			tb.Fatalf("snapshot record: %v", err)
		}
		if rec.GetMember() != nil {
			continue
		}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&rec)
		if err != nil {
			tb.Fatal(err)
		}
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// memSink is a raft.SnapshotSink in memory.
type memSink struct{ buf bytes.Buffer }

func (s *memSink) Write(p []byte) (int, error) { return s.buf.Write(p) }
func (s *memSink) Close() error                { return nil }
func (s *memSink) ID() string                  { return "mem" }
func (s *memSink) Cancel() error               { return nil }
