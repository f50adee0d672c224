package node

import (
	"context"
	"slices"
	"sync"
	"time"
)

// batcher runs fn once for the inputs of every caller waiting when the run
// starts. A caller that arrives while a run is under way waits for the
// next, so every result was computed after its caller arrived: a read
// index taken in the run is valid for each of them. A run belongs to no
// one caller, so it has its own deadline, and it leaves out the callers
// that stopped waiting before it began.
//
// When again says a run did not serve an input (its Out asks for it),
// the caller waits for the next run instead, ahead of every caller that
// arrived after it: the oldest caller is always first in a run.
type batcher[In, Out any] struct {
	fn      func(context.Context, []In) ([]Out, error) // one Out per In, in order
	timeout time.Duration                              // bounds one run
	again   func(Out) bool                             // optional: Out is "send in again"
	max     int                                        // optional: callers per run at most (the oldest first)

	mu      sync.Mutex
	waiting []*batchCall[In, Out]
	running bool
}

type batchCall[In, Out any] struct {
	ctx context.Context
	in  In
	out chan batched[Out] // buffered: a run never blocks on a caller
}

type batched[Out any] struct {
	v   Out
	err error
}

func newBatcher[In, Out any](fn func(context.Context, []In) ([]Out, error), timeout time.Duration) *batcher[In, Out] {
	return &batcher[In, Out]{fn: fn, timeout: timeout}
}

// do has in served by the next run and returns its result.
func (b *batcher[In, Out]) do(ctx context.Context, in In) (Out, error) {
	out := b.enqueue(ctx, in)
	select {
	case r := <-out:
		return r.v, r.err
	case <-ctx.Done():
		var zero Out
		return zero, ctx.Err()
	}
}

// enqueue has in served by a coming run, which sends its result on the
// channel returned (buffered: the run does not wait for the caller). A
// caller whose ctx has ended when its run begins is left out.
func (b *batcher[In, Out]) enqueue(ctx context.Context, in In) <-chan batched[Out] {
	c := &batchCall[In, Out]{ctx: ctx, in: in, out: make(chan batched[Out], 1)}
	b.mu.Lock()
	b.waiting = append(b.waiting, c)
	if !b.running {
		b.running = true
		go b.loop()
	}
	b.mu.Unlock()
	return c.out
}

// loop runs while callers wait.
func (b *batcher[In, Out]) loop() {
	for {
		b.mu.Lock()
		batch := b.waiting
		b.waiting = nil
		if b.max > 0 && len(batch) > b.max {
			// The rest wait for the next run, still first.
			batch, b.waiting = batch[:b.max:b.max], batch[b.max:]
		}
		if len(batch) == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		batch = slices.DeleteFunc(batch, func(c *batchCall[In, Out]) bool { return c.ctx.Err() != nil })
		if len(batch) > 0 {
			b.run(batch)
			// The array may still hold the waiting callers after
			// batch (max): let go of this run's.
			clear(batch)
		}
	}
}

func (b *batcher[In, Out]) run(batch []*batchCall[In, Out]) {
	in := make([]In, len(batch))
	for i, c := range batch {
		in[i] = c.in
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	out, err := b.fn(ctx, in)
	cancel()
	var again []*batchCall[In, Out]
	for i, c := range batch {
		r := batched[Out]{err: err}
		if err == nil {
			r.v = out[i]
			if b.again != nil && b.again(r.v) {
				again = append(again, c)
				continue
			}
		}
		c.out <- r
	}
	if len(again) > 0 {
		// Every caller waiting now arrived after this run began, so
		// after those of the batch: first in, first served.
		b.mu.Lock()
		b.waiting = append(again, b.waiting...)
		b.mu.Unlock()
	}
}

// shared adapts fn, whose one result every caller of a run shares, to a
// batcher.
func shared[Out any](fn func(context.Context) (Out, error)) func(context.Context, []struct{}) ([]Out, error) {
	return func(ctx context.Context, in []struct{}) ([]Out, error) {
		v, err := fn(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]Out, len(in))
		for i := range out {
			out[i] = v
		}
		return out, nil
	}
}
