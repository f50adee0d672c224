package fsm

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

const (
	ttlType       = paddockv1.NodeType_NODE_TYPE_TTL
	containerType = paddockv1.NodeType_NODE_TYPE_CONTAINER
)

func cmdDeleteIdle(path string, mzxid, pzxid uint64) *raftv1.Command {
	return &raftv1.Command{Op: &raftv1.Command_DeleteIdle{DeleteIdle: &raftv1.DeleteIdle{Path: path, Mzxid: mzxid, Pzxid: pzxid}}}
}

func TestCreateTTLAndContainerValidation(t *testing.T) {
	tests := []struct {
		name    string
		req     *paddockv1.CreateRequest
		wantErr error
		want    func(*paddockv1.Stat) bool
	}{
		{"ttl", &paddockv1.CreateRequest{Path: "/t", Type: ttlType, TtlMs: 30000}, nil,
			func(s *paddockv1.Stat) bool {
				return s.GetTtlMs() == 30000 && !s.GetContainer() && s.GetEphemeralOwner() == 0
			}},
		{"ttl sequential", &paddockv1.CreateRequest{Path: "/ts-", Type: ttlType, TtlMs: 1, Sequential: true}, nil,
			func(s *paddockv1.Stat) bool { return s.GetTtlMs() == 1 }},
		{"container", &paddockv1.CreateRequest{Path: "/c", Type: containerType}, nil,
			func(s *paddockv1.Stat) bool {
				return s.GetContainer() && s.GetTtlMs() == 0 && s.GetEphemeralOwner() == 0
			}},
		{"ttl missing", &paddockv1.CreateRequest{Path: "/t", Type: ttlType}, ErrBadArgument, nil},
		{"ttl negative", &paddockv1.CreateRequest{Path: "/t", Type: ttlType, TtlMs: -5}, ErrBadArgument, nil},
		{"ttl too long", &paddockv1.CreateRequest{Path: "/t", Type: ttlType, TtlMs: MaxTTL.Milliseconds() + 1}, ErrBadArgument, nil},
		{"ttl on persistent", &paddockv1.CreateRequest{Path: "/t", TtlMs: 1000}, ErrBadArgument, nil},
		{"ttl on ephemeral", &paddockv1.CreateRequest{Path: "/t", Type: paddockv1.NodeType_NODE_TYPE_EPHEMERAL, SessionId: 1, TtlMs: 1000}, ErrBadArgument, nil},
		{"ttl on container", &paddockv1.CreateRequest{Path: "/t", Type: containerType, TtlMs: 1000}, ErrBadArgument, nil},
		{"container sequential", &paddockv1.CreateRequest{Path: "/c-", Type: containerType, Sequential: true}, ErrBadArgument, nil},
		{"container with session", &paddockv1.CreateRequest{Path: "/c", Type: containerType, SessionId: 1}, ErrBadArgument, nil},
		{"ttl with session", &paddockv1.CreateRequest{Path: "/t", Type: ttlType, TtlMs: 1, SessionId: 1}, ErrBadArgument, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := cmdCreateReq(tt.req)
			if err := CheckCommand(cmd, MaxDataSize); !errors.Is(err, tt.wantErr) {
				t.Errorf("CheckCommand() = %v, want %v", err, tt.wantErr)
			}
			h := newHarness(t)
			h.openSession(1000) // session 1, so only the type can be wrong
			res := h.apply(cmdCreateReq(tt.req))
			if !errors.Is(res.Err, tt.wantErr) {
				t.Fatalf("Create() error = %v, want %v", res.Err, tt.wantErr)
			}
			if tt.wantErr != nil {
				if h.sink.take(); h.f.state.tree.nodes.Len() != 2 {
					t.Errorf("a refused create left %d znodes, want 2", h.f.state.tree.nodes.Len())
				}
				return
			}
			cr := res.Resp.(*paddockv1.CreateResponse)
			if !tt.want(cr.GetStat()) || !tt.want(h.stat(cr.GetPath())) {
				t.Errorf("Stat = %v", cr.GetStat())
			}
			checkInvariants(t, h.f)
		})
	}

	// In a multi too.
	h := newHarness(t)
	res := h.apply(cmdMulti(opCreate(&paddockv1.CreateRequest{Path: "/m", Type: ttlType, TtlMs: 5}), opCreate(&paddockv1.CreateRequest{Path: "/n", Type: containerType})))
	if res.Err != nil || h.stat("/m").GetTtlMs() != 5 || !h.stat("/n").GetContainer() {
		t.Errorf("Multi(create ttl, create container) = %v, stats %v %v", res.Err, h.stat("/m"), h.stat("/n"))
	}
	var me *MultiError
	res = h.apply(cmdMulti(opCreate(&paddockv1.CreateRequest{Path: "/x", Type: ttlType})))
	if !errors.As(res.Err, &me) || !errors.Is(res.Err, ErrBadArgument) {
		t.Errorf("Multi(create ttl without ttl_ms) = %v, want a MultiError of %v", res.Err, ErrBadArgument)
	}
}

