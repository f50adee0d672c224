package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

const (
	kElection = raftv1.ContentionKind_CONTENTION_KIND_ELECTION
	kLock     = raftv1.ContentionKind_CONTENTION_KIND_LOCK
)

func cmdContend(kind raftv1.ContentionKind, name string, sid uint64, limit uint32, value string, tryOnly bool) *raftv1.Command {
	return &raftv1.Command{Op: &raftv1.Command_Contend{Contend: &raftv1.Contend{
		Kind: kind, Name: name, SessionId: sid, Value: []byte(value), Limit: limit, TryOnly: tryOnly,
	}}}
}

func cmdWithdraw(kind raftv1.ContentionKind, name string, token uint64) *raftv1.Command {
	return &raftv1.Command{Op: &raftv1.Command_Withdraw{Withdraw: &raftv1.Withdraw{Kind: kind, Name: name, Token: token}}}
}

func cmdProclaim(name string, token uint64, value string) *raftv1.Command {
	return &raftv1.Command{Op: &raftv1.Command_Proclaim{Proclaim: &raftv1.Proclaim{Name: name, Token: token, Value: []byte(value)}}}
}

func cmdOpenSessionDelay(timeoutMs, delayMs int64) *raftv1.Command {
	return &raftv1.Command{Op: &raftv1.Command_OpenSession{OpenSession: &raftv1.OpenSession{TimeoutMs: timeoutMs, LockDelayMs: delayMs}}}
}

func cmdCloseReason(id uint64, reason raftv1.CloseReason) *raftv1.Command {
	return &raftv1.Command{Op: &raftv1.Command_CloseSession{CloseSession: &raftv1.CloseSession{SessionId: id, Reason: reason}}}
}

func fence(name string, token uint64) *paddockv1.Fence {
	return &paddockv1.Fence{Name: name, Token: token}
}

// openDelayed opens a session with a lock-delay and returns its id.
func (h *harness) openDelayed(delayMs int64) uint64 {
	h.t.Helper()
	return h.must(cmdOpenSessionDelay(10_000, delayMs)).Resp.(*paddockv1.OpenSessionResponse).GetSessionId()
}

// contend applies a Contend that must succeed and returns its response.
func (h *harness) contend(kind raftv1.ContentionKind, name string, sid uint64, limit uint32) *raftv1.ContendResponse {
	h.t.Helper()
	return h.must(cmdContend(kind, name, sid, limit, fmt.Sprintf("v%d", sid), false)).Resp.(*raftv1.ContendResponse)
}

// fails applies cmd, which must fail with want and change nothing.
func (h *harness) fails(cmd *raftv1.Command, want error) *Result {
	h.t.Helper()
	return assertFails(h.t.(*testing.T), h, cmd, func() *Result { return h.apply(cmd) }, want)
}

// unchanged applies cmd, which must succeed and change nothing.
func (h *harness) unchanged(cmd *raftv1.Command) *Result {
	h.t.Helper()
	before := h.f.StateHash()
	h.sink.take()
	res := h.must(cmd)
	if h.f.StateHash() != before {
		h.t.Errorf("Apply(%v) changed the state hash, want no change", cmd)
	}
	if ev := h.sink.take(); len(ev) != 0 {
		h.t.Errorf("Apply(%v) emitted %d events, want none", cmd, len(ev))
	}
	return res
}

// holds reports whether a fenced write with f applies (a Set of the
// marker /fenced, changed by the write when it applies); any error other
// than ErrFenceLost fails the test.
func (h *harness) holds(f *paddockv1.Fence) bool {
	h.t.Helper()
	if !h.exists("/fenced") {
		h.mustCreate("/fenced", "")
	}
	before := h.f.StateHash()
	res := h.apply(&raftv1.Command{Op: &raftv1.Command_Set{Set: &paddockv1.SetRequest{Path: "/fenced", Data: []byte("w"), Fence: f}}})
	switch {
	case res.Err == nil:
		return true
	case errors.Is(res.Err, ErrFenceLost):
		if h.f.StateHash() != before {
			h.t.Errorf("a fenced Set refused with %v changed the state", res.Err)
		}
		return false
	}
	h.t.Fatalf("fenced Set with %v error = %v, want nil or %v", f, res.Err, ErrFenceLost)
	return false
}

func childPath(kind raftv1.ContentionKind, name string, seq int, sid uint64) string {
	dir, _ := ContentionDir(kind, name)
	return fmt.Sprintf("%s/%010d-%d", dir, seq, sid)
}

func TestContendCreatesLine(t *testing.T) {
	h := newHarness(t)
	s1, s2 := h.openSession(10_000), h.openSession(10_000)
	h.sink.take()
	r1 := h.must(cmdContend(kElection, "batch", s1, 1, "one", false))
	c1 := r1.Resp.(*raftv1.ContendResponse)
	want := &raftv1.ContendResponse{Limit: 1, Candidate: &paddockv1.Contender{
		Name: "batch", Key: childPath(kElection, "batch", 0, s1), Value: []byte("one"),
		Token: r1.Index, SessionId: s1, ModZxid: r1.Index, Ctime: timeAt(r1.Index),
	}}
	if diff := cmp.Diff(want, c1, protocmp.Transform()); diff != "" {
		t.Errorf("Contend(s1) mismatch (-want +got):\n%s", diff)
	}
	// The events a watcher of the tree needs: the roots, the container and
	// the candidate created, each parent's children changed.
	var created []string
	for _, e := range h.sink.take() {
		if e.Type == EventCreated {
			created = append(created, e.Path)
		}
	}
	if diff := cmp.Diff([]string{ElectionsPath, ElectionsPath + "/batch", c1.GetCandidate().GetKey()}, created); diff != "" {
		t.Errorf("Contend(s1) created events mismatch (-want +got):\n%s", diff)
	}
	data, st, err := h.f.Get(ElectionsPath + "/batch")
	if err != nil || string(data) != `{"limit":1}` || !st.GetContainer() {
		t.Errorf("Get(line) = %q, container %v, %v; want {\"limit\":1}, a container", data, st.GetContainer(), err)
	}
	if st := h.stat(c1.GetCandidate().GetKey()); st.GetEphemeralOwner() != s1 || st.GetCzxid() != c1.GetCandidate().GetToken() {
		t.Errorf("candidate stat = %v, want ephemeral of %d with czxid = token", st, s1)
	}
	c2 := h.contend(kElection, "batch", s2, 1)
	if c2.GetCandidate().GetKey() != childPath(kElection, "batch", 1, s2) || c2.GetCandidate().GetToken() <= c1.GetCandidate().GetToken() || c2.GetExisting() {
		t.Errorf("Contend(s2) = %v, want a new second candidate with a larger token", c2)
	}
	// Idempotent per (name, session): same candidate, nothing changes.
	for _, s := range []struct {
		sid uint64
		c   *paddockv1.Contender
	}{{s1, c1.GetCandidate()}, {s2, c2.GetCandidate()}} {
		again := h.unchanged(cmdContend(kElection, "batch", s.sid, 1, "other value", false)).Resp.(*raftv1.ContendResponse)
		if !again.GetExisting() || again.GetCandidate().GetToken() != s.c.GetToken() || again.GetCandidate().GetKey() != s.c.GetKey() || string(again.GetCandidate().GetValue()) != string(s.c.GetValue()) {
			t.Errorf("Contend(%d) again = %v, want existing %v", s.sid, again, s.c)
		}
		// try_only of a session already in line finds its place too.
		again = h.unchanged(cmdContend(kElection, "batch", s.sid, 1, "", true)).Resp.(*raftv1.ContendResponse)
		if !again.GetExisting() || again.GetBusy() || again.GetCandidate().GetToken() != s.c.GetToken() {
			t.Errorf("Contend(%d, try_only) again = %v, want existing %v", s.sid, again, s.c)
		}
	}
	// The same session in another line, and a lock of the same name, are
	// other lines.
	l1 := h.contend(kLock, "batch", s1, 3)
	if l1.GetExisting() || l1.GetCandidate().GetKey() != childPath(kLock, "batch", 0, s1) || l1.GetLimit() != 3 {
		t.Errorf("Contend(lock batch, s1) = %v, want a new holder", l1)
	}
	if data, _, _ := h.f.Get(LocksPath + "/batch"); string(data) != `{"limit":3}` {
		t.Errorf("lock line data = %q, want {\"limit\":3}", data)
	}
	if !h.holds(fence("elections/batch", c1.GetCandidate().GetToken())) || h.holds(fence("elections/batch", c2.GetCandidate().GetToken())) {
		t.Errorf("fence: the first candidate must lead, the second must not")
	}
	if h.holds(fence("locks/batch", c1.GetCandidate().GetToken())) || !h.holds(fence("locks/batch", l1.GetCandidate().GetToken())) {
		t.Errorf("fence: a token holds only its own line")
	}
	checkInvariants(t, h.f)
}

