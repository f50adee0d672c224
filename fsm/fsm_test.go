package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// fatalEntries are raft entries this binary cannot understand: each
// must stop the state machine.
func fatalEntries(t testing.TB) []struct {
	name string
	data []byte
} {
	valid := encode(t, cmdCreate("/a/new", []byte("data")), 1)
	invalidUTF8 := protowire.AppendTag(nil, 1, protowire.BytesType)
	invalidUTF8 = protowire.AppendString(invalidUTF8, "/a\xff")
	var createBadPath []byte
	createBadPath = protowire.AppendTag(createBadPath, 10, protowire.BytesType)
	createBadPath = protowire.AppendBytes(createBadPath, invalidUTF8)
	var futureOp []byte
	futureOp = protowire.AppendTag(futureOp, 1, protowire.VarintType)
	futureOp = protowire.AppendVarint(futureOp, uint64(timeAt(1)))
	futureOp = protowire.AppendTag(futureOp, 99, protowire.BytesType)
	futureOp = protowire.AppendBytes(futureOp, []byte{0x08, 0x01})
	var wrongWireType []byte
	wrongWireType = protowire.AppendTag(wrongWireType, 10, protowire.VarintType)
	wrongWireType = protowire.AppendVarint(wrongWireType, 7)
	onlyTime, _ := proto.Marshal(&raftv1.Command{TimeUnixMs: timeAt(1)})
	future := cmdCreate("/a/new", nil)
	future.FeatureLevel = FeatureLevel + 1
	return []struct {
		name string
		data []byte
	}{
		{"empty entry", nil},
		{"empty command with a time", onlyTime},
		{"garbage", []byte("this is not a protobuf message at all")},
		{"invalid tag", []byte{0xff}},
		{"zero field number", []byte{0x00, 0x01}},
		{"truncated length", []byte{0x52}},
		{"truncated command", valid[:len(valid)-1]},
		{"length past the end", append(bytes.Clone(valid), 0x52, 0x05, 'a')},
		{"invalid UTF-8 path", createBadPath},
		{"operation from a newer build", futureOp},
		{"known operation stamped with a newer level", encode(t, future, 1)},
		{"wrong wire type for an op", wrongWireType},
		{"varint overflow", []byte{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
	}
}

// assertStopped checks that h's state machine stopped at entry index
// with a message naming the upgrade, and that it changed nothing since
// before: no state, no applied index, no events.
func assertStopped(t *testing.T, h *harness, index uint64, before stateDump, res *Result) {
	t.Helper()
	if !errors.Is(res.Err, ErrUpgradeRequired) || res.Resp != nil || res.Replayed {
		t.Errorf("Apply(entry %d) = %+v, want only an error matching %v", index, res, ErrUpgradeRequired)
	}
	err := h.f.Err()
	if !errors.Is(err, ErrUpgradeRequired) {
		t.Fatalf("Err() = %v, want %v", err, ErrUpgradeRequired)
	}
	for _, want := range []string{fmt.Sprintf("entry %d ", index), "upgrade paddock on this node"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Err() = %q, want it to contain %q", err, want)
		}
	}
	select {
	case <-h.f.Failed():
	default:
		t.Errorf("Failed() is not closed after a fatal entry")
	}
	if diff := cmp.Diff(before, dump(t, h.f), protocmp.Transform()); diff != "" {
		t.Errorf("state changed after a fatal entry (-before +after):\n%s", diff)
	}
	if got := h.sink.take(); len(got) != 0 {
		t.Errorf("events after a fatal entry = %v, want none", got)
	}
}

// TestFatalEntries checks that an entry the binary cannot understand
// stops the state machine instead of being skipped: it changes nothing,
// every later entry is refused without changing anything either, and
// snapshots and restores are refused.
func TestFatalEntries(t *testing.T) {
	for _, tc := range fatalEntries(t) {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := treeFixture(t)
			snap := persist(t, h.f)
			h.sink.take()
			before := dump(t, h.f)
			res := h.applyRaw(tc.data)
			assertStopped(t, h, h.index, before, res)

			// Later entries, valid ones and configuration entries alike,
			// are refused and change nothing.
			later := h.next(cmdCreate("/after", nil))
			conf := &raft.Log{Index: later.Index + 1, Type: raft.LogConfiguration}
			h.index++
			results := h.f.ApplyBatch([]*raft.Log{later, conf})
			// Committed: the replicas that go on apply it, and only they
			// know its outcome.
			if r, ok := results[0].(*Result); !ok || !errors.Is(r.Err, ErrNotApplied) || r.Index != later.Index ||
				!strings.Contains(r.Err.Error(), "outcome unknown") {
				t.Errorf("Apply(later entry) = %+v, want a refusal of entry %d matching %v", results[0], later.Index, ErrNotApplied)
			}
			if results[1] != nil {
				t.Errorf("Apply(configuration entry) = %v, want nil", results[1])
			}
			if diff := cmp.Diff(before, dump(t, h.f), protocmp.Transform()); diff != "" {
				t.Errorf("later entries changed the state (-before +after):\n%s", diff)
			}
			if _, err := h.f.Snapshot(); !errors.Is(err, ErrUpgradeRequired) {
				t.Errorf("Snapshot() of a stopped state machine error = %v, want %v", err, ErrUpgradeRequired)
			}
			if err := h.f.Restore(io.NopCloser(bytes.NewReader(snap))); !errors.Is(err, ErrUpgradeRequired) {
				t.Errorf("Restore() into a stopped state machine error = %v, want %v", err, ErrUpgradeRequired)
			}
		})
	}
}

