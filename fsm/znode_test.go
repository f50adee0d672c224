package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"unicode/utf8"
	"unsafe"

	"github.com/google/btree"
	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// treeFixture holds /a (data "x"), a session and its ephemeral /eph.
func treeFixture(t *testing.T) (h *harness, session uint64) {
	t.Helper()
	h = newHarness(t)
	h.mustCreate("/a", "x")
	session = h.openSession(30_000)
	h.must(cmdEphemeral("/eph", session, false))
	h.sink.take()
	return h, session
}

// assertFails runs res (which applies cmd), expects an error matching want,
// and checks that the state and the events are untouched.
func assertFails(t *testing.T, h *harness, cmd proto.Message, res func() *Result, want error) *Result {
	t.Helper()
	before := h.f.StateHash()
	h.sink.take()
	r := res()
	if !errors.Is(r.Err, want) {
		t.Errorf("Apply(%v) error = %v, want %v", cmd, r.Err, want)
	}
	if r.Resp != nil {
		t.Errorf("Apply(%v) response = %v, want nil on error", cmd, r.Resp)
	}
	if after := h.f.StateHash(); after != before {
		t.Errorf("Apply(%v) changed the state hash after failing", cmd)
	}
	if ev := h.sink.take(); len(ev) != 0 {
		t.Errorf("Apply(%v) emitted %d events after failing, want none", cmd, len(ev))
	}
	return r
}

func TestCreate(t *testing.T) {
	big := bytes.Repeat([]byte{'d'}, MaxDataSize)
	longName := strings.Repeat("n", MaxPathLength-len("/a/"))
	tests := []struct {
		name     string
		req      func(session uint64) *paddockv1.CreateRequest
		wantPath string
		wantErr  error
	}{
		{
			name: "persistent",
			req: func(uint64) *paddockv1.CreateRequest {
				return &paddockv1.CreateRequest{Path: "/a/b", Data: []byte("hello")}
			},
			wantPath: "/a/b",
		},
		{
			name: "explicit persistent type",
			req: func(uint64) *paddockv1.CreateRequest {
				return &paddockv1.CreateRequest{Path: "/a/b", Type: paddockv1.NodeType_NODE_TYPE_PERSISTENT}
			},
			wantPath: "/a/b",
		},
		{
			name: "ephemeral",
			req: func(s uint64) *paddockv1.CreateRequest {
				return &paddockv1.CreateRequest{Path: "/a/e", Data: []byte("me"), Type: paddockv1.NodeType_NODE_TYPE_EPHEMERAL, SessionId: s}
			},
			wantPath: "/a/e",
		},
		{
			name: "sequential",
			req: func(uint64) *paddockv1.CreateRequest {
				return &paddockv1.CreateRequest{Path: "/a/n-", Sequential: true}
			},
			wantPath: "/a/n-0000000000",
		},
		{
			name:     "sequential bare suffix",
			req:      func(uint64) *paddockv1.CreateRequest { return &paddockv1.CreateRequest{Path: "/a/", Sequential: true} },
			wantPath: "/a/0000000000",
		},
		{
			name:     "sequential child of root",
			req:      func(uint64) *paddockv1.CreateRequest { return &paddockv1.CreateRequest{Path: "/", Sequential: true} },
			wantPath: "/0000000000",
		},
		{
			name: "ephemeral sequential",
			req: func(s uint64) *paddockv1.CreateRequest {
				return &paddockv1.CreateRequest{Path: "/a/lock-", Type: paddockv1.NodeType_NODE_TYPE_EPHEMERAL, SessionId: s, Sequential: true}
			},
			wantPath: "/a/lock-0000000000",
		},
		{
			name: "sequential sibling of reserved",
			req: func(uint64) *paddockv1.CreateRequest {
				return &paddockv1.CreateRequest{Path: "/paddock", Sequential: true}
			},
			wantPath: "/paddock0000000000",
		},
		{
			name:     "data of MaxDataSize",
			req:      func(uint64) *paddockv1.CreateRequest { return &paddockv1.CreateRequest{Path: "/a/big", Data: big} },
			wantPath: "/a/big",
		},
		{
			name:     "path of MaxPathLength",
			req:      func(uint64) *paddockv1.CreateRequest { return &paddockv1.CreateRequest{Path: "/a/" + longName} },
			wantPath: "/a/" + longName,
		},
		{
			name:    "exists",
			req:     func(uint64) *paddockv1.CreateRequest { return &paddockv1.CreateRequest{Path: "/a"} },
			wantErr: ErrNodeExists,
		},
		{
			name:    "root exists",
			req:     func(uint64) *paddockv1.CreateRequest { return &paddockv1.CreateRequest{Path: "/"} },
			wantErr: ErrNodeExists,
		},
		{
			name:    "missing parent",
			req:     func(uint64) *paddockv1.CreateRequest { return &paddockv1.CreateRequest{Path: "/nope/b"} },
			wantErr: ErrNoNode,
		},
		{
			name: "sequential missing parent",
			req: func(uint64) *paddockv1.CreateRequest {
				return &paddockv1.CreateRequest{Path: "/nope/", Sequential: true}
			},
			wantErr: ErrNoNode,
		},
		{
			name:    "child of ephemeral",
			req:     func(uint64) *paddockv1.CreateRequest { return &paddockv1.CreateRequest{Path: "/eph/c"} },
			wantErr: ErrEphemeralParent,
		},
		{
			name: "ephemeral child of ephemeral",
			req: func(s uint64) *paddockv1.CreateRequest {
				return &paddockv1.CreateRequest{Path: "/eph/c", Type: paddockv1.NodeType_NODE_TYPE_EPHEMERAL, SessionId: s}
			},
			wantErr: ErrEphemeralParent,
		},
		{
			name: "data over MaxDataSize",
			req: func(uint64) *paddockv1.CreateRequest {
				return &paddockv1.CreateRequest{Path: "/a/big", Data: append(big, 'x')}
			},
			wantErr: ErrTooLarge,
		},
		{
			name:    "reserved root",
			req:     func(uint64) *paddockv1.CreateRequest { return &paddockv1.CreateRequest{Path: "/paddock"} },
			wantErr: ErrReservedPath,
		},
		{
			name:    "under reserved",
			req:     func(uint64) *paddockv1.CreateRequest { return &paddockv1.CreateRequest{Path: "/paddock/x"} },
			wantErr: ErrReservedPath,
		},
		{
			name: "sequential under reserved",
			req: func(uint64) *paddockv1.CreateRequest {
				return &paddockv1.CreateRequest{Path: "/paddock/", Sequential: true}
			},
			wantErr: ErrReservedPath,
		},
		{
			name:    "persistent with session id",
			req:     func(s uint64) *paddockv1.CreateRequest { return &paddockv1.CreateRequest{Path: "/a/b", SessionId: s} },
			wantErr: ErrBadArgument,
		},
		{
			name:    "unknown node type",
			req:     func(uint64) *paddockv1.CreateRequest { return &paddockv1.CreateRequest{Path: "/a/b", Type: 99} },
			wantErr: ErrBadArgument,
		},
		{
			name: "ephemeral without session",
			req: func(uint64) *paddockv1.CreateRequest {
				return &paddockv1.CreateRequest{Path: "/a/e", Type: paddockv1.NodeType_NODE_TYPE_EPHEMERAL}
			},
			wantErr: ErrSessionExpired,
		},
		{
			name: "ephemeral unknown session",
			req: func(s uint64) *paddockv1.CreateRequest {
				return &paddockv1.CreateRequest{Path: "/a/e", Type: paddockv1.NodeType_NODE_TYPE_EPHEMERAL, SessionId: s + 1000}
			},
			wantErr: ErrSessionExpired,
		},
		{
			name: "sequential over MaxPathLength",
			req: func(uint64) *paddockv1.CreateRequest {
				return &paddockv1.CreateRequest{Path: "/a/" + longName[sequenceDigits-1:], Sequential: true}
			},
			wantErr: ErrBadPath,
		},
	}
	for _, bp := range badPaths {
		tests = append(tests, struct {
			name     string
			req      func(session uint64) *paddockv1.CreateRequest
			wantPath string
			wantErr  error
		}{
			name:    "bad path " + bp.name,
			req:     func(uint64) *paddockv1.CreateRequest { return &paddockv1.CreateRequest{Path: bp.path} },
			wantErr: ErrBadPath,
		})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, s := treeFixture(t)
			req := tc.req(s)
			cmd := cmdCreateReq(req)
			if !utf8.ValidString(req.GetPath()) {
				// proto3 strings must be UTF-8: such a path can only come
				// from a corrupt entry, tested in TestFatalEntries.
				if err := ValidatePath(req.GetPath(), req.GetSequential()); !errors.Is(err, tc.wantErr) {
					t.Errorf("ValidatePath(%q) = %v, want %v", trim(req.GetPath()), err, tc.wantErr)
				}
				return
			}
			if tc.wantErr != nil {
				assertFails(t, h, cmd, func() *Result { return h.apply(cmd) }, tc.wantErr)
				return
			}
			parentPath, _ := splitPath(tc.wantPath)
			parentBefore := h.stat(parentPath)
			res := h.apply(cmd)
			if res.Err != nil {
				t.Fatalf("Create(%q) error = %v, want nil", trim(req.GetPath()), res.Err)
			}
			var owner uint64
			if req.GetType() == paddockv1.NodeType_NODE_TYPE_EPHEMERAL {
				owner = s
			}
			wantStat := &paddockv1.Stat{
				Czxid: res.Index, Mzxid: res.Index, Pzxid: res.Index,
				Ctime: timeAt(res.Index), Mtime: timeAt(res.Index),
				DataLength: int32(len(req.GetData())), EphemeralOwner: owner,
			}
			wantResp := &paddockv1.CreateResponse{Path: tc.wantPath, Stat: wantStat}
			if diff := cmp.Diff(wantResp, res.Resp, protocmp.Transform()); diff != "" {
				t.Errorf("Create(%q) response mismatch (-want +got):\n%s", trim(req.GetPath()), diff)
			}
			data, st, err := h.f.Get(tc.wantPath)
			if err != nil {
				t.Fatalf("Get(%q) error = %v, want nil", trim(tc.wantPath), err)
			}
			if !bytes.Equal(data, req.GetData()) {
				t.Errorf("Get(%q) data = %d bytes, want %d", trim(tc.wantPath), len(data), len(req.GetData()))
			}
			if diff := cmp.Diff(wantStat, st, protocmp.Transform()); diff != "" {
				t.Errorf("Get(%q) stat mismatch (-want +got):\n%s", trim(tc.wantPath), diff)
			}
			wantParent := proto.CloneOf(parentBefore)
			wantParent.NumChildren++
			wantParent.Cversion++
			wantParent.Pzxid = res.Index
			gotParent := h.stat(parentPath)
			if diff := cmp.Diff(wantParent, gotParent, protocmp.Transform()); diff != "" {
				t.Errorf("Get(%q) parent stat mismatch (-want +got):\n%s", parentPath, diff)
			}
			wantEvents := []Event{
				{Zxid: res.Index, Type: EventCreated, Path: tc.wantPath, Stat: statOf(wantStat)},
				{Zxid: res.Index, Type: EventChildrenChanged, Path: parentPath, Stat: statOf(wantParent)},
			}
			if diff := cmp.Diff(wantEvents, h.sink.take(), protocmp.Transform()); diff != "" {
				t.Errorf("Create(%q) events mismatch (-want +got):\n%s", trim(req.GetPath()), diff)
			}
			if owner != 0 {
				sess, err := h.f.Session(s)
				if err != nil {
					t.Fatalf("Session(%d) error = %v", s, err)
				}
				if !slices.Contains(sess.GetEphemerals(), tc.wantPath) {
					t.Errorf("Session(%d).Ephemerals = %v, want it to hold %s", s, sess.GetEphemerals(), tc.wantPath)
				}
			}
			checkInvariants(t, h.f)
		})
	}
}

