package fsm

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// stateDump is everything the read API shows of a state machine.
type stateDump struct {
	Hash     [32]byte
	Applied  uint64
	Nodes    map[string]nodeDump
	Sessions []*paddockv1.Session
	Timers   []SessionTimer
	Members  []*raftv1.RegisterMember
	Znodes   int
	Requests int
	Web      []WebSession
}

type nodeDump struct {
	Data     []byte
	Stat     *paddockv1.Stat
	Children []string
}

// dump reads the whole state through the public read API, walking the tree
// with List from the root.
func dump(t testing.TB, f *FSM) stateDump {
	t.Helper()
	d := stateDump{
		Hash: f.StateHash(), Applied: f.AppliedIndex(), Nodes: map[string]nodeDump{},
		Sessions: f.Sessions(), Timers: f.SessionTimers(), Members: f.Members(),
		Requests: f.RequestIDs(),
	}
	f.WebSessions(func(id string, version uint64, maxLifetimeMs int64) bool {
		ws, ok := f.WebSession(id)
		if !ok || ws.Version != version || ws.MaxLifetimeMs != maxLifetimeMs {
			t.Errorf("WebSessions() lists %s at version %d, %dms; WebSession(%s) = %+v, %v", id, version, maxLifetimeMs, id, ws, ok)
		}
		d.Web = append(d.Web, ws)
		return true
	})
	d.Znodes, _ = f.Counts()
	queue := []string{"/"}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		data, st, err := f.Get(p)
		if err != nil {
			t.Fatalf("Get(%q) error = %v", p, err)
		}
		n := nodeDump{Data: data, Stat: st}
		for after := ""; ; {
			page, err := f.List(p, after, 3)
			if err != nil {
				t.Fatalf("List(%q) error = %v", p, err)
			}
			for _, c := range page.Children {
				n.Children = append(n.Children, c.GetName())
				queue = append(queue, joinPath(p, c.GetName()))
			}
			if after = page.Next; after == "" {
				break
			}
		}
		d.Nodes[p] = n
	}
	if len(d.Nodes) != d.Znodes {
		t.Errorf("walked %d znodes, Counts() = %d", len(d.Nodes), d.Znodes)
	}
	return d
}

// snapshotState builds varied state: nested nodes, binary and empty data,
// sequential counters with gaps, sessions with ephemerals and checkpoints,
// members, request ids (of a success, a failure, a multi) and a
// configuration entry last.
func snapshotState(t *testing.T) (h *harness, s1, s2, s3 uint64) {
	t.Helper()
	h = newHarness(t)
	bin := make([]byte, 256)
	for i := range bin {
		bin[i] = byte(i)
	}
	for _, p := range []string{"/app", "/app/config", "/app/nodes", "/a", "/a/b", "/a/b/c", "/empty"} {
		h.mustCreate(p, "")
	}
	h.must(cmdCreate("/a/b/c/d", bin))
	h.must(cmdSet("/app/config", []byte("v1"), nil))
	h.must(cmdSet("/app/config", []byte("v2"), proto.Int32(1)))
	h.must(cmdSet("/a", []byte("later emptied"), nil))
	h.must(cmdSet("/a", nil, nil))
	for range 3 {
		h.must(cmdCreateReq(&paddockv1.CreateRequest{Path: "/app/nodes/n-", Sequential: true}))
	}
	h.must(cmdDelete("/app/nodes/n-0000000001", nil, false))
	s1 = h.openSession(10_000)
	s2 = h.openSession(20_000)
	s3 = h.openSession(30_000)
	h.must(cmdEphemeral("/app/nodes/e-", s1, true)) // n-...0003
	h.must(cmdEphemeral("/live-s1", s1, false))
	h.must(cmdEphemeral("/app/e2", s2, false))
	h.must(cmdCheckpoint(checkpoint(s2, 5_000), checkpoint(s1, 9_000)))
	h.must(cmdRegister("n1", "n1:1"))
	h.must(cmdRegister("n2", "n2:1"))
	h.must(cmdRegister("n1", "n1:2"))
	// Request ids of each form the table packs: as is, hex, UUID.
	h.must(withID(cmdCreate("/req", []byte("r")), "snap-1"))
	if res := h.apply(withID(cmdCreate("/req", nil), snapHexID)); !errors.Is(res.Err, ErrNodeExists) {
		t.Fatalf("fixture: create /req again error = %v, want %v", res.Err, ErrNodeExists)
	}
	h.must(withID(cmdMulti(opCreate(&paddockv1.CreateRequest{Path: "/req/m"})), snapUUID))
	h.must(cmdWebSessionWrite("ws-b", bin, 0, 0, false))
	h.must(cmdWebSessionWrite("ws-a", []byte("n|i:1;"), 0, 60_000, false))
	h.must(cmdWebSessionWrite("ws-a", []byte("n|i:2;"), 1, 0, false))
	h.must(cmdWebSessionWrite("ws-empty", nil, 0, 0, false))
	h.index++
	h.f.ApplyBatch([]*raft.Log{{Index: h.index, Type: raft.LogConfiguration}})
	return h, s1, s2, s3
}