// TestFeatureLevelOfBinary checks the level a state machine applies: an
// entry stamped with a level above it is fatal, one at it applies, so a
// binary that supports level 2 applies what one of level 1 stops at.
func TestFeatureLevelOfBinary(t *testing.T) {
	cmd := func() *raftv1.Command {
		c := cmdCreate("/next", nil)
		c.FeatureLevel = FeatureLevel + 1
		return c
	}
	newer := newHarness(t)
	newer.f = New(newer.sink, WithFeatureLevel(FeatureLevel+1))
	if got := newer.f.FeatureLevel(); got != FeatureLevel+1 {
		t.Fatalf("FeatureLevel() = %d, want %d", got, FeatureLevel+1)
	}
	newer.must(cmd())
	if !newer.exists("/next") || newer.f.Err() != nil {
		t.Errorf("a level %d state machine did not apply a level %d entry: Err() = %v", FeatureLevel+1, FeatureLevel+1, newer.f.Err())
	}

	older := newHarness(t)
	before := dump(t, older.f)
	res := older.apply(cmd())
	assertStopped(t, older, 1, before, res)
	want := fmt.Sprintf("entry 1 needs feature level %d, this binary supports %d: upgrade paddock on this node", FeatureLevel+1, FeatureLevel)
	if err := older.f.Err(); !strings.Contains(err.Error(), want) {
		t.Errorf("Err() = %q, want it to contain %q", err, want)
	}
}

// TestOpFeatureLevel checks that every operation of the Command oneof has
// a feature level this binary supports and an apply case, and that an
// unstamped entry (feature_level 0) applies as its operation's level.
func TestOpFeatureLevel(t *testing.T) {
	fields := opField.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		cmd := &raftv1.Command{}
		cmd.ProtoReflect().Set(fd, cmd.ProtoReflect().NewField(fd))
		level, ok := OpFeatureLevel(cmd)
		if !ok || level < BaseFeatureLevel || level > FeatureLevel {
			t.Errorf("OpFeatureLevel(%s) = %d, %v, want a level in [%d, %d]", fd.Name(), level, ok, BaseFeatureLevel, FeatureLevel)
		}
		if _, err := newState(defaultRequestLimits).apply(&applyCtx{index: 1}, cmd); errors.Is(err, errUnknownOp) {
			t.Errorf("apply(%s) has no case", fd.Name())
		}
		if got := OpName(cmd); got != string(fd.Name()) {
			t.Errorf("OpName(%s) = %q", fd.Name(), got)
		}
	}
	if _, ok := OpFeatureLevel(&raftv1.Command{}); ok {
		t.Errorf("OpFeatureLevel(no operation) reports a level")
	}
}