func TestContendLimit(t *testing.T) {
	h := newHarness(t)
	s1, s2, s3 := h.openSession(10_000), h.openSession(10_000), h.openSession(10_000)
	c1 := h.contend(kLock, "sem", s1, 2).GetCandidate()
	h.fails(cmdContend(kLock, "sem", s2, 3, "", false), ErrLimitMismatch)
	h.fails(cmdContend(kLock, "sem", s2, 1, "", true), ErrLimitMismatch)
	// Even the session in line may not restate another limit.
	h.fails(cmdContend(kLock, "sem", s1, 3, "", false), ErrLimitMismatch)
	c2 := h.contend(kLock, "sem", s2, 2).GetCandidate()
	c3 := h.contend(kLock, "sem", s3, 2).GetCandidate()
	if !h.holds(fence("locks/sem", c1.GetToken())) || !h.holds(fence("locks/sem", c2.GetToken())) || h.holds(fence("locks/sem", c3.GetToken())) {
		t.Errorf("semaphore of 2: the first two must hold, the third must not")
	}
	for _, c := range []*paddockv1.Contender{c1, c2, c3} {
		h.must(cmdWithdraw(kLock, "sem", c.GetToken()))
	}
	// An empty line (not yet deleted by the leader) takes a new limit.
	st := h.stat(LocksPath + "/sem")
	r := h.must(cmdContend(kLock, "sem", s3, 3, "", false))
	if got := r.Resp.(*raftv1.ContendResponse).GetLimit(); got != 3 {
		t.Errorf("Contend on the empty line limit = %d, want 3", got)
	}
	data, st2, _ := h.f.Get(LocksPath + "/sem")
	if string(data) != `{"limit":3}` || st2.GetVersion() != st.GetVersion()+1 || st2.GetMzxid() != r.Index {
		t.Errorf("line after the new limit: %q version %d mzxid %d, want {\"limit\":3} version %d mzxid %d", data, st2.GetVersion(), st2.GetMzxid(), st.GetVersion()+1, r.Index)
	}
	if c, err := h.f.Contention(kLock, "sem"); err != nil || c.Limit != 3 || len(c.Line) != 1 {
		t.Errorf("Contention(sem) = %+v, %v, want limit 3 and one holder", c, err)
	}
	h.fails(cmdContend(kLock, "sem", s1, 2, "", false), ErrLimitMismatch)
	// A line the leader deleted (DeleteIdle) starts over.
	h.must(cmdWithdraw(kLock, "sem", r.Index))
	st = h.stat(LocksPath + "/sem")
	if res := h.must(cmdDeleteIdle(LocksPath+"/sem", st.GetMzxid(), st.GetPzxid())); res.Resp.(*paddockv1.DeleteResponse).GetDeleted() != 1 {
		t.Fatalf("DeleteIdle(empty line) deleted nothing")
	}
	if c := h.contend(kLock, "sem", s1, 5); c.GetLimit() != 5 || c.GetCandidate().GetKey() != childPath(kLock, "sem", 0, s1) {
		t.Errorf("Contend on a deleted line = %v, want limit 5, sequence 0", c)
	}
	checkInvariants(t, h.f)
}

func TestContendTryOnly(t *testing.T) {
	h := newHarness(t)
	s1, s2, s3 := h.openSession(10_000), h.openSession(10_000), h.openSession(10_000)
	// A first try on no line at all enters it.
	c1 := h.must(cmdContend(kLock, "l", s1, 2, "", true)).Resp.(*raftv1.ContendResponse)
	if c1.GetBusy() || c1.GetCandidate() == nil {
		t.Fatalf("TryAcquire on a new line = %v, want held", c1)
	}
	if c2 := h.must(cmdContend(kLock, "l", s2, 2, "", true)).Resp.(*raftv1.ContendResponse); c2.GetBusy() || c2.GetCandidate() == nil {
		t.Fatalf("TryAcquire of the second slot = %v, want held", c2)
	}
	busy := h.unchanged(cmdContend(kLock, "l", s3, 2, "", true)).Resp.(*raftv1.ContendResponse)
	if !busy.GetBusy() || busy.GetCandidate() != nil || busy.GetExisting() {
		t.Errorf("TryAcquire of a full semaphore = %v, want busy without a candidate", busy)
	}
	if s, err := h.f.Session(s3); err != nil || len(s.GetEphemerals()) != 0 {
		t.Errorf("Session(s3) after a busy TryAcquire = %v, %v; want it without ephemerals", s, err)
	}
	// A waiter (not try_only) makes the line longer than the limit; a try
	// is still busy.
	h.contend(kLock, "l", s3, 2)
	s4 := h.openSession(10_000)
	if r := h.unchanged(cmdContend(kLock, "l", s4, 2, "", true)).Resp.(*raftv1.ContendResponse); !r.GetBusy() {
		t.Errorf("TryAcquire behind a waiter = %v, want busy", r)
	}
	// A freed slot with a waiter in line: the waiter holds, a try is busy.
	h.must(cmdWithdraw(kLock, "l", c1.GetCandidate().GetToken()))
	if r := h.unchanged(cmdContend(kLock, "l", s4, 2, "", true)).Resp.(*raftv1.ContendResponse); !r.GetBusy() {
		t.Errorf("TryAcquire with the freed slot taken by the waiter = %v, want busy", r)
	}
}