func TestCreateSequentialCounter(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("/q", "")
	h.mustCreate("/r", "")
	s := h.openSession(10_000)

	seq := func(path string) string {
		t.Helper()
		res := h.must(cmdCreateReq(&paddockv1.CreateRequest{Path: path, Sequential: true}))
		return res.Resp.(*paddockv1.CreateResponse).GetPath()
	}
	steps := []struct {
		name string
		do   func() string // returns the created path, "" when it must fail
		want string
	}{
		{"first", func() string { return seq("/q/n-") }, "/q/n-0000000000"},
		{"second", func() string { return seq("/q/n-") }, "/q/n-0000000001"},
		{"other prefix shares the parent's counter", func() string { return seq("/q/x-") }, "/q/x-0000000002"},
		{"bare suffix", func() string { return seq("/q/") }, "/q/0000000003"},
		{"other parent has its own counter", func() string { return seq("/r/n-") }, "/r/n-0000000000"},
		{"persistent child does not advance", func() string { h.mustCreate("/q/plain", ""); return seq("/q/n-") }, "/q/n-0000000004"},
		{"too large does not advance", func() string {
			assertFails(t, h, nil, func() *Result {
				return h.apply(cmdCreateReq(&paddockv1.CreateRequest{Path: "/q/n-", Sequential: true, Data: make([]byte, MaxDataSize+1)}))
			}, ErrTooLarge)
			return seq("/q/n-")
		}, "/q/n-0000000005"},
		{"expired session does not advance", func() string {
			assertFails(t, h, nil, func() *Result { return h.apply(cmdEphemeral("/q/e-", s+99, true)) }, ErrSessionExpired)
			return seq("/q/n-")
		}, "/q/n-0000000006"},
		{"name taken does not advance", func() string {
			h.mustCreate("/q/n-0000000007", "")
			assertFails(t, h, nil, func() *Result {
				return h.apply(cmdCreateReq(&paddockv1.CreateRequest{Path: "/q/n-", Sequential: true}))
			}, ErrNodeExists)
			return seq("/q/m-")
		}, "/q/m-0000000007"},
		{"failed multi does not advance", func() string {
			assertFails(t, h, nil, func() *Result {
				return h.apply(cmdMulti(
					opCreate(&paddockv1.CreateRequest{Path: "/q/n-", Sequential: true}),
					opCreate(&paddockv1.CreateRequest{Path: "/missing/x"}),
				))
			}, ErrNoNode)
			return seq("/q/n-")
		}, "/q/n-0000000008"},
		{"delete does not reset", func() string {
			h.must(cmdDelete("/q/n-0000000008", nil, false))
			return seq("/q/n-")
		}, "/q/n-0000000009"},
		{"ephemeral sequential", func() string {
			res := h.must(cmdEphemeral("/q/lock-", s, true))
			return res.Resp.(*paddockv1.CreateResponse).GetPath()
		}, "/q/lock-0000000010"},
		{"multi advances once per create", func() string {
			res := h.must(cmdMulti(
				opCreate(&paddockv1.CreateRequest{Path: "/q/n-", Sequential: true}),
				opCreate(&paddockv1.CreateRequest{Path: "/q/n-", Sequential: true}),
			))
			rs := res.Resp.(*paddockv1.MultiResponse).GetResults()
			return rs[0].GetCreate().GetPath() + "," + rs[1].GetCreate().GetPath()
		}, "/q/n-0000000011,/q/n-0000000012"},
	}
	for _, st := range steps {
		if got := st.do(); got != st.want {
			t.Errorf("%s: created %q, want %q", st.name, got, st.want)
		}
	}
	checkInvariants(t, h.f)
}