// TestCheckFeatureLevel checks the proposer's rule: a command above the
// base level needs every member to record its level; base commands need
// no record at all.
func TestCheckFeatureLevel(t *testing.T) {
	h := newHarness(t)
	reg := func(id string, level uint32) {
		cmd := cmdRegister(id, id+":1")
		cmd.GetRegisterMember().FeatureLevel = level
		h.must(cmd)
	}
	reg("n1", 2)
	reg("n2", 2)
	reg("n3", 1)
	create := cmdCreate("/x", nil)
	tests := []struct {
		name  string
		level uint32
		ids   []string
		want  string // "" for no error
	}{
		{"base level, no records at all", BaseFeatureLevel, []string{"n7", "n8"}, ""},
		{"level 2, every member at 2", 2, []string{"n2", "n1"}, ""},
		{"level 2, a member at 1", 2, []string{"n1", "n2", "n3"}, "member n3 supports feature level 1, create needs 2: upgrade n3"},
		{"level 2, a member without a record", 2, []string{"n1", "n4"}, "member n4 has not recorded its feature level yet, create needs 2"},
		{"level 3", 3, []string{"n1"}, "member n1 supports feature level 2, create needs 3: upgrade n1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := h.f.CheckFeatureLevel(create, tc.level, tc.ids)
			if tc.want == "" {
				if err != nil {
					t.Errorf("CheckFeatureLevel(%d, %v) = %v, want nil", tc.level, tc.ids, err)
				}
				return
			}
			if !errors.Is(err, ErrFeatureLevel) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("CheckFeatureLevel(%d, %v) = %v, want %v containing %q", tc.level, tc.ids, err, ErrFeatureLevel, tc.want)
			}
		})
	}
	// The level survives a snapshot.
	restored := New(nil)
	if err := restored.Restore(io.NopCloser(bytes.NewReader(persist(t, h.f)))); err != nil {
		t.Fatal(err)
	}
	if m, _ := restored.Member("n1"); m.GetFeatureLevel() != 2 {
		t.Errorf("Member(n1) after Restore = %v, want feature level 2", m)
	}
}

func TestDomainErrorsDoNotStop(t *testing.T) {
	h, _ := treeFixture(t)
	h.apply(cmdCreate("/a", nil))
	h.apply(cmdDelete("/", nil, false))
	h.apply(cmdMulti(&paddockv1.Op{}))
	h.apply(cmdRegister("", ""))
	if err := h.f.Err(); err != nil {
		t.Errorf("Err() after domain failures = %v, want nil", err)
	}
}

func TestApplyBatch(t *testing.T) {
	h := newHarness(t)
	h.must(cmdCreate("/a", nil))
	h.sink.take()
	batches := h.sink.batches
	logs := []*raft.Log{
		h.next(cmdCreate("/a/b", []byte("1"))),
		{Index: h.index + 1, Type: raft.LogConfiguration, Data: []byte("raft's own")},
	}
	h.index++
	logs = append(logs,
		h.next(cmdCreate("/a/b", nil)), // exists
		h.next(cmdBarrier()),
		h.next(cmdSet("/a/b", []byte("2"), nil)),
	)
	h.index++
	logs = append(logs, &raft.Log{Index: h.index, Type: raft.LogConfiguration})

	results := h.f.ApplyBatch(logs)
	if len(results) != len(logs) {
		t.Fatalf("ApplyBatch(%d entries) = %d results", len(logs), len(results))
	}
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			if results[i] != nil {
				t.Errorf("ApplyBatch result %d (configuration) = %v, want nil", i, results[i])
			}
			continue
		}
		res, ok := results[i].(*Result)
		if !ok || res.Index != l.Index {
			t.Errorf("ApplyBatch result %d = %#v, want a *Result at index %d", i, results[i], l.Index)
		}
	}
	if err := results[2].(*Result).Err; !errors.Is(err, ErrNodeExists) {
		t.Errorf("ApplyBatch result 2 error = %v, want %v", err, ErrNodeExists)
	}
	if got := h.f.AppliedIndex(); got != h.index {
		t.Errorf("AppliedIndex() = %d, want %d (the last entry, a configuration)", got, h.index)
	}
	if h.sink.batches != batches+1 || h.sink.last != h.index {
		t.Errorf("sink got %d batches up to %d, want 1 up to %d", h.sink.batches-batches, h.sink.last, h.index)
	}
	var got []string
	for _, e := range h.sink.take() {
		got = append(got, fmt.Sprintf("%d %d %s", e.Zxid, e.Type, e.Path))
	}
	want := []string{
		fmt.Sprintf("%d %d /a/b", logs[0].Index, EventCreated),
		fmt.Sprintf("%d %d /a", logs[0].Index, EventChildrenChanged),
		fmt.Sprintf("%d %d /a/b", logs[4].Index, EventDataChanged),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ApplyBatch events mismatch (-want +got):\n%s", diff)
	}
	if data, _, _ := h.f.Get("/a/b"); string(data) != "2" {
		t.Errorf("Get(/a/b) = %q, want %q", data, "2")
	}

	// An empty batch changes nothing.
	before := h.f.StateHash()
	if res := h.f.ApplyBatch(nil); len(res) != 0 {
		t.Errorf("ApplyBatch(nil) = %v, want no results", res)
	}
	if h.f.StateHash() != before || h.f.AppliedIndex() != h.index {
		t.Errorf("ApplyBatch(nil) changed the state")
	}
}