func TestContendErrors(t *testing.T) {
	long := strings.Repeat("n", MaxContentionNameLength+1)
	tests := []struct {
		name    string
		cmd     func(sid uint64) *raftv1.Command
		wantErr error
		// stateful: the error needs the state (CheckCommand passes it).
		stateful bool
	}{
		{"unknown session", func(sid uint64) *raftv1.Command { return cmdContend(kElection, "e", sid+100, 1, "", false) }, ErrSessionExpired, true},
		{"no session", func(uint64) *raftv1.Command { return cmdContend(kElection, "e", 0, 1, "", false) }, ErrBadArgument, false},
		{"empty name", func(sid uint64) *raftv1.Command { return cmdContend(kElection, "", sid, 1, "", false) }, ErrBadArgument, false},
		{"slash", func(sid uint64) *raftv1.Command { return cmdContend(kLock, "a/b", sid, 1, "", false) }, ErrBadArgument, false},
		{"leading slash", func(sid uint64) *raftv1.Command { return cmdContend(kLock, "/a", sid, 1, "", false) }, ErrBadArgument, false},
		{"dot dot", func(sid uint64) *raftv1.Command { return cmdContend(kElection, "..", sid, 1, "", false) }, ErrBadArgument, false},
		{"dot", func(sid uint64) *raftv1.Command { return cmdContend(kLock, ".", sid, 1, "", false) }, ErrBadArgument, false},
		{"control char", func(sid uint64) *raftv1.Command { return cmdContend(kLock, "a\x01", sid, 1, "", false) }, ErrBadArgument, false},
		{"too long", func(sid uint64) *raftv1.Command { return cmdContend(kElection, long, sid, 1, "", false) }, ErrBadArgument, false},
		{"too long lock", func(sid uint64) *raftv1.Command { return cmdContend(kLock, long, sid, 1, "", false) }, ErrBadArgument, false},
		{"no kind", func(sid uint64) *raftv1.Command { return cmdContend(0, "e", sid, 1, "", false) }, ErrBadArgument, false},
		{"unknown kind", func(sid uint64) *raftv1.Command { return cmdContend(7, "e", sid, 1, "", false) }, ErrBadArgument, false},
		{"election limit 2", func(sid uint64) *raftv1.Command { return cmdContend(kElection, "e", sid, 2, "", false) }, ErrBadArgument, false},
		{"election limit 0", func(sid uint64) *raftv1.Command { return cmdContend(kElection, "e", sid, 0, "", false) }, ErrBadArgument, false},
		{"lock limit 0", func(sid uint64) *raftv1.Command { return cmdContend(kLock, "l", sid, 0, "", false) }, ErrBadArgument, false},
		{"lock limit too large", func(sid uint64) *raftv1.Command { return cmdContend(kLock, "l", sid, MaxLockLimit+1, "", false) }, ErrBadArgument, false},
		{"value too large", func(sid uint64) *raftv1.Command {
			return cmdContend(kElection, "e", sid, 1, strings.Repeat("v", MaxDataSize+1), false)
		}, ErrTooLarge, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			sid := h.openSession(10_000)
			other := h.openSession(10_000)
			// Lines exist already, so a failure has something to spoil.
			h.contend(kElection, "e", other, 1)
			h.contend(kLock, "l", other, 1)
			err := CheckCommand(tc.cmd(sid), MaxDataSize)
			if tc.stateful && err != nil {
				t.Errorf("CheckCommand() = %v, want nil (the error needs the state)", err)
			}
			if !tc.stateful && !errors.Is(err, tc.wantErr) {
				t.Errorf("CheckCommand() = %v, want %v", err, tc.wantErr)
			}
			h.fails(tc.cmd(sid), tc.wantErr)
			checkInvariants(t, h.f)
		})
	}
	// The node's own value limit applies before the log.
	if err := CheckCommand(cmdContend(kElection, "e", 1, 1, "12345", false), 4); !errors.Is(err, ErrTooLarge) {
		t.Errorf("CheckCommand(Contend with a value over the node's limit) = %v, want %v", err, ErrTooLarge)
	}
	if err := CheckCommand(cmdContend(kLock, "l", 1, MaxLockLimit, "1234", false), 4); err != nil {
		t.Errorf("CheckCommand(Contend at the limits) = %v, want nil", err)
	}
}

// TestContendLongestName: the longest name is accepted, its candidate's
// path is a valid path, and a snapshot of it restores.
func TestContendLongestName(t *testing.T) {
	h := newHarness(t)
	// Session ids (and tokens) of 19 digits, the most a session id has
	// (ids are below 2^63, the owner field's mark bit). Entry times wrap
	// at such indexes: nothing here reads them.
	h.index = 1<<63 - 1000
	sid := h.openSession(10_000)
	name := strings.Repeat("n", MaxContentionNameLength)
	for _, kind := range []raftv1.ContentionKind{kElection, kLock} {
		c := h.contend(kind, name, sid, 1).GetCandidate()
		if err := ValidatePath(c.GetKey(), false); err != nil {
			t.Errorf("candidate path of the longest %v name: %v", kind, err)
		}
		fk := "elections/"
		if kind == kLock {
			fk = "locks/"
		}
		if !h.holds(fence(fk+name, c.GetToken())) {
			t.Errorf("fence with the longest %v name does not hold", kind)
		}
	}
	r := New(nil)
	if err := r.Restore(&closeTracker{Reader: bytes.NewReader(persist(t, h.f))}); err != nil {
		t.Fatalf("Restore() of lines with the longest name error = %v", err)
	}
}