func TestGet(t *testing.T) {
	h, _ := treeFixture(t)
	tests := []struct {
		path     string
		wantData string
		wantErr  error
	}{
		{"/a", "x", nil},
		{"/", "", nil},
		{"/paddock", "", nil},
		{"/missing", "", ErrNoNode},
		{"/a/missing", "", ErrNoNode},
		{"/a/", "", ErrBadPath},
		{"", "", ErrBadPath},
		{"/a\xff", "", ErrBadPath},
	}
	for _, tc := range tests {
		data, st, err := h.f.Get(tc.path)
		if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
			t.Errorf("Get(%q) error = %v, want %v", tc.path, err, tc.wantErr)
			continue
		}
		if err != nil {
			if data != nil || st != nil {
				t.Errorf("Get(%q) = %q, %v, want nil, nil on error", tc.path, data, st)
			}
			continue
		}
		if string(data) != tc.wantData {
			t.Errorf("Get(%q) data = %q, want %q", tc.path, data, tc.wantData)
		}
	}

	// The root holds /paddock (created with the state), /a and /eph.
	if st := h.stat("/"); st.GetNumChildren() != 3 || st.GetCversion() != 3 {
		t.Errorf("Get(/) num_children, cversion = %d, %d, want 3, 3", st.GetNumChildren(), st.GetCversion())
	}

	// Get returns a copy: changing it does not change the state.
	data, _, _ := h.f.Get("/a")
	before := h.f.StateHash()
	data[0] = 'Z'
	if got, _, _ := h.f.Get("/a"); string(got) != "x" {
		t.Errorf("Get(/a) after changing a returned slice = %q, want %q", got, "x")
	}
	if h.f.StateHash() != before {
		t.Errorf("StateHash() changed after changing a slice returned by Get")
	}
}

func TestApplyDoesNotAliasEntry(t *testing.T) {
	h := newHarness(t)
	l := h.next(cmdCreate("/a", []byte("payload")))
	h.applyLog(l)
	for i := range l.Data {
		l.Data[i] = 0
	}
	if data, _, _ := h.f.Get("/a"); string(data) != "payload" {
		t.Errorf("Get(/a) after reusing the entry's buffer = %q, want %q", data, "payload")
	}
}

func TestSet(t *testing.T) {
	tests := []struct {
		name    string
		path    string
		data    []byte
		version *int32
		wantErr error
	}{
		{name: "version absent", path: "/a", data: []byte("new"), version: nil},
		{name: "version -1", path: "/a", data: []byte("new"), version: proto.Int32(-1)},
		{name: "version matching", path: "/a", data: []byte("new"), version: proto.Int32(2)},
		{name: "empty data", path: "/a", data: nil},
		{name: "root", path: "/", data: []byte("r")},
		{name: "ephemeral", path: "/eph", data: []byte("e")},
		{name: "data of MaxDataSize", path: "/a", data: make([]byte, MaxDataSize)},
		{name: "version wrong", path: "/a", version: proto.Int32(1), wantErr: ErrBadVersion},
		{name: "version ahead", path: "/a", version: proto.Int32(3), wantErr: ErrBadVersion},
		{name: "missing", path: "/missing", wantErr: ErrNoNode},
		{name: "data over MaxDataSize", path: "/a", data: make([]byte, MaxDataSize+1), wantErr: ErrTooLarge},
		{name: "reserved", path: "/paddock", wantErr: ErrReservedPath},
		{name: "under reserved", path: "/paddock/x", wantErr: ErrReservedPath},
	}
	for _, bp := range badPaths {
		if utf8.ValidString(bp.path) {
			tests = append(tests, struct {
				name    string
				path    string
				data    []byte
				version *int32
				wantErr error
			}{name: "bad path " + bp.name, path: bp.path, wantErr: ErrBadPath})
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := treeFixture(t)
			h.must(cmdSet("/a", []byte("y"), nil))
			h.must(cmdSet("/a", []byte("z"), nil)) // /a is at version 2
			h.sink.take()
			cmd := cmdSet(tc.path, tc.data, tc.version)
			if tc.wantErr != nil {
				assertFails(t, h, cmd, func() *Result { return h.apply(cmd) }, tc.wantErr)
				return
			}
			prevData, before, _ := h.f.Get(tc.path)
			res := h.apply(cmd)
			if res.Err != nil {
				t.Fatalf("Set(%q) error = %v, want nil", tc.path, res.Err)
			}
			want := proto.CloneOf(before)
			want.Version++
			want.Mzxid = res.Index
			want.Mtime = timeAt(res.Index)
			want.DataLength = int32(len(tc.data))
			if diff := cmp.Diff(&paddockv1.SetResponse{Stat: want}, res.Resp, protocmp.Transform()); diff != "" {
				t.Errorf("Set(%q) response mismatch (-want +got):\n%s", tc.path, diff)
			}
			data, st, _ := h.f.Get(tc.path)
			if !bytes.Equal(data, tc.data) {
				t.Errorf("Get(%q) data = %q, want %q", tc.path, trim(string(data)), trim(string(tc.data)))
			}
			if diff := cmp.Diff(want, st, protocmp.Transform()); diff != "" {
				t.Errorf("Get(%q) stat mismatch (-want +got):\n%s", tc.path, diff)
			}
			wantEvents := []Event{{Zxid: res.Index, Type: EventDataChanged, Path: tc.path, Stat: statOf(want), PrevData: prevData}}
			if diff := cmp.Diff(wantEvents, h.sink.take(), protocmp.Transform()); diff != "" {
				t.Errorf("Set(%q) events mismatch (-want +got):\n%s", tc.path, diff)
			}
		})
	}
}

