package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/paddock/paddock/fsm"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// read serves the read q with options opts: from this node's state, or,
// when this follower lags, from the leader's (doc.go, Follower reads).
// Serializable reads are always local, and so, with
// Config.UnsafeLocalReads, are linearizable ones. A read changes nothing,
// so when leadership moves under it (ErrNotLeader) or no leader is known
// (ErrNoLeader) it is tried again until ctx ends, as Propose does.
func (n *Node) read(ctx context.Context, opts *paddockv1.ReadOptions, q *raftv1.Query) (*raftv1.QueryResult, error) {
	if err := checkQuery(q); err != nil {
		return nil, err
	}
	if n.cfg.UnsafeLocalReads && linearizable(opts) {
		// Deliberately broken (robustness tests only): no read index, no
		// forwarding, possibly stale.
		opts = &paddockv1.ReadOptions{Consistency: paddockv1.ReadConsistency_READ_CONSISTENCY_SERIALIZABLE, MinZxid: opts.GetMinZxid()}
	}
	if !linearizable(opts) {
		// A node that has not caught up since it started could serve an
		// empty tree: ZooKeeper's followers, too, serve nothing until
		// they have synced with the leader.
		if err := n.checkCaughtUp(); err != nil {
			return nil, err
		}
		if opts.GetMinZxid() == 0 {
			// Nothing to wait for, so no deadline to set: a context per
			// read (and its timer) would be most of its allocations.
			return n.serveRead(ctx, opts, q)
		}
	}
	ctx, cancel := n.withTimeout(ctx)
	defer cancel()
	if !linearizable(opts) {
		return n.serveRead(ctx, opts, q)
	}
	for {
		r, err := n.readOnce(ctx, opts, q)
		if (errors.Is(err, ErrNotLeader) || errors.Is(err, ErrNoLeader)) && sleepCtx(ctx, 20*time.Millisecond) {
			continue
		}
		return r, err
	}
}

func linearizable(opts *paddockv1.ReadOptions) bool {
	return opts.GetConsistency() != paddockv1.ReadConsistency_READ_CONSISTENCY_SERIALIZABLE
}

// errBeyondLog: the node a read was forwarded to does not have its
// min_zxid (it is not the leader, or the zxid was never written).
var errBeyondLog = fmt.Errorf("%w: min_zxid beyond the serving node's log", ErrNotLeader)

// readOnce is one attempt at a linearizable read. A follower that knows
// of entries (its own, or the client's min_zxid) beyond its commit index
// would learn their commit only with the leader's next append: it has the
// leader serve the read. Otherwise it asks for a read index, and has the
// leader serve the read at that index if it is beyond its commit index.
func (n *Node) readOnce(ctx context.Context, opts *paddockv1.ReadOptions, q *raftv1.Query) (*raftv1.QueryResult, error) {
	if n.IsLeader() {
		return n.serveRead(ctx, opts, q)
	}
	commit := n.raft.CommitIndex()
	if n.raft.LastIndex() > commit || opts.GetMinZxid() > commit {
		r, err := n.forwardRead(ctx, opts, q)
		if !errors.Is(err, errBeyondLog) {
			return r, err
		}
		// Wait for min_zxid here then, as a caught-up follower does
		// (an invented one until ctx ends).
	}
	if err := n.waitMinZxid(ctx, opts); err != nil {
		return nil, err
	}
	idx, err := n.fwdReadIndex.do(ctx, struct{}{})
	if err != nil {
		return nil, err
	}
	if idx > n.raft.CommitIndex() {
		return n.forwardRead(ctx, atIndex(idx), q)
	}
	if err := n.waiter.wait(ctx, idx); err != nil {
		return nil, err
	}
	if err := n.errIfHalted(); err != nil {
		return nil, err
	}
	return n.query(q)
}

// atIndex are the options of a read whose read index is idx: any node's
// state at or past idx serves it linearizably, so it needs no other check.
func atIndex(idx uint64) *paddockv1.ReadOptions {
	return &paddockv1.ReadOptions{Consistency: paddockv1.ReadConsistency_READ_CONSISTENCY_SERIALIZABLE, MinZxid: idx}
}