// resultView is a Result in comparable form.
type resultView struct {
	Index    uint64
	Resp     proto.Message
	Code     raftv1.ErrorCode
	Msg      string
	FailedOp int
}

func viewResult(r any) *resultView {
	res, ok := r.(*Result)
	if !ok {
		return nil
	}
	v := &resultView{Index: res.Index, Resp: res.Resp, Code: ErrorCode(res.Err), FailedOp: -1}
	if res.Err != nil {
		v.Msg = res.Err.Error()
	}
	var me *MultiError
	if errors.As(res.Err, &me) {
		v.FailedOp = me.Index
	}
	return v
}

// logGen generates a pseudo-random log of mixed commands, many of which
// fail: it knows the sessions it opened, not the tree.
type logGen struct {
	t testing.TB
	// sent is the last command each request id was drawn for.
	sent     map[string]*raftv1.Command
	rng      *rand.Rand
	index    uint64
	sessions []uint64
}

var genNames = []string{"a", "b", "c", "d"}

// genRequestIDs is the pool of request ids logGen draws from.
const genRequestIDs = 100

func (g *logGen) path() string {
	if g.rng.IntN(40) == 0 {
		return []string{"/a//b", "/a/", "", "/paddock/x", "/paddock", "rel", "/a/.."}[g.rng.IntN(7)]
	}
	p := ""
	for range 1 + g.rng.IntN(3) {
		p += "/" + genNames[g.rng.IntN(len(genNames))]
	}
	return p
}

func (g *logGen) version() *int32 {
	switch g.rng.IntN(4) {
	case 0:
		return nil
	case 1:
		return proto.Int32(-1)
	}
	return proto.Int32(int32(g.rng.IntN(3)))
}

func (g *logGen) data() []byte {
	if g.rng.IntN(400) == 0 {
		return make([]byte, MaxDataSize+1)
	}
	b := make([]byte, g.rng.IntN(48))
	for i := range b {
		b[i] = byte(g.rng.Uint32())
	}
	return b
}

func (g *logGen) session() uint64 {
	if len(g.sessions) == 0 || g.rng.IntN(8) == 0 {
		return g.index + 1000 // unknown
	}
	return g.sessions[g.rng.IntN(len(g.sessions))]
}

func (g *logGen) createReq() *paddockv1.CreateRequest {
	req := &paddockv1.CreateRequest{Path: g.path(), Data: g.data(), Sequential: g.rng.IntN(5) == 0}
	if req.Sequential && g.rng.IntN(2) == 0 {
		req.Path += "/"
	}
	switch g.rng.IntN(10) {
	case 0, 1, 2:
		req.Type = paddockv1.NodeType_NODE_TYPE_EPHEMERAL
		req.SessionId = g.session()
	case 3:
		req.Type = paddockv1.NodeType_NODE_TYPE_PERSISTENT
	case 4:
		if g.rng.IntN(5) == 0 {
			req.SessionId = 1 // persistent with a session: refused
		}
	}
	return req
}

