package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"

	"github.com/paddock/paddock/fsm"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// Errors of the node layer. The rpc package maps them to gRPC codes.
var (
	ErrNoLeader     = errors.New("node: no leader")
	ErrNotLeader    = errors.New("node: not the leader")
	ErrShuttingDown = errors.New("node: shutting down")
	// ErrUnknownOutcome means leadership was lost after a write was
	// proposed: it may or may not have been applied.
	ErrUnknownOutcome = errors.New("node: leadership lost, write outcome unknown")
)

// Node is one Paddock server.
type Node struct {
	cfg   Config
	log   hclog.Logger
	fsm   *fsm.FSM
	raft  *raft.Raft
	disk  *storage
	trans raft.Transport
	// guard wraps the raft transport (transport.go).
	guard  *guard
	waiter *appliedWaiter
	watch  *hub

	peers        *peerConns
	readIndex    *batcher[struct{}, uint64]                   // leader: commit index + confirmLeadership
	fwdReadIndex *batcher[struct{}, uint64]                   // follower: ReadIndex on the leader
	fwdReads     *batcher[*raftv1.Query, *raftv1.QueryResult] // follower: reads the leader serves
	sessions     *tracker
	idle         *idleNodes // TTL and container znodes
	kaBatch      *keepaliveBatcher
	fwd          *forwarder // follower: writes to the leader
	metrics      *metrics

	// streamsClosed is closed by CloseStreams: the leader's propose
	// streams end once they have answered what they carry.
	streamsClosed    chan struct{}
	closeStreamsOnce sync.Once

	// leaderReady is closed once the current leadership term's barrier has
	// been applied; nil while not leader.
	readyMu     sync.Mutex
	leaderReady chan struct{}

	closing atomic.Bool
	stop    context.CancelFunc
	wg      sync.WaitGroup

	// ops counts calls waiting on a raft apply or verify future. Close
	// lets them finish before it shuts raft down, because raft never
	// answers a future still queued when it stops (hashicorp/raft#498):
	// its waiter would block for good. opsMu orders beginOp against Close.
	opsMu sync.RWMutex
	ops   sync.WaitGroup
}

// New starts a node. It returns once raft is running; leadership and
// registration proceed in the background.
func New(c Config) (*Node, error) {
	cfg, err := c.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("node: data dir: %w", err)
	}
	n := &Node{cfg: cfg, log: cfg.Logger, waiter: newAppliedWaiter()}
	n.watch = newHub(cfg.WatchHistory, cfg.WatchHistoryBytes, cfg.WatchSlowLag)
	n.watch.header = n.Header
	n.idle = newIdleNodes(n)
	n.fsm = fsm.New(sinks{n.watch, n.idle, n.waiter})
	n.peers = newPeerConns()
	n.fwd = newForwarder()
	n.streamsClosed = make(chan struct{})
	n.metrics = newMetrics(n)

	n.disk, err = openStorage(cfg)
	if err != nil {
		return nil, err
	}
	n.trans = cfg.Transport
	if n.trans == nil {
		n.trans, err = raft.NewTCPTransportWithLogger(cfg.RaftAddr, nil, 3, 10*time.Second, cfg.Logger.Named("raft-net"))
		if err != nil {
			n.disk.close()
			return nil, fmt.Errorf("node: raft transport: %w", err)
		}
	}
	n.guard, n.trans = newGuard(n.trans)

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = cfg.Logger.Named("raft")
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.HeartbeatTimeout / 2
	rc.CommitTimeout = 5 * time.Millisecond
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	rc.MaxAppendEntries = 512
	rc.BatchApplyCh = true

	hasState, err := raft.HasExistingState(n.disk.logs, n.disk.store, n.disk.snaps)
	if err != nil {
		n.closeStores()
		return nil, err
	}
	n.raft, err = raft.NewRaft(rc, &timedFSM{FSM: n.fsm, m: n.metrics}, n.disk.logs, n.disk.store, n.disk.snaps, n.trans)
	if err != nil {
		n.closeStores()
		return nil, fmt.Errorf("node: start raft: %w", err)
	}
	if !hasState && len(cfg.Bootstrap) > 0 {
		// Every node of a new cluster bootstraps the same configuration;
		// raft makes that safe. ErrCantBootstrap means state appeared.
		err := n.raft.BootstrapCluster(raft.Configuration{Servers: cfg.Bootstrap}).Error()
		if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			n.Close()
			return nil, fmt.Errorf("node: bootstrap: %w", err)
		}
	}

	n.readIndex = newBatcher(shared(n.leaderReadIndex), cfg.RequestTimeout)
	n.fwdReadIndex = newBatcher(shared(n.forwardReadIndex), cfg.RequestTimeout)
	n.fwdReads = newBatcher(n.sendReads, cfg.RequestTimeout)
	n.sessions = newTracker(n)
	n.kaBatch = newKeepaliveBatcher(n)

	ctx, cancel := context.WithCancel(context.Background())
	n.stop = cancel
	n.wg.Add(2)
	go n.watchLeadership(ctx)
	go n.registerLoop(ctx)
	return n, nil
}

func (n *Node) closeStores() {
	if n.cfg.Transport == nil {
		n.guard.Close() // and the TCP transport
	} else {
		n.guard.stop() // the caller's transport stays open
	}
	n.disk.close()
}

// Close stops the node: its loops, raft, the transport and the store.
func (n *Node) Close() error {
	if !n.closing.CompareAndSwap(false, true) {
		return nil
	}
	n.CloseStreams()
	if n.stop != nil {
		n.stop()
	}
	n.drainOps()
	err := n.raft.Shutdown().Error()
	n.wg.Wait()
	n.fwd.close()
	n.peers.close()
	n.closeStores()
	return err
}