// Request ids of snapshotState.
const (
	snapHexID = "00112233445566778899aabbccddeeff"
	snapUUID  = "123e4567-e89b-12d3-a456-426614174000"
)

// afterSnapshot are commands applied after the snapshot, to the original
// and to the restored state alike.
func afterSnapshot(s1, s2 uint64) []*raftv1.Command {
	return []*raftv1.Command{
		cmdCreateReq(&paddockv1.CreateRequest{Path: "/app/nodes/n-", Sequential: true}),
		withID(cmdCreate("/req", []byte("r")), "snap-1"), // replays
		withID(cmdMulti(opCreate(&paddockv1.CreateRequest{Path: "/req/m"})), snapUUID),
		cmdCloseSession(s1),
		cmdSet("/app/config", []byte("v3"), proto.Int32(2)),
		cmdSet("/a/b/c/d", []byte("overwritten"), nil),
		cmdDelete("/a", nil, true),
		cmdCheckpoint(checkpoint(s2, 1_000)),
		cmdRegister("n3", "n3:1"),
		cmdRegister("n2", "n2:9"),
		cmdCreate("/after", []byte("x")),
		withID(cmdSet("/after", []byte("y"), nil), "snap-4"),
		cmdWebSessionWrite("ws-a", []byte("n|i:3;"), 2, 0, false),
		cmdWebSessionDelete("ws-b", 0),
		cmdWebSessionWrite("ws-c", nil, 0, 0, false),
	}
}

