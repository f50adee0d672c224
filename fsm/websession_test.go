package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

func cmdWebSessionWrite(id string, data []byte, version uint64, maxLifetimeMs int64, keepData bool) *raftv1.Command {
	return &raftv1.Command{Op: &raftv1.Command_WebSessionWrite{WebSessionWrite: &raftv1.WebSessionWrite{
		Id: id, Data: data, Version: version, MaxLifetimeMs: maxLifetimeMs, KeepData: keepData,
	}}}
}

func cmdWebSessionDelete(id string, version uint64) *raftv1.Command {
	return &raftv1.Command{Op: &raftv1.Command_WebSessionDelete{WebSessionDelete: &raftv1.WebSessionDelete{Id: id, Version: version}}}
}

// webVersion is the version a successful write returned.
func webVersion(t *testing.T, res *Result) uint64 {
	t.Helper()
	r, ok := res.Resp.(*paddockv1.WriteWebSessionResponse)
	if !ok {
		t.Fatalf("write response = %T %v, want *WriteWebSessionResponse", res.Resp, res.Resp)
	}
	return r.GetVersion()
}

// destroyed is what a delete's response says.
func destroyed(t *testing.T, res *Result) bool {
	t.Helper()
	if res.Err != nil {
		t.Fatalf("delete error = %v, want nil", res.Err)
	}
	r, ok := res.Resp.(*paddockv1.DestroyWebSessionResponse)
	if !ok {
		t.Fatalf("delete response = %T %v, want *DestroyWebSessionResponse", res.Resp, res.Resp)
	}
	return r.GetDestroyed()
}

// webSession returns id's row, failing the test if it does not exist.
func (h *harness) webSession(id string) WebSession {
	h.t.Helper()
	ws, ok := h.f.WebSession(id)
	if !ok || ws.Version == 0 || ws.ID != id {
		h.t.Fatalf("WebSession(%s) = %+v, %v, want a session", id, ws, ok)
	}
	return ws
}

// refused applies cmd, which must fail with want and change nothing: no
// state (hash), no event.
func (h *harness) refused(cmd *raftv1.Command, want error) *Result {
	h.t.Helper()
	hash, events := h.f.StateHash(), len(h.sink.events)
	res := h.apply(cmd)
	if !errors.Is(res.Err, want) || res.Resp != nil {
		h.t.Fatalf("Apply(%v) = %v, %v, want %v and no response", cmd, res.Resp, res.Err, want)
	}
	if h.f.StateHash() != hash {
		h.t.Fatalf("the refused %v changed the state hash", cmd)
	}
	if len(h.sink.events) != events {
		h.t.Fatalf("the refused %v emitted events", cmd)
	}
	return res
}

