package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/paddock/paddock/fsm"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// read serves the read q with options opts: from this node's state, or,
// when this follower lags, from the leader's (doc.go, Follower reads).
// Serializable reads are always local. A read changes nothing, so when
// leadership moves under it (ErrNotLeader) or no leader is known
// (ErrNoLeader) it is tried again until ctx ends, as Propose does.
func (n *Node) read(ctx context.Context, opts *paddockv1.ReadOptions, q *raftv1.ReadRequest) (*raftv1.ReadResponse, error) {
	if err := checkQuery(q); err != nil {
		return nil, err
	}
	ctx, cancel := n.withTimeout(ctx)
	defer cancel()
	if !linearizable(opts) {
		return n.serveRead(ctx, opts, q)
	}
	for {
		resp, err := n.readOnce(ctx, opts, q)
		if (errors.Is(err, ErrNotLeader) || errors.Is(err, ErrNoLeader)) && sleepCtx(ctx, 20*time.Millisecond) {
			continue
		}
		return resp, err
	}
}

func linearizable(opts *paddockv1.ReadOptions) bool {
	return opts.GetConsistency() != paddockv1.ReadConsistency_READ_CONSISTENCY_SERIALIZABLE
}

// readOnce is one attempt at a linearizable read. A follower that knows
// of entries (its own, or the client's min_zxid) beyond its commit index
// would learn their commit only with the leader's next append: it has the
// leader serve the read. Otherwise it asks for a read index, and has the
// leader serve the read at that index if it is beyond its commit index.
func (n *Node) readOnce(ctx context.Context, opts *paddockv1.ReadOptions, q *raftv1.ReadRequest) (*raftv1.ReadResponse, error) {
	if n.IsLeader() {
		return n.serveRead(ctx, opts, q)
	}
	commit := n.raft.CommitIndex()
	if n.raft.LastIndex() > commit || opts.GetMinZxid() > commit {
		return n.forwardRead(ctx, opts, q)
	}
	if err := n.waitMinZxid(ctx, opts); err != nil {
		return nil, err
	}
	idx, err := n.fwdReads.do(ctx)
	if err != nil {
		return nil, err
	}
	if idx > n.raft.CommitIndex() {
		return n.forwardRead(ctx, atIndex(idx), q)
	}
	if err := n.waiter.wait(ctx, idx); err != nil {
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
func (n *Node) serveRead(ctx context.Context, opts *paddockv1.ReadOptions, q *raftv1.ReadRequest) (*raftv1.ReadResponse, error) {
	if err := n.waitMinZxid(ctx, opts); err != nil {
		return nil, err
	}
	if linearizable(opts) {
		idx, err := n.confirmedReadIndex(ctx)
		if err != nil {
			return nil, err
		}
		if err := n.waiter.wait(ctx, idx); err != nil {
			return nil, err
		}
	}
	return n.query(q)
}

func (n *Node) waitMinZxid(ctx context.Context, opts *paddockv1.ReadOptions) error {
	if z := opts.GetMinZxid(); z > 0 {
		if err := n.waiter.wait(ctx, z); err != nil {
			return fmt.Errorf("node: waiting for min_zxid %d: %w", z, err)
		}
	}
	return nil
}

// forwardRead has the leader serve q with opts (InternalService.Read).
func (n *Node) forwardRead(ctx context.Context, opts *paddockv1.ReadOptions, q *raftv1.ReadRequest) (*raftv1.ReadResponse, error) {
	n.metrics.forwarded.WithLabelValues(fwdRead).Inc()
	conn, err := n.leaderConn(ctx)
	if err != nil {
		return nil, err
	}
	fq := &raftv1.ReadRequest{Read: opts, Query: q.GetQuery()}
	resp, err := raftv1.NewInternalServiceClient(conn).Read(ctx, fq)
	if err != nil {
		return nil, fromPeer(err)
	}
	if err := fsm.DecodeError(resp.GetErrorCode(), resp.GetErrorMessage(), -1); err != nil {
		return nil, err
	}
	return resp, nil
}

// readForPeer serves a read a follower forwarded, from this node's state
// (see serveRead). A state machine error is the response's, not err.
func (n *Node) readForPeer(ctx context.Context, q *raftv1.ReadRequest) (*raftv1.ReadResponse, error) {
	ctx, cancel := n.withTimeout(ctx)
	defer cancel()
	resp, err := n.serveRead(ctx, q.GetRead(), q)
	if code := fsm.ErrorCode(err); code != raftv1.ErrorCode_ERROR_CODE_UNSPECIFIED {
		return &raftv1.ReadResponse{ErrorCode: code, ErrorMessage: err.Error()}, nil
	}
	return resp, err
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

// leaderReadIndex is one coalesced round on the leader: the commit index,
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
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrNotLeader, err)
	}
	return idx, nil
}

// forwardReadIndex is one coalesced round on a follower.
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
	return n.reads.do(ctx)
}

// coalescer shares one run of fn among every caller waiting when it
// starts. A caller that arrives while a run is under way waits for the
// next run, so every result was computed after its caller arrived.
type coalescer struct {
	fn      func(context.Context) (uint64, error)
	timeout time.Duration // bounds one run

	mu      sync.Mutex
	waiting []chan coalesced
	running bool
}

type coalesced struct {
	idx uint64
	err error
}

func newCoalescer(fn func(context.Context) (uint64, error), timeout time.Duration) *coalescer {
	return &coalescer{fn: fn, timeout: timeout}
}

func (c *coalescer) do(ctx context.Context) (uint64, error) {
	ch := make(chan coalesced, 1)
	c.mu.Lock()
	c.waiting = append(c.waiting, ch)
	if !c.running {
		c.running = true
		go c.loop()
	}
	c.mu.Unlock()
	select {
	case r := <-ch:
		return r.idx, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// loop runs rounds while callers wait. A round belongs to no one caller,
// so it has its own deadline.
func (c *coalescer) loop() {
	for {
		c.mu.Lock()
		batch := c.waiting
		c.waiting = nil
		if len(batch) == 0 {
			c.running = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		idx, err := c.fn(ctx)
		cancel()
		for _, ch := range batch {
			ch <- coalesced{idx, err}
		}
	}
}

// appliedWaiter tracks the state machine's applied index and wakes readers
// waiting for one. It is the fsm's Sink.
type appliedWaiter struct {
	mu    sync.Mutex
	index uint64
	ch    chan struct{} // closed and replaced when index advances
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
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
