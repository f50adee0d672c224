package check

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func opCreate(client int, key, value string, out Outcome, call, ret int) RegisterOp {
	return RegisterOp{Client: client, Key: key, Kind: Create, Value: value, Outcome: out, Call: ms(call), Return: ms(ret)}
}

func opGet(client int, key, value string, version int64, out Outcome, call, ret int) RegisterOp {
	return RegisterOp{Client: client, Key: key, Kind: Get, Value: value, Version: version, Outcome: out, Call: ms(call), Return: ms(ret)}
}

func opSet(client int, key, value string, expect, version int64, out Outcome, call, ret int) RegisterOp {
	return RegisterOp{Client: client, Key: key, Kind: Set, Value: value, ExpectVersion: expect, Version: version, Outcome: out, Call: ms(call), Return: ms(ret)}
}

func opDelete(client int, key string, expect int64, out Outcome, call, ret int) RegisterOp {
	return RegisterOp{Client: client, Key: key, Kind: Delete, ExpectVersion: expect, Outcome: out, Call: ms(call), Return: ms(ret)}
}

func TestLinearizableValid(t *testing.T) {
	tests := []struct {
		name string
		ops  []RegisterOp
	}{
		{"empty", nil},
		{"sequential life of a key", []RegisterOp{
			opGet(1, "k", "", 0, NotFound, 0, 1),
			opSet(1, "k", "x", -1, 0, NotFound, 2, 3),
			opDelete(1, "k", -1, NotFound, 4, 5),
			opCreate(1, "k", "a", OK, 6, 7),
			opCreate(1, "k", "b", Exists, 8, 9),
			opGet(1, "k", "a", 0, OK, 10, 11),
			opSet(1, "k", "b", 0, 1, OK, 12, 13),
			opSet(1, "k", "c", 0, 0, BadVersion, 14, 15),
			opSet(1, "k", "c", -1, 2, OK, 16, 17),
			opGet(1, "k", "c", 2, OK, 18, 19),
			opDelete(1, "k", 1, BadVersion, 20, 21),
			opDelete(1, "k", 2, OK, 22, 23),
			opGet(1, "k", "", 0, NotFound, 24, 25),
			opCreate(1, "k", "d", OK, 26, 27),
			opGet(1, "k", "d", 0, OK, 28, 29),
		}},
		{"concurrent ops linearized out of call order", []RegisterOp{
			opCreate(1, "k", "a", OK, 0, 5),
			// Client 2's set is called after client 3's but takes effect
			// first: client 3's answer is version 2.
			opSet(3, "k", "c", -1, 2, OK, 10, 100),
			opSet(2, "k", "b", -1, 1, OK, 20, 30),
			opGet(4, "k", "b", 1, OK, 35, 40),
			opGet(5, "k", "a", 0, OK, 8, 50), // called before either set took effect
			opGet(4, "k", "c", 2, OK, 110, 120),
		}},
		{"a read concurrent with a write sees the new value before the write returns", []RegisterOp{
			opCreate(1, "k", "a", OK, 0, 5),
			opSet(1, "k", "b", -1, 1, OK, 10, 100),
			opGet(2, "k", "b", 1, OK, 20, 30),
			opGet(3, "k", "b", 1, OK, 40, 50),
		}},
		{"touching intervals are concurrent", []RegisterOp{
			opCreate(1, "k", "a", OK, 0, 10),
			opGet(2, "k", "", 0, NotFound, 10, 20),
		}},
		{"unknown write that happened", []RegisterOp{
			opCreate(1, "k", "a", OK, 0, 5),
			opSet(1, "k", "u", -1, 0, Unknown, 10, 20),
			opGet(1, "k", "u", 1, OK, 30, 40), // the client's next op, a fresh porcupine client
			opSet(2, "k", "v", 1, 2, OK, 50, 60),
		}},
		{"unknown write that did not happen", []RegisterOp{
			opCreate(1, "k", "a", OK, 0, 5),
			opSet(1, "k", "u", -1, 0, Unknown, 10, 20),
			opGet(1, "k", "a", 0, OK, 30, 40),
			opSet(2, "k", "v", 0, 1, OK, 50, 60),
			opGet(2, "k", "v", 1, OK, 70, 80),
		}},
		{"unknown write that took effect long after its client moved on", []RegisterOp{
			opCreate(1, "k", "a", OK, 0, 5),
			opSet(1, "k", "u", -1, 0, Unknown, 10, 20),
			opGet(1, "k", "a", 0, OK, 30, 40),
			opSet(2, "k", "b", -1, 1, OK, 50, 60),
			opGet(3, "k", "b", 1, OK, 70, 80),
			opGet(3, "k", "u", 2, OK, 90, 100),
		}},
		{"unknown create that happened", []RegisterOp{
			opCreate(1, "k", "a", Unknown, 0, 5),
			opCreate(2, "k", "b", Exists, 10, 20),
			opGet(2, "k", "a", 0, OK, 30, 40),
		}},
		{"unknown delete that happened", []RegisterOp{
			opCreate(1, "k", "a", OK, 0, 5),
			opDelete(1, "k", 0, Unknown, 10, 15),
			opGet(2, "k", "", 0, NotFound, 30, 40),
		}},
		{"two unknown writes, only the second happened", []RegisterOp{
			opCreate(1, "k", "a", OK, 0, 5),
			opSet(1, "k", "u1", -1, 0, Unknown, 10, 15),
			opSet(1, "k", "u2", 0, 0, Unknown, 20, 25),
			opGet(2, "k", "u2", 1, OK, 30, 40),
		}},
		{"unknown get is dropped", []RegisterOp{
			opCreate(1, "k", "a", OK, 0, 5),
			opGet(1, "k", "nonsense", 7, Unknown, 10, 15),
			opGet(1, "k", "a", 0, OK, 20, 25),
		}},
		{"keys are independent", []RegisterOp{
			opCreate(1, "k1", "a", OK, 0, 5),
			opCreate(1, "k2", "b", OK, 6, 10),
			opGet(2, "k1", "a", 0, OK, 11, 12),
			opGet(2, "k2", "b", 0, OK, 13, 14),
			opGet(2, "k3", "", 0, NotFound, 15, 16),
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok, vs, err := Linearizable(tc.ops, 10*time.Second, "")
			if !ok || len(vs) > 0 || err != nil {
				t.Errorf("Linearizable() = %v, %v, %v; want true, none, nil", ok, vs, err)
			}
		})
	}
}

