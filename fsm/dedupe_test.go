package fsm

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// withID gives cmd a request id.
func withID(cmd *raftv1.Command, id string) *raftv1.Command {
	cmd.RequestId = []byte(id)
	return cmd
}

// applyAt applies cmd as the next entry, stamped with time ms instead of
// timeAt(index).
func (h *harness) applyAt(cmd *raftv1.Command, ms int64) *Result {
	h.t.Helper()
	h.index++
	cmd.TimeUnixMs = ms
	data, err := proto.Marshal(cmd)
	if err != nil {
		h.t.Fatalf("proto.Marshal(%v) = %v", cmd, err)
	}
	return h.applyLog(&raft.Log{Index: h.index, Type: raft.LogCommand, Data: data})
}

// hashWithoutRequests digests the state but the request id table: what a
// command that only got remembered must leave alone.
func hashWithoutRequests(f *FSM) [32]byte {
	f.mu.Lock()
	s := f.capture()
	f.mu.Unlock()
	s.index = 0
	s.tables = slices.DeleteFunc(s.tables, func(v tableView) bool { _, ok := v.(requestView); return ok })
	h := sha256.New()
	_ = s.write(h)
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// sameResult reports how got differs from want, a first result.
func sameResult(t *testing.T, what string, got, want *Result) {
	t.Helper()
	if got.Index != want.Index {
		t.Errorf("%s: Index = %d, want %d (the original zxid)", what, got.Index, want.Index)
	}
	if diff := cmp.Diff(want.Resp, got.Resp, protocmp.Transform()); diff != "" {
		t.Errorf("%s: response mismatch (-first +retry):\n%s", what, diff)
	}
	if (got.Err == nil) != (want.Err == nil) || (got.Err != nil && got.Err.Error() != want.Err.Error()) {
		t.Errorf("%s: error = %v, want %v", what, got.Err, want.Err)
	}
	if ErrorCode(got.Err) != ErrorCode(want.Err) {
		t.Errorf("%s: error code = %v, want %v", what, ErrorCode(got.Err), ErrorCode(want.Err))
	}
	var gm, wm *MultiError
	if errors.As(got.Err, &gm) != errors.As(want.Err, &wm) || (gm != nil && gm.Index != wm.Index) {
		t.Errorf("%s: multi error = %#v, want %#v", what, gm, wm)
	}
}

func TestRequestIDReplay(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(h *harness)
		cmd     func() *raftv1.Command
		wantErr error
		// between runs, without a request id, after the first apply:
		// applying the command again would now have another outcome.
		between func(h *harness)
		check   func(t *testing.T, h *harness)
	}{
		{
			name:  "sequential create",
			setup: func(h *harness) { h.mustCreate("/q", "") },
			cmd: func() *raftv1.Command {
				return cmdCreateReq(&paddockv1.CreateRequest{Path: "/q/n-", Sequential: true})
			},
			between: func(*harness) {},
			check: func(t *testing.T, h *harness) {
				page, err := h.f.List("/q", "", 10)
				if err != nil || len(page.Children) != 1 || page.Children[0].GetName() != "n-0000000000" {
					t.Errorf("List(/q) = %v, %v, want only n-0000000000", page, err)
				}
			},
		},
		{
			name:    "failed create",
			setup:   func(h *harness) { h.mustCreate("/a", "") },
			cmd:     func() *raftv1.Command { return cmdCreate("/a", []byte("new")) },
			wantErr: ErrNodeExists,
			between: func(h *harness) { h.must(cmdDelete("/a", nil, false)) },
			check: func(t *testing.T, h *harness) {
				if h.exists("/a") {
					t.Errorf("Get(/a) after a replayed failed create found it")
				}
			},
		},
		{
			name:    "set with a version",
			setup:   func(h *harness) { h.mustCreate("/a", "") },
			cmd:     func() *raftv1.Command { return cmdSet("/a", []byte("v1"), proto.Int32(0)) },
			between: func(h *harness) { h.must(cmdSet("/a", []byte("other"), nil)) },
			check: func(t *testing.T, h *harness) {
				if data, st, _ := h.f.Get("/a"); string(data) != "other" || st.GetVersion() != 2 {
					t.Errorf("Get(/a) = %q version %d, want %q version 2", data, st.GetVersion(), "other")
				}
			},
		},
		{
			name:    "delete",
			setup:   func(h *harness) { h.mustCreate("/a", "") },
			cmd:     func() *raftv1.Command { return cmdDelete("/a", nil, false) },
			between: func(h *harness) { h.mustCreate("/a", "again") },
			check: func(t *testing.T, h *harness) {
				if !h.exists("/a") {
					t.Errorf("Get(/a) after a replayed delete found nothing, want the node created since")
				}
			},
		},
		{
			name: "multi",
			cmd: func() *raftv1.Command {
				return cmdMulti(opCreate(&paddockv1.CreateRequest{Path: "/m"}), opCreate(&paddockv1.CreateRequest{Path: "/m/s-", Sequential: true}))
			},
			between: func(h *harness) { h.must(cmdDelete("/m", nil, true)) },
			check: func(t *testing.T, h *harness) {
				if h.exists("/m") {
					t.Errorf("Get(/m) after a replayed multi found it")
				}
			},
		},
		{
			name:  "failed multi",
			setup: func(h *harness) { h.mustCreate("/a", "") },
			cmd: func() *raftv1.Command {
				return cmdMulti(opCreate(&paddockv1.CreateRequest{Path: "/b"}), opCreate(&paddockv1.CreateRequest{Path: "/a"}))
			},
			wantErr: ErrNodeExists,
			between: func(h *harness) { h.must(cmdDelete("/a", nil, false)) },
			check: func(t *testing.T, h *harness) {
				if h.exists("/a") || h.exists("/b") {
					t.Errorf("a replayed failed multi created /a or /b")
				}
			},
		},
		{
			name:    "open session",
			cmd:     func() *raftv1.Command { return cmdOpenSession(10_000) },
			between: func(*harness) {},
			check: func(t *testing.T, h *harness) {
				if got := len(h.f.Sessions()); got != 1 {
					t.Errorf("Sessions() after a replayed open = %d sessions, want 1", got)
				}
			},
		},
		{
			name: "close session",
			setup: func(h *harness) {
				id := h.openSession(10_000)
				h.must(cmdEphemeral("/e", id, false))
			},
			cmd:     func() *raftv1.Command { return cmdCloseSession(1) },
			between: func(*harness) {},
			check: func(t *testing.T, h *harness) {
				if got := len(h.f.Sessions()); got != 0 {
					t.Errorf("Sessions() = %d sessions, want 0", got)
				}
			},
		},
		{
			name:    "register member",
			cmd:     func() *raftv1.Command { return cmdRegister("n1", "first:1") },
			between: func(h *harness) { h.must(cmdRegister("n1", "second:1")) },
			check: func(t *testing.T, h *harness) {
				if m, _ := h.f.Member("n1"); m.GetGrpcAddr() != "second:1" {
					t.Errorf("Member(n1) = %v, want grpc address second:1", m)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if tc.setup != nil {
				tc.setup(h)
			}
			first := h.apply(withID(tc.cmd(), "0123456789abcdef0123456789abcdef"))
			if !errors.Is(first.Err, tc.wantErr) || (tc.wantErr == nil) != (first.Err == nil) {
				t.Fatalf("Apply(%s) error = %v, want %v", tc.name, first.Err, tc.wantErr)
			}
			if first.Replayed {
				t.Errorf("Apply(%s) first time: Replayed = true", tc.name)
			}
			tc.between(h)
			before := dump(t, h.f)
			h.sink.take()

			retry := h.apply(withID(tc.cmd(), "0123456789abcdef0123456789abcdef"))
			if !retry.Replayed {
				t.Errorf("Apply(%s) again: Replayed = false, want true", tc.name)
			}
			sameResult(t, "retry of "+tc.name, retry, first)
			if ev := h.sink.take(); len(ev) != 0 {
				t.Errorf("retry of %s emitted %d events, want none", tc.name, len(ev))
			}
			before.Applied = h.index
			if diff := cmp.Diff(before, dump(t, h.f), protocmp.Transform()); diff != "" {
				t.Errorf("retry of %s changed the state (-before +after):\n%s", tc.name, diff)
			}
			tc.check(t, h)
			checkInvariants(t, h.f)
		})
	}
}

// TestRequestIDReplayedResponseIsFresh: the rpc layer sets a header on the
// response it gets; a replay must not hand out the first caller's message.
func TestRequestIDReplayedResponseIsFresh(t *testing.T) {
	h := newHarness(t)
	first := h.apply(withID(cmdCreate("/a", nil), "id"))
	first.Resp.(*paddockv1.CreateResponse).Header = &paddockv1.ResponseHeader{NodeId: "n1"}
	retry := h.apply(withID(cmdCreate("/a", nil), "id"))
	if got := retry.Resp.(*paddockv1.CreateResponse); got.GetHeader() != nil || got.GetPath() != "/a" {
		t.Errorf("retry response = %v, want path /a and no header", got)
	}
}

func TestRequestIDOtherOperation(t *testing.T) {
	h := newHarness(t)
	first := h.must(withID(cmdCreate("/a", nil), "id"))
	cmd := withID(cmdSet("/a", []byte("x"), nil), "id")
	r := assertFails(t, h, cmd, func() *Result { return h.apply(cmd) }, ErrRequestIDReused)
	if r.Replayed || r.Index != h.index || !strings.Contains(r.Err.Error(), "used for a create") {
		t.Errorf("Apply(set with create's id) = %+v, want a refusal at index %d naming create", r, h.index)
	}
	sameResult(t, "retry of the create", h.apply(withID(cmdCreate("/a", nil), "id")), first)
}

// TestRequestIDReusedForAnotherRequest: an id first used for one request
// and then for another of the same kind (other path, data, version or
// flags) is refused with ErrRequestIDReused, changes nothing, and leaves
// the first request's retries replaying; only the leader's time may
// differ in a retry.
func TestRequestIDReusedForAnotherRequest(t *testing.T) {
	tests := []struct {
		name         string
		first, other func() *raftv1.Command
	}{
		{"create, other path",
			func() *raftv1.Command { return cmdCreate("/idem1", nil) },
			func() *raftv1.Command { return cmdCreate("/idem2", nil) }},
		{"create, other data",
			func() *raftv1.Command { return cmdCreate("/a", []byte("x")) },
			func() *raftv1.Command { return cmdCreate("/a", []byte("y")) }},
		{"create, other flags",
			func() *raftv1.Command { return cmdCreate("/a", nil) },
			func() *raftv1.Command { return cmdCreateReq(&paddockv1.CreateRequest{Path: "/a", Sequential: true}) }},
		{"set, other version",
			func() *raftv1.Command { return cmdSet("/", nil, nil) },
			func() *raftv1.Command { return cmdSet("/", nil, proto.Int32(0)) }},
		{"delete, recursive",
			func() *raftv1.Command { return cmdDelete("/missing", nil, false) },
			func() *raftv1.Command { return cmdDelete("/missing", nil, true) }},
		{"multi, other op",
			func() *raftv1.Command { return cmdMulti(opCreate(&paddockv1.CreateRequest{Path: "/m1"})) },
			func() *raftv1.Command { return cmdMulti(opCreate(&paddockv1.CreateRequest{Path: "/m2"})) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			first := h.apply(withID(tc.first(), "k1"))
			cmd := withID(tc.other(), "k1")
			r := assertFails(t, h, cmd, func() *Result { return h.apply(cmd) }, ErrRequestIDReused)
			if r.Replayed || r.Index != h.index || !strings.Contains(r.Err.Error(), `"k1"`) {
				t.Errorf("Apply(other request with k1) = %+v, want a refusal at index %d naming k1", r, h.index)
			}
			if ErrorCode(r.Err) != raftv1.ErrorCode_ERROR_CODE_REQUEST_ID_REUSED {
				t.Errorf("ErrorCode(%v) = %v, want REQUEST_ID_REUSED", r.Err, ErrorCode(r.Err))
			}
			// A retry of the first request, later (another leader time),
			// replays.
			retry := h.applyAt(withID(tc.first(), "k1"), timeAt(h.index+1)+12345)
			if !retry.Replayed {
				t.Errorf("retry of the first request: Replayed = false, want true")
			}
			sameResult(t, "retry of the first request", retry, first)
			checkInvariants(t, h.f)
		})
	}
}

// TestRequestIDFingerprintInSnapshot: a restored table still tells a
// retry from another request under the same id.
func TestRequestIDFingerprintInSnapshot(t *testing.T) {
	h := newHarness(t)
	first := h.must(withID(cmdCreate("/idem1", []byte("d")), "k1"))
	restored := New(h.sink)
	if err := restored.Restore(io.NopCloser(bytes.NewReader(persist(t, h.f)))); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if restored.StateHash() != h.f.StateHash() {
		t.Fatalf("restored state hash differs")
	}
	h.f = restored
	cmd := withID(cmdCreate("/idem2", []byte("d")), "k1")
	assertFails(t, h, cmd, func() *Result { return h.apply(cmd) }, ErrRequestIDReused)
	sameResult(t, "retry after restore", h.apply(withID(cmdCreate("/idem1", []byte("d")), "k1")), first)
}

// TestRequestSize guards the table's memory figure: an entry, fingerprint
// included, is 48 bytes (a Go size class, the one the entry had before it
// held a fingerprint), besides its packed id and result.
func TestRequestSize(t *testing.T) {
	if got := unsafe.Sizeof(request{}); got != 48 {
		t.Errorf("unsafe.Sizeof(request{}) = %d, want 48", got)
	}
}

func TestRequestIDLength(t *testing.T) {
	tests := []struct {
		name    string
		id      string
		wantErr error
	}{
		{"one byte", "x", nil},
		{"client form", "0123456789abcdef0123456789abcdef", nil},
		{"longest", strings.Repeat("i", MaxRequestIDLength), nil},
		{"too long", strings.Repeat("i", MaxRequestIDLength+1), ErrBadArgument},
		{"binary too long", string(make([]byte, 1000)), ErrBadArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			cmd := withID(cmdCreate("/a", nil), tc.id)
			if err := CheckCommand(cmd, MaxDataSize); !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Errorf("CheckCommand(id of %d bytes) = %v, want %v", len(tc.id), err, tc.wantErr)
			}
			if tc.wantErr != nil {
				assertFails(t, h, cmd, func() *Result { return h.apply(cmd) }, tc.wantErr)
				if got := h.f.RequestIDs(); got != 0 {
					t.Errorf("RequestIDs() = %d, want 0", got)
				}
				return
			}
			h.must(cmd)
			if got := h.f.RequestIDs(); got != 1 {
				t.Errorf("RequestIDs() = %d, want 1", got)
			}
		})
	}
}

