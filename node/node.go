package node

import (
	"context"
	"errors"
	"fmt"
	"net"
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
	// ErrCatchingUp: the node started and has not yet applied what the
	// cluster had committed then, so its state may be far behind (empty,
	// after a restart): it refuses serializable reads and watches from
	// now until it has.
	ErrCatchingUp = errors.New("node: node is catching up")
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
	guard *guard
	// leaderHTTP caches LeaderHTTPAddr's answer (member.go).
	leaderHTTP atomic.Pointer[leaderHTTP]
	// contact tells polls and watches when leader contact is lost
	// (contact.go).
	contact *contact
	// mux owns the raft address when the node listens itself (peer.go);
	// nil with a Config.Transport.
	mux *peerMux
	// internal serves the node-to-node service (internal.go), on mux's
	// gRPC side or on listeners given to ServeInternal.
	internal   *grpc.Server
	internalWG sync.WaitGroup
	waiter     *appliedWaiter
	watch      *hub

	peers        *peerConns
	readIndex    *batcher[struct{}, uint64]                   // leader: commit index + confirmLeadership
	group        *batcher[groupCmd, groupResult]              // leader: group commit (group.go)
	groupStall   atomic.Pointer[chan struct{}]                // tests: a round waits until it is closed
	fwdReadIndex *batcher[struct{}, uint64]                   // follower: ReadIndex on the leader
	fwdReads     *batcher[*raftv1.Query, *raftv1.QueryResult] // follower: reads the leader serves
	sessions     *tracker
	idle         *idleNodes                    // TTL and container znodes
	ws           *webSessions                  // PHP web sessions: locks and idle expiry
	wsBackup     *wsBackup                     // delayed web session writes held for the leader (websession_backup.go)
	holds        *batcher[holdIn, struct{}]    // leader: delayed writes to the backups
	holdStreams  *holdStreams                  // leader: a stream to each backup for holds
	holdStall    atomic.Pointer[chan struct{}] // tests: a hold run waits until it is closed
	noHoldStream atomic.Bool                   // tests: serve hold streams as a version without them
	holdSeq      atomic.Uint64                 // leader: HeldWebSession.seq, across its terms
	lines        *lines                        // election and lock waiters
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

	// caughtUpOnce latches caughtUp: once this node has applied what was
	// committed when it started, it stays caught up (a later lag is a
	// follower's ordinary lag, which serializable reads accept).
	caughtUpOnce atomic.Bool

	closing atomic.Bool
	// closed is closed when Close has finished; halted when the node has
	// shut itself down because its state machine stopped (Halted).
	closed chan struct{}
	halted chan struct{}
	stop   context.CancelFunc
	wg     sync.WaitGroup

	// ops counts calls waiting on a raft apply or verify future. Close
	// lets them finish before it shuts raft down, because raft never
	// answers a future still queued when it stops (hashicorp/raft#498):
	// its waiter would block for good. opsMu orders beginOp against Close.
	opsMu sync.RWMutex
	ops   sync.WaitGroup
	// applySlots holds a token for each command handed to raft and not
	// yet answered (propose.go).
	applySlots chan struct{}
	// ticks bound the waits of writes whose context has no deadline
	// (call.go).
	ticks *coarseTicks
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
	n := &Node{cfg: cfg, log: cfg.Logger, waiter: newAppliedWaiter(), closed: make(chan struct{}), halted: make(chan struct{})}
	n.watch = newHub(cfg.WatchHistory, cfg.WatchHistoryBytes, cfg.WatchSlowLag)
	n.watch.header = n.Header
	n.idle = newIdleNodes(n)
	n.lines = newLines(n)
	n.wsBackup = newWSBackup(n)
	n.fsm = fsm.New(sinks{n.watch, n.idle, n.waiter, n.lines, n.wsBackup}, fsm.WithFeatureLevel(cfg.FeatureLevel),
		fsm.WithWebSessionHook(n.wsBackup.applied))
	n.waiter.fsm = n.fsm
	n.peers = newPeerConns(cfg.DialPeer)
	n.fwd = newForwarder()
	n.holdStreams = newHoldStreams()
	n.applySlots = make(chan struct{}, applySlots)
	n.ticks = newCoarseTicks(cfg.RequestTimeout / 8)
	n.streamsClosed = make(chan struct{})
	n.metrics = newMetrics(n)
	n.metrics.reg.MustRegister(n.lines.wakeups)
	n.internal = newInternalServer(n)

	n.disk, err = openStorage(cfg)
	if err != nil {
		return nil, err
	}
	n.trans = cfg.Transport
	if n.trans == nil {
		n.mux, err = listenPeers(cfg.RaftAddr, cfg.Logger.Named("peer-mux"))
		if err != nil {
			n.disk.close()
			return nil, err
		}
		n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream:  raftStream{n.mux.raft},
			MaxPool: 3,
			Timeout: 10 * time.Second,
			Logger:  cfg.Logger.Named("raft-net"),
		})
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
	rc.MaxAppendEntries = maxAppendEntries
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
	n.group = newBatcher(n.applyGroup, cfg.RequestTimeout)
	n.group.max = groupMax
	n.group.again = func(r groupResult) bool { return r.again }
	n.fwdReadIndex = newBatcher(shared(n.forwardReadIndex), cfg.RequestTimeout)
	n.fwdReads = newBatcher(n.sendReads, cfg.RequestTimeout)
	n.holds = newBatcher(n.sendHolds, cfg.RequestTimeout)
	n.fwdReads.again = (*raftv1.QueryResult).GetDeferred
	n.sessions = newTracker(n)
	n.ws = newWebSessions(n)
	n.kaBatch = newKeepaliveBatcher(n)

	ctx, cancel := context.WithCancel(context.Background())
	n.stop = cancel
	n.contact = newContact()
	n.wg.Add(3)
	go n.watchLeadership(ctx)
	go n.monitorContact(ctx)
	go n.registerLoop(ctx)
	go n.haltOnFatal(ctx)
	if n.mux != nil {
		// Served once raft and the batchers exist: the handlers use them.
		n.serveInternal(n.mux.grpc)
	}
	return n, nil
}