// deleteFixture adds, to treeFixture's state:
//
//	/a/b, /a/b/c, /a/b/c/d, /a/b/e1 (ephemeral of s1), /a/b/c/e2 (of s2),
//	/leaf (version 2).
func deleteFixture(t *testing.T) (h *harness, s1, s2 uint64) {
	t.Helper()
	h, s1 = treeFixture(t)
	s2 = h.openSession(30_000)
	for _, p := range []string{"/a/b", "/a/b/c", "/a/b/c/d", "/leaf"} {
		h.mustCreate(p, p)
	}
	h.must(cmdEphemeral("/a/b/e1", s1, false))
	h.must(cmdEphemeral("/a/b/c/e2", s2, false))
	h.must(cmdSet("/leaf", []byte("1"), nil))
	h.must(cmdSet("/leaf", []byte("2"), nil))
	h.sink.take()
	return h, s1, s2
}

func TestDelete(t *testing.T) {
	tests := []struct {
		name        string
		path        string
		version     *int32
		recursive   bool
		wantDeleted int32
		wantGone    []string
		wantErr     error
	}{
		{name: "version absent", path: "/leaf", wantDeleted: 1, wantGone: []string{"/leaf"}},
		{name: "version -1", path: "/leaf", version: proto.Int32(-1), wantDeleted: 1, wantGone: []string{"/leaf"}},
		{name: "version matching", path: "/leaf", version: proto.Int32(2), wantDeleted: 1, wantGone: []string{"/leaf"}},
		{name: "ephemeral", path: "/eph", wantDeleted: 1, wantGone: []string{"/eph"}},
		{name: "recursive leaf", path: "/leaf", recursive: true, wantDeleted: 1, wantGone: []string{"/leaf"}},
		{
			name: "recursive subtree with ephemerals", path: "/a/b", recursive: true, wantDeleted: 5,
			wantGone: []string{"/a/b", "/a/b/c", "/a/b/c/d", "/a/b/e1", "/a/b/c/e2"},
		},
		{name: "recursive matching version", path: "/a/b", version: proto.Int32(0), recursive: true, wantDeleted: 5, wantGone: []string{"/a/b"}},
		{name: "version wrong", path: "/leaf", version: proto.Int32(1), wantErr: ErrBadVersion},
		{name: "recursive version wrong", path: "/a/b", version: proto.Int32(1), recursive: true, wantErr: ErrBadVersion},
		{name: "not empty", path: "/a/b", wantErr: ErrNotEmpty},
		{name: "missing", path: "/missing", wantErr: ErrNoNode},
		{name: "missing recursive", path: "/missing", recursive: true, wantErr: ErrNoNode},
		{name: "root", path: "/", wantErr: ErrBadArgument},
		{name: "root recursive", path: "/", recursive: true, wantErr: ErrBadArgument},
		{name: "reserved", path: "/paddock", wantErr: ErrReservedPath},
		{name: "reserved recursive", path: "/paddock", recursive: true, wantErr: ErrReservedPath},
		{name: "under reserved", path: "/paddock/x", wantErr: ErrReservedPath},
	}
	for _, bp := range badPaths {
		if utf8.ValidString(bp.path) {
			tests = append(tests, struct {
				name        string
				path        string
				version     *int32
				recursive   bool
				wantDeleted int32
				wantGone    []string
				wantErr     error
			}{name: "bad path " + bp.name, path: bp.path, recursive: true, wantErr: ErrBadPath})
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, s1, s2 := deleteFixture(t)
			cmd := cmdDelete(tc.path, tc.version, tc.recursive)
			if tc.wantErr != nil {
				assertFails(t, h, cmd, func() *Result { return h.apply(cmd) }, tc.wantErr)
				return
			}
			parentPath, _ := splitPath(tc.path)
			parentBefore := h.stat(parentPath)
			res := h.apply(cmd)
			if res.Err != nil {
				t.Fatalf("Delete(%q) error = %v, want nil", tc.path, res.Err)
			}
			if diff := cmp.Diff(&paddockv1.DeleteResponse{Deleted: tc.wantDeleted}, res.Resp, protocmp.Transform()); diff != "" {
				t.Errorf("Delete(%q) response mismatch (-want +got):\n%s", tc.path, diff)
			}
			for _, p := range tc.wantGone {
				if h.exists(p) {
					t.Errorf("Get(%q) after Delete(%q) found it, want %v", p, tc.path, ErrNoNode)
				}
			}
			wantParent := proto.CloneOf(parentBefore)
			wantParent.NumChildren--
			wantParent.Cversion++
			wantParent.Pzxid = res.Index
			if diff := cmp.Diff(wantParent, h.stat(parentPath), protocmp.Transform()); diff != "" {
				t.Errorf("Get(%q) parent stat mismatch (-want +got):\n%s", parentPath, diff)
			}
			for _, s := range []uint64{s1, s2} {
				sess, err := h.f.Session(s)
				if err != nil {
					t.Fatalf("Session(%d) error = %v", s, err)
				}
				for _, p := range sess.GetEphemerals() {
					if hasPrefixPath(p, tc.path) {
						t.Errorf("Session(%d).Ephemerals = %v, still holds deleted %s", s, sess.GetEphemerals(), p)
					}
				}
			}
			// Events: each deletion at this zxid, children before their
			// parent, then the parent's children change last.
			events := h.sink.take()
			if len(events) != int(tc.wantDeleted)+1 {
				t.Fatalf("Delete(%q) emitted %d events, want %d", tc.path, len(events), tc.wantDeleted+1)
			}
			seen := map[string]bool{}
			for _, e := range events[:len(events)-1] {
				if e.Type != EventDeleted || e.Zxid != res.Index || e.Stat != (Stat{}) {
					t.Errorf("Delete(%q) event = %+v, want a deletion at zxid %d", tc.path, e, res.Index)
				}
				if parent, _ := splitPath(e.Path); seen[parent] {
					t.Errorf("Delete(%q) reported %s after its parent %s", tc.path, e.Path, parent)
				}
				seen[e.Path] = true
			}
			wantLast := Event{Zxid: res.Index, Type: EventChildrenChanged, Path: parentPath, Stat: statOf(wantParent)}
			if diff := cmp.Diff(wantLast, events[len(events)-1], protocmp.Transform()); diff != "" {
				t.Errorf("Delete(%q) last event mismatch (-want +got):\n%s", tc.path, diff)
			}
			checkInvariants(t, h.f)
		})
	}
}

