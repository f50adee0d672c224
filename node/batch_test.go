package node

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// testBatcher records the inputs of each run; a run waits for release.
type testBatcher struct {
	*batcher[int, int]
	started chan []int
	release chan struct{}
}

func newTestBatcher() *testBatcher {
	t := &testBatcher{started: make(chan []int, 8), release: make(chan struct{})}
	t.batcher = newBatcher(func(_ context.Context, in []int) ([]int, error) {
		t.started <- slices.Clone(in)
		<-t.release
		out := make([]int, len(in))
		for i, v := range in {
			out[i] = v * 10
		}
		return out, nil
	}, time.Minute)
	return t
}

// waitQueued waits until n callers wait for the next run.
func (t *testBatcher) waitQueued(tb testing.TB, n int) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		t.mu.Lock()
		got := len(t.waiting)
		t.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d callers queued, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestBatcherRuns(t *testing.T) {
	b := newTestBatcher()
	var wg sync.WaitGroup
	results := make([]int, 4)
	call := func(ctx context.Context, i int) {
		defer wg.Done()
		v, err := b.do(ctx, i)
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("do(%d): %v", i, err)
		}
		results[i] = v
	}
	wg.Add(1)
	go call(context.Background(), 1)
	if got := <-b.started; !slices.Equal(got, []int{1}) {
		t.Fatalf("first run has %v, want [1]", got)
	}
	// Callers arriving during a run wait for the next one; one that gives
	// up before it starts is left out of it.
	gone, cancel := context.WithCancel(context.Background())
	wg.Add(3)
	go call(context.Background(), 2)
	b.waitQueued(t, 1)
	go call(gone, 0)
	b.waitQueued(t, 2)
	go call(context.Background(), 3)
	b.waitQueued(t, 3)
	cancel()
	b.release <- struct{}{}
	if got := <-b.started; !slices.Equal(got, []int{2, 3}) {
		t.Fatalf("second run has %v, want [2 3]", got)
	}
	b.release <- struct{}{}
	wg.Wait()
	if want := []int{0, 10, 20, 30}; !slices.Equal(results, want) {
		t.Errorf("results = %v, want %v", results, want)
	}
}

func TestBatcherError(t *testing.T) {
	want := errors.New("no")
	b := newBatcher(func(context.Context, []struct{}) ([]int, error) { return nil, want }, time.Minute)
	if _, err := b.do(context.Background(), struct{}{}); !errors.Is(err, want) {
		t.Errorf("do = %v, want %v", err, want)
	}
	s := newBatcher(shared(func(context.Context) (int, error) { return 7, nil }), time.Minute)
	if v, err := s.do(context.Background(), struct{}{}); v != 7 || err != nil {
		t.Errorf("shared do = %d, %v; want 7", v, err)
	}
}

// TestBatcherAgain: an input a run did not serve goes into the next run,
// ahead of the callers that arrived during the run, so none is starved.
func TestBatcherAgain(t *testing.T) {
	started, release := make(chan []int, 8), make(chan struct{})
	b := newBatcher(func(_ context.Context, in []int) ([]int, error) {
		started <- slices.Clone(in)
		<-release
		out := make([]int, len(in))
		for i := range out {
			out[i] = -1 // not served: again
		}
		out[0] = in[0] * 10
		return out, nil
	}, time.Minute)
	b.again = func(v int) bool { return v < 0 }
	tb := &testBatcher{batcher: b}

	var wg sync.WaitGroup
	results := make([]int, 4)
	call := func(i int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := b.do(context.Background(), i)
			if err != nil {
				t.Errorf("do(%d): %v", i, err)
			}
			results[i] = v
		}()
	}
	var runs [][]int
	call(0)
	runs = append(runs, <-started)
	call(1)
	tb.waitQueued(t, 1)
	call(2)
	tb.waitQueued(t, 2)
	release <- struct{}{}
	runs = append(runs, <-started) // 1 and 2; 2 is not served
	call(3)
	tb.waitQueued(t, 1)
	release <- struct{}{}
	runs = append(runs, <-started) // 2 again, before 3
	release <- struct{}{}
	runs = append(runs, <-started)
	release <- struct{}{}
	wg.Wait()
	want := [][]int{{0}, {1, 2}, {2, 3}, {3}}
	if !slices.EqualFunc(runs, want, slices.Equal) {
		t.Errorf("runs = %v, want %v", runs, want)
	}
	if !slices.Equal(results, []int{0, 10, 20, 30}) {
		t.Errorf("results = %v, want [0 10 20 30]", results)
	}
}

// TestBatcherMax: a run takes max callers at most, the oldest; the rest
// go first in the next.
func TestBatcherMax(t *testing.T) {
	b := newTestBatcher()
	b.max = 2
	var wg sync.WaitGroup
	call := func(i int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if v, err := b.do(context.Background(), i); err != nil || v != i*10 {
				t.Errorf("do(%d) = %d, %v", i, v, err)
			}
		}()
	}
	call(0)
	if got := <-b.started; !slices.Equal(got, []int{0}) {
		t.Fatalf("first run has %v, want [0]", got)
	}
	for i := 1; i <= 5; i++ {
		call(i)
		b.waitQueued(t, i)
	}
	b.release <- struct{}{}
	for _, want := range [][]int{{1, 2}, {3, 4}, {5}} {
		if got := <-b.started; !slices.Equal(got, want) {
			t.Fatalf("run has %v, want %v", got, want)
		}
		b.release <- struct{}{}
	}
	wg.Wait()
}

// A group-commit round holds a slot for each of its commands until all
// are answered: it must never need more slots than there are.
func TestGroupMaxFitsSlots(t *testing.T) {
	if groupMax > applySlots/2 {
		t.Fatalf("groupMax %d > applySlots/2 (%d): a round could wait for slots only it can free", groupMax, applySlots/2)
	}
}