func TestLinearizableBroken(t *testing.T) {
	tests := []struct {
		name string
		ops  []RegisterOp
		// wantKeys are the keys that must be reported, in order.
		wantKeys []string
		// wantDetail must be in the first violation's Detail.
		wantDetail string
	}{
		{"stale read", []RegisterOp{
			opCreate(1, "k", "a", OK, 0, 5),
			opSet(1, "k", "b", -1, 1, OK, 10, 20),
			opGet(2, "k", "a", 0, OK, 30, 40),
		}, []string{"k"}, `k: get() -> ok "a" v0`},
		{"lost acknowledged write", []RegisterOp{
			opCreate(1, "k", "a", OK, 0, 5),
			opSet(2, "k", "b", 0, 1, OK, 10, 20),
			opGet(3, "k", "", 0, NotFound, 30, 40),
		}, []string{"k"}, "k: get() -> not found"},
		{"lost acknowledged create", []RegisterOp{
			opCreate(1, "k", "a", OK, 0, 5),
			opCreate(2, "k", "b", OK, 10, 20),
		}, []string{"k"}, `k: create("b") -> ok`},
		{"read of a value never written", []RegisterOp{
			opCreate(1, "k", "a", OK, 0, 5),
			opGet(2, "k", "z", 0, OK, 10, 20),
		}, []string{"k"}, `"z"`},
		{"read of a wrong version", []RegisterOp{
			opCreate(1, "k", "a", OK, 0, 5),
			opGet(2, "k", "a", 3, OK, 10, 20),
		}, []string{"k"}, "v3"},
		{"set answers a wrong version", []RegisterOp{
			opCreate(1, "k", "a", OK, 0, 5),
			opSet(1, "k", "b", -1, 2, OK, 10, 20),
		}, []string{"k"}, "-> ok v2"},
		{"bad version when the version matched", []RegisterOp{
			opCreate(1, "k", "a", OK, 0, 5),
			opSet(1, "k", "b", 0, 0, BadVersion, 10, 20),
		}, []string{"k"}, "bad version"},
		{"versioned delete of another version succeeded", []RegisterOp{
			opCreate(1, "k", "a", OK, 0, 5),
			opDelete(1, "k", 4, OK, 10, 20),
		}, []string{"k"}, "delete(expect v4) -> ok"},
		{"read after delete sees the key", []RegisterOp{
			opCreate(1, "k", "a", OK, 0, 5),
			opDelete(1, "k", -1, OK, 10, 20),
			opGet(2, "k", "a", 0, OK, 30, 40),
		}, []string{"k"}, ""},
		{"reads go back in time during a write", []RegisterOp{
			opCreate(1, "k", "a", OK, 0, 5),
			opSet(1, "k", "b", -1, 1, OK, 10, 100),
			opGet(2, "k", "b", 1, OK, 20, 30),
			opGet(3, "k", "a", 0, OK, 40, 50),
		}, []string{"k"}, ""},
		{"unknown write that cannot explain the read", []RegisterOp{
			opCreate(1, "k", "a", OK, 0, 5),
			opSet(1, "k", "u", 5, 0, Unknown, 10, 20), // expects v5: cannot apply
			opGet(2, "k", "u", 1, OK, 30, 40),
		}, []string{"k"}, `k: get() -> ok "u" v1`},
		{"unknown write read before it was called", []RegisterOp{
			opCreate(1, "k", "a", OK, 0, 5),
			opGet(2, "k", "u", 1, OK, 10, 20),
			opSet(1, "k", "u", -1, 0, Unknown, 30, 40),
		}, []string{"k"}, ""},
		{"only the broken keys are reported", []RegisterOp{
			opCreate(1, "good", "a", OK, 0, 5),
			opCreate(1, "bad2", "a", OK, 0, 5),
			opCreate(1, "bad1", "a", OK, 0, 5),
			opGet(2, "good", "a", 0, OK, 10, 20),
			opGet(2, "bad1", "b", 0, OK, 10, 20),
			opGet(2, "bad2", "", 0, NotFound, 10, 20),
		}, []string{"bad1", "bad2"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok, vs, err := Linearizable(tc.ops, 10*time.Second, "")
			if ok || err != nil {
				t.Fatalf("Linearizable() = %v, %v, %v; want false, violations, nil", ok, vs, err)
			}
			if len(vs) != len(tc.wantKeys) {
				t.Fatalf("Linearizable() violations = %v, want one per key of %q", vs, tc.wantKeys)
			}
			for i, v := range vs {
				if v.Check != "linearizable" || !strings.HasPrefix(v.Detail, fmt.Sprintf("key %q ", tc.wantKeys[i])) {
					t.Errorf("violation %d = %v, want key %q", i, v, tc.wantKeys[i])
				}
			}
			if !strings.Contains(vs[0].Detail, tc.wantDetail) {
				t.Errorf("violation = %v, want it to mention %s", vs[0], tc.wantDetail)
			}
		})
	}
}