// CloseStreams ends the streams this node serves that would never end by
// themselves, so that a server's graceful stop need not wait for them:
// every watch and poll ends with SHUTTING_DOWN (resume elsewhere) and new
// ones are refused, and each follower's propose stream ends, with
// Unavailable, once the writes it carried have been answered (new writes
// on it are refused with Unavailable, nothing appended). Close does it too.
func (n *Node) CloseStreams() {
	n.watch.close()
	n.closeStreamsOnce.Do(func() { close(n.streamsClosed) })
}

// beginOp registers a call about to wait on a raft future; it reports
// false once the node is closing. The caller calls n.ops.Done when the
// future has answered.
func (n *Node) beginOp() bool {
	n.opsMu.RLock()
	defer n.opsMu.RUnlock()
	if n.closing.Load() {
		return false
	}
	n.ops.Add(1)
	return true
}

// drainOps waits, while raft still runs, for the futures of calls begun
// before Close. Raft answers each soon: applied, or refused once this node
// is not (or no longer) the leader.
func (n *Node) drainOps() {
	n.opsMu.Lock() // no beginOp is between its check and its Add
	n.opsMu.Unlock()
	done := make(chan struct{})
	go func() {
		n.ops.Wait()
		close(done)
	}()
	t := time.NewTimer(n.cfg.RequestTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		n.log.Warn("shutting down with raft requests still pending")
	}
}

// ID is the node's id.
func (n *Node) ID() string { return n.cfg.ID }

// FSM is the node's state machine. Reads of it are as fresh as the node's
// applied index: linearizable reads go through Get, List and the like.
func (n *Node) FSM() *fsm.FSM { return n.fsm }

// Raft exposes the raft instance (tests, status).
func (n *Node) Raft() *raft.Raft { return n.raft }

// Config returns the node's effective configuration.
func (n *Node) Config() Config { return n.cfg }

// Header is the response header for a result at zxid.
func (n *Node) Header(zxid uint64) *paddockv1.ResponseHeader {
	return &paddockv1.ResponseHeader{NodeId: n.cfg.ID, Term: n.raft.CurrentTerm(), Zxid: zxid}
}

// ReadHeader is the response header for a read: the applied index.
func (n *Node) ReadHeader() *paddockv1.ResponseHeader { return n.Header(n.fsm.AppliedIndex()) }

// IsLeader reports whether this node is the leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Ready reports whether the node knows a leader (and, if it is the
// leader, has applied its barrier).
func (n *Node) Ready() bool {
	if n.IsLeader() {
		ch := n.readyChan()
		if ch == nil {
			return false
		}
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	_, id := n.raft.LeaderWithID()
	return id != ""
}

// RegisterInternal registers the node-to-node service on s.
func (n *Node) RegisterInternal(s *grpc.Server) { registerInternal(s, n) }

func (n *Node) readyChan() chan struct{} {
	n.readyMu.Lock()
	defer n.readyMu.Unlock()
	return n.leaderReady
}

// watchLeadership runs leader-only work for each term this node leads.
func (n *Node) watchLeadership(ctx context.Context) {
	defer n.wg.Done()
	var cur *leaderTerm
	stopTerm := func() {
		if cur != nil {
			cur.cancel()
			<-cur.done
			cur = nil
		}
		n.readyMu.Lock()
		n.leaderReady = nil
		n.readyMu.Unlock()
	}
	defer stopTerm()
	for {
		select {
		case <-ctx.Done():
			return
		case isLeader := <-n.raft.LeaderCh():
			stopTerm()
			if isLeader {
				cur = n.startTerm(ctx)
			}
		}
	}
}

// leaderTerm is the leader-only work of one term.
type leaderTerm struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (n *Node) startTerm(ctx context.Context) *leaderTerm {
	ready := make(chan struct{})
	n.readyMu.Lock()
	n.leaderReady = ready
	n.readyMu.Unlock()
	tctx, cancel := context.WithCancel(ctx)
	t := &leaderTerm{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(t.done)
		n.leadTerm(tctx, ready)
	}()
	return t
}

// leadTerm is the leader's work for one term: apply a barrier entry of its
// own term (so reads and session clocks start from an up-to-date state),
// then run the leader's deadlines (sessions, TTL and container nodes)
// until leadership ends.
func (n *Node) leadTerm(ctx context.Context, ready chan struct{}) {
	for {
		_, err := n.proposeLocal(ctx, barrierCommand())
		if err == nil {
			break
		}
		if ctx.Err() != nil || n.raft.State() != raft.Leader {
			return
		}
		n.log.Warn("barrier failed, retrying", "error", err)
		if !sleepCtx(ctx, 50*time.Millisecond) {
			return
		}
	}
	close(ready)
	n.log.Info("leading", "term", n.raft.CurrentTerm())
	n.leaderTimers().run(ctx)
}

// leaderTimers is every kind of leader-side deadline, on one loop. It
// ticks at least ten times per shortest session timeout.
func (n *Node) leaderTimers() *leaderTimers {
	return &leaderTimers{
		every: min(100*time.Millisecond, n.cfg.MinSessionTimeout/10),
		sets:  []timerSet{n.sessions.d, n.idle.d},
		after: []func(context.Context, time.Time){n.sessions.checkpoint},
	}
}

// sleepCtx waits d or until ctx ends; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Snapshot asks raft for a snapshot now.
func (n *Node) Snapshot() error { return n.raft.Snapshot().Error() }