func TestWithdraw(t *testing.T) {
	h := newHarness(t)
	s1, s2, s3 := h.openSession(10_000), h.openSession(10_000), h.openSession(10_000)
	t1 := h.contend(kElection, "e", s1, 1).GetCandidate().GetToken()
	t2 := h.contend(kElection, "e", s2, 1).GetCandidate().GetToken()
	t3 := h.contend(kElection, "e", s3, 1).GetCandidate().GetToken()
	lt := h.contend(kLock, "e", s1, 1).GetCandidate().GetToken()
	if h.holds(fence("elections/e", t2)) {
		t.Fatalf("the second candidate holds before the first withdraws")
	}
	// The wrong line, kind or token: not held, nothing changes.
	h.fails(cmdWithdraw(kLock, "e", t1), ErrNotHeld)
	h.fails(cmdWithdraw(kElection, "e", lt), ErrNotHeld)
	h.fails(cmdWithdraw(kElection, "other", t1), ErrNotHeld)
	h.fails(cmdWithdraw(kElection, "e", 999_999), ErrNotHeld)
	h.fails(cmdWithdraw(kElection, "e", 0), ErrNotHeld)
	h.fails(cmdWithdraw(kElection, "a/b", t1), ErrBadArgument)
	h.fails(cmdWithdraw(0, "e", t1), ErrBadArgument)
	if err := CheckCommand(cmdWithdraw(kElection, "", t1), MaxDataSize); !errors.Is(err, ErrBadArgument) {
		t.Errorf("CheckCommand(Withdraw of a bad name) = %v, want %v", err, ErrBadArgument)
	}
	// A waiter withdraws: the leader keeps leading.
	h.must(cmdWithdraw(kElection, "e", t2))
	if !h.holds(fence("elections/e", t1)) || h.holds(fence("elections/e", t2)) || h.holds(fence("elections/e", t3)) {
		t.Errorf("after the waiter withdrew: want only the leader to hold")
	}
	// The leader withdraws: the next candidate leads.
	res := h.must(cmdWithdraw(kElection, "e", t1))
	if res.Resp != nil {
		t.Errorf("Withdraw response = %v, want none", res.Resp)
	}
	if h.exists(childPath(kElection, "e", 0, s1)) {
		t.Errorf("the withdrawn candidate still exists")
	}
	if h.holds(fence("elections/e", t1)) || !h.holds(fence("elections/e", t3)) {
		t.Errorf("after the leader withdrew: want the next candidate to lead, the withdrawn token not to")
	}
	h.fails(cmdWithdraw(kElection, "e", t1), ErrNotHeld)
	// The withdrawn session has left this line only.
	if s, _ := h.f.Session(s1); len(s.GetEphemerals()) != 1 {
		t.Errorf("session s1 ephemerals = %v, want its lock only", s.GetEphemerals())
	}
	// It may contend again: a new place at the end, a new token.
	again := h.contend(kElection, "e", s1, 1).GetCandidate()
	if again.GetToken() == t1 || again.GetKey() != childPath(kElection, "e", 3, s1) {
		t.Errorf("Contend after Withdraw = %v, want a new token at sequence 3", again)
	}
	checkInvariants(t, h.f)
}

func TestProclaim(t *testing.T) {
	h := newHarness(t)
	s1, s2 := h.openSession(10_000), h.openSession(10_000)
	t1 := h.contend(kElection, "e", s1, 1).GetCandidate().GetToken()
	t2 := h.contend(kElection, "e", s2, 1).GetCandidate().GetToken()
	lt := h.contend(kLock, "e", s1, 1).GetCandidate().GetToken()
	h.fails(cmdProclaim("e", t2, "usurper"), ErrFenceLost)
	h.fails(cmdProclaim("e", lt, "lock token"), ErrFenceLost)
	h.fails(cmdProclaim("e", 999_999, "unknown"), ErrFenceLost)
	h.fails(cmdProclaim("nope", t1, "no line"), ErrFenceLost)
	h.fails(cmdProclaim("e", 0, "no token"), ErrBadArgument)
	h.fails(cmdProclaim("a/b", t1, "bad name"), ErrBadArgument)
	h.fails(cmdProclaim("e", t1, strings.Repeat("v", MaxDataSize+1)), ErrTooLarge)
	if err := CheckCommand(cmdProclaim("", t1, ""), MaxDataSize); !errors.Is(err, ErrBadArgument) {
		t.Errorf("CheckCommand(Proclaim of a bad name) = %v, want %v", err, ErrBadArgument)
	}
	if err := CheckCommand(cmdProclaim("e", 0, ""), MaxDataSize); !errors.Is(err, ErrBadArgument) {
		t.Errorf("CheckCommand(Proclaim without a token) = %v, want %v", err, ErrBadArgument)
	}
	if err := CheckCommand(cmdProclaim("e", t1, "1234"), 4); err != nil {
		t.Errorf("CheckCommand(Proclaim at the node's limit) = %v, want nil", err)
	}
	if err := CheckCommand(cmdProclaim("e", t1, "12345"), 4); !errors.Is(err, ErrTooLarge) {
		t.Errorf("CheckCommand(Proclaim over the node's limit) = %v, want %v", err, ErrTooLarge)
	}
	res := h.must(cmdProclaim("e", t1, "new value"))
	got := res.Resp.(*paddockv1.ProclaimResponse).GetLeader()
	want := &paddockv1.Contender{
		Name: "e", Key: childPath(kElection, "e", 0, s1), Value: []byte("new value"),
		Token: t1, SessionId: s1, ModZxid: res.Index, Ctime: timeAt(t1),
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("Proclaim response mismatch (-want +got):\n%s", diff)
	}
	data, st, _ := h.f.Get(want.GetKey())
	if string(data) != "new value" || st.GetMzxid() != res.Index || st.GetVersion() != 1 || st.GetMtime() != timeAt(res.Index) {
		t.Errorf("leader after Proclaim = %q %v", data, st)
	}
	// Proclaim does not take the fence: the token still leads, the
	// waiter still waits.
	if !h.holds(fence("elections/e", t1)) || h.holds(fence("elections/e", t2)) {
		t.Errorf("after Proclaim: the leader must still lead alone")
	}
	// The deposed leader may not proclaim; the new one may.
	h.must(cmdWithdraw(kElection, "e", t1))
	h.fails(cmdProclaim("e", t1, "late"), ErrFenceLost)
	h.must(cmdProclaim("e", t2, "second"))
}

// fenceFixture is a state with every kind of token a fence may carry.
type fenceFixture struct {
	h *harness
	// leader leads "e", waiter waits behind it.
	leader, waiter uint64
	// withdrawn left "w" by Withdraw; closed's session was closed (a
	// client close) while leading "c"; placeholder is a lock-delay
	// placeholder leading "p", behind which behindPH waits.
	withdrawn, closed, placeholder, behindPH uint64
	// sem are the tokens of "locks/sem", limit 2.
	sem [3]uint64
}

func newFenceFixture(t *testing.T) *fenceFixture {
	h := newHarness(t)
	f := &fenceFixture{h: h}
	s1, s2, s3 := h.openSession(10_000), h.openSession(10_000), h.openSession(10_000)
	f.leader = h.contend(kElection, "e", s1, 1).GetCandidate().GetToken()
	f.waiter = h.contend(kElection, "e", s2, 1).GetCandidate().GetToken()
	f.withdrawn = h.contend(kElection, "w", s1, 1).GetCandidate().GetToken()
	h.contend(kElection, "w", s2, 1)
	h.must(cmdWithdraw(kElection, "w", f.withdrawn))
	sc := h.openSession(10_000)
	f.closed = h.contend(kElection, "c", sc, 1).GetCandidate().GetToken()
	h.contend(kElection, "c", s3, 1)
	h.must(cmdCloseReason(sc, raftv1.CloseReason_CLOSE_REASON_CLIENT))
	sd := h.openDelayed(60_000)
	f.placeholder = h.contend(kElection, "p", sd, 1).GetCandidate().GetToken()
	f.behindPH = h.contend(kElection, "p", s2, 1).GetCandidate().GetToken()
	h.must(cmdCloseReason(sd, raftv1.CloseReason_CLOSE_REASON_EXPIRED))
	for i, s := range []uint64{s1, s2, s3} {
		f.sem[i] = h.contend(kLock, "sem", s, 2).GetCandidate().GetToken()
	}
	h.mustCreate("/data", "")
	h.mustCreate("/data/x", "x")
	return f
}