func TestDeleteIdle(t *testing.T) {
	h := newHarness(t)
	h.must(cmdCreateReq(&paddockv1.CreateRequest{Path: "/t", Type: ttlType, TtlMs: 1000}))
	h.must(cmdCreateReq(&paddockv1.CreateRequest{Path: "/c", Type: containerType}))
	h.mustCreate("/p", "")
	h.sink.take()

	deleted := func(path string, mzxid, pzxid uint64) int32 {
		t.Helper()
		res := h.must(cmdDeleteIdle(path, mzxid, pzxid))
		return res.Resp.(*paddockv1.DeleteResponse).GetDeleted()
	}

	// A persistent node and a container never given a child are not idle.
	p := h.stat("/p")
	if n := deleted("/p", p.GetMzxid(), p.GetPzxid()); n != 0 || !h.exists("/p") {
		t.Errorf("DeleteIdle(/p persistent) deleted %d", n)
	}
	c := h.stat("/c")
	if n := deleted("/c", c.GetMzxid(), c.GetPzxid()); n != 0 || !h.exists("/c") {
		t.Errorf("DeleteIdle(/c never had a child) deleted %d", n)
	}
	if n := deleted("/missing", 1, 1); n != 0 {
		t.Errorf("DeleteIdle(/missing) deleted %d", n)
	}

	// A TTL node modified since the leader looked, or with children, stays.
	seen := h.stat("/t")
	h.must(cmdSet("/t", []byte("x"), nil))
	if n := deleted("/t", seen.GetMzxid(), seen.GetPzxid()); n != 0 || !h.exists("/t") {
		t.Errorf("DeleteIdle(/t) with a stale mzxid deleted %d", n)
	}
	h.mustCreate("/t/kid", "")
	now := h.stat("/t")
	if n := deleted("/t", now.GetMzxid(), now.GetPzxid()); n != 0 || !h.exists("/t") {
		t.Errorf("DeleteIdle(/t) with a child deleted %d", n)
	}
	h.must(cmdDelete("/t/kid", nil, false))
	now = h.stat("/t")
	h.sink.take()
	if n := deleted("/t", now.GetMzxid(), now.GetPzxid()); n != 1 || h.exists("/t") {
		t.Errorf("DeleteIdle(/t) idle deleted %d", n)
	}
	evs := h.sink.take()
	if len(evs) != 2 || evs[0].Type != EventDeleted || evs[0].Path != "/t" || evs[1].Type != EventChildrenChanged || evs[1].Path != "/" {
		t.Errorf("DeleteIdle events = %+v, want deleted /t, children of /", evs)
	}

	// A container is deleted once empty after having had a child.
	h.mustCreate("/c/kid", "")
	c = h.stat("/c")
	if n := deleted("/c", c.GetMzxid(), c.GetPzxid()); n != 0 {
		t.Errorf("DeleteIdle(/c) with a child deleted %d", n)
	}
	h.must(cmdDelete("/c/kid", nil, false))
	c = h.stat("/c")
	if n := deleted("/c", c.GetMzxid(), c.GetPzxid()-1); n != 0 {
		t.Errorf("DeleteIdle(/c) with a stale pzxid deleted %d", n)
	}
	if n := deleted("/c", c.GetMzxid(), c.GetPzxid()); n != 1 || h.exists("/c") {
		t.Errorf("DeleteIdle(/c) empty deleted %d", n)
	}
	checkInvariants(t, h.f)
}

func TestIdleCandidates(t *testing.T) {
	h := newHarness(t)
	h.must(cmdCreateReq(&paddockv1.CreateRequest{Path: "/t", Type: ttlType, TtlMs: 1000}))
	h.must(cmdCreateReq(&paddockv1.CreateRequest{Path: "/busy", Type: ttlType, TtlMs: 1000}))
	h.mustCreate("/busy/kid", "")
	h.must(cmdCreateReq(&paddockv1.CreateRequest{Path: "/c", Type: containerType}))
	h.must(cmdCreateReq(&paddockv1.CreateRequest{Path: "/fresh", Type: containerType}))
	h.mustCreate("/c/kid", "")
	h.must(cmdDelete("/c/kid", nil, false))
	h.mustCreate("/p", "")
	got := h.f.IdleCandidates()
	c, tt := h.stat("/c"), h.stat("/t")
	want := []Idle{
		{Path: "/c", Mzxid: c.GetMzxid(), Pzxid: c.GetPzxid()},
		{Path: "/t", Mzxid: tt.GetMzxid(), Pzxid: tt.GetPzxid(), TTLMs: 1000},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("IdleCandidates() mismatch (-want +got):\n%s", diff)
	}
}

func TestSnapshotKeepsTTLAndContainer(t *testing.T) {
	h := newHarness(t)
	s := h.openSession(1000)
	h.must(cmdCreateReq(&paddockv1.CreateRequest{Path: "/t", Type: ttlType, TtlMs: 4242}))
	h.must(cmdCreateReq(&paddockv1.CreateRequest{Path: "/c", Type: containerType}))
	h.must(cmdEphemeral("/c/e", s, false))
	data := persist(t, h.f)
	r := New(nil)
	if err := r.Restore(&closeTracker{Reader: bytes.NewReader(data)}); err != nil {
		t.Fatalf("Restore() error = %v", err)
	}
	rh := &harness{t: t, f: r, sink: &recordingSink{}, index: h.index}
	for _, p := range []string{"/t", "/c", "/c/e"} {
		if diff := cmp.Diff(h.stat(p), rh.stat(p), protocmp.Transform()); diff != "" {
			t.Errorf("Stat(%s) after restore mismatch (-want +got):\n%s", p, diff)
		}
	}
	if !bytes.Equal(data, persist(t, r)) {
		t.Errorf("restored state persists differently")
	}
	checkInvariants(t, r)
	// Closing the session still finds its ephemeral under the container.
	rh.must(cmdCloseSession(s))
	if rh.exists("/c/e") {
		t.Errorf("/c/e survived its session after restore")
	}
}