func TestSnapshotRestore(t *testing.T) {
	h, s1, s2, s3 := snapshotState(t)
	want := dump(t, h.f)
	if len(want.Sessions) != 3 || len(want.Members) != 2 || want.Requests != 3 || want.Applied != h.index {
		t.Fatalf("fixture: %d sessions, %d members, %d request ids, applied %d", len(want.Sessions), len(want.Members), want.Requests, want.Applied)
	}

	snap, err := h.f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot() error = %v", err)
	}
	snap2, _ := h.f.Snapshot()
	early := persistSnap(t, snap)
	snap.Release()

	// Later applies do not reach a snapshot taken before them.
	var origPaths []string
	for _, cmd := range afterSnapshot(s1, s2) {
		res := h.must(cmd)
		if cr, ok := res.Resp.(*paddockv1.CreateResponse); ok {
			origPaths = append(origPaths, cr.GetPath())
		}
	}
	late := persistSnap(t, snap2)
	snap2.Release()
	if !bytes.Equal(early, late) {
		t.Errorf("Persist() after more applies wrote %d bytes differing from the %d persisted at once", len(late), len(early))
	}
	if bytes.Equal(early, persist(t, h.f)) {
		t.Errorf("a new snapshot after more applies equals the old one")
	}

	sink := &recordingSink{}
	restored := New(sink)
	rc := &closeTracker{Reader: bytes.NewReader(early)}
	if err := restored.Restore(rc); err != nil {
		t.Fatalf("Restore() error = %v", err)
	}
	if !rc.closed {
		t.Errorf("Restore() did not close its reader")
	}
	if diff := cmp.Diff([]uint64{want.Applied}, sink.restored); diff != "" {
		t.Errorf("sink Restored() calls mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, dump(t, restored), protocmp.Transform()); diff != "" {
		t.Errorf("restored state mismatch (-want +got):\n%s", diff)
	}
	checkInvariants(t, restored)

	// The restored state continues like the original: the sequential
	// counter, the ephemeral index (closing s1 deletes its ephemerals),
	// checkpoints and members.
	rh := &harness{t: t, f: restored, sink: sink, index: want.Applied}
	var restPaths []string
	for _, cmd := range afterSnapshot(s1, s2) {
		res := rh.must(cmd)
		switch r := res.Resp.(type) {
		case *paddockv1.CreateResponse:
			restPaths = append(restPaths, r.GetPath())
		case *paddockv1.CloseSessionResponse:
			if r.GetDeleted() != 2 {
				t.Errorf("CloseSession(%d) after Restore deleted %d, want 2", s1, r.GetDeleted())
			}
		}
	}
	if want := []string{"/app/nodes/n-0000000004", "/req", "/after"}; !slices.Equal(restPaths, want) || !slices.Equal(origPaths, want) {
		t.Errorf("created after the snapshot: restored %v, original %v, want %v", restPaths, origPaths, want)
	}
	for _, p := range []string{"/live-s1", "/app/nodes/e-0000000003"} {
		if rh.exists(p) {
			t.Errorf("Get(%q) after closing its session on the restored state found it", p)
		}
	}
	// The restored table replays like the original's: the same failure,
	// at the same original index.
	for name, hh := range map[string]*harness{"original": h, "restored": rh} {
		res := hh.apply(withID(cmdCreate("/req", nil), snapHexID))
		if !res.Replayed || !errors.Is(res.Err, ErrNodeExists) || res.Index > want.Applied {
			t.Errorf("%s: retry of the hex id = index %d replayed %v error %v, want a replayed %v from before index %d",
				name, res.Index, res.Replayed, res.Err, ErrNodeExists, want.Applied)
		}
	}
	if diff := cmp.Diff(dump(t, h.f), dump(t, restored), protocmp.Transform()); diff != "" {
		t.Errorf("original and restored differ after the same commands (-original +restored):\n%s", diff)
	}
	if _, err := restored.Session(s3); err != nil {
		t.Errorf("Session(%d) after Restore error = %v", s3, err)
	}
	checkInvariants(t, restored)
}

// TestRestoreReplacesState restores over a state machine that has its own
// nodes and sessions: none of them survive, the ephemeral index included.
func TestRestoreReplacesState(t *testing.T) {
	src := newHarness(t)
	src.mustCreate("/src", "")
	data := persist(t, src.f)

	dst := newHarness(t)
	dst.mustCreate("/old", "")
	dst.mustCreate("/old/kid", "")
	old := dst.openSession(1_000)
	dst.must(cmdEphemeral("/mine", old, false))
	dst.must(cmdRegister("n9", "x"))
	if err := dst.f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatalf("Restore() error = %v", err)
	}
	if diff := cmp.Diff(dump(t, src.f), dump(t, dst.f), protocmp.Transform()); diff != "" {
		t.Errorf("state after Restore mismatch (-want +got):\n%s", diff)
	}
	dst.index = dst.f.AppliedIndex()
	cmd := cmdCloseSession(old)
	assertFails(t, dst, cmd, func() *Result { return dst.apply(cmd) }, ErrSessionExpired)
	dst.mustCreate("/mine", "") // the old ephemeral is gone with its owner
	checkInvariants(t, dst.f)
}

