package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// epochMs is the leader time of index 0 in tests; entry i is stamped
// timeAt(i), so a test can predict every ctime and mtime.
const epochMs = 1_700_000_000_000

func timeAt(index uint64) int64 { return epochMs + int64(index)*1000 }

// harness applies encoded commands to an FSM directly, with no raft: each
// entry gets the next index and the time timeAt(index).
type harness struct {
	t     testing.TB
	f     *FSM
	sink  *recordingSink
	index uint64
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	sink := &recordingSink{}
	return &harness{t: t, f: New(sink), sink: sink}
}

// encode stamps cmd with the time of index and marshals it.
func encode(t testing.TB, cmd *raftv1.Command, index uint64) []byte {
	t.Helper()
	cmd.TimeUnixMs = timeAt(index)
	data, err := proto.Marshal(cmd)
	if err != nil {
		t.Fatalf("proto.Marshal(%v) = %v", cmd, err)
	}
	return data
}

// next returns the log entry that carries cmd at the next index.
func (h *harness) next(cmd *raftv1.Command) *raft.Log {
	h.t.Helper()
	h.index++
	return &raft.Log{Index: h.index, Type: raft.LogCommand, Data: encode(h.t, cmd, h.index)}
}

// apply applies cmd as the next entry.
func (h *harness) apply(cmd *raftv1.Command) *Result {
	h.t.Helper()
	return h.applyLog(h.next(cmd))
}

// applyRaw applies arbitrary bytes as the next command entry.
func (h *harness) applyRaw(data []byte) *Result {
	h.t.Helper()
	h.index++
	return h.applyLog(&raft.Log{Index: h.index, Type: raft.LogCommand, Data: data})
}

func (h *harness) applyLog(l *raft.Log) *Result {
	h.t.Helper()
	r := h.f.Apply(l)
	res, ok := r.(*Result)
	if !ok || res == nil {
		h.t.Fatalf("Apply(index %d) = %T, want *Result", l.Index, r)
	}
	switch {
	case res.Replayed && res.Index >= l.Index:
		h.t.Errorf("Apply(index %d) replayed index %d, want an earlier one", l.Index, res.Index)
	case !res.Replayed && res.Index != l.Index:
		h.t.Errorf("Apply(index %d).Index = %d, want %d", l.Index, res.Index, l.Index)
	}
	return res
}

// must applies cmd and fails the test if it returns an error.
func (h *harness) must(cmd *raftv1.Command) *Result {
	h.t.Helper()
	res := h.apply(cmd)
	if res.Err != nil {
		h.t.Fatalf("Apply(%v) error = %v, want nil", cmd, res.Err)
	}
	return res
}

// mustCreate creates a persistent node.
func (h *harness) mustCreate(path string, data string) {
	h.t.Helper()
	h.must(cmdCreate(path, []byte(data)))
}

// openSession opens a session and returns its id.
func (h *harness) openSession(timeoutMs int64) uint64 {
	h.t.Helper()
	res := h.must(cmdOpenSession(timeoutMs))
	return res.Resp.(*paddockv1.OpenSessionResponse).GetSessionId()
}

// stat returns the Stat of path, failing the test if it does not exist.
func (h *harness) stat(path string) *paddockv1.Stat {
	h.t.Helper()
	_, st, err := h.f.Get(path)
	if err != nil {
		h.t.Fatalf("Get(%q) error = %v, want nil", path, err)
	}
	return st
}

// exists reports whether path exists.
func (h *harness) exists(path string) bool {
	h.t.Helper()
	_, _, err := h.f.Get(path)
	if err != nil && !errors.Is(err, ErrNoNode) {
		h.t.Fatalf("Get(%q) error = %v, want nil or ErrNoNode", path, err)
	}
	return err == nil
}

// Command builders.

func cmdCreate(path string, data []byte) *raftv1.Command {
	return cmdCreateReq(&paddockv1.CreateRequest{Path: path, Data: data})
}

func cmdCreateReq(req *paddockv1.CreateRequest) *raftv1.Command {
	return &raftv1.Command{Op: &raftv1.Command_Create{Create: req}}
}