// TestRequestIDWindow: an id is remembered for RequestIDWindow of command
// time, whatever time the replicas' clocks say.
func TestRequestIDWindow(t *testing.T) {
	const t0 = epochMs
	window := RequestIDWindow.Milliseconds()
	seq := func() *raftv1.Command {
		return withID(cmdCreateReq(&paddockv1.CreateRequest{Path: "/q/n-", Sequential: true}), "A")
	}
	path := func(r *Result) string { return r.Resp.(*paddockv1.CreateResponse).GetPath() }

	h := newHarness(t)
	h.mustCreate("/q", "")
	first := h.applyAt(seq(), t0)
	if r := h.applyAt(seq(), t0+window); !r.Replayed || path(r) != "/q/n-0000000000" {
		t.Errorf("retry at the end of the window: Replayed %v path %s, want a replay of n-0000000000", r.Replayed, path(r))
	}
	second := h.applyAt(seq(), t0+window+1)
	if second.Replayed || path(second) != "/q/n-0000000001" {
		t.Errorf("retry past the window: Replayed %v path %s, want n-0000000001 created", second.Replayed, path(second))
	}
	if r := h.applyAt(seq(), t0+window+2); !r.Replayed || r.Index != second.Index || r.Index == first.Index {
		t.Errorf("retry after the id was used again: Replayed %v index %d, want a replay of index %d", r.Replayed, r.Index, second.Index)
	}
	if got := h.f.RequestIDs(); got != 1 {
		t.Errorf("RequestIDs() = %d, want 1", got)
	}

	// Expiry is lazy, oldest first, and only when an id is added.
	h = newHarness(t)
	for i, id := range []string{"x1", "x2", "x3"} {
		h.applyAt(withID(cmdBarrier(), id), t0+int64(i)*1000)
	}
	h.applyAt(cmdBarrier(), t0+100*window)
	if got := h.f.RequestIDs(); got != 3 {
		t.Errorf("RequestIDs() after a command without an id = %d, want 3 (it touches nothing)", got)
	}
	h.applyAt(withID(cmdBarrier(), "y"), t0+1000+window+1) // x1, x2 expired
	if got := h.f.RequestIDs(); got != 2 {
		t.Errorf("RequestIDs() after adding y = %d, want 2 (x3, y)", got)
	}
	if r := h.applyAt(withID(cmdBarrier(), "x3"), t0+1000+window+1); !r.Replayed {
		t.Errorf("retry of x3 inside its window was applied again")
	}

	// A leader whose clock is behind expires nothing, and an id stamped
	// by a later clock stays until command time passes it.
	h = newHarness(t)
	h.applyAt(withID(cmdBarrier(), "late"), t0+10*window)
	h.applyAt(withID(cmdBarrier(), "early"), t0)
	if got := h.f.RequestIDs(); got != 2 {
		t.Errorf("RequestIDs() after a clock went back = %d, want 2", got)
	}
	if r := h.applyAt(withID(cmdBarrier(), "late"), t0+1); !r.Replayed {
		t.Errorf("retry of an id stamped later than now was applied again")
	}
}

