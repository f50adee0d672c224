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

// WaitRead blocks until a read with opts may be served from the local
// state: min_zxid applied, and for linearizable reads the read index.
func (n *Node) WaitRead(ctx context.Context, opts *paddockv1.ReadOptions) error {
	ctx, cancel := n.withTimeout(ctx)
	defer cancel()
	if z := opts.GetMinZxid(); z > 0 {
		if err := n.waiter.wait(ctx, z); err != nil {
			return fmt.Errorf("node: waiting for min_zxid %d: %w", z, err)
		}
	}
	if opts.GetConsistency() == paddockv1.ReadConsistency_READ_CONSISTENCY_SERIALIZABLE {
		return nil
	}
	idx, err := n.readIndex(ctx)
	if err != nil {
		return err
	}
	return n.waiter.wait(ctx, idx)
}

// readIndex returns an index whose application makes a local read
// linearizable. Asking for a read index changes nothing, so when
// leadership moves under the request (ErrNotLeader) or no leader is known
// (ErrNoLeader) it asks again until ctx ends, as Propose does.
func (n *Node) readIndex(ctx context.Context) (uint64, error) {
	for {
		idx, err := n.readIndexOnce(ctx)
		if (errors.Is(err, ErrNotLeader) || errors.Is(err, ErrNoLeader)) && sleepCtx(ctx, 20*time.Millisecond) {
			continue
		}
		return idx, err
	}
}

// readIndexOnce asks the leader (this node, or over gRPC) once.
func (n *Node) readIndexOnce(ctx context.Context) (uint64, error) {
	if n.IsLeader() {
		if err := n.awaitReady(ctx); err != nil {
			return 0, err
		}
		return n.reads.do(ctx)
	}
	return n.fwdReads.do(ctx)
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

// ReadIndexForPeer serves a follower's ReadIndex.
func (n *Node) ReadIndexForPeer(ctx context.Context) (uint64, error) {
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
