package fsm

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// listAllData follows a listing with data from the first page to the last,
// checking each page's zxid, and returns the pages.
func listAllData(t *testing.T, f *FSM, path string, limit int) []*DataPage {
	t.Helper()
	var pages []*DataPage
	token := ""
	for {
		page, err := f.ListData(path, token, limit)
		if err != nil {
			t.Fatalf("ListData(%s, page %d) error = %v, want nil", path, len(pages)+1, err)
		}
		if len(pages) > 0 && page.Zxid != pages[0].Zxid {
			t.Fatalf("ListData(%s, page %d).Zxid = %d, want the listing's %d", path, len(pages)+1, page.Zxid, pages[0].Zxid)
		}
		pages = append(pages, page)
		if page.Next == "" {
			return pages
		}
		if len(pages) > 1000 {
			t.Fatalf("ListData(%s): more than 1000 pages", path)
		}
		token = page.Next
	}
}

// wantChildren is what a listing with data of path must return: every
// child, with its data and Stat, read one by one.
func wantChildren(t *testing.T, f *FSM, path string) []*paddockv1.Child {
	t.Helper()
	page, err := f.List(path, "", MaxPageSizeForTest)
	if err != nil {
		t.Fatalf("List(%s) error = %v", path, err)
	}
	out := make([]*paddockv1.Child, 0, len(page.Children))
	for _, c := range page.Children {
		p := path + "/" + c.GetName()
		if path == "/" {
			p = "/" + c.GetName()
		}
		data, st, err := f.Get(p)
		if err != nil {
			t.Fatalf("Get(%s) error = %v", p, err)
		}
		out = append(out, &paddockv1.Child{Name: c.GetName(), Stat: st, Data: data})
	}
	return out
}

// MaxPageSizeForTest is large enough to list any test's children at once.
const MaxPageSizeForTest = 100_000

// checkChildren compares listed children with proto.Equal: cmp.Diff walks
// a megabyte of data byte by byte.
func checkChildren(t *testing.T, want, got []*paddockv1.Child) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("listed %d children, want %d", len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("child %d = %s (stat %v, %d bytes), want %s (stat %v, %d bytes)", i,
				got[i].GetName(), got[i].GetStat(), len(got[i].GetData()), want[i].GetName(), want[i].GetStat(), len(want[i].GetData()))
		}
	}
}

func childSize(c *paddockv1.Child) int { return proto.Size(c) }

func TestListDataPagesByBytes(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name  string
		sizes []int
		limit int
	}{
		{"small values", repeat(100, 10), 1000},
		{"small values, page size caps", repeat(10, 50), 3},
		{"300 KiB values", repeat(300<<10, 8), 1000},
		{"exactly 1 MiB values", repeat(mib, 3), 1000},
		{"mixed", []int{mib, 1, mib - 100, 600 << 10, 600 << 10, 0, 400 << 10, mib, 5}, 1000},
		{"no children", nil, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.mustCreate("/p", "parent")
			for i, n := range tt.sizes {
				h.must(cmdCreate(fmt.Sprintf("/p/c%03d", i), bytes.Repeat([]byte{byte('a' + i%26)}, n)))
			}
			h.mustCreate("/p/c000x", "") // sorts after c000: not a prefix confusion
			h.mustCreate("/p0", "sibling")

			pages := listAllData(t, h.f, "/p", tt.limit)
			if got, want := pages[0].Zxid, h.f.AppliedIndex(); got != want {
				t.Errorf("ListData(/p).Zxid = %d, want the applied index %d", got, want)
			}
			var got []*paddockv1.Child
			for i, page := range pages {
				size := 0
				for _, c := range page.Children {
					size += childSize(c)
				}
				if len(page.Children) > tt.limit {
					t.Errorf("page %d holds %d children, limit %d", i+1, len(page.Children), tt.limit)
				}
				if size > ListPageBytes && len(page.Children) > 1 {
					t.Errorf("page %d holds %d bytes in %d children, limit %d", i+1, size, len(page.Children), ListPageBytes)
				}
				if len(page.Children) == 0 && len(pages) > 1 {
					t.Errorf("page %d of %d is empty", i+1, len(pages))
				}
				// A page is full: the next child did not fit.
				if i+1 < len(pages) && len(page.Children) < tt.limit {
					if next := childSize(pages[i+1].Children[0]); size+next <= ListPageBytes {
						t.Errorf("page %d ends at %d bytes, but the next child (%d bytes) fits", i+1, size, next)
					}
				}
				if diff := cmp.Diff(h.stat("/p"), page.Stat, protocmp.Transform()); diff != "" {
					t.Errorf("page %d parent stat mismatch (-want +got):\n%s", i+1, diff)
				}
				got = append(got, page.Children...)
			}
			checkChildren(t, wantChildren(t, h.f, "/p"), got)
		})
	}
}