func TestLinearizableDetail(t *testing.T) {
	ops := []RegisterOp{
		opCreate(1, "k", "a", OK, 0, 5),
		opSet(1, "k", "b", -1, 1, OK, 10, 20),
		opGet(2, "k", "a", 0, OK, 30, 40),
		opGet(2, "k", "b", 1, OK, 50, 60),
	}
	_, vs, err := Linearizable(ops, 10*time.Second, "")
	if err != nil || len(vs) != 1 {
		t.Fatalf("Linearizable() = %v, %v; want one violation", vs, err)
	}
	want := `key "k" is not linearizable: the longest linearizable prefix holds 2 of its 4 ops, ending ` +
		`k: create("a") -> ok (op #0, client 1, [0s, 5ms]); k: set("b", any version) -> ok v1 (op #1, client 1, [10ms, 20ms]); ` +
		`it leaves the key "b" v1; none of the ops that could come next fits: k: get() -> ok "a" v0 (op #2, client 2, [30ms, 40ms])`
	if vs[0].Detail != want {
		t.Errorf("Detail =\n%s\nwant\n%s", vs[0].Detail, want)
	}
}

func TestLinearizableMalformed(t *testing.T) {
	tests := []struct {
		name string
		op   RegisterOp
		want string
	}{
		{"no kind", RegisterOp{Key: "k", Outcome: OK}, "unknown kind"},
		{"get cannot find it exists", opGet(1, "k", "", 0, Exists, 0, 1), "get cannot have outcome exists"},
		{"create cannot have a bad version", opCreate(1, "k", "a", BadVersion, 0, 1), "create cannot have outcome bad version"},
		{"no outcome", opSet(1, "k", "a", -1, 0, 0, 0, 1), "set cannot have outcome outcome(0)"},
		{"returns before its call", opGet(1, "k", "", 0, NotFound, 5, 1), "before its call"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok, vs, err := Linearizable([]RegisterOp{tc.op}, time.Second, "")
			if ok || vs != nil || err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Linearizable() = %v, %v, %v; want false, nil, an error about %s", ok, vs, err, tc.want)
			}
		})
	}
}