func TestWebSessionWrite(t *testing.T) {
	h := newHarness(t)
	if _, ok := h.f.WebSession("s1"); ok {
		t.Fatal("WebSession(s1) found a session on a new state")
	}

	// Create: version 1, the default lifetime, both times the command's.
	res := h.must(cmdWebSessionWrite("s1", []byte("n|i:1;"), 0, 0, false))
	created := h.index
	if v := webVersion(t, res); v != 1 {
		t.Errorf("create: version %d, want 1", v)
	}
	want := WebSession{ID: "s1", Data: []byte("n|i:1;"), Version: 1, MaxLifetimeMs: DefaultWebSessionLifetimeMs, CtimeMs: timeAt(created), MtimeMs: timeAt(created)}
	if diff := cmp.Diff(want, h.webSession("s1")); diff != "" {
		t.Errorf("after create (-want +got):\n%s", diff)
	}

	// Create again: the session exists.
	h.refused(cmdWebSessionWrite("s1", []byte("other"), 0, 0, false), ErrBadVersion)

	// Update at the version read: the version goes up, the data is
	// replaced, ctime stays, mtime is the write's.
	res = h.must(cmdWebSessionWrite("s1", []byte("n|i:2;"), 1, 0, false))
	if v := webVersion(t, res); v != 2 {
		t.Errorf("update: version %d, want 2", v)
	}
	want.Data, want.Version, want.MtimeMs = []byte("n|i:2;"), 2, timeAt(h.index)
	if diff := cmp.Diff(want, h.webSession("s1")); diff != "" {
		t.Errorf("after update (-want +got):\n%s", diff)
	}

	// A stale write (the version read before the update), one from the
	// future, and one to a session that does not exist change nothing.
	h.refused(cmdWebSessionWrite("s1", []byte("stale"), 1, 0, false), ErrBadVersion)
	h.refused(cmdWebSessionWrite("s1", []byte("future"), 3, 0, false), ErrBadVersion)
	h.refused(cmdWebSessionWrite("absent", []byte("x"), 1, 0, false), ErrBadVersion)
	if _, ok := h.f.WebSession("absent"); ok {
		t.Errorf("WebSession(absent) found a session after a refused write")
	}
	if diff := cmp.Diff(want, h.webSession("s1")); diff != "" {
		t.Errorf("after the refused writes (-want +got):\n%s", diff)
	}

	// A lifetime given is kept; 0 keeps the session's.
	h.must(cmdWebSessionWrite("s1", []byte("a"), 2, 90_000, false))
	h.must(cmdWebSessionWrite("s1", []byte("b"), 3, 0, false))
	if ws := h.webSession("s1"); ws.MaxLifetimeMs != 90_000 || ws.Version != 4 || string(ws.Data) != "b" {
		t.Errorf("after writes with 90000 then 0ms: %+v, want version 4, data b, 90000ms", ws)
	}

	// keep_data changes the lifetime only, and the version still goes up.
	res = h.must(cmdWebSessionWrite("s1", []byte("ignored"), 4, 5_000, true))
	if v := webVersion(t, res); v != 5 {
		t.Errorf("keep_data: version %d, want 5", v)
	}
	if ws := h.webSession("s1"); string(ws.Data) != "b" || ws.MaxLifetimeMs != 5_000 || ws.MtimeMs != timeAt(h.index) || ws.CtimeMs != timeAt(created) {
		t.Errorf("after keep_data: %+v, want data b, 5000ms, mtime %d, ctime %d", ws, timeAt(h.index), timeAt(created))
	}

	// A new session with a lifetime of its own; empty data reads as nil.
	h.must(cmdWebSessionWrite("s2", nil, 0, 1_000, false))
	if ws := h.webSession("s2"); ws.Data != nil || ws.MaxLifetimeMs != 1_000 || ws.Version != 1 {
		t.Errorf("WebSession(s2) = %+v, want no data, 1000ms, version 1", ws)
	}
	// Writing empty data over data.
	h.must(cmdWebSessionWrite("s1", []byte{}, 5, 0, false))
	if ws := h.webSession("s1"); ws.Data != nil {
		t.Errorf("WebSession(s1) after an empty write holds %q", ws.Data)
	}
	// Empty data present on the wire (which Go's encoder never writes)
	// is no data too, as a snapshot would restore it.
	op := protowire.AppendTag(nil, 1, protowire.BytesType)
	op = protowire.AppendString(op, "s3")
	op = protowire.AppendTag(op, 2, protowire.BytesType)
	op = protowire.AppendBytes(op, nil)
	raw := protowire.AppendTag(nil, 23, protowire.BytesType)
	raw = protowire.AppendBytes(raw, op)
	if res := h.applyRaw(raw); res.Err != nil || webVersion(t, res) != 1 {
		t.Fatalf("raw create of s3 = %v, %v", res.Resp, res.Err)
	}
	if ws := h.webSession("s3"); ws.Data != nil {
		t.Errorf("WebSession(s3), written with an empty data field, holds %#v, want nil", ws.Data)
	}

	if n := len(h.sink.events); n != 0 {
		t.Errorf("web session writes emitted %d events, want none", n)
	}
	if h.sink.last != h.index {
		t.Errorf("sink told of index %d, want %d", h.sink.last, h.index)
	}
}