// haltOnFatal shuts the node down when its state machine stops at an
// entry this binary cannot apply: serving on would answer from a state
// that falls ever further behind the cluster's. It is not one of wg's
// loops, because it calls Close, which waits for them.
func (n *Node) haltOnFatal(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-n.fsm.Failed():
	}
	n.log.Error("stopping: this node cannot apply the replicated log", "error", n.fsm.Err())
	n.handOver()
	_ = n.Close()
	close(n.halted)
}

// handOver has another member take over if this node leads, so that the
// cluster need not wait an election timeout after its leader stops. Best
// effort: a transfer that fails or takes longer than a request leaves the
// election to the others.
func (n *Node) handOver() {
	if !n.IsLeader() {
		return
	}
	// Raft refuses new entries during the transfer, and the new leader
	// knows nothing of this one's delayed web session writes: commit
	// them first.
	n.ws.flushStop()
	done := make(chan error, 1)
	go func() { done <- n.raft.LeadershipTransfer().Error() }()
	t := time.NewTimer(n.cfg.RequestTimeout)
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil {
			n.log.Warn("stopping without handing leadership over", "error", err)
		}
	case <-t.C:
		n.log.Warn("stopping without handing leadership over: the transfer is taking too long")
	}
}

// Halted is closed once the node has shut itself down because its state
// machine met an entry it cannot apply; Err then says why. The process
// should exit with that error: a newer binary restarts from the log.
func (n *Node) Halted() <-chan struct{} { return n.halted }

// Err is the error that stopped the node's state machine (matching
// fsm.ErrUpgradeRequired, naming the entry and the upgrade), nil while it
// runs.
func (n *Node) Err() error { return n.fsm.Err() }

// errIfHalted refuses to serve from a state machine that stopped: its
// state no longer follows the cluster's.
func (n *Node) errIfHalted() error {
	if err := n.fsm.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrShuttingDown, err)
	}
	return nil
}