// TestRequestIDDeadSlot reuses an expired id that is not at the head of
// the queue (the clock went back between them): the table must decide the
// same as a replica that restored it from a snapshot, which has no dead
// slot.
func TestRequestIDDeadSlot(t *testing.T) {
	const t0 = epochMs
	w := RequestIDWindow.Milliseconds()
	h := newHarness(t)
	h.applyAt(withID(cmdBarrier(), "A"), t0+2*w)
	h.applyAt(withID(cmdBarrier(), "B"), t0)
	if r := h.applyAt(withID(cmdBarrier(), "B"), t0+2*w+w/2); r.Replayed {
		t.Errorf("B reused past its window was replayed")
	}
	if got := h.f.RequestIDs(); got != 2 {
		t.Errorf("RequestIDs() = %d, want 2 (A, B again)", got)
	}
	restored := New(h.sink)
	if err := restored.Restore(io.NopCloser(bytes.NewReader(persist(t, h.f)))); err != nil {
		t.Fatalf("Restore() error = %v", err)
	}
	rh := &harness{t: t, f: restored, sink: &recordingSink{}, index: h.index}
	for _, step := range []struct {
		id   string
		at   int64
		want bool // replayed
	}{
		{"C", t0 + 3*w + 1, false}, // expires A; the dead slot of B is next, B again (t0+2.5w) stays
		{"B", t0 + 3*w + 1, true},
		{"A", t0 + 3*w + 1, false},
		{"D", t0 + 5*w, false}, // expires everything else
		{"C", t0 + 5*w, false},
		{"D", t0 + 5*w + 1, true},
	} {
		r1 := h.applyAt(withID(cmdBarrier(), step.id), step.at)
		r2 := rh.applyAt(withID(cmdBarrier(), step.id), step.at)
		if r1.Replayed != step.want || r2.Replayed != step.want {
			t.Errorf("%s at %d: Replayed %v (original) %v (restored), want %v", step.id, step.at, r1.Replayed, r2.Replayed, step.want)
		}
		if h.f.StateHash() != restored.StateHash() || h.f.RequestIDs() != restored.RequestIDs() {
			t.Fatalf("%s at %d: original and restored states differ", step.id, step.at)
		}
	}
}