func TestDeleteEventPrevData(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("/x", "old")
	h.sink.take()
	h.must(cmdDelete("/x", nil, false))
	ev := h.sink.take()
	if len(ev) != 2 || string(ev[0].PrevData) != "old" {
		t.Errorf("Delete(/x) events = %+v, want a deletion with PrevData %q first", ev, "old")
	}
}

func TestStatSemantics(t *testing.T) {
	h := newHarness(t)
	stat := func(czxid, mzxid, pzxid uint64, version, cversion, dataLength, numChildren int32, owner uint64) *paddockv1.Stat {
		return &paddockv1.Stat{
			Czxid: czxid, Mzxid: mzxid, Pzxid: pzxid, Ctime: timeAt(czxid), Mtime: timeAt(mzxid),
			Version: version, Cversion: cversion, DataLength: dataLength, NumChildren: numChildren, EphemeralOwner: owner,
		}
	}
	c := h.must(cmdCreate("/s", []byte("abc"))).Index
	want := stat(c, c, c, 0, 0, 3, 0, 0)
	check := func(step, path string, want *paddockv1.Stat) {
		t.Helper()
		if diff := cmp.Diff(want, h.stat(path), protocmp.Transform()); diff != "" {
			t.Errorf("after %s: Get(%q) stat mismatch (-want +got):\n%s", step, path, diff)
		}
	}
	check("create", "/s", want)

	m := h.must(cmdSet("/s", []byte("abcdef"), nil)).Index
	check("set", "/s", stat(c, m, c, 1, 0, 6, 0, 0))

	cc := h.must(cmdCreate("/s/c", nil)).Index
	check("create child", "/s", stat(c, m, cc, 1, 1, 6, 1, 0))
	check("create child", "/s/c", stat(cc, cc, cc, 0, 0, 0, 0, 0))

	m2 := h.must(cmdSet("/s/c", []byte("1"), nil)).Index
	check("set child", "/s", stat(c, m, cc, 1, 1, 6, 1, 0))
	check("set child", "/s/c", stat(cc, m2, cc, 1, 0, 1, 0, 0))

	d := h.must(cmdDelete("/s/c", nil, false)).Index
	check("delete child", "/s", stat(c, m, d, 1, 2, 6, 0, 0))

	sid := h.openSession(5_000)
	e := h.must(cmdEphemeral("/s/e", sid, false)).Index
	check("ephemeral child", "/s", stat(c, m, e, 1, 3, 6, 1, 0))
	check("ephemeral child", "/s/e", stat(e, e, e, 0, 0, 0, 0, sid))
	if sid != e-1 {
		t.Errorf("session id = %d, want the index of its OpenSession entry %d", sid, e-1)
	}

	x := h.must(cmdCloseSession(sid)).Index
	check("close session", "/s", stat(c, m, x, 1, 4, 6, 0, 0))

	// A multi stamps every op with its one zxid.
	mu := h.must(cmdMulti(
		opCreate(&paddockv1.CreateRequest{Path: "/s/m", Data: []byte("m")}),
		opSet("/s", []byte("q"), proto.Int32(1)),
	)).Index
	check("multi", "/s", stat(c, mu, mu, 2, 5, 1, 1, 0))
	check("multi", "/s/m", stat(mu, mu, mu, 0, 0, 1, 0, 0))
}

func TestCheckOp(t *testing.T) {
	tests := []struct {
		name    string
		path    string
		version int32
		wantErr error
	}{
		{"matching", "/a", 1, nil},
		{"any version", "/a", -1, nil},
		{"reserved is readable", "/paddock", 0, nil},
		{"root", "/", 0, nil},
		{"wrong", "/a", 0, ErrBadVersion},
		{"missing", "/missing", -1, ErrNoNode},
		{"bad path", "/a/", -1, ErrBadPath},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := treeFixture(t)
			h.must(cmdSet("/a", []byte("y"), nil))
			cmd := cmdMulti(opCheck(tc.path, tc.version))
			if tc.wantErr != nil {
				r := assertFails(t, h, cmd, func() *Result { return h.apply(cmd) }, tc.wantErr)
				var me *MultiError
				if !errors.As(r.Err, &me) || me.Index != 0 {
					t.Errorf("Multi(check %q) error = %#v, want *MultiError at index 0", tc.path, r.Err)
				}
				return
			}
			want := h.stat(tc.path)
			before := h.f.StateHash()
			res := h.apply(cmd)
			if res.Err != nil {
				t.Fatalf("Multi(check %q) error = %v, want nil", tc.path, res.Err)
			}
			wantResp := &paddockv1.MultiResponse{Results: []*paddockv1.OpResult{{Result: &paddockv1.OpResult_Check{Check: want}}}}
			if diff := cmp.Diff(wantResp, res.Resp, protocmp.Transform()); diff != "" {
				t.Errorf("Multi(check %q) response mismatch (-want +got):\n%s", tc.path, diff)
			}
			if h.f.StateHash() != before {
				t.Errorf("Multi(check %q) changed the state hash", tc.path)
			}
		})
	}
}