// snapshotStream hand-builds a snapshot stream.
func snapshotStream(t *testing.T, format uint32, records ...*raftv1.SnapshotRecord) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := protodelim.MarshalTo(&buf, &raftv1.SnapshotHeader{Format: format, AppliedIndex: 9}); err != nil {
		t.Fatal(err)
	}
	for _, r := range records {
		if _, err := protodelim.MarshalTo(&buf, r); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func znodeRec(path string) *raftv1.SnapshotRecord {
	return &raftv1.SnapshotRecord{Record: &raftv1.SnapshotRecord_Znode{Znode: &raftv1.Znode{Path: path}}}
}

func requestRec(id string, result []byte) *raftv1.SnapshotRecord {
	return &raftv1.SnapshotRecord{Record: &raftv1.SnapshotRecord_Request{Request: &raftv1.RequestRecord{
		RequestId: []byte(id), Index: 3, TimeUnixMs: epochMs, Op: 10, Result: result,
	}}}
}

func endRec(records uint64) *raftv1.SnapshotRecord {
	return &raftv1.SnapshotRecord{Record: &raftv1.SnapshotRecord_End{End: &raftv1.SnapshotEnd{Records: records}}}
}

// TestRestoreRequestRecords is the control for the request record cases
// of TestRestoreCorrupt: the same stream, well formed, restores and its
// entry replays.
func TestRestoreRequestRecords(t *testing.T) {
	result, err := proto.Marshal(&raftv1.ProposeResponse{Index: 3, FailedOp: -1, Response: mustMarshal(t, &paddockv1.CreateResponse{Path: "/x"})})
	if err != nil {
		t.Fatal(err)
	}
	retry := withID(cmdCreate("/x", nil), "r")
	rec := requestRec("r", result)
	rec.GetRequest().Fingerprint, _ = fingerprint(retry, nil)
	stream := snapshotStream(t, snapshotFormat, znodeRec("/"), rec, requestRec("s", nil), endRec(3))
	f := New(nil)
	if err := f.Restore(io.NopCloser(bytes.NewReader(stream))); err != nil {
		t.Fatalf("Restore() error = %v", err)
	}
	h := &harness{t: t, f: f, sink: &recordingSink{}, index: 9}
	res := h.applyAt(retry, epochMs+1)
	if !res.Replayed || res.Index != 3 || res.Err != nil || res.Resp.(*paddockv1.CreateResponse).GetPath() != "/x" {
		t.Errorf("retry of a restored id = %+v, want a replay of index 3 creating /x", res)
	}
	if h.exists("/x") {
		t.Errorf("Get(/x) after a replay found it")
	}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRestoreCorrupt(t *testing.T) {
	src, _, _, _ := snapshotState(t)
	src.must(cmdCreate("/big", bytes.Repeat([]byte("0123456789"), 20_000)))
	good := persist(t, src.f)
	bigAt := bytes.Index(good, []byte("0123456789"))

	tooLong := snapshotStream(t, snapshotFormat, znodeRec("/"))
	tooLong = protowire.AppendVarint(tooLong, MaxDataSize+MaxPathLength+2048)
	tooLong = append(tooLong, make([]byte, 64)...)

	tests := []struct {
		name string
		r    io.Reader
	}{
		{"empty", bytes.NewReader(nil)},
		{"garbage", bytes.NewReader([]byte("not a snapshot, just some text"))},
		{"truncated by one byte", bytes.NewReader(good[:len(good)-1])},
		{"truncated inside a large record", bytes.NewReader(good[:bigAt+50_000])},
		{"truncated header", bytes.NewReader(good[:2])},
		{"read error", io.MultiReader(bytes.NewReader(good[:len(good)/2]), iotest.ErrReader(errors.New("disk on fire")))},
		{"header only", bytes.NewReader(snapshotStream(t, snapshotFormat))},
		{"format 0", bytes.NewReader(snapshotStream(t, 0, znodeRec("/")))},
		{"no root", bytes.NewReader(snapshotStream(t, snapshotFormat, &raftv1.SnapshotRecord{
			Record: &raftv1.SnapshotRecord_Session{Session: &raftv1.SessionRecord{Id: 1, TimeoutMs: 1}},
		}))},
		{"child before its parent", bytes.NewReader(snapshotStream(t, snapshotFormat, znodeRec("/"), znodeRec("/a/b"), znodeRec("/a")))},
		{"bad path", bytes.NewReader(snapshotStream(t, snapshotFormat, znodeRec("/"), znodeRec("/a//b")))},
		{"duplicate record", bytes.NewReader(snapshotStream(t, snapshotFormat, znodeRec("/"), znodeRec("/a"), znodeRec("/a")))},
		{"unknown record", bytes.NewReader(snapshotStream(t, snapshotFormat, znodeRec("/"), &raftv1.SnapshotRecord{}))},
		{"request id twice", bytes.NewReader(snapshotStream(t, snapshotFormat, znodeRec("/"), requestRec("r", nil), requestRec("r", nil), endRec(3)))},
		{"request without an id", bytes.NewReader(snapshotStream(t, snapshotFormat, znodeRec("/"), requestRec("", nil), endRec(2)))},
		{"request id too long", bytes.NewReader(snapshotStream(t, snapshotFormat, znodeRec("/"), requestRec(strings.Repeat("r", MaxRequestIDLength+1), nil), endRec(2)))},
		{"request with an undecodable result", bytes.NewReader(snapshotStream(t, snapshotFormat, znodeRec("/"), requestRec("r", []byte{0xff}), endRec(2)))},
		{"record over the size limit", bytes.NewReader(tooLong)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, s1, _, _ := snapshotState(t)
			sink := h.sink
			want := dump(t, h.f)
			rc := &closeTracker{Reader: tc.r}
			if err := h.f.Restore(rc); err == nil {
				t.Fatalf("Restore(%s) error = nil, want an error", tc.name)
			}
			if !rc.closed {
				t.Errorf("Restore(%s) did not close its reader", tc.name)
			}
			if diff := cmp.Diff(want, dump(t, h.f), protocmp.Transform()); diff != "" {
				t.Errorf("Restore(%s) changed the state (-before +after):\n%s", tc.name, diff)
			}
			if len(sink.restored) != 0 {
				t.Errorf("Restore(%s) told the sink %v, want nothing", tc.name, sink.restored)
			}
			// The previous state is fully usable, its ephemeral index too.
			if res := h.apply(cmdCloseSession(s1)); res.Err != nil {
				t.Errorf("CloseSession(%d) after a failed Restore error = %v", s1, res.Err)
			}
			checkInvariants(t, h.f)
		})
	}
}

// TestRestoreTruncated cuts a snapshot at every byte: every cut, inside a
// record or exactly between two, must fail (the end record counts them).
func TestRestoreTruncated(t *testing.T) {
	h, _, _, _ := snapshotState(t)
	good := persist(t, h.f)
	for cut := range len(good) {
		f := New(nil)
		if err := f.Restore(io.NopCloser(bytes.NewReader(good[:cut]))); err == nil {
			t.Errorf("Restore(first %d of %d bytes) error = nil, want an error", cut, len(good))
		}
	}
	f := New(nil)
	if err := f.Restore(io.NopCloser(bytes.NewReader(good))); err != nil {
		t.Errorf("Restore(whole snapshot) error = %v", err)
	}
}

func TestPersistWriteError(t *testing.T) {
	h, _, _, _ := snapshotState(t)
	snap, err := h.f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot() error = %v", err)
	}
	defer snap.Release()
	sink := &memSink{writeErr: errors.New("disk full")}
	if err := snap.Persist(sink); err == nil {
		t.Errorf("Persist() to a failing sink error = nil, want an error")
	}
	if !sink.cancelled || sink.closed {
		t.Errorf("Persist() to a failing sink: closed=%v cancelled=%v, want cancelled only", sink.closed, sink.cancelled)
	}
}