// fencedWrite is a tree write carrying a fence, and what success looks
// like.
type fencedWrite struct {
	name string
	cmd  func(f *paddockv1.Fence) *raftv1.Command
	// applied reports whether the write's effect is visible.
	applied func(h *harness) bool
	// multiIndex is the failing op of a multi whose op carries the
	// fence, -1 otherwise.
	multiIndex int
}

func fencedWrites() []fencedWrite {
	createdNew := func(h *harness) bool { return h.exists("/data/new") }
	setX := func(h *harness) bool { d, _, _ := h.f.Get("/data/x"); return string(d) == "fenced" }
	deletedX := func(h *harness) bool { return !h.exists("/data/x") }
	createReq := func(f *paddockv1.Fence) *paddockv1.CreateRequest {
		return &paddockv1.CreateRequest{Path: "/data/new", Data: []byte("fenced"), Fence: f}
	}
	setReq := func(f *paddockv1.Fence) *paddockv1.SetRequest {
		return &paddockv1.SetRequest{Path: "/data/x", Data: []byte("fenced"), Fence: f}
	}
	delReq := func(f *paddockv1.Fence) *paddockv1.DeleteRequest {
		return &paddockv1.DeleteRequest{Path: "/data/x", Fence: f}
	}
	multi := func(f *paddockv1.Fence, ops ...*paddockv1.Op) *raftv1.Command {
		return &raftv1.Command{Op: &raftv1.Command_Multi{Multi: &paddockv1.MultiRequest{Ops: ops, Fence: f}}}
	}
	return []fencedWrite{
		{"create", func(f *paddockv1.Fence) *raftv1.Command { return cmdCreateReq(createReq(f)) }, createdNew, -1},
		{"set", func(f *paddockv1.Fence) *raftv1.Command {
			return &raftv1.Command{Op: &raftv1.Command_Set{Set: setReq(f)}}
		}, setX, -1},
		{"delete", func(f *paddockv1.Fence) *raftv1.Command {
			return &raftv1.Command{Op: &raftv1.Command_Delete{Delete: delReq(f)}}
		}, deletedX, -1},
		{"multi fence", func(f *paddockv1.Fence) *raftv1.Command {
			return multi(f, opCreate(createReq(nil)), opSet("/data/x", []byte("fenced"), nil))
		}, createdNew, -1},
		// The fenced op comes after ops that succeed: they must not stay.
		{"multi create op", func(f *paddockv1.Fence) *raftv1.Command {
			return multi(nil, opSet("/data/x", []byte("fenced"), nil), opCheck("/data", 0), opCreate(createReq(f)))
		}, createdNew, 2},
		{"multi set op", func(f *paddockv1.Fence) *raftv1.Command {
			return multi(nil, opCreate(createReq(nil)), &paddockv1.Op{Op: &paddockv1.Op_Set{Set: setReq(f)}})
		}, setX, 1},
		{"multi delete op", func(f *paddockv1.Fence) *raftv1.Command {
			return multi(nil, opCreate(createReq(nil)), &paddockv1.Op{Op: &paddockv1.Op_Delete{Delete: delReq(f)}})
		}, deletedX, 1},
	}
}

func TestFencedWrites(t *testing.T) {
	type fenceCase struct {
		name    string
		fence   func(f *fenceFixture) *paddockv1.Fence
		wantErr error
	}
	cases := []fenceCase{
		{"leader", func(f *fenceFixture) *paddockv1.Fence { return fence("elections/e", f.leader) }, nil},
		{"first holder", func(f *fenceFixture) *paddockv1.Fence { return fence("locks/sem", f.sem[0]) }, nil},
		{"second holder", func(f *fenceFixture) *paddockv1.Fence { return fence("locks/sem", f.sem[1]) }, nil},
		{"next after withdraw", func(f *fenceFixture) *paddockv1.Fence { return fence("elections/w", f.withdrawn+1) }, nil},
		{"waiter", func(f *fenceFixture) *paddockv1.Fence { return fence("elections/e", f.waiter) }, ErrFenceLost},
		{"semaphore waiter", func(f *fenceFixture) *paddockv1.Fence { return fence("locks/sem", f.sem[2]) }, ErrFenceLost},
		{"withdrawn", func(f *fenceFixture) *paddockv1.Fence { return fence("elections/w", f.withdrawn) }, ErrFenceLost},
		{"session closed", func(f *fenceFixture) *paddockv1.Fence { return fence("elections/c", f.closed) }, ErrFenceLost},
		{"placeholder", func(f *fenceFixture) *paddockv1.Fence { return fence("elections/p", f.placeholder) }, ErrFenceLost},
		{"behind a placeholder", func(f *fenceFixture) *paddockv1.Fence { return fence("elections/p", f.behindPH) }, ErrFenceLost},
		{"token of another line", func(f *fenceFixture) *paddockv1.Fence { return fence("elections/w", f.leader) }, ErrFenceLost},
		{"token of another kind", func(f *fenceFixture) *paddockv1.Fence { return fence("elections/sem", f.sem[0]) }, ErrFenceLost},
		{"no such line", func(f *fenceFixture) *paddockv1.Fence { return fence("locks/none", f.leader) }, ErrFenceLost},
		{"unknown token", func(f *fenceFixture) *paddockv1.Fence { return fence("elections/e", 1<<40) }, ErrFenceLost},
		{"no kind", func(f *fenceFixture) *paddockv1.Fence { return fence("e", f.leader) }, ErrBadArgument},
		{"bad kind", func(f *fenceFixture) *paddockv1.Fence { return fence("foo", f.leader) }, ErrBadArgument},
		{"unknown kind", func(f *fenceFixture) *paddockv1.Fence { return fence("leases/e", f.leader) }, ErrBadArgument},
		{"empty name", func(f *fenceFixture) *paddockv1.Fence { return fence("elections/", f.leader) }, ErrBadArgument},
		{"nested name", func(f *fenceFixture) *paddockv1.Fence { return fence("elections/e/x", f.leader) }, ErrBadArgument},
		{"dot dot", func(f *fenceFixture) *paddockv1.Fence { return fence("elections/..", f.leader) }, ErrBadArgument},
		{"path form", func(f *fenceFixture) *paddockv1.Fence { return fence("/paddock/elections/e", f.leader) }, ErrBadArgument},
		{"empty", func(f *fenceFixture) *paddockv1.Fence { return fence("", f.leader) }, ErrBadArgument},
		{"token 0", func(f *fenceFixture) *paddockv1.Fence { return fence("elections/e", 0) }, ErrBadArgument},
	}
	for _, w := range fencedWrites() {
		for _, fc := range cases {
			t.Run(w.name+"/"+fc.name, func(t *testing.T) {
				fx := newFenceFixture(t)
				h := fx.h
				cmd := w.cmd(fc.fence(fx))
				checkErr := CheckCommand(cmd, MaxDataSize)
				if errors.Is(fc.wantErr, ErrBadArgument) {
					if !errors.Is(checkErr, ErrBadArgument) {
						t.Errorf("CheckCommand() = %v, want %v before the log", checkErr, ErrBadArgument)
					}
				} else if checkErr != nil {
					t.Errorf("CheckCommand() = %v, want nil", checkErr)
				}
				if fc.wantErr == nil {
					h.must(cmd)
					if !w.applied(h) {
						t.Errorf("the fenced write succeeded without its effect")
					}
					checkInvariants(t, h.f)
					return
				}
				res := h.fails(cmd, fc.wantErr)
				var me *MultiError
				if isMulti := errors.As(res.Err, &me); w.multiIndex >= 0 && (!isMulti || me.Index != w.multiIndex) {
					t.Errorf("error = %v, want a MultiError at op %d", res.Err, w.multiIndex)
				} else if w.multiIndex < 0 && isMulti {
					t.Errorf("error = %v, want no MultiError (the fence is the request's)", res.Err)
				}
				if w.applied(h) {
					t.Errorf("the refused write's effect is visible")
				}
				if errors.Is(fc.wantErr, ErrFenceLost) && !strings.Contains(res.Err.Error(), "fence lost") {
					t.Errorf("error %q does not say fence lost", res.Err)
				}
			})
		}
	}
}