func (g *logGen) op() *paddockv1.Op {
	switch g.rng.IntN(10) {
	case 0, 1, 2, 3:
		return opCreate(g.createReq())
	case 4, 5:
		return opSet(g.path(), g.data(), g.version())
	case 6, 7:
		return opDelete(g.path(), g.version(), g.rng.IntN(3) == 0)
	case 8:
		v := g.version()
		if v == nil {
			v = proto.Int32(-1)
		}
		return opCheck(g.path(), *v)
	}
	if g.rng.IntN(4) == 0 {
		return &paddockv1.Op{}
	}
	return opCheck(g.path(), -1)
}

// next returns the next entry.
func (g *logGen) next() *raft.Log {
	g.index++
	var cmd *raftv1.Command
	switch n := g.rng.IntN(100); {
	case n < 30:
		cmd = cmdCreateReq(g.createReq())
	case n < 45:
		cmd = cmdSet(g.path(), g.data(), g.version())
	case n < 55:
		cmd = cmdDelete(g.path(), g.version(), g.rng.IntN(3) == 0)
	case n < 67:
		ops := make([]*paddockv1.Op, 1+g.rng.IntN(5))
		for i := range ops {
			ops[i] = g.op()
		}
		cmd = cmdMulti(ops...)
	case n < 74:
		timeout := int64(1000 + g.rng.IntN(30_000))
		if g.rng.IntN(10) == 0 {
			timeout = 0 // refused
		} else {
			g.sessions = append(g.sessions, g.index)
		}
		cmd = cmdOpenSession(timeout)
	case n < 79:
		id := g.session()
		for i, s := range g.sessions {
			if s == id {
				g.sessions = append(g.sessions[:i], g.sessions[i+1:]...)
				break
			}
		}
		cmd = cmdCloseSession(id)
	case n < 83:
		cps := make([]*raftv1.SessionCheckpoint, g.rng.IntN(4))
		for i := range cps {
			cps[i] = checkpoint(g.session(), int64(g.rng.IntN(40_000))-1000)
		}
		cmd = cmdCheckpoint(cps...)
	case n < 86:
		id := fmt.Sprintf("n%d", g.rng.IntN(4))
		if g.rng.IntN(5) == 0 {
			id = ""
		}
		cmd = cmdRegister(id, fmt.Sprintf("h%d:9000", g.rng.IntN(100)))
	case n < 89:
		cmd = cmdBarrier()
	case n < 96:
		return &raft.Log{Index: g.index, Type: raft.LogConfiguration, Data: []byte{1, 2, 3}}
	default:
		cmd = cmdSet("/"+genNames[g.rng.IntN(len(genNames))], g.data(), nil)
	}
	// A third of the commands carry a request id from a small pool, so
	// the log has replays (half of them retry the id's last command),
	// ids reused for other requests, expiry (the pool comes round slower
	// than the window at times) and eviction under a lowered cap.
	if g.rng.IntN(3) == 0 {
		id := fmt.Sprintf("req-%d", g.rng.IntN(genRequestIDs))
		if prev, ok := g.sent[id]; ok && g.rng.IntN(2) == 0 {
			cmd = proto.Clone(prev).(*raftv1.Command)
		}
		cmd.RequestId = []byte(id)
		if g.sent == nil {
			g.sent = map[string]*raftv1.Command{}
		}
		g.sent[id] = cmd
	}
	return &raft.Log{Index: g.index, Type: raft.LogCommand, Data: encode(g.t, cmd, g.index)}
}