// TestStateHashAndIndex checks that the index StateHashAndIndex returns is
// the one its digest was taken at: after each entry, across an entry that
// changes nothing, after a restore, and while entries are being applied
// from another goroutine, where every (digest, index) pair must be the
// digest a replica that applied exactly that far computes.
func TestStateHashAndIndex(t *testing.T) {
	h := newHarness(t)
	if hash, idx := h.f.StateHashAndIndex(); hash != h.f.StateHash() || idx != 0 {
		t.Errorf("StateHashAndIndex() of a new FSM = %x, %d, want StateHash() %x, 0", hash, idx, h.f.StateHash())
	}
	h.mustCreate("/a", "1")
	h.must(cmdSet("/a", []byte("2"), nil))
	hash, idx := h.f.StateHashAndIndex()
	if hash != h.f.StateHash() || idx != h.index {
		t.Errorf("StateHashAndIndex() = %x, %d, want StateHash() %x, %d", hash, idx, h.f.StateHash(), h.index)
	}
	h.apply(cmdBarrier())
	if got, gotIdx := h.f.StateHashAndIndex(); got != hash || gotIdx != h.index {
		t.Errorf("StateHashAndIndex() after a barrier = %x, %d, want the same digest %x at %d", got, gotIdx, hash, h.index)
	}
	restored := New(nil)
	if err := restored.Restore(io.NopCloser(bytes.NewReader(persist(t, h.f)))); err != nil {
		t.Fatalf("Restore() error = %v", err)
	}
	if got, gotIdx := restored.StateHashAndIndex(); got != hash || gotIdx != h.index {
		t.Errorf("StateHashAndIndex() after Restore = %x, %d, want %x, %d", got, gotIdx, hash, h.index)
	}

	// Every entry changes /k, so each index has its own digest: want maps
	// them, as a replica applying one entry at a time sees them.
	const n = 2000
	logs := make([]*raft.Log, n)
	ref := newHarness(t)
	want := map[uint64][32]byte{0: ref.f.StateHash()}
	for i := range logs {
		cmd := cmdSet("/k", []byte(strconv.Itoa(i)), nil)
		if i == 0 {
			cmd = cmdCreate("/k", nil)
		}
		logs[i] = ref.next(cmd)
		ref.applyLog(logs[i])
		want[logs[i].Index] = ref.f.StateHash()
	}
	distinct := map[[32]byte]bool{}
	for _, d := range want {
		distinct[d] = true
	}
	if len(distinct) != n+1 {
		t.Fatalf("reference: %d distinct digests for %d indexes, want one each", len(distinct), n+1)
	}

	type sample struct {
		hash  [32]byte
		index uint64
	}
	f := New(nil)
	var (
		stop    atomic.Bool
		taken   atomic.Int64
		samples []sample
		wg      sync.WaitGroup
	)
	wg.Go(func() {
		for !stop.Load() {
			hash, idx := f.StateHashAndIndex()
			samples = append(samples, sample{hash, idx})
			taken.Add(1)
		}
	})
	for i := 0; i < n; i += 10 {
		f.ApplyBatch(logs[i : i+10])
		if i%200 == 0 {
			// Let the sampler see this index at least once, so that the
			// samples cover the whole run even on a loaded machine.
			for seen := taken.Load(); taken.Load() < seen+2; {
				runtime.Gosched()
			}
		}
	}
	stop.Store(true)
	wg.Wait()
	indexes := map[uint64]bool{}
	for _, s := range samples {
		indexes[s.index] = true
		if w, ok := want[s.index]; !ok || s.hash != w {
			t.Fatalf("StateHashAndIndex() = %x, %d while applying, want the digest %x of index %d", s.hash, s.index, w, s.index)
		}
	}
	if len(indexes) < n/200 {
		t.Errorf("samples saw %d indexes, want at least %d", len(indexes), n/200)
	}
}