func TestLockDelay(t *testing.T) {
	h := newHarness(t)
	sd := h.openDelayed(5_000)
	if s, _ := h.f.Session(sd); s.GetLockDelayMs() != 5_000 {
		t.Errorf("Session(%d).lock_delay_ms = %d, want 5000", sd, s.GetLockDelayMs())
	}
	s2 := h.openSession(10_000)
	lead := h.contend(kElection, "e", sd, 1).GetCandidate()
	next := h.contend(kElection, "e", s2, 1).GetCandidate()
	semHeld := h.contend(kLock, "sem", sd, 2).GetCandidate()
	other := h.contend(kLock, "sem", s2, 2).GetCandidate()
	// sd waits in "busy" behind s2 and owns a plain ephemeral.
	h.contend(kLock, "busy", s2, 1)
	waiting := h.contend(kLock, "busy", sd, 1).GetCandidate()
	h.mustCreate("/app", "")
	h.must(cmdEphemeral("/app/e", sd, false))

	h.sink.take()
	closeRes := h.must(cmdCloseReason(sd, raftv1.CloseReason_CLOSE_REASON_EXPIRED))
	at := closeRes.Index
	// The node's idle tracker times a TTL znode from its events: each
	// placeholder's event must carry its TTL.
	timed := map[string]int64{}
	for _, e := range h.sink.take() {
		if e.Type != EventDeleted && e.Stat.TTLMs() > 0 {
			timed[e.Path] = e.Stat.TTLMs()
		}
	}
	if diff := cmp.Diff(map[string]int64{lead.GetKey(): 5_000, semHeld.GetKey(): 5_000}, timed); diff != "" {
		t.Errorf("CloseSession(EXPIRED) events of TTL znodes mismatch (-want +got):\n%s", diff)
	}
	if d := closeRes.Resp.(*paddockv1.CloseSessionResponse).GetDeleted(); d != 2 {
		t.Errorf("CloseSession(EXPIRED) deleted %d, want 2 (the waiter and the plain ephemeral)", d)
	}
	if _, err := h.f.Session(sd); err == nil {
		t.Errorf("the expired session still exists")
	}
	if h.exists(waiting.GetKey()) || h.exists("/app/e") {
		t.Errorf("the expired session's waiting candidate or plain ephemeral survived")
	}
	for _, c := range []*paddockv1.Contender{lead, semHeld} {
		data, st, err := h.f.Get(c.GetKey())
		if err != nil {
			t.Fatalf("placeholder %s: %v", c.GetKey(), err)
		}
		if st.GetEphemeralOwner() != 0 || st.GetTtlMs() != 5_000 || st.GetCzxid() != c.GetToken() || st.GetMzxid() != at || st.GetMtime() != timeAt(at) || !bytes.Equal(data, c.GetValue()) {
			t.Errorf("placeholder %s = %q %v, want a TTL znode of 5000ms, czxid %d, mzxid %d, the same data", c.GetKey(), data, st, c.GetToken(), at)
		}
	}
	checkInvariants(t, h.f)
	// Nobody holds the delayed slot; a semaphore's other slot still holds.
	if h.holds(fence("elections/e", lead.GetToken())) || h.holds(fence("elections/e", next.GetToken())) {
		t.Errorf("during the lock-delay someone leads")
	}
	if h.holds(fence("locks/sem", semHeld.GetToken())) || !h.holds(fence("locks/sem", other.GetToken())) {
		t.Errorf("semaphore during the lock-delay: want the placeholder's token dead, the other holder to hold")
	}
	h.fails(cmdProclaim("e", lead.GetToken(), "x"), ErrFenceLost)
	h.fails(cmdProclaim("e", next.GetToken(), "x"), ErrFenceLost)
	// A placeholder is no one's to release.
	h.fails(cmdWithdraw(kElection, "e", lead.GetToken()), ErrNotHeld)
	// A newcomer queues behind the placeholder.
	s3 := h.openSession(10_000)
	third := h.contend(kLock, "sem", s3, 2).GetCandidate()
	if h.holds(fence("locks/sem", third.GetToken())) {
		t.Errorf("a newcomer holds the placeholder's slot")
	}
	if r := h.unchanged(cmdContend(kLock, "sem", h.openSession(10_000), 2, "", true)).Resp.(*raftv1.ContendResponse); !r.GetBusy() {
		t.Errorf("TryAcquire during the lock-delay = %v, want busy", r)
	}

	// The leader's tracker times the placeholder like any TTL znode.
	ph := h.stat(lead.GetKey())
	idle := h.f.IdleCandidates()
	wantIdle := Idle{Path: lead.GetKey(), Mzxid: ph.GetMzxid(), Pzxid: ph.GetPzxid(), TTLMs: 5_000}
	found := false
	for _, i := range idle {
		if i == wantIdle {
			found = true
		}
		if i.Path == ElectionsPath+"/e" || i.Path == LocksPath+"/sem" {
			t.Errorf("IdleCandidates() lists the line %s, which has children", i.Path)
		}
	}
	if !found {
		t.Errorf("IdleCandidates() = %+v, want %+v among them", idle, wantIdle)
	}
	line, err := h.f.Contention(kElection, "e")
	if err != nil || line.Limit != 1 || len(line.Line) != 2 || line.Line[0].DelayMs != 5_000 || line.Line[0].GetSessionId() != 0 ||
		line.Line[0].Mtime != timeAt(at) || line.Line[1].GetToken() != next.GetToken() || line.Line[1].DelayMs != 0 {
		t.Errorf("Contention(e) = %+v, %v; want the placeholder (5000ms, no session) then the next candidate", line, err)
	}
	// A stale DeleteIdle deletes nothing; the right one ends the delay.
	h.unchanged(cmdDeleteIdle(lead.GetKey(), ph.GetMzxid()-1, ph.GetPzxid()))
	if d := h.must(cmdDeleteIdle(lead.GetKey(), ph.GetMzxid(), ph.GetPzxid())).Resp.(*paddockv1.DeleteResponse).GetDeleted(); d != 1 {
		t.Fatalf("DeleteIdle(placeholder) deleted %d, want 1", d)
	}
	if !h.holds(fence("elections/e", next.GetToken())) || h.holds(fence("elections/e", lead.GetToken())) {
		t.Errorf("after the lock-delay: want the next candidate to lead")
	}
	ps := h.stat(semHeld.GetKey())
	h.must(cmdDeleteIdle(semHeld.GetKey(), ps.GetMzxid(), ps.GetPzxid()))
	if !h.holds(fence("locks/sem", third.GetToken())) {
		t.Errorf("after the lock-delay: the semaphore's waiter does not hold")
	}
	checkInvariants(t, h.f)
}