func TestLinearizableVisualization(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lin.html")
	ops := []RegisterOp{
		opCreate(1, "good", "a", OK, 0, 5),
		opCreate(1, "broken", "a", OK, 0, 5),
		opSet(1, "broken", "b", -1, 1, OK, 10, 20),
		opGet(2, "broken", "a", 0, OK, 30, 40),
	}
	if _, _, err := Linearizable(ops, 10*time.Second, path); err != nil {
		t.Fatal(err)
	}
	html, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the visualization was not written: %v", err)
	}
	for _, want := range []string{"<html", `broken: get() -\u003e ok \"a\" v0`, "op #3, client 2"} {
		if !strings.Contains(string(html), want) {
			t.Errorf("visualization lacks %s", want)
		}
	}
	if strings.Contains(string(html), "good: create") {
		t.Errorf("visualization shows the linearizable key")
	}

	// A linearizable history writes nothing.
	okPath := filepath.Join(t.TempDir(), "ok.html")
	if ok, _, err := Linearizable(ops[:1], 10*time.Second, okPath); !ok || err != nil {
		t.Fatalf("Linearizable() = %v, %v", ok, err)
	}
	if _, err := os.Stat(okPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Stat(%s) = %v, want no file", okPath, err)
	}
}

// TestLinearizableTimeout gives porcupine a history it cannot decide in
// time: many unknown writes, any subset of which may have happened in any
// order, and a read of a value none wrote, so that showing the read
// impossible means trying every subset.
func TestLinearizableTimeout(t *testing.T) {
	ops := []RegisterOp{opCreate(0, "k", "a", OK, 0, 5)}
	for i := range 24 {
		ops = append(ops, opSet(i+1, "k", fmt.Sprintf("u%d", i), -1, 0, Unknown, 10+i, 11+i))
	}
	ops = append(ops, opGet(100, "k", "never", 1, OK, 100, 110))
	path := filepath.Join(t.TempDir(), "timeout.html")
	ok, vs, err := Linearizable(ops, 100*time.Millisecond, path)
	if ok || len(vs) > 0 || !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), `["k"]`) {
		t.Fatalf("Linearizable() = %v, %v, %v; want false, none, a timeout of key k", ok, vs, err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the visualization was not written: %v", err)
	}
}

// TestLinearizableManyUnknown is a key that is not linearizable with ten
// unknown writes pending at once: porcupine must rule out every place and
// subset of them, which the model keeps within milliseconds (porcupine's
// NondeterministicModel took seconds for eight).
func TestLinearizableManyUnknown(t *testing.T) {
	ops := []RegisterOp{opCreate(0, "k", "a", OK, 0, 5)}
	for i := range 10 {
		ops = append(ops, opSet(i+1, "k", fmt.Sprintf("u%d", i), -1, 0, Unknown, 10+i, 11+i))
	}
	ops = append(ops, opGet(100, "k", "never", 1, OK, 100, 110))
	ok, vs, err := Linearizable(ops, 20*time.Second, "")
	if ok || len(vs) != 1 || err != nil {
		t.Fatalf("Linearizable() = %v, %v, %v; want false, one violation, nil", ok, vs, err)
	}
}

func TestRegisterHistories(t *testing.T) {
	ops := []RegisterOp{
		opCreate(1, "k", "a", OK, 0, 5),
		opSet(1, "k", "u", -1, 0, Unknown, 10, 20),
		opSet(1, "k", "w", -1, 0, Unknown, 30, 35), // "w" is written twice
		opGet(1, "k", "u", 1, OK, 40, 50),
		opGet(2, "k", "u", 1, OK, 60, 70),
		opSet(2, "k", "w", -1, 2, OK, 80, 90),
		opGet(2, "k", "w", 2, OK, 100, 110),
	}
	keys, err := registerHistories(ops)
	if err != nil || len(keys) != 1 {
		t.Fatalf("registerHistories() = %v, %v", keys, err)
	}
	var clients []int
	var returns []int64
	for _, op := range keys[0].ops {
		clients = append(clients, op.ClientId)
		returns = append(returns, op.Return)
	}
	// Client 1 is a new porcupine client after each unknown write.
	if want := []int{0, 0, 1, 2, 3, 3, 3}; !slices.Equal(clients, want) {
		t.Errorf("client ids = %v, want %v", clients, want)
	}
	// The unknown write of "u" returns when "u" was first read; that of
	// "w", a value written twice, never.
	want := []int64{int64(ms(5)), int64(ms(50)), neverReturned, int64(ms(50)), int64(ms(70)), int64(ms(90)), int64(ms(110))}
	if !slices.Equal(returns, want) {
		t.Errorf("returns = %v, want %v", returns, want)
	}
}