func randomLog(t testing.TB, seed uint64, n int) []*raft.Log {
	g := &logGen{t: t, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	logs := make([]*raft.Log, n)
	for i := range logs {
		logs[i] = g.next()
	}
	return logs
}

// TestDeterminism applies one pseudo-random log to two fresh state machines,
// one entry at a time and in batches of varying size: every result, every
// event, the state and the snapshot bytes must agree.
func TestDeterminism(t *testing.T) {
	const n = 5000
	logs := randomLog(t, 42, n)
	s1, s2 := &recordingSink{}, &recordingSink{}
	f1, f2 := New(s1), New(s2)
	for _, f := range []*FSM{f1, f2} {
		f.state.requests.limits = requestLimits{windowMs: 200_000, maxEntries: 50, maxBytes: 8 << 10}
	}
	var r1, r2 []*resultView
	codes := map[raftv1.ErrorCode]int{}
	replays := 0

	rng := rand.New(rand.NewPCG(7, 11))
	for i := 0; i < n; {
		size := min(1+rng.IntN(200), n-i)
		chunk := logs[i : i+size]
		for _, l := range chunk {
			r := f1.Apply(l)
			v := viewResult(r)
			r1 = append(r1, v)
			if v != nil {
				codes[v.Code]++
			}
			if res, ok := r.(*Result); ok && res.Replayed {
				replays++
			}
		}
		for _, r := range f2.ApplyBatch(chunk) {
			r2 = append(r2, viewResult(r))
		}
		i += size
		if f1.StateHash() != f2.StateHash() {
			t.Fatalf("StateHash() differs after entry %d", chunk[len(chunk)-1].Index)
		}
	}
	if diff := cmp.Diff(r1, r2, protocmp.Transform()); diff != "" {
		t.Errorf("results differ (-one at a time +batched):\n%s", diff)
	}
	if diff := cmp.Diff(s1.take(), s2.take(), protocmp.Transform()); diff != "" {
		t.Errorf("events differ (-one at a time +batched):\n%s", diff)
	}
	if a, b := f1.AppliedIndex(), f2.AppliedIndex(); a != n || b != n {
		t.Errorf("AppliedIndex() = %d, %d, want %d", a, b, n)
	}
	if a, b := f1.Err(), f2.Err(); a != nil || b != nil {
		t.Errorf("Err() = %v, %v, want nil", a, b)
	}
	if !bytes.Equal(persist(t, f1), persist(t, f2)) {
		t.Errorf("snapshots differ")
	}
	if diff := cmp.Diff(f1.Sessions(), f2.Sessions(), protocmp.Transform()); diff != "" {
		t.Errorf("Sessions() differ:\n%s", diff)
	}
	checkInvariants(t, f1)
	checkInvariants(t, f2)

	// The log must exercise successes and many kinds of failure.
	if ok := codes[raftv1.ErrorCode_ERROR_CODE_UNSPECIFIED]; ok < n/5 || ok > n*4/5 {
		t.Errorf("%d of %d entries succeeded, want a mix", ok, n)
	}
	if len(codes) < 9 {
		t.Errorf("the log produced %d kinds of result (%v), want at least 9", len(codes), codes)
	}
	if replays < 50 {
		t.Errorf("%d entries replayed a request id, want at least 50", replays)
	}
	if a, b := f1.RequestIDs(), f2.RequestIDs(); a != b || a == 0 || a > 50 {
		t.Errorf("RequestIDs() = %d, %d, want equal, in [1, 50]", a, b)
	}
	znodes, sessions := f1.Counts()
	t.Logf("after %d entries: %d znodes, %d sessions, %d request ids, %d replays, results by code %v",
		n, znodes, sessions, f1.RequestIDs(), replays, codes)
}

// TestConcurrentReads runs reads, state hashes and snapshot persists from
// other goroutines while entries are applied, for the race detector.
func TestConcurrentReads(t *testing.T) {
	logs := randomLog(t, 3, 2000)
	f := New(&recordingSink{})
	var stop atomic.Bool
	var wg sync.WaitGroup
	for r := range 4 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				p := "/" + genNames[(i+r)%len(genNames)]
				_, _, _ = f.Get(p)
				_, _ = f.List(p, "", 10)
				_ = f.StateHash()
				_ = f.Sessions()
				_ = f.SessionTimers()
				_ = f.Members()
				_, _ = f.Counts()
				_ = f.AppliedIndex()
			}
		})
	}
	var persisted sync.WaitGroup
	for i := 0; i < len(logs); i += 50 {
		f.ApplyBatch(logs[i:min(i+50, len(logs))])
		if i%200 == 0 {
			snap, err := f.Snapshot()
			if err != nil {
				t.Fatalf("Snapshot() error = %v", err)
			}
			persisted.Go(func() {
				defer snap.Release()
				if err := snap.Persist(&memSink{}); err != nil {
					t.Errorf("Persist() error = %v", err)
				}
			})
		}
	}
	stop.Store(true)
	wg.Wait()
	persisted.Wait()
	checkInvariants(t, f)
}

