package node

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// call is one Propose's wait: the caller's context and, when that has no
// deadline, the end Propose gives the call (RequestTimeout after its
// start). A context derived with that deadline would cost a context and
// a timer per write; a call makes one only for the slow paths that need a
// context (a retry's sleep, the wait for a leader, a unary forward), and
// its common waits (wait) check their end at the node's coarse ticks.
type call struct {
	n   *Node
	ctx context.Context // the caller's
	end time.Time       // zero: ctx alone bounds the call

	derived context.Context // ctx with end as its deadline, once needed
	cancel  context.CancelFunc
}

// newCall is a call bounded by ctx, or by RequestTimeout if ctx has no
// deadline.
func (n *Node) newCall(ctx context.Context) call {
	c := call{n: n, ctx: ctx}
	if _, ok := ctx.Deadline(); !ok {
		c.end = time.Now().Add(n.cfg.RequestTimeout)
	}
	return c
}

// context returns a context that ends when the call does.
func (c *call) context() context.Context {
	if c.end.IsZero() {
		return c.ctx
	}
	if c.derived == nil {
		c.derived, c.cancel = context.WithDeadline(c.ctx, c.end)
	}
	return c.derived
}

// release frees what context made; the call is over.
func (c *call) release() {
	if c.cancel != nil {
		c.cancel()
	}
}

// wait receives from ch until the call ends; then it returns the
// context's error, context.DeadlineExceeded at the call's own end.
func wait[T any](c *call, ch <-chan T) (T, error) {
	var zero T
	if c.end.IsZero() || c.derived != nil {
		ctx := c.context()
		select {
		case v := <-ch:
			return v, nil
		case <-ctx.Done():
			return zero, ctx.Err()
		}
	}
	for {
		select {
		case v := <-ch:
			return v, nil
		case <-c.ctx.Done():
			return zero, c.ctx.Err()
		case <-c.n.ticks.next():
			if !time.Now().Before(c.end) {
				return zero, context.DeadlineExceeded
			}
		}
	}
}

// coarseTicks wakes the waits of calls with no deadline of their own, so
// they can check their end: one timer for them all, started by the first
// wait after a tick, so none runs while nothing waits. A call ends at
// most one period after its end.
type coarseTicks struct {
	period time.Duration
	mu     sync.Mutex
	cur    atomic.Pointer[chan struct{}] // closed at the next tick
}

func newCoarseTicks(period time.Duration) *coarseTicks {
	return &coarseTicks{period: max(period, time.Millisecond)}
}

// next returns a channel closed within one period.
func (t *coarseTicks) next() <-chan struct{} {
	if p := t.cur.Load(); p != nil {
		return *p
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.cur.Load(); p != nil {
		return *p
	}
	ch := make(chan struct{})
	t.cur.Store(&ch)
	time.AfterFunc(t.period, func() {
		t.cur.Store(nil)
		close(ch)
	})
	return ch
}