func TestMulti(t *testing.T) {
	h, s := treeFixture(t)
	h.mustCreate("/m", "0")
	h.mustCreate("/m/old", "")
	h.sink.take()
	mStat := h.stat("/m")
	res := h.apply(cmdMulti(
		opCheck("/m", 0),
		opCreate(&paddockv1.CreateRequest{Path: "/m/new", Data: []byte("n")}),
		opCreate(&paddockv1.CreateRequest{Path: "/m/new/kid"}),
		opCreate(&paddockv1.CreateRequest{Path: "/m/e-", Type: paddockv1.NodeType_NODE_TYPE_EPHEMERAL, SessionId: s, Sequential: true}),
		opSet("/m", []byte("1"), proto.Int32(0)),
		opCheck("/m", 1),
		opDelete("/m/old", proto.Int32(0), false),
		opSet("/m/new/kid", []byte("k"), nil),
		opDelete("/m/new", nil, true),
	))
	if res.Err != nil {
		t.Fatalf("Multi error = %v, want nil", res.Err)
	}
	z, now := res.Index, timeAt(res.Index)
	wantM := &paddockv1.Stat{
		Czxid: mStat.Czxid, Mzxid: z, Pzxid: z, Ctime: mStat.Ctime, Mtime: now,
		Version: 1, Cversion: 5, DataLength: 1, NumChildren: 1,
	}
	want := &paddockv1.MultiResponse{Results: []*paddockv1.OpResult{
		{Result: &paddockv1.OpResult_Check{Check: mStat}},
		{Result: &paddockv1.OpResult_Create{Create: &paddockv1.CreateResponse{Path: "/m/new", Stat: &paddockv1.Stat{
			Czxid: z, Mzxid: z, Pzxid: z, Ctime: now, Mtime: now, DataLength: 1,
		}}}},
		{Result: &paddockv1.OpResult_Create{Create: &paddockv1.CreateResponse{Path: "/m/new/kid", Stat: &paddockv1.Stat{
			Czxid: z, Mzxid: z, Pzxid: z, Ctime: now, Mtime: now,
		}}}},
		{Result: &paddockv1.OpResult_Create{Create: &paddockv1.CreateResponse{Path: "/m/e-0000000000", Stat: &paddockv1.Stat{
			Czxid: z, Mzxid: z, Pzxid: z, Ctime: now, Mtime: now, EphemeralOwner: s,
		}}}},
		{Result: &paddockv1.OpResult_Set{Set: &paddockv1.SetResponse{Stat: &paddockv1.Stat{
			Czxid: mStat.Czxid, Mzxid: z, Pzxid: z, Ctime: mStat.Ctime, Mtime: now,
			Version: 1, Cversion: 3, DataLength: 1, NumChildren: 3,
		}}}},
		{Result: &paddockv1.OpResult_Check{Check: &paddockv1.Stat{
			Czxid: mStat.Czxid, Mzxid: z, Pzxid: z, Ctime: mStat.Ctime, Mtime: now,
			Version: 1, Cversion: 3, DataLength: 1, NumChildren: 3,
		}}},
		{Result: &paddockv1.OpResult_Delete{Delete: &paddockv1.DeleteResponse{Deleted: 1}}},
		{Result: &paddockv1.OpResult_Set{Set: &paddockv1.SetResponse{Stat: &paddockv1.Stat{
			Czxid: z, Mzxid: z, Pzxid: z, Ctime: now, Mtime: now, Version: 1, DataLength: 1,
		}}}},
		{Result: &paddockv1.OpResult_Delete{Delete: &paddockv1.DeleteResponse{Deleted: 2}}},
	}}
	if diff := cmp.Diff(want, res.Resp, protocmp.Transform()); diff != "" {
		t.Errorf("Multi response mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantM, h.stat("/m"), protocmp.Transform()); diff != "" {
		t.Errorf("Get(/m) stat mismatch (-want +got):\n%s", diff)
	}
	for _, p := range []string{"/m/old", "/m/new", "/m/new/kid"} {
		if h.exists(p) {
			t.Errorf("Get(%q) after Multi found it, want %v", p, ErrNoNode)
		}
	}
	sess, _ := h.f.Session(s)
	if want := []string{"/eph", "/m/e-0000000000"}; !slices.Equal(sess.GetEphemerals(), want) {
		t.Errorf("Session(%d).Ephemerals = %v, want %v", s, sess.GetEphemerals(), want)
	}
	if ev := h.sink.take(); len(ev) == 0 || ev[0].Zxid != z {
		t.Errorf("Multi events = %d, want some at zxid %d", len(ev), z)
	}
	checkInvariants(t, h.f)

	// An empty multi succeeds and changes nothing.
	before := h.f.StateHash()
	res = h.apply(cmdMulti())
	if res.Err != nil || len(res.Resp.(*paddockv1.MultiResponse).GetResults()) != 0 {
		t.Errorf("Multi() = %v, %v, want no results, nil", res.Resp, res.Err)
	}
	if h.f.StateHash() != before {
		t.Errorf("Multi() changed the state hash")
	}
}

func TestMultiFailureChangesNothing(t *testing.T) {
	tests := []struct {
		name string
		bad  func(s uint64) *paddockv1.Op
		want error
	}{
		{"check wrong version", func(uint64) *paddockv1.Op { return opCheck("/m", 7) }, ErrBadVersion},
		{"check missing", func(uint64) *paddockv1.Op { return opCheck("/nope", -1) }, ErrNoNode},
		{"create exists", func(uint64) *paddockv1.Op { return opCreate(&paddockv1.CreateRequest{Path: "/m"}) }, ErrNodeExists},
		{"create exists from earlier op", func(uint64) *paddockv1.Op { return opCreate(&paddockv1.CreateRequest{Path: "/m/first"}) }, ErrNodeExists},
		{"create missing parent", func(uint64) *paddockv1.Op { return opCreate(&paddockv1.CreateRequest{Path: "/x/y"}) }, ErrNoNode},
		{"create under ephemeral from earlier op", func(uint64) *paddockv1.Op { return opCreate(&paddockv1.CreateRequest{Path: "/m/e/y"}) }, ErrEphemeralParent},
		{"create bad session", func(s uint64) *paddockv1.Op {
			return opCreate(&paddockv1.CreateRequest{Path: "/m/e", Type: paddockv1.NodeType_NODE_TYPE_EPHEMERAL, SessionId: s + 50})
		}, ErrSessionExpired},
		{"create too large", func(uint64) *paddockv1.Op {
			return opCreate(&paddockv1.CreateRequest{Path: "/m/big", Data: make([]byte, MaxDataSize+1)})
		}, ErrTooLarge},
		{"create reserved", func(uint64) *paddockv1.Op { return opCreate(&paddockv1.CreateRequest{Path: "/paddock/x"}) }, ErrReservedPath},
		{"create bad path", func(uint64) *paddockv1.Op { return opCreate(&paddockv1.CreateRequest{Path: "/m/../x"}) }, ErrBadPath},
		{"create persistent with session", func(s uint64) *paddockv1.Op {
			return opCreate(&paddockv1.CreateRequest{Path: "/m/p", SessionId: s})
		}, ErrBadArgument},
		{"set wrong version", func(uint64) *paddockv1.Op { return opSet("/m", nil, proto.Int32(0)) }, ErrBadVersion},
		{"set missing", func(uint64) *paddockv1.Op { return opSet("/nope", nil, nil) }, ErrNoNode},
		{"delete not empty", func(uint64) *paddockv1.Op { return opDelete("/m", nil, false) }, ErrNotEmpty},
		{"delete missing", func(uint64) *paddockv1.Op { return opDelete("/nope", nil, false) }, ErrNoNode},
		{"delete root", func(uint64) *paddockv1.Op { return opDelete("/", nil, true) }, ErrBadArgument},
		{"empty op", func(uint64) *paddockv1.Op { return &paddockv1.Op{} }, ErrBadArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, s := treeFixture(t)
			h.mustCreate("/m", "0")
			h.mustCreate("/m/kid", "")
			h.sink.take()
			cmd := cmdMulti(
				opCreate(&paddockv1.CreateRequest{Path: "/m/first", Data: []byte("f")}),
				opSet("/m", []byte("1"), proto.Int32(0)),
				opCreate(&paddockv1.CreateRequest{Path: "/m/s-", Sequential: true}),
				opCreate(&paddockv1.CreateRequest{Path: "/m/e", Type: paddockv1.NodeType_NODE_TYPE_EPHEMERAL, SessionId: s}),
				opDelete("/eph", nil, false),
				tc.bad(s),
				opCreate(&paddockv1.CreateRequest{Path: "/m/last"}),
			)
			sessBefore, _ := h.f.Session(s)
			r := assertFails(t, h, cmd, func() *Result { return h.apply(cmd) }, tc.want)
			var me *MultiError
			if !errors.As(r.Err, &me) {
				t.Fatalf("Multi error = %#v, want a *MultiError", r.Err)
			}
			if me.Index != 5 {
				t.Errorf("Multi error index = %d, want 5", me.Index)
			}
			if !strings.HasPrefix(me.Error(), "fsm: multi op 5: ") {
				t.Errorf("Multi error = %q, want it to name op 5", me.Error())
			}
			for _, p := range []string{"/m/first", "/m/s-0000000000", "/m/e", "/m/last"} {
				if h.exists(p) {
					t.Errorf("Get(%q) after a failed Multi found it, want %v", p, ErrNoNode)
				}
			}
			if !h.exists("/eph") {
				t.Errorf("Get(/eph) after a failed Multi = %v, want it kept", ErrNoNode)
			}
			sessAfter, _ := h.f.Session(s)
			if diff := cmp.Diff(sessBefore, sessAfter, protocmp.Transform()); diff != "" {
				t.Errorf("Session(%d) changed after a failed Multi (-before +after):\n%s", s, diff)
			}
			checkInvariants(t, h.f)
		})
	}
}