// genRegisterHistory builds a linearizable history from a sequential
// reference: op i takes effect at time i*step on a key picked at random,
// inside a call interval spreading up to spread on either side, run by a
// client that is idle then. Some writes end Unknown, and half of those do
// not take effect.
func genRegisterHistory(seed uint64, n, keys, clients int) []RegisterOp {
	rng := rand.New(rand.NewPCG(seed, 0))
	const step, spread = 10 * time.Microsecond, 80 * time.Microsecond
	type ref struct {
		exists  bool
		value   string
		version int64
	}
	state := map[string]ref{}
	busy := make([]time.Duration, clients) // each client's last return
	var ops []RegisterOp
	for i := 0; len(ops) < n; i++ {
		at := time.Duration(i+1) * step
		c := rng.IntN(clients)
		if busy[c] >= at {
			continue
		}
		call := max(busy[c]+1, at-time.Duration(rng.Int64N(int64(spread))))
		ret := at + time.Duration(rng.Int64N(int64(spread)))
		busy[c] = ret
		key := fmt.Sprintf("k%d", rng.IntN(keys))
		s := state[key]
		op := RegisterOp{Client: c, Key: key, Call: call, Return: ret, ExpectVersion: -1}
		switch r := rng.IntN(20); {
		case r < 8:
			op.Kind = Get
		case r < 11:
			op.Kind = Create
		case r < 18:
			op.Kind = Set
		default:
			op.Kind = Delete
		}
		if (op.Kind == Set || op.Kind == Delete) && rng.IntN(2) == 0 {
			op.ExpectVersion = s.version + int64(rng.IntN(3)) - 1
		}
		if op.Kind == Create || op.Kind == Set {
			op.Value = fmt.Sprintf("v%d", len(ops))
		}
		next := s
		switch {
		case op.Kind == Get && s.exists:
			op.Outcome, op.Value, op.Version = OK, s.value, s.version
		case !s.exists && op.Kind == Create:
			op.Outcome, next = OK, ref{true, op.Value, 0}
		case op.Kind == Create:
			op.Outcome = Exists
		case !s.exists:
			op.Outcome = NotFound
		case op.ExpectVersion != -1 && op.ExpectVersion != s.version:
			op.Outcome = BadVersion
		case op.Kind == Set:
			op.Outcome, next = OK, ref{true, op.Value, s.version + 1}
			op.Version = next.version
		default:
			op.Outcome, next = OK, ref{}
		}
		if op.Kind != Get && rng.IntN(20) == 0 {
			op.Outcome, op.Version = Unknown, 0
			if rng.IntN(2) == 0 {
				next = s
			}
		}
		state[key] = next
		ops = append(ops, op)
	}
	return ops
}

func TestLinearizableGenerated(t *testing.T) {
	for seed := range uint64(5) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			ops := genRegisterHistory(seed, 2000, 5, 12)
			start := time.Now()
			ok, vs, err := Linearizable(ops, 5*time.Second, "")
			took := time.Since(start)
			t.Logf("2000 ops checked in %v", took)
			if !ok || len(vs) > 0 || err != nil {
				t.Fatalf("Linearizable() = %v, %v, %v; want true, none, nil", ok, vs, err)
			}
			if took > time.Second {
				t.Errorf("Linearizable() took %v, want well under a second", took)
			}

			// The same history with one read of a value nobody wrote.
			broken := append([]RegisterOp(nil), ops...)
			for i := len(broken) / 2; i < len(broken); i++ {
				if broken[i].Kind == Get && broken[i].Outcome == OK {
					broken[i].Value = "bogus"
					break
				}
			}
			ok, vs, err = Linearizable(broken, 5*time.Second, "")
			if ok || len(vs) != 1 || err != nil || !strings.Contains(vs[0].Detail, `"bogus"`) {
				t.Errorf("Linearizable(broken) = %v, %v, %v; want one violation about the bogus read", ok, vs, err)
			}
		})
	}
}