func TestWebSessionDelete(t *testing.T) {
	h := newHarness(t)
	h.must(cmdWebSessionWrite("a", []byte("a"), 0, 0, false))
	h.must(cmdWebSessionWrite("b", []byte("b"), 0, 0, false))
	h.must(cmdWebSessionWrite("b", []byte("b2"), 1, 0, false))

	// A conditional delete at another version is a no-op, not an error.
	hash := h.f.StateHash()
	if destroyed(t, h.apply(cmdWebSessionDelete("b", 1))) {
		t.Errorf("Delete(b, version 1) of a session at version 2 destroyed it")
	}
	if h.f.StateHash() != hash || h.webSession("b").Version != 2 {
		t.Errorf("a conditional delete at another version changed the state")
	}
	// At its version it deletes.
	if !destroyed(t, h.apply(cmdWebSessionDelete("b", 2))) {
		t.Errorf("Delete(b, version 2) did not destroy it")
	}
	if _, ok := h.f.WebSession("b"); ok {
		t.Errorf("WebSession(b) found after its delete")
	}
	// Unconditionally, whatever the version; the expiry flag changes
	// nothing in how it applies.
	del := cmdWebSessionDelete("a", 0)
	del.GetWebSessionDelete().Expired = true
	if !destroyed(t, h.apply(del)) {
		t.Errorf("Delete(a) did not destroy it")
	}
	// A missing session: not an error, nothing changes.
	hash = h.f.StateHash()
	if destroyed(t, h.apply(cmdWebSessionDelete("a", 0))) || destroyed(t, h.apply(cmdWebSessionDelete("never", 3))) {
		t.Errorf("a delete of a missing session says it destroyed one")
	}
	if h.f.StateHash() != hash || h.f.WebSessionCount() != 0 {
		t.Errorf("deletes of missing sessions changed the state (%d sessions)", h.f.WebSessionCount())
	}
	// The id can be used again: a new session, from version 1.
	if v := webVersion(t, h.must(cmdWebSessionWrite("a", nil, 0, 0, false))); v != 1 {
		t.Errorf("re-create of a: version %d, want 1", v)
	}
	if n := len(h.sink.events); n != 0 {
		t.Errorf("web session deletes emitted %d events, want none", n)
	}
}

func TestValidWebSessionID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"a", true},
		{"0123456789abcdefABCDEF,-", true},
		{strings.Repeat("x", 256), true},
		{"", false},
		{strings.Repeat("x", 257), false},
		{"a/b", false},
		{"a b", false},
		{"caf\u00e9", false},
		{"a.b", false},
		{"a_b", false},
		{"a\x00", false},
		{"..", false},
	}
	for _, tc := range tests {
		if got := ValidWebSessionID(tc.id); got != tc.want {
			t.Errorf("ValidWebSessionID(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
}

// TestWebSessionBadArguments: a bad id, a negative lifetime or data over
// the ceiling are refused, by CheckCommand and by apply, changing nothing.
func TestWebSessionBadArguments(t *testing.T) {
	h := newHarness(t)
	h.must(cmdWebSessionWrite("ok", []byte("x"), 0, 0, false))
	tests := []struct {
		name string
		cmd  *raftv1.Command
		want error
	}{
		{"write empty id", cmdWebSessionWrite("", nil, 0, 0, false), ErrBadArgument},
		{"write 257 chars", cmdWebSessionWrite(strings.Repeat("a", 257), nil, 0, 0, false), ErrBadArgument},
		{"write slash", cmdWebSessionWrite("a/b", nil, 0, 0, false), ErrBadArgument},
		{"write space", cmdWebSessionWrite("a b", nil, 0, 0, false), ErrBadArgument},
		{"write non-ASCII", cmdWebSessionWrite("s\u00e9ssion", nil, 0, 0, false), ErrBadArgument},
		{"write negative lifetime", cmdWebSessionWrite("ok", nil, 1, -1, false), ErrBadArgument},
		{"create negative lifetime", cmdWebSessionWrite("new", nil, 0, -60_000, false), ErrBadArgument},
		{"write over the ceiling", cmdWebSessionWrite("ok", make([]byte, MaxDataSize+1), 1, 0, false), ErrTooLarge},
		{"delete empty id", cmdWebSessionDelete("", 0), ErrBadArgument},
		{"delete 257 chars", cmdWebSessionDelete(strings.Repeat("a", 257), 0), ErrBadArgument},
		{"delete slash", cmdWebSessionDelete("../ok", 0), ErrBadArgument},
		{"delete space", cmdWebSessionDelete("ok ", 0), ErrBadArgument},
		{"delete non-ASCII", cmdWebSessionDelete("\u043e\u043a", 1), ErrBadArgument},
	}
	top := h.t
	defer func() { h.t = top }()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := CheckCommand(tc.cmd, MaxDataSize); !errors.Is(err, tc.want) {
				t.Errorf("CheckCommand() = %v, want %v", err, tc.want)
			}
			h.t = t
			res := h.refused(tc.cmd, tc.want)
			var fe *Error
			if !errors.As(res.Err, &fe) || fe.Detail == "" {
				t.Errorf("error %v is not an *Error with a detail", res.Err)
			}
			if ErrorCode(res.Err) == raftv1.ErrorCode_ERROR_CODE_UNSPECIFIED {
				t.Errorf("error %v has no wire code", res.Err)
			}
		})
	}
	if ws, _ := h.f.WebSession("ok"); ws.Version != 1 || string(ws.Data) != "x" || ws.MaxLifetimeMs != DefaultWebSessionLifetimeMs {
		t.Errorf("WebSession(ok) = %+v after the refusals, want version 1 as written", ws)
	}
	if n := h.f.WebSessionCount(); n != 1 {
		t.Errorf("WebSessionCount() = %d, want 1", n)
	}
	// The valid forms pass CheckCommand.
	for _, cmd := range []*raftv1.Command{
		cmdWebSessionWrite(strings.Repeat("a", 256), make([]byte, MaxDataSize), 0, 0, false),
		cmdWebSessionDelete("a,b-C9", 7),
	} {
		if err := CheckCommand(cmd, MaxDataSize); err != nil {
			t.Errorf("CheckCommand(%s) = %v, want nil", OpName(cmd), err)
		}
	}
}

