package fsm

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

func TestOpenSession(t *testing.T) {
	tests := []struct {
		name    string
		timeout int64
		wantErr error
	}{
		{"timeout", 30_000, nil},
		{"one millisecond", 1, nil},
		{"zero timeout", 0, ErrBadArgument},
		{"negative timeout", -5, ErrBadArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.mustCreate("/a", "")
			cmd := cmdOpenSession(tc.timeout)
			if tc.wantErr != nil {
				assertFails(t, h, cmd, func() *Result { return h.apply(cmd) }, tc.wantErr)
				if got := h.f.Sessions(); len(got) != 0 {
					t.Errorf("Sessions() = %v, want none", got)
				}
				return
			}
			before := h.f.StateHash()
			res := h.apply(cmd)
			if res.Err != nil {
				t.Fatalf("OpenSession(%d) error = %v, want nil", tc.timeout, res.Err)
			}
			id := res.Index // a session's id is the index that opened it
			want := &paddockv1.OpenSessionResponse{SessionId: id, TimeoutMs: tc.timeout}
			if diff := cmp.Diff(want, res.Resp, protocmp.Transform()); diff != "" {
				t.Errorf("OpenSession(%d) response mismatch (-want +got):\n%s", tc.timeout, diff)
			}
			got, err := h.f.Session(id)
			if err != nil {
				t.Fatalf("Session(%d) error = %v, want nil", id, err)
			}
			wantSess := &paddockv1.Session{Id: id, TimeoutMs: tc.timeout, Ctime: timeAt(id)}
			if diff := cmp.Diff(wantSess, got, protocmp.Transform()); diff != "" {
				t.Errorf("Session(%d) mismatch (-want +got):\n%s", id, diff)
			}
			if timer, ok := h.f.SessionTimer(id); !ok || timer != (SessionTimer{ID: id, TimeoutMs: tc.timeout}) {
				t.Errorf("SessionTimer(%d) = %+v, %v, want {%d %d 0}, true", id, timer, ok, id, tc.timeout)
			}
			if h.f.StateHash() == before {
				t.Errorf("OpenSession(%d) left the state hash unchanged", tc.timeout)
			}
			if _, n := h.f.Counts(); n != 1 {
				t.Errorf("Counts() sessions = %d, want 1", n)
			}
		})
	}
}