func repeat(size, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = size
	}
	return out
}

func TestListDataOneMiBValueAlone(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("/p", "")
	h.must(cmdCreate("/p/a", []byte("x")))
	h.must(cmdCreate("/p/b", bytes.Repeat([]byte("y"), MaxDataSize)))
	h.must(cmdCreate("/p/c", []byte("z")))
	pages := listAllData(t, h.f, "/p", 1000)
	var names [][]string
	for _, p := range pages {
		var ns []string
		for _, c := range p.Children {
			ns = append(ns, c.GetName())
		}
		names = append(names, ns)
	}
	if want := [][]string{{"a"}, {"b"}, {"c"}}; !cmp.Equal(names, want) {
		t.Errorf("ListData(/p) pages = %v, want %v", names, want)
	}
}

func TestListDataDataIsACopy(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("/p", "")
	h.mustCreate("/p/a", "abc")
	page, err := h.f.ListData("/p", "", 10)
	if err != nil {
		t.Fatalf("ListData(/p) error = %v", err)
	}
	page.Children[0].Data[0] = 'X'
	if data, _, _ := h.f.Get("/p/a"); string(data) != "abc" {
		t.Errorf("Get(/p/a) after changing a listed copy = %q, want abc", data)
	}
}

func TestListDataErrors(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("/p", "")
	h.mustCreate("/p/a", "")
	h.mustCreate("/p/b", "")
	good, err := h.f.ListData("/p", "", 1)
	if err != nil || good.Next == "" {
		t.Fatalf("ListData(/p, limit 1) = %+v, %v, want a next page", good, err)
	}
	tok := func(m *raftv1.ListPageToken) string {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	tests := []struct {
		name, path, token string
		limit             int
		want              error
	}{
		{"missing parent", "/nope", "", 10, ErrNoNode},
		{"bad path", "p", "", 10, ErrBadPath},
		{"zero limit", "/p", "", 0, ErrBadArgument},
		{"not base64", "/p", "!!!", 10, ErrBadArgument},
		{"not a token", "/p", base64.RawURLEncoding.EncodeToString([]byte{0xff, 0xff, 0xff}), 10, ErrBadArgument},
		{"plain list token", "/p", base64.RawURLEncoding.EncodeToString([]byte("a")), 10, ErrBadArgument},
		{"no zxid", "/p", tok(&raftv1.ListPageToken{Path: "/p", After: "a"}), 10, ErrBadArgument},
		{"no name", "/p", tok(&raftv1.ListPageToken{Zxid: 3, Path: "/p"}), 10, ErrBadArgument},
		{"name with slash", "/p", tok(&raftv1.ListPageToken{Zxid: 3, Path: "/p", After: "a/b"}), 10, ErrBadArgument},
		{"another path", "/p/a", good.Next, 10, ErrBadArgument},
		{"future zxid", "/p", tok(&raftv1.ListPageToken{Zxid: 1000, Path: "/p", After: "a"}), 10, ErrBadArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := h.f.StateHash()
			page, err := h.f.ListData(tt.path, tt.token, tt.limit)
			if !errors.Is(err, tt.want) {
				t.Errorf("ListData(%q, %q, %d) = %+v, %v, want %v", tt.path, tt.token, tt.limit, page, err, tt.want)
			}
			if h.f.StateHash() != before {
				t.Errorf("ListData(%q) changed the state", tt.path)
			}
		})
	}
}

func TestListTokenRoundTrip(t *testing.T) {
	for _, tt := range []struct {
		zxid        uint64
		path, after string
	}{
		{1, "/", "a"},
		{1 << 62, "/services/db", "host-0000000042"},
		{7, "/p", "ä 名前"},
	} {
		token := encodeListToken(tt.zxid, tt.path, tt.after)
		zxid, after, err := DecodeListToken(tt.path, token)
		if err != nil || zxid != tt.zxid || after != tt.after {
			t.Errorf("DecodeListToken(%q, encodeListToken(%d, %q, %q)) = %d, %q, %v, want %d, %q, nil",
				tt.path, tt.zxid, tt.path, tt.after, zxid, after, err, tt.zxid, tt.after)
		}
	}
}