// serveRead serves q from this node's state, never forwarding: a
// linearizable read only on the leader, with a read index of its own.
func (n *Node) serveRead(ctx context.Context, opts *paddockv1.ReadOptions, q *raftv1.Query) (*raftv1.QueryResult, error) {
	if err := n.waitMinZxid(ctx, opts); err != nil {
		return nil, err
	}
	if linearizable(opts) {
		if err := n.waitReadIndex(ctx); err != nil {
			return nil, err
		}
	}
	// Checked last: the waits above may end because the state machine
	// stopped short of the index they wait for.
	if err := n.errIfHalted(); err != nil {
		return nil, err
	}
	return n.query(q)
}

// waitReadIndex waits, on the leader, until this node has applied a read
// index it confirmed after the call began.
func (n *Node) waitReadIndex(ctx context.Context) error {
	idx, err := n.confirmedReadIndex(ctx)
	if err != nil {
		return err
	}
	return n.waiter.wait(ctx, idx)
}

func (n *Node) waitMinZxid(ctx context.Context, opts *paddockv1.ReadOptions) error {
	if z := opts.GetMinZxid(); z > 0 {
		if err := n.waiter.wait(ctx, z); err != nil {
			return fmt.Errorf("node: waiting for min_zxid %d: %w", z, err)
		}
	}
	return nil
}

// forwardRead has the leader serve q with opts, in the next batch of
// forwarded reads.
func (n *Node) forwardRead(ctx context.Context, opts *paddockv1.ReadOptions, q *raftv1.Query) (*raftv1.QueryResult, error) {
	n.metrics.forwarded.WithLabelValues(fwdRead).Inc()
	r, err := n.fwdReads.do(ctx, &raftv1.Query{Read: opts, Query: q.GetQuery()})
	switch {
	case err != nil:
		return nil, err
	case r.GetBeyondLog():
		return nil, errBeyondLog
	}
	if err := fsm.DecodeError(r.GetErrorCode(), r.GetErrorMessage(), -1); err != nil {
		return nil, err
	}
	return r, nil
}