// TestWebSessionSnapshot: sessions survive a snapshot round trip, in id
// order, and the restored state goes on like the original.
func TestWebSessionSnapshot(t *testing.T) {
	h := newHarness(t)
	big := bytes.Repeat([]byte("z"), MaxDataSize)
	h.must(cmdWebSessionWrite("m", []byte("m1"), 0, 0, false))
	h.must(cmdWebSessionWrite("Z9", nil, 0, 1, false))
	h.must(cmdWebSessionWrite("a", big, 0, 3_600_000, false))
	h.must(cmdWebSessionWrite("m", []byte("m2"), 1, 0, false))
	h.must(cmdWebSessionWrite("gone", []byte("g"), 0, 0, false))
	h.must(cmdWebSessionDelete("gone", 0))
	want := dump(t, h.f)
	if ids := webIDs(h.f); !slices.Equal(ids, []string{"Z9", "a", "m"}) {
		t.Fatalf("WebSessions() ids = %v, want [Z9 a m]", ids)
	}

	restored := New(nil)
	restored.mustCreate(t, "/stale")
	if err := restored.Restore(io.NopCloser(bytes.NewReader(persist(t, h.f)))); err != nil {
		t.Fatalf("Restore() error = %v", err)
	}
	if diff := cmp.Diff(want.Web, dump(t, restored).Web); diff != "" {
		t.Errorf("restored web sessions (-want +got):\n%s", diff)
	}
	if restored.StateHash() != h.f.StateHash() {
		t.Errorf("StateHash() after Restore differs")
	}
	rh := &harness{t: t, f: restored, sink: &recordingSink{}, index: h.index}
	for _, hh := range []*harness{h, rh} {
		hh.refused(cmdWebSessionWrite("m", []byte("stale"), 1, 0, false), ErrBadVersion)
		if v := webVersion(t, hh.must(cmdWebSessionWrite("m", []byte("m3"), 2, 0, false))); v != 3 {
			t.Errorf("write after the snapshot: version %d, want 3", v)
		}
		if !destroyed(t, hh.apply(cmdWebSessionDelete("a", 1))) {
			t.Errorf("conditional delete of a after the snapshot did not destroy it")
		}
	}
	if restored.StateHash() != h.f.StateHash() {
		t.Errorf("StateHash() of the original and the restored state differ after the same commands")
	}
}

// webIDs lists WebSessions' ids.
func webIDs(f *FSM) []string {
	var ids []string
	f.WebSessions(func(id string, _ uint64, _ int64) bool { ids = append(ids, id); return true })
	return ids
}