func (n *Node) closeStores() {
	if n.cfg.Transport == nil {
		n.guard.Close() // and the network transport
		n.mux.close()
	} else {
		n.guard.stop() // the caller's transport stays open
	}
	n.disk.close()
}

// Close stops the node: its loops, raft, the transport and the store. A
// second call waits for the first to finish and returns nil.
func (n *Node) Close() error {
	// While the node still proposes (closing refuses new proposals), and
	// before the loops stop (the end of the term drops the table): the
	// delayed web session writes this leader answered are committed, so
	// a graceful stop loses none.
	if !n.closing.Load() && n.ws != nil {
		n.ws.flushStop()
	}
	if !n.closing.CompareAndSwap(false, true) {
		<-n.closed
		return nil
	}
	defer close(n.closed)
	n.CloseStreams()
	if n.stop != nil {
		n.stop()
	}
	n.stopInternal()
	n.drainOps()
	err := n.raft.Shutdown().Error()
	n.wg.Wait()
	n.fwd.close()
	n.holdStreams.close()
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

// Ready reports whether the node knows a leader and has caught up since
// it started (caughtUp): a leader once it has applied its barrier, a
// follower once it has applied the first commit index the leader sent it.
// A restarted node that has not replayed its log is not ready, however
// soon it hears from the leader; nor is a node whose state machine stopped.
func (n *Node) Ready() bool {
	if n.fsm.Err() != nil {
		return false
	}
	if n.IsLeader() {
		return n.leaderBarrierApplied()
	}
	_, id := n.raft.LeaderWithID()
	return id != "" && n.caughtUp()
}

// leaderBarrierApplied reports whether this node leads and has applied
// its term's barrier, so its state holds everything ever committed.
func (n *Node) leaderBarrierApplied() bool {
	ch := n.readyChan()
	if ch == nil {
		return false
	}
	select {
	case <-ch:
		n.caughtUpOnce.Store(true)
		return true
	default:
		return false
	}
}

// caughtUp reports whether this node has applied at least what the
// cluster had committed when it started: the first leader commit index
// its transport received (guard.startCommit), or everything, as a leader
// past its barrier. Until then its state may be anything from empty to
// nearly current, so serializable reads and watches from now are
// refused with ErrCatchingUp. Once true it stays true.
//
// The learned index may be a leader's no-op entry, which never reaches
// the fsm: every leader proposes its barrier command right after it, so
// the applied index passes it as soon as that commits.
func (n *Node) caughtUp() bool {
	if n.caughtUpOnce.Load() {
		return true
	}
	if c := n.guard.startCommit.Load(); (c > 0 && n.fsm.AppliedIndex() >= c) || n.leaderBarrierApplied() {
		n.caughtUpOnce.Store(true)
		return true
	}
	return false
}

// checkCaughtUp is caughtUp as an error for the caller.
func (n *Node) checkCaughtUp() error {
	if n.caughtUp() {
		return nil
	}
	if c := n.guard.startCommit.Load(); c > 0 {
		return fmt.Errorf("%w: applied %d of the %d committed when it started; retry, or use another node", ErrCatchingUp, n.fsm.AppliedIndex(), c)
	}
	return fmt.Errorf("%w: it has not heard from the leader since it started; retry, or use another node", ErrCatchingUp)
}

// ServeInternal serves the node-to-node service on lis until Close. A
// node that listens on its raft address serves it there already; a node
// given a Config.Transport (tests, with raft in memory) serves it on a
// listener its peers' Config.DialPeer reaches. Never serve it on a client
// address: it takes raw commands.
func (n *Node) ServeInternal(lis net.Listener) {
	if n.closing.Load() {
		lis.Close()
		return
	}
	n.serveInternal(lis)
}

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
		n.ws.stopTerm() // waiters fail over at once
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
				n.ws.startTerm()
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
	// The delayed writes of the leader before, held here as its backup,
	// that its log lacks: committed before any web session call is
	// served.
	if err := n.takeOver(ctx); err != nil {
		return
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
		sets:  []timerSet{n.sessions.d, n.idle.d, n.ws.d},
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