// fuzzSession is the session fuzzBase opens; seeds refer to it.
const fuzzSession = 1

// fuzzBase builds a small state for fuzzed entries to act on:
//
//	session 1; /a "a"; /a/b "b"; /e ephemeral of 1; /seq with counter 1;
//	/seq/n-0000000000 ephemeral of 1; member n1; /r created with request
//	id "r1".
func fuzzBase(t testing.TB) *harness {
	h := newHarness(t)
	if id := h.openSession(10_000); id != fuzzSession {
		t.Fatalf("session id = %d, want %d", id, fuzzSession)
	}
	h.mustCreate("/a", "a")
	h.mustCreate("/a/b", "b")
	h.must(cmdEphemeral("/e", fuzzSession, false))
	h.mustCreate("/seq", "")
	h.must(cmdEphemeral("/seq/n-", fuzzSession, true))
	h.must(cmdRegister("n1", "n1:9000"))
	h.must(withID(cmdCreate("/r", nil), "r1"))
	h.must(cmdWebSessionWrite("w", []byte("w"), 0, 0, false))
	return h
}

func fuzzSeeds() []*raftv1.Command {
	eph := func(p string) *paddockv1.CreateRequest {
		return &paddockv1.CreateRequest{Path: p, Type: paddockv1.NodeType_NODE_TYPE_EPHEMERAL, SessionId: fuzzSession}
	}
	return []*raftv1.Command{
		cmdCreate("/a/c", []byte("c")),
		cmdCreate("/a/b", nil),
		cmdCreate("/", nil),
		cmdCreate("/e/x", nil),
		cmdCreate("/paddock/x", nil),
		cmdCreateReq(&paddockv1.CreateRequest{Path: "/seq/", Sequential: true}),
		cmdEphemeral("/seq/l-", fuzzSession, true),
		cmdEphemeral("/a/x", 77, false),
		cmdSet("/a", []byte("new"), proto.Int32(0)),
		cmdSet("/a", nil, proto.Int32(5)),
		cmdDelete("/a", nil, true),
		cmdDelete("/a", nil, false),
		cmdDelete("/", nil, true),
		cmdMulti(opCreate(eph("/a/t")), opDelete("/a/t", nil, false)),
		cmdMulti(opDelete("/e", nil, false), opCreate(eph("/e"))),
		cmdMulti(opCreate(eph("/a/t")), opDelete("/a", nil, true)),
		cmdMulti(opCheck("/a", 0), opSet("/a", nil, nil), opCreate(&paddockv1.CreateRequest{Path: "/x/y"})),
		cmdMulti(&paddockv1.Op{}),
		cmdOpenSession(1000),
		cmdOpenSession(-1),
		cmdCloseSession(fuzzSession),
		cmdCloseSession(12345),
		cmdCheckpoint(checkpoint(fuzzSession, 500), checkpoint(9, 1)),
		cmdRegister("n2", "n2:1"),
		cmdRegister("", ""),
		cmdBarrier(),
		{},
		withID(cmdCreate("/r", nil), "r1"),
		withID(cmdSet("/r", nil, nil), "r1"),
		withID(cmdCreate("/a/b", nil), "r2"),
		withID(cmdCreate("/r2", nil), "r2"),
		withID(cmdBarrier(), strings.Repeat("r", MaxRequestIDLength+1)),
		cmdWebSessionWrite("w", []byte("v2"), 1, 0, false),
		cmdWebSessionWrite("w", nil, 1, 5_000, true),
		cmdWebSessionWrite("w", []byte("stale"), 7, 0, false),
		cmdWebSessionWrite("w", nil, 0, 0, false),
		cmdWebSessionWrite("new,-ID", []byte("n"), 0, 0, false),
		cmdWebSessionWrite("bad/id", nil, 0, 0, false),
		cmdWebSessionWrite("w", nil, 1, -1, false),
		cmdWebSessionDelete("w", 0),
		cmdWebSessionDelete("w", 9),
		cmdWebSessionDelete("absent", 0),
		cmdWebSessionDelete("", 0),
		withID(cmdWebSessionWrite("w", []byte("r"), 1, 0, false), "r1"),
	}
}