// TestWebSessionRestoreRefusesBadRecords: a snapshot whose web session
// records apply could not have written is an error, and the state stays.
func TestWebSessionRestoreRefusesBadRecords(t *testing.T) {
	good := &raftv1.WebSessionRecord{Id: "s", Data: []byte("d"), Version: 1, MaxLifetimeMs: 1000}
	tests := map[string][]*raftv1.WebSessionRecord{
		"bad id":           {{Id: "a b", Version: 1}},
		"empty id":         {{Version: 1}},
		"version 0":        {{Id: "s"}},
		"negative":         {{Id: "s", Version: 1, MaxLifetimeMs: -1}},
		"appears twice":    {good, good},
		"over the ceiling": {{Id: "s", Version: 1, Data: make([]byte, MaxDataSize+1)}},
	}
	for name, recs := range tests {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			rw := newRecordWriter(&buf)
			must := func(err error) {
				if err != nil {
					t.Fatal(err)
				}
			}
			must(rw.write(&raftv1.SnapshotHeader{Format: snapshotFormat, AppliedIndex: 9}))
			must(rw.write(&raftv1.SnapshotRecord{Record: &raftv1.SnapshotRecord_Znode{Znode: &raftv1.Znode{Path: "/"}}}))
			for _, r := range recs {
				must(rw.write(&raftv1.SnapshotRecord{Record: &raftv1.SnapshotRecord_WebSession{WebSession: r}}))
			}
			must(rw.write(&raftv1.SnapshotRecord{Record: &raftv1.SnapshotRecord_End{End: &raftv1.SnapshotEnd{Records: uint64(len(recs) + 1)}}}))
			must(rw.bw.Flush())
			h := newHarness(t)
			h.must(cmdWebSessionWrite("kept", nil, 0, 0, false))
			hash := h.f.StateHash()
			if err := h.f.Restore(io.NopCloser(&buf)); err == nil || errors.Is(err, ErrUpgradeRequired) {
				t.Fatalf("Restore() = %v, want an error that does not stop the state machine", err)
			}
			if h.f.StateHash() != hash || h.f.Err() != nil {
				t.Errorf("a refused restore changed the state or stopped it (%v)", h.f.Err())
			}
		})
	}
}

// TestWebSessionRequestID: a write or a delete retried with its request
// id returns the first result and changes nothing, whatever happened to
// the session since; the same id for another write is refused.
func TestWebSessionRequestID(t *testing.T) {
	h := newHarness(t)
	first := h.must(withID(cmdWebSessionWrite("s", []byte("one"), 0, 0, false), "req-1"))
	h.must(cmdWebSessionWrite("s", []byte("two"), 1, 0, false))

	hash := h.f.StateHash()
	retry := h.apply(withID(cmdWebSessionWrite("s", []byte("one"), 0, 0, false), "req-1"))
	if !retry.Replayed || retry.Err != nil {
		t.Fatalf("retry = replayed %v error %v, want a replayed success", retry.Replayed, retry.Err)
	}
	sameResult(t, "write retry", retry, first)
	if webVersion(t, retry) != 1 || h.f.StateHash() != hash {
		t.Errorf("write retry: version %d (want 1, the first), state changed %v", webVersion(t, retry), h.f.StateHash() != hash)
	}
	// The same id for another write.
	h.refused(withID(cmdWebSessionWrite("s", []byte("other"), 0, 0, false), "req-1"), ErrRequestIDReused)

	// A failed write is remembered: its retry fails alike, even once the
	// version it asked for exists.
	failed := h.apply(withID(cmdWebSessionWrite("s", []byte("three"), 3, 0, false), "req-2"))
	if !errors.Is(failed.Err, ErrBadVersion) {
		t.Fatalf("write at version 3 of a session at 2 = %v, want %v", failed.Err, ErrBadVersion)
	}
	h.must(cmdWebSessionWrite("s", []byte("three"), 2, 0, false))
	again := h.apply(withID(cmdWebSessionWrite("s", []byte("three"), 3, 0, false), "req-2"))
	if !again.Replayed || !errors.Is(again.Err, ErrBadVersion) || again.Index != failed.Index {
		t.Errorf("retry of the failed write = replayed %v, index %d, %v, want a replayed %v from index %d", again.Replayed, again.Index, again.Err, ErrBadVersion, failed.Index)
	}
	if ws := h.webSession("s"); ws.Version != 3 || string(ws.Data) != "three" {
		t.Errorf("WebSession(s) = %+v, want version 3 (the retry applied nothing)", ws)
	}

	// A destroy retried after the session is gone still says destroyed.
	del := h.apply(withID(cmdWebSessionDelete("s", 0), "req-3"))
	if !destroyed(t, del) {
		t.Fatal("destroy of s did not destroy it")
	}
	h.must(cmdWebSessionWrite("s", []byte("new"), 0, 0, false))
	hash = h.f.StateHash()
	retry = h.apply(withID(cmdWebSessionDelete("s", 0), "req-3"))
	if !retry.Replayed || !destroyed(t, retry) || retry.Index != del.Index {
		t.Errorf("destroy retry = replayed %v, index %d, want the first result from index %d", retry.Replayed, retry.Index, del.Index)
	}
	if h.f.StateHash() != hash || h.webSession("s").Version != 1 {
		t.Errorf("the destroy retry deleted the new session")
	}

	// The remembered results survive a snapshot.
	restored := New(nil)
	if err := restored.Restore(io.NopCloser(bytes.NewReader(persist(t, h.f)))); err != nil {
		t.Fatal(err)
	}
	rh := &harness{t: t, f: restored, sink: &recordingSink{}, index: h.index}
	if res := rh.apply(withID(cmdWebSessionWrite("s", []byte("one"), 0, 0, false), "req-1")); !res.Replayed || webVersion(t, res) != 1 {
		t.Errorf("retry on the restored state = replayed %v %v, want version 1 replayed", res.Replayed, res.Resp)
	}

	// The wire form (a leader answering a forwarded write) keeps the
	// response.
	pr, err := EncodeResult(first)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeResult(cmdWebSessionWrite("s", nil, 0, 0, false), pr)
	if err != nil {
		t.Fatal(err)
	}
	sameResult(t, "wire", back, first)
}