func TestRequestIDCaps(t *testing.T) {
	seq := func(id string) *raftv1.Command {
		return withID(cmdCreateReq(&paddockv1.CreateRequest{Path: "/q/n-", Sequential: true}), id)
	}
	t.Run("entries", func(t *testing.T) {
		h := newHarness(t)
		h.f.state.requests.limits.maxEntries = 3
		h.mustCreate("/q", "")
		for i := range 5 {
			h.must(seq(fmt.Sprint(i)))
		}
		if got := h.f.RequestIDs(); got != 3 {
			t.Errorf("RequestIDs() = %d, want 3", got)
		}
		for _, id := range []string{"4", "3", "2"} {
			if r := h.must(seq(id)); !r.Replayed {
				t.Errorf("retry of %s (kept) applied again", id)
			}
		}
		if r := h.must(seq("0")); r.Replayed || r.Resp.(*paddockv1.CreateResponse).GetPath() != "/q/n-0000000005" {
			t.Errorf("retry of 0 (evicted) = %v replayed %v, want /q/n-0000000005 created", r.Resp, r.Replayed)
		}
		if r := h.must(seq("2")); r.Replayed {
			t.Errorf("retry of 2, evicted by 0's return, was replayed")
		}
	})
	t.Run("bytes", func(t *testing.T) {
		h := newHarness(t)
		h.mustCreate("/q", "")
		h.must(seq("0"))
		size := h.f.state.requests.bytes
		h.f.state.requests.limits.maxBytes = 2*size + size/2
		for i := 1; i < 5; i++ {
			h.must(seq(fmt.Sprint(i)))
			if got := h.f.state.requests.bytes; got > h.f.state.requests.limits.maxBytes {
				t.Errorf("table holds %d bytes, cap %d", got, h.f.state.requests.limits.maxBytes)
			}
		}
		if got := h.f.RequestIDs(); got != 2 {
			t.Errorf("RequestIDs() = %d, want 2", got)
		}
		if r := h.must(seq("4")); !r.Replayed {
			t.Errorf("retry of the newest id applied again")
		}
	})
	t.Run("queue memory follows the live entries", func(t *testing.T) {
		h := newHarness(t)
		h.f.state.requests.limits.maxEntries = 3
		for i := range 5000 {
			h.must(withID(cmdBarrier(), fmt.Sprint(i)))
		}
		q := h.f.state.requests
		if live := len(q.queue) - q.head; live != 3 || len(q.queue) > 2100 || q.byID.len() != 3 {
			t.Errorf("queue %d slots from %d, %d ids, want 3 live and under 2100 slots", len(q.queue), q.head, q.byID.len())
		}
	})
}

