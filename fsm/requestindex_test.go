package fsm

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestRequestIndex runs random puts and deletes against a map: every key
// is found exactly when the map holds it, through growing to thousands of
// entries and shrinking back (backward-shift deletion must never cut a
// probe short).
func TestRequestIndex(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	x := newRequestIndex()
	model := map[string]*request{}
	keys := make([]string, 5000)
	for i := range keys {
		keys[i] = newRequest([]byte(fmt.Sprint("id-", i)), uint64(i), 0, 0, 0, nil).key()
	}
	check := func(step int) {
		t.Helper()
		if x.len() != len(model) {
			t.Fatalf("step %d: len() = %d, want %d", step, x.len(), len(model))
		}
		for _, k := range keys {
			if got, want := x.get(k), model[k]; got != want {
				t.Fatalf("step %d: get(%q) = %p, want %p", step, k, got, want)
			}
		}
	}
	peak := 0
	for step := range 40_000 {
		k := keys[rng.IntN(len(keys))]
		// Mostly puts in the first half, mostly deletes in the second.
		putOdds := 6
		if step >= 20_000 {
			putOdds = 1
		}
		if rng.IntN(8) < putOdds {
			r := newRequest(appendRequestID(nil, k), uint64(step), 0, 0, 0, nil)
			x.put(r)
			model[k] = r
		} else {
			x.delete(k)
			delete(model, k)
		}
		peak = max(peak, len(x.slots))
		if step%1000 == 0 {
			check(step)
		}
	}
	check(40_000)
	if peak < 4096 || len(x.slots) >= peak {
		t.Errorf("slots peaked at %d and ended at %d with %d entries, want growth past 4096 and a shrink", peak, len(x.slots), x.len())
	}
}