// TestWebSessionFeatureLevel: both commands are level 3, so a member at
// level 2 blocks them, and a level 2 state machine stops at one.
func TestWebSessionFeatureLevel(t *testing.T) {
	if FeatureLevel < 3 {
		t.Fatalf("FeatureLevel = %d, want at least 3", FeatureLevel)
	}
	h := newHarness(t)
	reg := func(id string, level uint32) {
		cmd := cmdRegister(id, id+":1")
		cmd.GetRegisterMember().FeatureLevel = level
		h.must(cmd)
	}
	reg("n1", 3)
	reg("n2", 2)
	for _, cmd := range []*raftv1.Command{cmdWebSessionWrite("s", nil, 0, 0, false), cmdWebSessionDelete("s", 0)} {
		level, ok := OpFeatureLevel(cmd)
		if !ok || level != 3 {
			t.Errorf("OpFeatureLevel(%s) = %d, %v, want 3", OpName(cmd), level, ok)
		}
		if err := h.f.CheckFeatureLevel(cmd, level, []string{"n1"}); err != nil {
			t.Errorf("CheckFeatureLevel(%s, [n1]) = %v, want nil", OpName(cmd), err)
		}
		want := fmt.Sprintf("member n2 supports feature level 2, %s needs 3: upgrade n2", OpName(cmd))
		if err := h.f.CheckFeatureLevel(cmd, level, []string{"n1", "n2"}); !errors.Is(err, ErrFeatureLevel) || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckFeatureLevel(%s, [n1 n2]) = %v, want %v containing %q", OpName(cmd), err, ErrFeatureLevel, want)
		}
	}

	// A level 2 binary stops at the entry instead of skipping it.
	older := &harness{t: t, sink: &recordingSink{}}
	older.f = New(older.sink, WithFeatureLevel(2))
	older.must(cmdCreate("/a", nil))
	before := older.f.StateHash()
	res := older.apply(cmdWebSessionWrite("s", []byte("x"), 0, 0, false))
	if !errors.Is(res.Err, ErrUpgradeRequired) || !errors.Is(older.f.Err(), ErrUpgradeRequired) {
		t.Fatalf("a level 2 state machine applied a web session write: %v, Err() = %v", res.Err, older.f.Err())
	}
	if older.f.StateHash() != before || older.f.AppliedIndex() != 1 {
		t.Errorf("the stopped state machine changed its state or applied index")
	}
}