// sendReads is one batch of forwarded reads (InternalService.Read). The
// leader may defer some of them, to keep its response under the message
// limit: fwdReads sends those again in its next run.
func (n *Node) sendReads(ctx context.Context, qs []*raftv1.Query) ([]*raftv1.QueryResult, error) {
	conn, err := n.leaderConn(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := raftv1.NewInternalServiceClient(conn).Read(ctx, &raftv1.ReadRequest{Queries: qs, MayDefer: true})
	if err != nil {
		return nil, fromPeer(err)
	}
	if got := len(resp.GetResults()); got != len(qs) {
		return nil, fmt.Errorf("node: leader answered %d reads of %d", got, len(qs))
	}
	return resp.GetResults(), nil
}

// readsForPeer serves a batch of reads a follower forwarded, from this
// node's state: one read index for all the linearizable ones (they all
// arrived before it is taken), then each once its min_zxid is applied. A
// query whose min_zxid this node's log does not reach gets beyond_log
// rather than holding up the batch; a state machine error is the query's
// result, not err.
func (n *Node) readsForPeer(ctx context.Context, qs []*raftv1.Query) ([]*raftv1.QueryResult, error) {
	ctx, cancel := n.withTimeout(ctx)
	defer cancel()
	if err := n.errIfHalted(); err != nil {
		return nil, err
	}
	if slices.ContainsFunc(qs, func(q *raftv1.Query) bool { return linearizable(q.GetRead()) }) {
		if err := n.waitReadIndex(ctx); err != nil {
			return nil, err
		}
	}
	last := n.raft.LastIndex()
	out := make([]*raftv1.QueryResult, len(qs))
	for i, q := range qs {
		if q.GetRead().GetMinZxid() > last {
			out[i] = &raftv1.QueryResult{BeyondLog: true}
			continue
		}
		if err := n.waitMinZxid(ctx, q.GetRead()); err != nil {
			return nil, err
		}
		if err := n.errIfHalted(); err != nil {
			return nil, err
		}
		r, err := n.query(q)
		if code := fsm.ErrorCode(err); code != raftv1.ErrorCode_ERROR_CODE_UNSPECIFIED {
			r = &raftv1.QueryResult{ErrorCode: code, ErrorMessage: err.Error()}
		} else if err != nil {
			return nil, err
		}
		out[i] = r
	}
	return out, nil
}

// deferOverflow replaces by deferred markers the results that do not fit
// in one ReadResponse of at most MaxMessageSize with those before them,
// the first excepted: its sender sends those again. Only whole results
// are sent, so a read whose answer fits alone is always served, and
// served first once it is the oldest its sender has waiting.
func deferOverflow(out []*raftv1.QueryResult) {
	marker := framedSize(&raftv1.QueryResult{Deferred: true})
	budget := MaxMessageSize - len(out)*marker // room for every marker
	size := 0
	for i, r := range out {
		s := framedSize(r)
		if i > 0 && size+s > budget {
			out[i] = &raftv1.QueryResult{Deferred: true}
			continue
		}
		size += s
	}
}

// awaitReady waits for this leader's barrier.
func (n *Node) awaitReady(ctx context.Context) error {
	ch := n.readyChan()
	if ch == nil {
		return ErrNotLeader
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// leaderReadIndex is one shared round on the leader: the commit index,
// taken before a quorum confirms this node still leads.
func (n *Node) leaderReadIndex(ctx context.Context) (uint64, error) {
	if n.raft.State() != raft.Leader {
		return 0, ErrNotLeader
	}
	if !n.beginOp() {
		return 0, ErrShuttingDown
	}
	defer n.ops.Done()
	idx := n.raft.CommitIndex()
	if err := n.confirmLeadership(ctx); err != nil {
		return 0, err
	}
	return idx, nil
}

// forwardReadIndex is one shared round on a follower.
func (n *Node) forwardReadIndex(ctx context.Context) (uint64, error) {
	n.metrics.forwarded.WithLabelValues(fwdReadIndex).Inc()
	conn, err := n.leaderConn(ctx)
	if err != nil {
		return 0, err
	}
	resp, err := raftv1.NewInternalServiceClient(conn).ReadIndex(ctx, &raftv1.ReadIndexRequest{})
	if err != nil {
		return 0, fromPeer(err)
	}
	return resp.GetIndex(), nil
}

// confirmedReadIndex returns a read index this node confirms as the
// leader: the answer to a follower's ReadIndex, and what the leader's own
// linearizable reads wait for.
func (n *Node) confirmedReadIndex(ctx context.Context) (uint64, error) {
	if !n.IsLeader() {
		return 0, ErrNotLeader
	}
	if err := n.awaitReady(ctx); err != nil {
		return 0, err
	}
	return n.readIndex.do(ctx, struct{}{})
}

// appliedWaiter tracks the state machine's applied index and wakes readers
// waiting for one. It is the fsm's Sink. A state machine that stops
// (fsm.Failed) never reaches the indexes past the entry it stopped at, so
// it also ends every wait that is not over yet.
type appliedWaiter struct {
	mu    sync.Mutex
	index uint64
	ch    chan struct{} // closed and replaced when index advances

	fsm *fsm.FSM // set by New before any wait
}

var _ fsm.Sink = (*appliedWaiter)(nil)

func newAppliedWaiter() *appliedWaiter { return &appliedWaiter{ch: make(chan struct{})} }

func (w *appliedWaiter) advance(index uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if index <= w.index {
		return
	}
	w.index = index
	close(w.ch)
	w.ch = make(chan struct{})
}

// Applied implements fsm.Sink.
func (w *appliedWaiter) Applied(index uint64, _ []fsm.Event) { w.advance(index) }

// Restored implements fsm.Sink.
func (w *appliedWaiter) Restored(index uint64) { w.advance(index) }

func (w *appliedWaiter) wait(ctx context.Context, index uint64) error {
	for {
		w.mu.Lock()
		if w.index >= index {
			w.mu.Unlock()
			return nil
		}
		ch := w.ch
		w.mu.Unlock()
		select {
		case <-ch:
		case <-w.fsm.Failed():
			return fmt.Errorf("%w: %w", ErrShuttingDown, w.fsm.Err())
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