// TestListDataChangeBetweenPages changes the state between the first and
// the second page of a listing of /p (children a..f, two a page): a
// change to what the second page returns fails it with ErrListingChanged,
// any other change leaves it served, equal to the state at the listing's
// zxid.
func TestListDataChangeBetweenPages(t *testing.T) {
	tests := []struct {
		name    string
		change  []*raftv1.Command
		changed bool
	}{
		{"nothing", nil, false},
		{"unrelated write", []*raftv1.Command{cmdCreate("/other", []byte("x"))}, false},
		{"sibling of the parent", []*raftv1.Command{cmdSet("/p0", []byte("y"), nil)}, false},
		{"data of a child already listed", []*raftv1.Command{cmdSet("/p/a", []byte("new"), nil)}, false},
		{"grandchild under a listed child", []*raftv1.Command{cmdCreate("/p/a/x", nil)}, false},
		{"data of a grandchild", []*raftv1.Command{cmdSet("/p/c/g", []byte("new"), nil)}, false},
		{"failed write", []*raftv1.Command{cmdCreate("/p/c", nil)}, false},
		{"data of a child on the page", []*raftv1.Command{cmdSet("/p/c", []byte("new"), nil)}, true},
		{"same data set again", []*raftv1.Command{cmdSet("/p/d", []byte("d"), nil)}, true},
		{"grandchild created", []*raftv1.Command{cmdCreate("/p/d/x", nil)}, true},
		{"grandchild deleted", []*raftv1.Command{cmdDelete("/p/c/g", nil, false)}, true},
		{"child created after the token", []*raftv1.Command{cmdCreate("/p/cc", nil)}, true},
		{"child created before the token", []*raftv1.Command{cmdCreate("/p/0", nil)}, true},
		{"child deleted", []*raftv1.Command{cmdDelete("/p/f", nil, false)}, true},
		{"child deleted and recreated", []*raftv1.Command{cmdDelete("/p/e", nil, false), cmdCreate("/p/e", []byte("e"))}, true},
		{"parent data", []*raftv1.Command{cmdSet("/p", []byte("new"), nil)}, true},
		{"parent deleted", []*raftv1.Command{cmdDelete("/p", nil, true)}, true},
		{"parent recreated", []*raftv1.Command{cmdDelete("/p", nil, true), cmdCreate("/p", nil)}, true},
		{"multi", []*raftv1.Command{cmdMulti(opCheck("/p", -1), opSet("/p/d", []byte("m"), nil))}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.mustCreate("/p", "parent")
			for _, name := range []string{"a", "b", "c", "d", "e", "f"} {
				h.mustCreate("/p/"+name, name)
			}
			h.mustCreate("/p/c/g", "g")
			h.mustCreate("/p0", "")
			atZ := wantChildren(t, h.f, "/p")
			first, err := h.f.ListData("/p", "", 2)
			if err != nil {
				t.Fatalf("ListData(/p) error = %v", err)
			}
			for _, cmd := range tt.change {
				h.apply(cmd)
			}
			before := h.f.StateHash()
			got := first.Children
			token := first.Next
			for token != "" {
				page, err := h.f.ListData("/p", token, 2)
				if tt.changed {
					if !errors.Is(err, ErrListingChanged) {
						t.Fatalf("ListData(/p, page 2) after the change = %+v, %v, want ErrListingChanged", page, err)
					}
					return
				}
				if err != nil {
					t.Fatalf("ListData(/p, next page) error = %v, want nil", err)
				}
				if page.Zxid != first.Zxid {
					t.Errorf("ListData(/p, next page).Zxid = %d, want %d", page.Zxid, first.Zxid)
				}
				got = append(got, page.Children...)
				token = page.Next
			}
			if tt.changed {
				t.Fatalf("ListData(/p) served every page after the change, want ErrListingChanged")
			}
			checkChildren(t, atZ, got)
			if h.f.StateHash() != before {
				t.Errorf("ListData changed the state")
			}
		})
	}
}

// TestListDataChangeOnLaterPageOnly: a change to a child of the third
// page fails the third page, not the second.
func TestListDataChangeOnLaterPageOnly(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("/p", "")
	for _, name := range []string{"a", "b", "c", "d", "e", "f"} {
		h.mustCreate("/p/"+name, name)
	}
	first, err := h.f.ListData("/p", "", 2)
	if err != nil {
		t.Fatal(err)
	}
	h.must(cmdSet("/p/e", []byte("new"), nil))
	second, err := h.f.ListData("/p", first.Next, 2)
	if err != nil {
		t.Fatalf("ListData(/p, page 2) error = %v, want nil (its children are unchanged)", err)
	}
	if _, err := h.f.ListData("/p", second.Next, 2); !errors.Is(err, ErrListingChanged) {
		t.Errorf("ListData(/p, page 3) error = %v, want ErrListingChanged", err)
	}
}