// TestWebSessionDataNotAliased: a row keeps data that neither the raft
// entry's buffer nor the apply goroutine's reused decode target can
// change later.
func TestWebSessionDataNotAliased(t *testing.T) {
	h := newHarness(t)
	l := h.next(cmdWebSessionWrite("s", []byte("original"), 0, 0, false))
	h.applyLog(l)
	clear(l.Data) // a log store may reuse the entry's buffer
	// Entries of every kind through the decode target, creates and sets
	// (whose messages it reuses) among them.
	h.must(cmdCreate("/a", []byte("create data")))
	h.must(cmdSet("/a", []byte("set data"), nil))
	h.must(cmdWebSessionWrite("t", []byte("other session"), 0, 0, false))
	h.must(cmdWebSessionWrite("t", nil, 1, 7, true))
	h.must(cmdWebSessionDelete("t", 0))
	if ws := h.webSession("s"); string(ws.Data) != "original" {
		t.Errorf("WebSession(s).Data = %q, want %q", ws.Data, "original")
	}
}

// TestWebSessionsIteration: WebSessions walks every row in id order,
// stops when fn says so, and lets fn call the state machine while applies
// go on (the race detector watches).
func TestWebSessionsIteration(t *testing.T) {
	h := newHarness(t)
	for _, id := range []string{"c", "a", "B", "b"} {
		h.must(cmdWebSessionWrite(id, nil, 0, int64(len(id))*1000, false))
	}
	if ids := webIDs(h.f); !slices.Equal(ids, []string{"B", "a", "b", "c"}) {
		t.Errorf("WebSessions() ids = %v, want [B a b c]", ids)
	}
	var n int
	h.f.WebSessions(func(id string, version uint64, maxLifetimeMs int64) bool {
		n++
		if ws, ok := h.f.WebSession(id); !ok || ws.Version != version || version != 1 || maxLifetimeMs != 1000 {
			t.Errorf("WebSessions() gave %s %d %dms, WebSession() = %+v, %v", id, version, maxLifetimeMs, ws, ok)
		}
		return n < 2
	})
	if n != 2 {
		t.Errorf("WebSessions() called fn %d times after it returned false at 2", n)
	}

	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for !stop.Load() {
				h.f.WebSessions(func(id string, _ uint64, _ int64) bool {
					_, _ = h.f.WebSession(id)
					return true
				})
				_ = h.f.WebSessionCount()
			}
		})
	}
	for i := range 300 {
		id := fmt.Sprintf("s%d", i%7)
		ws, _ := h.f.WebSession(id)
		if i%5 == 4 {
			h.apply(cmdWebSessionDelete(id, 0))
		} else {
			h.must(cmdWebSessionWrite(id, []byte(id), ws.Version, 0, false))
		}
	}
	stop.Store(true)
	wg.Wait()
}

// TestWebSessionDeterministic: two state machines applying the same log
// in different batches agree byte for byte.
func TestWebSessionDeterministic(t *testing.T) {
	var logs []*raft.Log
	h := newHarness(t)
	cmds := []*raftv1.Command{
		cmdWebSessionWrite("x", []byte("1"), 0, 0, false),
		cmdWebSessionWrite("y", []byte("2"), 0, 10, false),
		cmdWebSessionWrite("x", []byte("3"), 1, 0, false),
		cmdWebSessionWrite("x", []byte("stale"), 1, 0, false),
		cmdWebSessionDelete("y", 5),
		withID(cmdWebSessionDelete("y", 1), "d"),
		cmdWebSessionWrite("z", nil, 0, 0, true),
	}
	for _, c := range cmds {
		logs = append(logs, h.next(proto.CloneOf(c)))
	}
	a, b := New(nil), New(nil)
	for _, l := range logs {
		a.Apply(l)
	}
	b.ApplyBatch(logs)
	if !bytes.Equal(persist(t, a), persist(t, b)) {
		t.Errorf("the same log gave different snapshots")
	}
	if ws, ok := a.WebSession("z"); !ok || ws.Data != nil || ws.Version != 1 {
		t.Errorf("WebSession(z), created with keep_data, = %+v, %v, want an empty session at version 1", ws, ok)
	}
}