// TestMultiEphemeralIndex checks that ephemerals created and deleted in the
// same multi leave the session's index as the tree: closing the session
// afterwards must neither fail nor leave anything behind.
func TestMultiEphemeralIndex(t *testing.T) {
	tests := []struct {
		name string
		ops  func(s1, s2 uint64) []*paddockv1.Op
		want map[int][]string // session number (1 or 2) -> its ephemerals
	}{
		{
			name: "create then delete",
			ops: func(s1, _ uint64) []*paddockv1.Op {
				return []*paddockv1.Op{
					opCreate(&paddockv1.CreateRequest{Path: "/p/e", Type: paddockv1.NodeType_NODE_TYPE_EPHEMERAL, SessionId: s1}),
					opDelete("/p/e", nil, false),
				}
			},
			want: map[int][]string{1: {"/p/old"}},
		},
		{
			name: "create then recursive delete of the parent",
			ops: func(s1, _ uint64) []*paddockv1.Op {
				return []*paddockv1.Op{
					opCreate(&paddockv1.CreateRequest{Path: "/p/e", Type: paddockv1.NodeType_NODE_TYPE_EPHEMERAL, SessionId: s1}),
					opDelete("/p", nil, true),
				}
			},
			want: map[int][]string{},
		},
		{
			name: "delete then recreate by the same session",
			ops: func(s1, _ uint64) []*paddockv1.Op {
				return []*paddockv1.Op{
					opDelete("/p/old", nil, false),
					opCreate(&paddockv1.CreateRequest{Path: "/p/old", Type: paddockv1.NodeType_NODE_TYPE_EPHEMERAL, SessionId: s1}),
				}
			},
			want: map[int][]string{1: {"/p/old"}},
		},
		{
			name: "delete then recreate by another session",
			ops: func(_, s2 uint64) []*paddockv1.Op {
				return []*paddockv1.Op{
					opDelete("/p/old", nil, false),
					opCreate(&paddockv1.CreateRequest{Path: "/p/old", Type: paddockv1.NodeType_NODE_TYPE_EPHEMERAL, SessionId: s2}),
				}
			},
			want: map[int][]string{2: {"/p/old"}},
		},
		{
			name: "create, delete, create",
			ops: func(s1, s2 uint64) []*paddockv1.Op {
				return []*paddockv1.Op{
					opCreate(&paddockv1.CreateRequest{Path: "/p/e", Type: paddockv1.NodeType_NODE_TYPE_EPHEMERAL, SessionId: s1}),
					opDelete("/p/e", nil, false),
					opCreate(&paddockv1.CreateRequest{Path: "/p/e", Type: paddockv1.NodeType_NODE_TYPE_EPHEMERAL, SessionId: s2}),
				}
			},
			want: map[int][]string{1: {"/p/old"}, 2: {"/p/e"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.mustCreate("/p", "")
			s1 := h.openSession(10_000)
			s2 := h.openSession(10_000)
			h.must(cmdEphemeral("/p/old", s1, false))
			h.must(cmdMulti(tc.ops(s1, s2)...))
			checkInvariants(t, h.f)
			for i, s := range []uint64{s1, s2} {
				sess, err := h.f.Session(s)
				if err != nil {
					t.Fatalf("Session(%d) error = %v", s, err)
				}
				if diff := cmp.Diff(tc.want[i+1], sess.GetEphemerals()); diff != "" {
					t.Errorf("Session(%d).Ephemerals mismatch (-want +got):\n%s", s, diff)
				}
			}
			for _, s := range []uint64{s1, s2} {
				res := h.apply(cmdCloseSession(s))
				if res.Err != nil {
					t.Errorf("CloseSession(%d) error = %v, want nil", s, res.Err)
				}
			}
			checkInvariants(t, h.f)
		})
	}
}

func TestList(t *testing.T) {
	h, _ := treeFixture(t)
	for _, name := range []string{"b", "a", "c10", "c2", "B", "ä"} {
		h.mustCreate("/a/"+name, "")
	}
	h.mustCreate("/a/b/deep", "") // grandchildren are not listed
	h.mustCreate("/a0", "")       // nor are siblings sharing a prefix

	page, err := h.f.List("/a", "", 100)
	if err != nil {
		t.Fatalf("List(/a) error = %v, want nil", err)
	}
	var names []string
	for _, c := range page.Children {
		names = append(names, c.GetName())
		if diff := cmp.Diff(h.stat("/a/"+c.GetName()), c.GetStat(), protocmp.Transform()); diff != "" {
			t.Errorf("List(/a) child %s stat mismatch (-want +got):\n%s", c.GetName(), diff)
		}
	}
	if want := []string{"B", "a", "b", "c10", "c2", "ä"}; !slices.Equal(names, want) {
		t.Errorf("List(/a) names = %v, want %v", names, want)
	}
	if page.Next != "" {
		t.Errorf("List(/a) Next = %q, want \"\"", page.Next)
	}
	if diff := cmp.Diff(h.stat("/a"), page.Stat, protocmp.Transform()); diff != "" {
		t.Errorf("List(/a) stat mismatch (-want +got):\n%s", diff)
	}

	leaf, err := h.f.List("/a/c2", "", 10)
	if err != nil || len(leaf.Children) != 0 || leaf.Next != "" {
		t.Errorf("List(/a/c2) = %+v, %v, want no children, nil", leaf, err)
	}
	root, err := h.f.List("/", "", 10)
	if err != nil {
		t.Fatalf("List(/) error = %v", err)
	}
	var rootNames []string
	for _, c := range root.Children {
		rootNames = append(rootNames, c.GetName())
	}
	if want := []string{"a", "a0", "eph", "paddock"}; !slices.Equal(rootNames, want) {
		t.Errorf("List(/) names = %v, want %v", rootNames, want)
	}

	errTests := []struct {
		path  string
		limit int
		want  error
	}{
		{"/missing", 10, ErrNoNode},
		{"/a/", 10, ErrBadPath},
		{"a", 10, ErrBadPath},
		{"/a", 0, ErrBadArgument},
		{"/a", -1, ErrBadArgument},
	}
	for _, tc := range errTests {
		if _, err := h.f.List(tc.path, "", tc.limit); !errors.Is(err, tc.want) {
			t.Errorf("List(%q, %d) error = %v, want %v", tc.path, tc.limit, err, tc.want)
		}
	}
}

func TestListPagination(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("/big", "")
	const n = 2500
	var want []string
	// Created in a shuffled order; listed sorted by name (bytewise).
	rng := rand.New(rand.NewPCG(1, 2))
	for _, i := range rng.Perm(n) {
		name := fmt.Sprintf("child-%d", i)
		want = append(want, name)
		h.mustCreate("/big/"+name, "")
	}
	slices.Sort(want)
	h.mustCreate("/big/child-1/grandchild", "")
	h.mustCreate("/bigger", "")

	for _, limit := range []int{1, 7, 100, 1000, 2499, 2500, 2501, 10_000} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			var got []string
			after, pages := "", 0
			for {
				page, err := h.f.List("/big", after, limit)
				if err != nil {
					t.Fatalf("List(/big, %q, %d) error = %v", after, limit, err)
				}
				pages++
				if len(page.Children) > limit {
					t.Fatalf("List(/big, %q, %d) returned %d children", after, limit, len(page.Children))
				}
				for _, c := range page.Children {
					got = append(got, c.GetName())
				}
				if page.Next == "" {
					break
				}
				if len(page.Children) != limit || page.Next != page.Children[len(page.Children)-1].GetName() {
					t.Fatalf("List(/big, %q, %d) Next = %q after %d children, want the last name of a full page", after, limit, page.Next, len(page.Children))
				}
				after = page.Next
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("List(/big) pages with limit %d mismatch (-want +got):\n%s", limit, diff)
			}
			if wantPages := (n + limit - 1) / limit; pages != wantPages {
				t.Errorf("List(/big) with limit %d took %d pages, want %d", limit, pages, wantPages)
			}
		})
	}

	// An after-token that is not a child still continues in name order.
	page, err := h.f.List("/big", "child-1500x", 3)
	if err != nil {
		t.Fatalf("List(/big, child-1500x, 3) error = %v", err)
	}
	i, _ := slices.BinarySearch(want, "child-1500x")
	var got []string
	for _, c := range page.Children {
		got = append(got, c.GetName())
	}
	if diff := cmp.Diff(want[i:i+3], got); diff != "" {
		t.Errorf("List(/big, child-1500x, 3) mismatch (-want +got):\n%s", diff)
	}
	// After the last name: an empty last page.
	page, err = h.f.List("/big", want[len(want)-1], 10)
	if err != nil || len(page.Children) != 0 || page.Next != "" {
		t.Errorf("List(/big, last, 10) = %d children, Next %q, %v, want none", len(page.Children), page.Next, err)
	}
}

