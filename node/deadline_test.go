package node

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// fakeKind records fires and answers them from a table.
type fakeKind struct {
	mu    sync.Mutex
	fires []string
	fail  map[string]bool
	state map[string]deadline[int]
}

func (k *fakeKind) load(time.Time) map[string]deadline[int] {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := map[string]deadline[int]{}
	for key, d := range k.state {
		out[key] = d
	}
	return out
}

func (k *fakeKind) fire(_ context.Context, key string, v int) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.fires = append(k.fires, key)
	if k.fail[key] {
		return errors.New("no quorum")
	}
	return nil
}

func (k *fakeKind) fired() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.fires...)
}

func TestDeadlinesFireRetryAndRebuild(t *testing.T) {
	t0 := time.Unix(1000, 0)
	k := &fakeKind{fail: map[string]bool{}, state: map[string]deadline[int]{
		"a": {At: t0.Add(time.Second), Val: 1},
		"b": {At: t0.Add(3 * time.Second), Val: 2},
	}}
	d := newDeadlines("fake", k.load, k.fire)
	ctx := context.Background()
	var wg sync.WaitGroup
	tick := func(at time.Time) {
		d.tick(ctx, at, &wg)
		wg.Wait()
	}

	// Inactive: set is ignored, extend records a floor for start.
	d.set("x", t0, 9)
	if err := d.extend("b", t0.Add(5*time.Second)); err != nil {
		t.Fatalf("extend while inactive = %v", err)
	}
	d.start(t0)
	if got := d.snapshot(); len(got) != 2 || !got["b"].At.Equal(t0.Add(5*time.Second)) {
		t.Fatalf("after start = %v, want a and b (b at its floor)", got)
	}

	tick(t0.Add(500 * time.Millisecond))
	if got := k.fired(); len(got) != 0 {
		t.Fatalf("fired %v before any deadline", got)
	}

	k.fail["a"] = true
	tick(t0.Add(2 * time.Second))
	tick(t0.Add(2 * time.Second)) // a failed: due again
	if got := k.fired(); len(got) != 2 || got[0] != "a" || got[1] != "a" {
		t.Fatalf("fired %v, want a twice (retried)", got)
	}
	k.fail["a"] = false
	tick(t0.Add(2 * time.Second))
	if _, ok := d.snapshot()["a"]; ok {
		t.Fatalf("a still held after a successful fire")
	}

	// A key set again while being fired keeps its new deadline.
	d.set("c", t0, 3)
	d.mu.Lock()
	d.at["c"].firing = true
	gen := d.at["c"].gen
	d.mu.Unlock()
	if err := d.extend("c", t0.Add(time.Hour)); !errors.Is(err, errFiring) {
		t.Fatalf("extend of a firing key = %v, want errFiring", err)
	}
	d.set("c", t0.Add(time.Hour), 4)
	d.fired("c", gen, nil)
	if got, ok := d.snapshot()["c"]; !ok || got.Val != 4 {
		t.Fatalf("c after a stale fire = %v, %v; want kept with value 4", got, ok)
	}

	// Leadership lost: everything is forgotten; a new term reloads.
	d.stop()
	if d.on.Load() || len(d.snapshot()) != 0 {
		t.Fatalf("stop left the tracker on or holding keys")
	}
	d.start(t0.Add(time.Minute))
	if got := d.snapshot(); len(got) != 2 {
		t.Fatalf("rebuilt = %v, want the two loaded keys", got)
	}
}