// TestRequestIDHugeResult: a result too large to keep is replaced by an
// error, so the retry still applies nothing.
func TestRequestIDHugeResult(t *testing.T) {
	h := newHarness(t)
	ops := make([]*paddockv1.Op, 0, 20_000)
	for i := range cap(ops) {
		ops = append(ops, opCreate(&paddockv1.CreateRequest{Path: fmt.Sprintf("/n%05d-%s", i, strings.Repeat("x", 40))}))
	}
	first := h.must(withID(cmdMulti(ops...), "big"))
	if b, _ := proto.Marshal(first.Resp); len(b) <= maxReplayResult {
		t.Fatalf("fixture: response of %d bytes is not over %d", len(b), maxReplayResult)
	}
	before := h.f.StateHash()
	r := h.apply(withID(cmdMulti(ops...), "big"))
	if !r.Replayed || r.Index != first.Index || !errors.Is(r.Err, ErrTooLarge) || r.Resp != nil {
		t.Errorf("retry = index %d replayed %v err %v, want a replay of index %d with ErrTooLarge", r.Index, r.Replayed, r.Err, first.Index)
	}
	if h.f.StateHash() != before {
		t.Errorf("retry of a huge multi changed the state")
	}
	restored := New(h.sink)
	if err := restored.Restore(io.NopCloser(bytes.NewReader(persist(t, h.f)))); err != nil {
		t.Errorf("Restore() of a table with a huge result error = %v", err)
	}
}