func cmdEphemeral(path string, session uint64, sequential bool) *raftv1.Command {
	return cmdCreateReq(&paddockv1.CreateRequest{
		Path: path, Type: paddockv1.NodeType_NODE_TYPE_EPHEMERAL, SessionId: session, Sequential: sequential,
	})
}

func cmdSet(path string, data []byte, version *int32) *raftv1.Command {
	return &raftv1.Command{Op: &raftv1.Command_Set{Set: &paddockv1.SetRequest{Path: path, Data: data, Version: version}}}
}

func cmdDelete(path string, version *int32, recursive bool) *raftv1.Command {
	return &raftv1.Command{Op: &raftv1.Command_Delete{Delete: &paddockv1.DeleteRequest{Path: path, Version: version, Recursive: recursive}}}
}

func cmdMulti(ops ...*paddockv1.Op) *raftv1.Command {
	return &raftv1.Command{Op: &raftv1.Command_Multi{Multi: &paddockv1.MultiRequest{Ops: ops}}}
}

func cmdOpenSession(timeoutMs int64) *raftv1.Command {
	return &raftv1.Command{Op: &raftv1.Command_OpenSession{OpenSession: &raftv1.OpenSession{TimeoutMs: timeoutMs}}}
}

func cmdCloseSession(id uint64) *raftv1.Command {
	return &raftv1.Command{Op: &raftv1.Command_CloseSession{CloseSession: &raftv1.CloseSession{SessionId: id}}}
}

func cmdCheckpoint(cps ...*raftv1.SessionCheckpoint) *raftv1.Command {
	return &raftv1.Command{Op: &raftv1.Command_CheckpointSessions{CheckpointSessions: &raftv1.CheckpointSessions{Checkpoints: cps}}}
}

func checkpoint(id uint64, remainingMs int64) *raftv1.SessionCheckpoint {
	return &raftv1.SessionCheckpoint{SessionId: id, RemainingMs: remainingMs}
}

func cmdRegister(id, grpcAddr string) *raftv1.Command {
	return &raftv1.Command{Op: &raftv1.Command_RegisterMember{RegisterMember: &raftv1.RegisterMember{
		Id: id, RaftAddr: id + ":7000", GrpcAddr: grpcAddr, HttpAddr: id + ":8080", FeatureLevel: FeatureLevel,
	}}}
}

func cmdBarrier() *raftv1.Command {
	return &raftv1.Command{Op: &raftv1.Command_Barrier{Barrier: &raftv1.Barrier{}}}
}

func opCreate(req *paddockv1.CreateRequest) *paddockv1.Op {
	return &paddockv1.Op{Op: &paddockv1.Op_Create{Create: req}}
}

func opSet(path string, data []byte, version *int32) *paddockv1.Op {
	return &paddockv1.Op{Op: &paddockv1.Op_Set{Set: &paddockv1.SetRequest{Path: path, Data: data, Version: version}}}
}

func opDelete(path string, version *int32, recursive bool) *paddockv1.Op {
	return &paddockv1.Op{Op: &paddockv1.Op_Delete{Delete: &paddockv1.DeleteRequest{Path: path, Version: version, Recursive: recursive}}}
}

func opCheck(path string, version int32) *paddockv1.Op {
	return &paddockv1.Op{Op: &paddockv1.Op_Check{Check: &paddockv1.CheckOp{Path: path, Version: version}}}
}

// recordingSink keeps every event and restore it is told about.
type recordingSink struct {
	mu       sync.Mutex
	events   []Event
	batches  int
	last     uint64
	restored []uint64
}

func (s *recordingSink) Applied(index uint64, events []Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, events...)
	s.batches++
	s.last = index
}

func (s *recordingSink) Restored(index uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.restored = append(s.restored, index)
}

// statOf is the Stat value of an API Stat, to compare events with.
func statOf(p *paddockv1.Stat) Stat {
	return Stat{
		Czxid: p.GetCzxid(), Mzxid: p.GetMzxid(), Pzxid: p.GetPzxid(),
		Ctime: p.GetCtime(), Mtime: p.GetMtime(),
		EphemeralOwner: StatOwner(p),
		Version:        p.GetVersion(), Cversion: p.GetCversion(),
		DataLength: p.GetDataLength(), NumChildren: p.GetNumChildren(),
	}
}

// take returns and forgets the events received so far.
func (s *recordingSink) take() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	ev := s.events
	s.events = nil
	return ev
}