// TestWebSessionSize pins a row's size: a table of many sessions holds
// one value per session in its B-tree's nodes besides the id and data.
func TestWebSessionSize(t *testing.T) {
	if got := unsafe.Sizeof(WebSession{}); got != 72 {
		t.Errorf("unsafe.Sizeof(WebSession{}) = %d, want 72", got)
	}
}

// TestWebSessionWriteNewVersion: a coalesced delayed write (new_version)
// moves the version to new_version, only from the version it names, and
// a new_version not above that version is refused as a bad argument.
func TestWebSessionWriteNewVersion(t *testing.T) {
	h := newHarness(t)
	coalesced := func(id string, data []byte, version, newVersion uint64) *raftv1.Command {
		c := cmdWebSessionWrite(id, data, version, 0, false)
		c.GetWebSessionWrite().NewVersion = newVersion
		return c
	}
	// Created by three delayed writes at once: versions 1..3.
	if v := webVersion(t, h.must(coalesced("s1", []byte("n|i:3;"), 0, 3))); v != 3 {
		t.Errorf("coalesced create: version %d, want 3", v)
	}
	if ws := h.webSession("s1"); ws.Version != 3 || string(ws.Data) != "n|i:3;" {
		t.Errorf("after the coalesced create: %+v, want version 3, n|i:3;", ws)
	}
	// new_version version+1 is a plain write.
	if v := webVersion(t, h.must(coalesced("s1", []byte("n|i:4;"), 3, 4))); v != 4 {
		t.Errorf("new_version 4 from 3: version %d, want 4", v)
	}
	// The version check still holds: a stale coalesced write changes
	// nothing.
	h.refused(coalesced("s1", []byte("stale"), 3, 9), ErrBadVersion)
	h.refused(coalesced("absent", []byte("x"), 2, 9), ErrBadVersion)
	// new_version at or below version: refused whatever the state.
	h.refused(coalesced("s1", []byte("x"), 4, 4), ErrBadArgument)
	h.refused(coalesced("s1", []byte("x"), 4, 2), ErrBadArgument)
	if ws := h.webSession("s1"); ws.Version != 4 || string(ws.Data) != "n|i:4;" {
		t.Errorf("after the refused writes: %+v, want version 4, n|i:4;", ws)
	}
	if v := webVersion(t, h.must(coalesced("s1", nil, 4, 1<<40))); v != 1<<40 {
		t.Errorf("new_version 2^40: version %d", v)
	}
}

// The web session hook sees every row an entry changes, with the entry's
// term and the new version (0: deleted), and nothing of a refused
// command or of a delete that deletes nothing.
func TestWebSessionHook(t *testing.T) {
	var got []WebSessionChange
	f := New(nil, WithWebSessionHook(func(c WebSessionChange) { got = append(got, c) }))
	var index uint64
	apply := func(term uint64, cmd *raftv1.Command) *Result {
		index++
		res := f.Apply(&raft.Log{Index: index, Term: term, Type: raft.LogCommand, Data: encode(t, cmd, index)})
		return res.(*Result)
	}
	first := cmdWebSessionWrite("a", []byte("1"), 0, 0, false)
	first.RequestId = []byte("rid")
	apply(2, first)
	apply(2, cmdWebSessionWrite("a", []byte("2"), 1, 0, false))
	w := cmdWebSessionWrite("a", []byte("5"), 2, 0, false)
	w.GetWebSessionWrite().NewVersion = 5
	apply(3, w)
	if res := apply(3, cmdWebSessionWrite("a", []byte("x"), 1, 0, false)); !errors.Is(res.Err, ErrBadVersion) {
		t.Fatalf("stale write: %v, want ErrBadVersion", res.Err)
	}
	apply(3, cmdWebSessionDelete("a", 4))    // another version: deletes nothing
	apply(4, cmdWebSessionDelete("nope", 0)) // no such session
	apply(4, cmdWebSessionDelete("a", 0))
	want := []WebSessionChange{{"a", 1, 2, 1, []byte("rid")}, {"a", 2, 2, 2, nil}, {"a", 3, 3, 5, nil}, {"a", 7, 4, 0, nil}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("hook calls (-want +got):\n%s", diff)
	}
}