// FuzzApplyEntry applies arbitrary bytes as an entry to a small state.
// Either the entry is understood, and applies or fails as a domain error
// that changes nothing (but the request id table), or it is not, and the
// state machine stops: it changes nothing at all, and refuses the next
// entry too.
func FuzzApplyEntry(f *testing.F) {
	for _, cmd := range fuzzSeeds() {
		cmd.TimeUnixMs = timeAt(100)
		data, err := proto.Marshal(cmd)
		if err != nil {
			f.Fatalf("proto.Marshal(%v) = %v", cmd, err)
		}
		f.Add(data)
	}
	for _, tc := range fatalEntries(f) {
		f.Add(tc.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		h := fuzzBase(t)
		before, applied := h.f.StateHash(), h.f.AppliedIndex()
		beforeTree, ids := hashWithoutRequests(h.f), h.f.RequestIDs()
		res := h.applyRaw(data)
		if err := h.f.Err(); err != nil {
			if !errors.Is(res.Err, ErrUpgradeRequired) || res.Err != err {
				t.Fatalf("Apply(%x) = %v, Err() = %v, want the same error matching %v", data, res.Err, err, ErrUpgradeRequired)
			}
			if h.f.StateHash() != before || h.f.AppliedIndex() != applied {
				t.Fatalf("Apply(%x) stopped the state machine and changed the state", data)
			}
			if next := h.apply(cmdCreate("/next", nil)); !errors.Is(next.Err, ErrNotApplied) || h.exists("/next") {
				t.Fatalf("after Apply(%x) stopped it, the next entry = %v, want a refusal", data, next.Err)
			}
			return
		}
		if errors.Is(res.Err, ErrUpgradeRequired) {
			t.Fatalf("Apply(%x) = %v but Err() = nil", data, res.Err)
		}
		// A failure changes nothing but, when it carried a request id, the
		// table (which remembers it, expiring or evicting older ids); a
		// replay changes nothing at all.
		var cmd raftv1.Command
		hasID := proto.Unmarshal(data, &cmd) == nil && len(cmd.GetRequestId()) > 0
		switch {
		case h.f.RequestIDs() > ids+1:
			t.Fatalf("Apply(%x) = %v took RequestIDs() from %d to %d", data, res.Err, ids, h.f.RequestIDs())
		case res.Replayed && h.f.StateHash() != before:
			t.Fatalf("Apply(%x) replayed and changed the state", data)
		case res.Err != nil && !hasID && h.f.StateHash() != before:
			t.Fatalf("Apply(%x) = %v and changed the state hash", data, res.Err)
		}
		if res.Err != nil {
			if hashWithoutRequests(h.f) != beforeTree {
				t.Fatalf("Apply(%x) = %v and changed the state", data, res.Err)
			}
			if res.Resp != nil {
				t.Fatalf("Apply(%x) = %v with a response %v", data, res.Err, res.Resp)
			}
			if ErrorCode(res.Err) == raftv1.ErrorCode_ERROR_CODE_UNSPECIFIED {
				t.Fatalf("Apply(%x) error %v has no wire code", data, res.Err)
			}
		}
		checkInvariants(t, h.f)

		// Whatever the entry did survives a snapshot round trip...
		restored := New(nil)
		if err := restored.Restore(io.NopCloser(bytes.NewReader(persist(t, h.f)))); err != nil {
			t.Fatalf("Restore() after Apply(%x) error = %v", data, err)
		}
		if restored.StateHash() != h.f.StateHash() {
			t.Fatalf("Restore() after Apply(%x) gave a different state", data)
		}
		// ...and closing every session afterwards leaves a consistent tree.
		for _, s := range h.f.Sessions() {
			h.must(cmdCloseSession(s.GetId()))
		}
		checkInvariants(t, h.f)
	})
}