// TestLockDelayOnlyWhenExpiredHolding: every other way out of a line
// deletes the candidate at once.
func TestLockDelayOnlyWhenExpiredHolding(t *testing.T) {
	tests := []struct {
		name   string
		delay  int64
		reason raftv1.CloseReason
		// waitFirst puts the session behind another one.
		waitFirst bool
		wantKept  bool
	}{
		{"expired holder", 1_000, raftv1.CloseReason_CLOSE_REASON_EXPIRED, false, true},
		{"client close", 1_000, raftv1.CloseReason_CLOSE_REASON_CLIENT, false, false},
		{"unspecified reason", 1_000, raftv1.CloseReason_CLOSE_REASON_UNSPECIFIED, false, false},
		{"expired waiter", 1_000, raftv1.CloseReason_CLOSE_REASON_EXPIRED, true, false},
		{"no lock-delay", 0, raftv1.CloseReason_CLOSE_REASON_EXPIRED, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			first := h.openSession(10_000)
			sid := h.openDelayed(tc.delay)
			other := h.openSession(10_000)
			if tc.waitFirst {
				h.contend(kElection, "e", first, 1)
			}
			mine := h.contend(kElection, "e", sid, 1).GetCandidate()
			after := h.contend(kElection, "e", other, 1).GetCandidate()
			res := h.must(cmdCloseReason(sid, tc.reason))
			deleted := res.Resp.(*paddockv1.CloseSessionResponse).GetDeleted()
			if got := h.exists(mine.GetKey()); got != tc.wantKept {
				t.Errorf("candidate kept = %v, want %v", got, tc.wantKept)
			}
			if want := map[bool]int32{true: 0, false: 1}[tc.wantKept]; deleted != want {
				t.Errorf("CloseSession deleted %d, want %d", deleted, want)
			}
			if h.holds(fence("elections/e", mine.GetToken())) {
				t.Errorf("the closed session's token still holds")
			}
			// With the candidate gone, the next one leads at once (unless
			// it waited behind first, who still leads).
			wantNext := !tc.wantKept && !tc.waitFirst
			if got := h.holds(fence("elections/e", after.GetToken())); got != wantNext {
				t.Errorf("the next candidate holds = %v, want %v", got, wantNext)
			}
			checkInvariants(t, h.f)
		})
	}
}

func TestOpenSessionLockDelay(t *testing.T) {
	for _, d := range []int64{-1, MaxTTL.Milliseconds() + 1} {
		h := newHarness(t)
		cmd := cmdOpenSessionDelay(1_000, d)
		if err := CheckCommand(cmd, MaxDataSize); !errors.Is(err, ErrBadArgument) {
			t.Errorf("CheckCommand(lock delay %d) = %v, want %v", d, err, ErrBadArgument)
		}
		h.fails(cmd, ErrBadArgument)
	}
	h := newHarness(t)
	id := h.openDelayed(MaxTTL.Milliseconds())
	h.contend(kLock, "l", id, 1)
	h.must(cmdCloseReason(id, raftv1.CloseReason_CLOSE_REASON_EXPIRED))
	if ttl := h.stat(childPath(kLock, "l", 0, id)).GetTtlMs(); ttl != MaxTTL.Milliseconds() {
		t.Errorf("placeholder of the longest lock-delay has ttl %d, want %d", ttl, MaxTTL.Milliseconds())
	}
	checkInvariants(t, h.f)
}

func TestContendSnapshotRoundTrip(t *testing.T) {
	h := newHarness(t)
	s1, s2 := h.openSession(10_000), h.openSession(10_000)
	gone := h.openDelayed(3_000)
	sd := h.openDelayed(7_000)
	h.contend(kElection, "e", sd, 1)
	h.contend(kElection, "e", s1, 1)
	h.contend(kLock, "sem", gone, 2)
	h.contend(kLock, "sem", s1, 2)
	h.contend(kLock, "sem", s2, 2)
	h.must(cmdCloseReason(gone, raftv1.CloseReason_CLOSE_REASON_EXPIRED))
	want := dump(t, h.f)
	data := persist(t, h.f)

	r := New(&recordingSink{})
	if err := r.Restore(&closeTracker{Reader: bytes.NewReader(data)}); err != nil {
		t.Fatalf("Restore() error = %v", err)
	}
	if diff := cmp.Diff(want, dump(t, r), protocmp.Transform()); diff != "" {
		t.Errorf("restored state mismatch (-want +got):\n%s", diff)
	}
	if !bytes.Equal(data, persist(t, r)) {
		t.Errorf("restored state persists differently")
	}
	checkInvariants(t, r)
	for _, name := range []string{"e", "sem"} {
		kind := kElection
		if name == "sem" {
			kind = kLock
		}
		a, _ := h.f.Contention(kind, name)
		b, _ := r.Contention(kind, name)
		if diff := cmp.Diff(a, b, protocmp.Transform()); diff != "" {
			t.Errorf("Contention(%s) after restore mismatch (-want +got):\n%s", name, diff)
		}
	}
	// Both go on alike: the restored session keeps its lock-delay (its
	// expiry leaves a placeholder), lines keep their sequence and limit.
	rh := &harness{t: t, f: r, sink: &recordingSink{}, index: h.index}
	s3 := h.openSession(10_000)
	rh.openSession(10_000)
	for _, hh := range []*harness{h, rh} {
		hh.must(cmdCloseReason(sd, raftv1.CloseReason_CLOSE_REASON_EXPIRED))
		c := hh.contend(kElection, "e", s3, 1).GetCandidate()
		if c.GetKey() != childPath(kElection, "e", 2, s3) {
			t.Errorf("Contend after restore = %s, want sequence 2", c.GetKey())
		}
		hh.fails(cmdContend(kLock, "sem", s3, 3, "", false), ErrLimitMismatch)
		if hh.holds(fence("elections/e", c.GetToken()-1)) {
			t.Errorf("the candidate behind the placeholder leads")
		}
	}
	if st := rh.stat(childPath(kElection, "e", 0, sd)); st.GetTtlMs() != 7_000 {
		t.Errorf("restored session's expiry left %v, want a placeholder of 7000ms", st)
	}
	if diff := cmp.Diff(dump(t, h.f), dump(t, r), protocmp.Transform()); diff != "" {
		t.Errorf("original and restored differ after the same commands (-original +restored):\n%s", diff)
	}
}