// memSink is a raft.SnapshotSink over a bytes.Buffer.
type memSink struct {
	bytes.Buffer
	closed, cancelled bool
	writeErr          error
}

var _ raft.SnapshotSink = (*memSink)(nil)

func (s *memSink) ID() string { return "mem" }

func (s *memSink) Write(p []byte) (int, error) {
	if s.writeErr != nil {
		return 0, s.writeErr
	}
	return s.Buffer.Write(p)
}

func (s *memSink) Close() error {
	if s.closed || s.cancelled {
		return fmt.Errorf("memSink: closed twice")
	}
	s.closed = true
	return nil
}

func (s *memSink) Cancel() error {
	s.cancelled = true
	return nil
}

// persist snapshots f and returns the persisted bytes.
func persist(t testing.TB, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot() error = %v", err)
	}
	defer snap.Release()
	return persistSnap(t, snap)
}

func persistSnap(t testing.TB, snap raft.FSMSnapshot) []byte {
	t.Helper()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatalf("Persist() error = %v", err)
	}
	if !sink.closed || sink.cancelled {
		t.Fatalf("Persist() left sink closed=%v cancelled=%v, want closed only", sink.closed, sink.cancelled)
	}
	return sink.Bytes()
}

// closeTracker is an io.ReadCloser that records Close.
type closeTracker struct {
	io.Reader
	closed bool
}

func (c *closeTracker) Close() error { c.closed = true; return nil }

// checkInvariants walks the raw state and reports anything inconsistent:
// children counts, ephemerals without a session or missing from the index,
// children of ephemerals, index entries without a node.
func checkInvariants(t testing.TB, f *FSM) {
	t.Helper()
	f.mu.RLock()
	defer f.mu.RUnlock()
	children := make(map[string]int32)
	nodes := make(map[string]*znode)
	f.state.tree.nodes.Ascend(func(n *znode) bool {
		p := n.path
		nodes[p] = n
		if n.parent() != "" {
			children[n.parent()]++
		}
		return true
	})
	if _, ok := nodes["/"]; !ok {
		t.Errorf("invariant: the root is missing")
	}
	for p, n := range nodes {
		if n.numChildren() != children[p] {
			t.Errorf("invariant: %s num_children = %d, want %d", p, n.numChildren(), children[p])
		}
		if n.parent() != "" {
			parent, ok := nodes[n.parent()]
			if !ok {
				t.Errorf("invariant: %s has no parent", p)
			} else if parent.session() != 0 {
				t.Errorf("invariant: %s is a child of ephemeral %s", p, n.parent())
			}
		}
		if n.session() != 0 {
			if _, ok := f.state.sessions[n.owner]; !ok {
				t.Errorf("invariant: %s is owned by unknown session %d", p, n.owner)
			}
			if _, ok := f.state.tree.ephemerals[n.owner][p]; !ok {
				t.Errorf("invariant: ephemeral %s is not indexed under session %d", p, n.owner)
			}
		}
		if n.mzxid < n.czxid || n.pzxid() < n.czxid {
			t.Errorf("invariant: %s zxids c=%d m=%d p=%d", p, n.czxid, n.mzxid, n.pzxid())
		}
		if parent, name := splitPath(p); n.parent() != parent || n.name() != name {
			t.Errorf("invariant: %s is delimited as (%q, %q), want (%q, %q)", p, n.parent(), n.name(), parent, name)
		}
	}
	for owner, set := range f.state.tree.ephemerals {
		if _, ok := f.state.sessions[owner]; !ok && len(set) > 0 {
			t.Errorf("invariant: ephemeral index holds unknown session %d", owner)
		}
		for p := range set {
			n, ok := nodes[p]
			if !ok {
				t.Errorf("invariant: session %d indexes missing node %s", owner, p)
			} else if n.owner != owner {
				t.Errorf("invariant: session %d indexes %s owned by %d", owner, p, n.owner)
			}
		}
	}
}

// hasPrefixPath reports whether path is prefix or below it.
func hasPrefixPath(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

// joinPath is the inverse of splitPath.
func joinPath(parent, name string) string {
	switch parent {
	case "":
		return "/"
	case "/":
		return "/" + name
	}
	return parent + "/" + name
}