// benchRequest applies n create commands in batches, one millisecond of
// command time apart (a busy leader: the 5 minute window holds 300,000
// entries, so the entry cap is what bounds the table).
func benchRequest(b *testing.B, n int, id func(i int) string) {
	f := New(&discardSink{})
	for i := range benchParents {
		f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: encode(b, cmdCreate(fmt.Sprintf("/p%02d", i), nil), 1)})
	}
	index := uint64(benchParents)
	const chunk = benchBatch * 256
	logs := make([]*raft.Log, 0, chunk)
	b.ReportAllocs()
	b.ResetTimer()
	for start := 0; start < n; start += chunk {
		b.StopTimer()
		logs = logs[:0]
		for i := start; i < min(start+chunk, n); i++ {
			index++
			cmd := cmdCreate(fmt.Sprintf("/p%02d/c-%09d", i%benchParents, i), benchPayload)
			cmd.RequestId = []byte(id(i))
			cmd.TimeUnixMs = epochMs + int64(index)
			data, err := proto.Marshal(cmd)
			if err != nil {
				b.Fatal(err)
			}
			logs = append(logs, &raft.Log{Index: index, Type: raft.LogCommand, Data: data})
		}
		b.StartTimer()
		for i := 0; i < len(logs); i += benchBatch {
			for _, r := range f.ApplyBatch(logs[i:min(i+benchBatch, len(logs))]) {
				if err := r.(*Result).Err; err != nil {
					b.Fatalf("apply error = %v", err)
				}
			}
		}
	}
	b.StopTimer()
	reportOps(b, n)
	ids := f.RequestIDs()
	b.ReportMetric(float64(ids), "ids")
	if ids > 1000 {
		// The heap the table holds, per entry: live heap with it and
		// without it.
		with := liveHeap()
		f.state.requests = newRequestTable(f.state.requests.limits)
		without := liveHeap()
		runtime.KeepAlive(f) // only the table may go
		b.ReportMetric(float64(with-without)/float64(ids), "heapB/id")
	}
}