func TestCloseSession(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("/p", "")
	h.mustCreate("/q", "")
	h.mustCreate("/p/keep", "")
	s1 := h.openSession(10_000)
	s2 := h.openSession(10_000)
	for _, p := range []string{"/p/e1", "/p/e2", "/q/e3"} {
		h.must(cmdEphemeral(p, s1, false))
	}
	h.must(cmdEphemeral("/p/lock-", s1, true))
	h.must(cmdEphemeral("/p/other", s2, false))
	pBefore, qBefore := h.stat("/p"), h.stat("/q")
	h.sink.take()

	res := h.apply(cmdCloseSession(s1))
	if res.Err != nil {
		t.Fatalf("CloseSession(%d) error = %v, want nil", s1, res.Err)
	}
	x := res.Index
	if diff := cmp.Diff(&paddockv1.CloseSessionResponse{Deleted: 4}, res.Resp, protocmp.Transform()); diff != "" {
		t.Errorf("CloseSession(%d) response mismatch (-want +got):\n%s", s1, diff)
	}
	for _, p := range []string{"/p/e1", "/p/e2", "/q/e3", "/p/lock-0000000000"} {
		if h.exists(p) {
			t.Errorf("Get(%q) after CloseSession found it, want %v", p, ErrNoNode)
		}
	}
	for _, p := range []string{"/p/keep", "/p/other"} {
		if !h.exists(p) {
			t.Errorf("Get(%q) after CloseSession(%d) = %v, want it kept", p, s1, ErrNoNode)
		}
	}
	// Each deleted child counts in its parent, all at the close's zxid.
	wantP := proto.CloneOf(pBefore)
	wantP.NumChildren -= 3
	wantP.Cversion += 3
	wantP.Pzxid = x
	wantQ := proto.CloneOf(qBefore)
	wantQ.NumChildren--
	wantQ.Cversion++
	wantQ.Pzxid = x
	if diff := cmp.Diff(wantP, h.stat("/p"), protocmp.Transform()); diff != "" {
		t.Errorf("Get(/p) after CloseSession mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantQ, h.stat("/q"), protocmp.Transform()); diff != "" {
		t.Errorf("Get(/q) after CloseSession mismatch (-want +got):\n%s", diff)
	}
	events := h.sink.take()
	var deleted []string
	for _, e := range events {
		if e.Zxid != x {
			t.Errorf("CloseSession event %+v has zxid %d, want %d", e, e.Zxid, x)
		}
		if e.Type == EventDeleted {
			deleted = append(deleted, e.Path)
		}
	}
	if want := []string{"/p/e1", "/p/e2", "/p/lock-0000000000", "/q/e3"}; !cmp.Equal(deleted, want) {
		t.Errorf("CloseSession deleted events = %v, want %v (sorted)", deleted, want)
	}
	if len(events) != 8 {
		t.Errorf("CloseSession emitted %d events, want 8 (a deletion and a children change each)", len(events))
	}

	if _, err := h.f.Session(s1); !errors.Is(err, ErrNoSession) {
		t.Errorf("Session(%d) after close error = %v, want %v", s1, err, ErrNoSession)
	}
	if _, ok := h.f.SessionTimer(s1); ok {
		t.Errorf("SessionTimer(%d) after close = _, true, want false", s1)
	}
	if sess, err := h.f.Session(s2); err != nil || !cmp.Equal(sess.GetEphemerals(), []string{"/p/other"}) {
		t.Errorf("Session(%d) = %v, %v, want its ephemeral kept", s2, sess, err)
	}
	checkInvariants(t, h.f)

	// The closed session is gone for every later command.
	for name, cmd := range map[string]*raftv1.Command{
		"close again":          cmdCloseSession(s1),
		"close unknown":        cmdCloseSession(s2 + 100),
		"close zero":           cmdCloseSession(0),
		"ephemeral for closed": cmdEphemeral("/p/late", s1, false),
	} {
		t.Run(name, func(t *testing.T) {
			assertFails(t, h, cmd, func() *Result { return h.apply(cmd) }, ErrSessionExpired)
		})
	}

	// A session without ephemerals closes cleanly.
	s3 := h.openSession(1_000)
	res = h.apply(cmdCloseSession(s3))
	if res.Err != nil || res.Resp.(*paddockv1.CloseSessionResponse).GetDeleted() != 0 {
		t.Errorf("CloseSession(%d) = %v, %v, want 0 deleted, nil", s3, res.Resp, res.Err)
	}
	if got := h.f.Sessions(); len(got) != 1 || got[0].GetId() != s2 {
		t.Errorf("Sessions() = %v, want only %d", got, s2)
	}
}

func TestCheckpointSessions(t *testing.T) {
	h := newHarness(t)
	s1 := h.openSession(10_000)
	s2 := h.openSession(20_000)
	s3 := h.openSession(30_000)
	steps := []struct {
		name string
		cps  []*raftv1.SessionCheckpoint
		want []SessionTimer
	}{
		{
			name: "record",
			cps:  []*raftv1.SessionCheckpoint{checkpoint(s1, 4_000), checkpoint(s3, 29_999)},
			want: []SessionTimer{{s1, 10_000, 4_000}, {s2, 20_000, 0}, {s3, 30_000, 29_999}},
		},
		{
			name: "unknown sessions are skipped",
			cps:  []*raftv1.SessionCheckpoint{checkpoint(s3+10, 5), checkpoint(0, 5), checkpoint(s2, 7)},
			want: []SessionTimer{{s1, 10_000, 4_000}, {s2, 20_000, 7}, {s3, 30_000, 29_999}},
		},
		{
			name: "applied in order",
			cps:  []*raftv1.SessionCheckpoint{checkpoint(s1, 1), checkpoint(s1, 2)},
			want: []SessionTimer{{s1, 10_000, 2}, {s2, 20_000, 7}, {s3, 30_000, 29_999}},
		},
		{
			name: "zero, negative and the full timeout clear",
			cps:  []*raftv1.SessionCheckpoint{checkpoint(s1, 0), checkpoint(s2, -3), checkpoint(s3, 30_000)},
			want: []SessionTimer{{s1, 10_000, 0}, {s2, 20_000, 0}, {s3, 30_000, 0}},
		},
		{
			name: "over the timeout clears",
			cps:  []*raftv1.SessionCheckpoint{checkpoint(s1, 99_999)},
			want: []SessionTimer{{s1, 10_000, 0}, {s2, 20_000, 0}, {s3, 30_000, 0}},
		},
		{
			name: "empty",
			want: []SessionTimer{{s1, 10_000, 0}, {s2, 20_000, 0}, {s3, 30_000, 0}},
		},
	}
	for _, st := range steps {
		res := h.apply(cmdCheckpoint(st.cps...))
		if res.Err != nil || res.Resp != nil {
			t.Errorf("%s: CheckpointSessions = %v, %v, want nil, nil", st.name, res.Resp, res.Err)
		}
		if diff := cmp.Diff(st.want, h.f.SessionTimers()); diff != "" {
			t.Errorf("%s: SessionTimers() mismatch (-want +got):\n%s", st.name, diff)
		}
	}
	// An unchanged checkpoint leaves the state alone.
	before := h.f.StateHash()
	h.must(cmdCheckpoint(checkpoint(s1, 0), checkpoint(s3+1, 10)))
	if h.f.StateHash() != before {
		t.Errorf("CheckpointSessions that changes nothing changed the state hash")
	}
	if ev := h.sink.take(); len(ev) != 0 {
		t.Errorf("CheckpointSessions emitted %d events, want none", len(ev))
	}
}

func TestRegisterMember(t *testing.T) {
	h := newHarness(t)
	h.must(cmdRegister("n2", "n2:9000"))
	h.must(cmdRegister("n1", "n1:9000"))
	h.must(cmdRegister("n1", "n1:9001")) // re-registering replaces
	want := []*raftv1.RegisterMember{
		{Id: "n1", RaftAddr: "n1:7000", GrpcAddr: "n1:9001", HttpAddr: "n1:8080", FeatureLevel: FeatureLevel},
		{Id: "n2", RaftAddr: "n2:7000", GrpcAddr: "n2:9000", HttpAddr: "n2:8080", FeatureLevel: FeatureLevel},
	}
	if diff := cmp.Diff(want, h.f.Members(), protocmp.Transform()); diff != "" {
		t.Errorf("Members() mismatch (-want +got):\n%s", diff)
	}
	if m, ok := h.f.Member("n1"); !ok || m.GetGrpcAddr() != "n1:9001" {
		t.Errorf("Member(n1) = %v, %v, want grpc n1:9001, true", m, ok)
	}
	if _, ok := h.f.Member("n3"); ok {
		t.Errorf("Member(n3) = _, true, want false")
	}
	cmd := cmdRegister("", "x:1")
	assertFails(t, h, cmd, func() *Result { return h.apply(cmd) }, ErrBadArgument)
}

func TestBarrier(t *testing.T) {
	h, _ := treeFixture(t)
	before := h.f.StateHash()
	res := h.apply(cmdBarrier())
	if res.Err != nil || res.Resp != nil {
		t.Errorf("Barrier = %v, %v, want nil, nil", res.Resp, res.Err)
	}
	if h.f.StateHash() != before {
		t.Errorf("Barrier changed the state hash")
	}
	if got := h.f.AppliedIndex(); got != res.Index {
		t.Errorf("AppliedIndex() after Barrier = %d, want %d", got, res.Index)
	}
	if ev := h.sink.take(); len(ev) != 0 {
		t.Errorf("Barrier emitted %d events, want none", len(ev))
	}
}