func TestContendOpFeatureLevel(t *testing.T) {
	fk := fence("elections/e", 5)
	tests := []struct {
		name string
		cmd  *raftv1.Command
		want uint32
	}{
		{"contend", cmdContend(kElection, "e", 1, 1, "", false), 2},
		{"withdraw", cmdWithdraw(kElection, "e", 5), 2},
		{"proclaim", cmdProclaim("e", 5, ""), 2},
		{"open session with lock-delay", cmdOpenSessionDelay(1000, 1), 2},
		{"open session", cmdOpenSession(1000), 1},
		{"close session", cmdCloseReason(1, raftv1.CloseReason_CLOSE_REASON_EXPIRED), 1},
		{"create", cmdCreate("/a", nil), 1},
		{"fenced create", cmdCreateReq(&paddockv1.CreateRequest{Path: "/a", Fence: fk}), 2},
		{"set", cmdSet("/a", nil, nil), 1},
		{"fenced set", &raftv1.Command{Op: &raftv1.Command_Set{Set: &paddockv1.SetRequest{Path: "/a", Fence: fk}}}, 2},
		{"delete", cmdDelete("/a", nil, false), 1},
		{"fenced delete", &raftv1.Command{Op: &raftv1.Command_Delete{Delete: &paddockv1.DeleteRequest{Path: "/a", Fence: fk}}}, 2},
		{"multi", cmdMulti(opCreate(&paddockv1.CreateRequest{Path: "/a"}), opSet("/a", nil, nil), opDelete("/a", nil, false), opCheck("/a", 0)), 1},
		{"fenced multi", &raftv1.Command{Op: &raftv1.Command_Multi{Multi: &paddockv1.MultiRequest{Fence: fk, Ops: []*paddockv1.Op{opCheck("/a", 0)}}}}, 2},
		{"multi with a fenced create", cmdMulti(opCheck("/a", 0), opCreate(&paddockv1.CreateRequest{Path: "/a", Fence: fk})), 2},
		{"multi with a fenced set", cmdMulti(&paddockv1.Op{Op: &paddockv1.Op_Set{Set: &paddockv1.SetRequest{Path: "/a", Fence: fk}}}), 2},
		{"multi with a fenced delete", cmdMulti(&paddockv1.Op{Op: &paddockv1.Op_Delete{Delete: &paddockv1.DeleteRequest{Path: "/a", Fence: fk}}}), 2},
	}
	for _, tc := range tests {
		if got, ok := OpFeatureLevel(tc.cmd); !ok || got != tc.want {
			t.Errorf("OpFeatureLevel(%s) = %d, %v, want %d", tc.name, got, ok, tc.want)
		}
	}
	// A level-1 replica stops at a level-2 entry instead of applying it
	// without its fence.
	h := &harness{t: t, sink: &recordingSink{}}
	h.f = New(h.sink, WithFeatureLevel(1))
	h.mustCreate("/a", "")
	res := h.apply(&raftv1.Command{Op: &raftv1.Command_Set{Set: &paddockv1.SetRequest{Path: "/a", Data: []byte("x"), Fence: fk}}})
	if !errors.Is(res.Err, ErrUpgradeRequired) {
		t.Errorf("a level-1 replica applying a fenced set: error = %v, want %v", res.Err, ErrUpgradeRequired)
	}
}

func TestContention(t *testing.T) {
	h := newHarness(t)
	if _, err := h.f.Contention(kElection, "a/b"); !errors.Is(err, ErrBadArgument) {
		t.Errorf("Contention(bad name) error = %v, want %v", err, ErrBadArgument)
	}
	if _, err := h.f.Contention(0, "a"); !errors.Is(err, ErrBadArgument) {
		t.Errorf("Contention(no kind) error = %v, want %v", err, ErrBadArgument)
	}
	empty, err := h.f.Contention(kLock, "none")
	if err != nil || empty.Limit != 0 || len(empty.Line) != 0 || empty.Zxid != h.f.AppliedIndex() {
		t.Errorf("Contention(no line) = %+v, %v; want limit 0, no line, at the applied index", empty, err)
	}
	var sids []uint64
	for range 4 {
		sids = append(sids, h.openSession(10_000))
	}
	sd := h.openDelayed(2_500)
	var want []*paddockv1.Contender
	want = append(want, h.contend(kLock, "l", sd, 3).GetCandidate())
	for _, s := range sids {
		want = append(want, h.contend(kLock, "l", s, 3).GetCandidate())
	}
	h.must(cmdWithdraw(kLock, "l", want[2].GetToken()))
	want = append(want[:2], want[3:]...)
	closeAt := h.must(cmdCloseReason(sd, raftv1.CloseReason_CLOSE_REASON_EXPIRED)).Index
	want[0].SessionId, want[0].ModZxid = 0, closeAt
	got, err := h.f.Contention(kLock, "l")
	if err != nil {
		t.Fatalf("Contention(l) error = %v", err)
	}
	if got.Limit != 3 || got.Zxid != h.f.AppliedIndex() || len(got.Line) != len(want) {
		t.Fatalf("Contention(l) = %+v, want limit 3, %d in line", got, len(want))
	}
	for i, c := range got.Line {
		if diff := cmp.Diff(want[i], c.Contender, protocmp.Transform()); diff != "" {
			t.Errorf("Line[%d] mismatch (-want +got):\n%s", i, diff)
		}
		wantDelay, wantMtime := int64(0), timeAt(want[i].GetToken())
		if i == 0 {
			wantDelay, wantMtime = 2_500, timeAt(closeAt)
		}
		if c.DelayMs != wantDelay || c.Mtime != wantMtime {
			t.Errorf("Line[%d] delay %d mtime %d, want %d %d", i, c.DelayMs, c.Mtime, wantDelay, wantMtime)
		}
	}
}

// TestContendReplay: a Contend retried with its request id gets the
// first answer, not a second place in line.
func TestContendReplay(t *testing.T) {
	h := newHarness(t)
	s := h.openSession(10_000)
	first := h.must(withID(cmdContend(kLock, "l", s, 1, "v", false), "contend-1"))
	again := h.apply(withID(cmdContend(kLock, "l", s, 1, "v", false), "contend-1"))
	if !again.Replayed || again.Err != nil {
		t.Fatalf("retry = %+v, want a replay", again)
	}
	if diff := cmp.Diff(first.Resp, again.Resp, protocmp.Transform()); diff != "" {
		t.Errorf("replayed Contend mismatch (-first +replayed):\n%s", diff)
	}
	w := h.must(withID(cmdWithdraw(kLock, "l", first.Index), "withdraw-1"))
	if r := h.apply(withID(cmdWithdraw(kLock, "l", first.Index), "withdraw-1")); !r.Replayed || r.Err != nil || r.Index != w.Index {
		t.Errorf("retried Withdraw = %+v, want the first success replayed", r)
	}
}