// BenchmarkDedupe compares applying a create without a request id, with a
// fresh id each (remembered, the table filling up to its cap and evicting)
// and with one id over and over (every apply after the first a replay).
func BenchmarkDedupe(b *testing.B) {
	b.Run("no-id", func(b *testing.B) { benchRequest(b, b.N, func(int) string { return "" }) })
	b.Run("fresh-id", func(b *testing.B) {
		benchRequest(b, b.N, func(i int) string { return fmt.Sprintf("%032x", uint64(i)*0x9e3779b97f4a7c15) })
	})
	b.Run("replay", func(b *testing.B) {
		benchRequest(b, b.N, func(int) string { return "0123456789abcdef0123456789abcdef" })
	})
}

// TestRequestKey: the forms clients generate pack to 16 bytes, others are
// kept as they are, and every key gives back its id.
func TestRequestKey(t *testing.T) {
	tests := []struct {
		name    string
		id      string
		wantTag byte
		wantLen int
	}{
		{"go client", "0123456789abcdef0123456789abcdef", keyHex, 17},
		{"uuid", "123e4567-e89b-12d3-a456-426614174000", keyUUID, 17},
		{"upper hex", "0123456789ABCDEF0123456789ABCDEF", keyRaw, 33},
		{"31 hex digits", "0123456789abcdef0123456789abcde", keyRaw, 32},
		{"hex with a g", "0123456789abcdef0123456789abcdeg", keyRaw, 33},
		{"upper uuid", "123E4567-E89B-12D3-A456-426614174000", keyRaw, 37},
		{"uuid dash moved", "123e456-7e89b-12d3-a456-426614174000", keyRaw, 37},
		{"uuid without a dash", "123e4567-e89b-12d3-a4560426614174000", keyRaw, 37},
		{"looks packed", "\x01" + strings.Repeat("\xff", 16), keyRaw, 18},
		{"one byte", "x", keyRaw, 2},
		{"longest", strings.Repeat("i", MaxRequestIDLength), keyRaw, maxRequestKeyLength},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := appendRequestKey(nil, []byte(tc.id))
			if key[0] != tc.wantTag || len(key) != tc.wantLen {
				t.Errorf("appendRequestKey(%q) = tag %d, %d bytes, want tag %d, %d bytes", tc.id, key[0], len(key), tc.wantTag, tc.wantLen)
			}
			if got := string(appendRequestID(nil, string(key))); got != tc.id {
				t.Errorf("appendRequestID(appendRequestKey(%q)) = %q", tc.id, got)
			}
		})
	}
}

// FuzzRequestKey: any id gives back itself from its key, so two ids never
// share a key.
func FuzzRequestKey(f *testing.F) {
	f.Add([]byte("0123456789abcdef0123456789abcdef"))
	f.Add([]byte("123e4567-e89b-12d3-a456-426614174000"))
	f.Add([]byte("x"))
	f.Fuzz(func(t *testing.T, id []byte) {
		if len(id) == 0 || len(id) > MaxRequestIDLength {
			return
		}
		key := appendRequestKey([]byte("prefix"), id)[len("prefix"):]
		if len(key) > maxRequestKeyLength {
			t.Fatalf("appendRequestKey(%q) is %d bytes, limit %d", id, len(key), maxRequestKeyLength)
		}
		if got := appendRequestID([]byte("p"), string(key))[1:]; !bytes.Equal(got, id) {
			t.Fatalf("appendRequestID(appendRequestKey(%q)) = %q", id, got)
		}
	})
}