// TestRestoreNewer: a snapshot a newer paddock wrote (a newer format, or
// a kind of record this binary does not know) stops the state machine,
// as an entry it cannot understand does: it fails with ErrUpgradeRequired
// naming the upgrade, changes nothing, and refuses every later entry.
func TestRestoreNewer(t *testing.T) {
	unknownKind := &raftv1.SnapshotRecord{}
	unknownKind.ProtoReflect().SetUnknown(protowire.AppendBytes(protowire.AppendTag(nil, 99, protowire.BytesType), []byte("new")))
	tests := []struct {
		name   string
		stream []byte
	}{
		{"newer format", snapshotStream(t, snapshotFormat+1, znodeRec("/"), endRec(1))},
		{"unknown record kind", snapshotStream(t, snapshotFormat, znodeRec("/"), unknownKind, endRec(2))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, _, _, _ := snapshotState(t)
			want := dump(t, h.f)
			err := h.f.Restore(io.NopCloser(bytes.NewReader(tc.stream)))
			if !errors.Is(err, ErrUpgradeRequired) || !strings.Contains(err.Error(), "upgrade paddock on this node") {
				t.Fatalf("Restore(%s) error = %v, want %v naming the upgrade", tc.name, err, ErrUpgradeRequired)
			}
			select {
			case <-h.f.Failed():
			default:
				t.Fatalf("Failed() is not closed after Restore(%s)", tc.name)
			}
			if got := h.f.Err(); got != err {
				t.Errorf("Err() = %v, want %v", got, err)
			}
			if diff := cmp.Diff(want, dump(t, h.f), protocmp.Transform()); diff != "" {
				t.Errorf("Restore(%s) changed the state (-before +after):\n%s", tc.name, diff)
			}
			if res := h.apply(cmdCreate("/after", nil)); !errors.Is(res.Err, ErrNotApplied) || h.exists("/after") {
				t.Errorf("Apply after Restore(%s) = %v, want a refusal matching %v", tc.name, res.Err, ErrNotApplied)
			}
		})
	}
}