// TestList10kOneRangeScan checks that listing is one seek and a scan: the
// number of key comparisons does not grow with the number of children.
func TestList10kOneRangeScan(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("/big", "")
	const n = 10_000
	batch := make([]*raft.Log, 0, 256)
	flush := func() {
		for _, r := range h.f.ApplyBatch(batch) {
			if res := r.(*Result); res.Err != nil {
				t.Fatalf("create error = %v", res.Err)
			}
		}
		batch = batch[:0]
	}
	for i := range n {
		batch = append(batch, h.next(cmdCreate(fmt.Sprintf("/big/%05d", i), nil)))
		if len(batch) == cap(batch) {
			flush()
		}
	}
	flush()
	h.mustCreate("/big/00001/x", "")
	h.mustCreate("/zzz", "")

	// Rebuild the same tree with a comparison-counting order.
	var compares atomic.Int64
	counting := btree.NewG(32, func(a, b *znode) bool { compares.Add(1); return lessZnode(a, b) })
	h.f.mu.Lock()
	h.f.state.tree.nodes.Ascend(func(z *znode) bool { counting.ReplaceOrInsert(z); return true })
	h.f.state.tree.nodes = counting
	h.f.mu.Unlock()

	for _, tc := range []struct {
		after string
		limit int
		want  int
	}{
		{"", n, n},
		{"", n + 1, n},
		{"04999", n, n - 5000},
		{"", 100, 100},
	} {
		compares.Store(0)
		page, err := h.f.List("/big", tc.after, tc.limit)
		if err != nil {
			t.Fatalf("List(/big, %q, %d) error = %v", tc.after, tc.limit, err)
		}
		if len(page.Children) != tc.want {
			t.Errorf("List(/big, %q, %d) = %d children, want %d", tc.after, tc.limit, len(page.Children), tc.want)
		}
		if !slices.IsSortedFunc(page.Children, func(a, b *paddockv1.Child) int { return strings.Compare(a.GetName(), b.GetName()) }) {
			t.Errorf("List(/big, %q, %d) is not sorted", tc.after, tc.limit)
		}
		// A lookup of /big, then one range scan: the btree re-seeks
		// once per tree node it enters (about one comparison per six
		// children at degree 32). A lookup per child would cost about
		// log2(10,000) = 13 comparisons each, a quadratic scan far more.
		if c, limit := compares.Load(), int64(tc.want/2+100); c > limit {
			t.Errorf("List(/big, %q, %d) made %d key comparisons, want at most %d (one range scan)", tc.after, tc.limit, c, limit)
		}
	}
}

// TestZnodeSize guards the layout the memory figures rely on: a znode is
// 96 bytes (a Go size class), besides its data and path.
func TestZnodeSize(t *testing.T) {
	if got := unsafe.Sizeof(znode{}); got != 96 {
		t.Errorf("unsafe.Sizeof(znode{}) = %d, want 96", got)
	}
}

// TestSequentialPath: the suffix is written as fmt's %010d writes it, for
// every width of counter, negative ones (a wrapped counter) included.
func TestSequentialPath(t *testing.T) {
	for _, seq := range []int64{0, 1, 9, 10, 123456789, 1234567890, 12345678901, math.MaxInt64, -1, -123456789012, math.MinInt64} {
		want := fmt.Sprintf("%s%0*d", "/a/lock-", sequenceDigits, seq)
		if got := sequentialPath("/a/lock-", seq); got != want {
			t.Errorf("sequentialPath(/a/lock-, %d) = %q, want %q", seq, got, want)
		}
	}
}
