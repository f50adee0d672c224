package node_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/paddock/paddock/fsm"
	"github.com/paddock/paddock/node"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// listData reads one page of a listing with data of /farm on n.
func listData(t *testing.T, n *node.Node, token string, opts *paddockv1.ReadOptions, timeout time.Duration) (*paddockv1.ListResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return n.List(ctx, &paddockv1.ListRequest{Path: "/farm", WithData: true, PageToken: token, Read: opts})
}

// pageNames returns the names of a page's children, checking each one's
// data against want.
func pageNames(t *testing.T, r *paddockv1.ListResponse, want map[string][]byte) []string {
	t.Helper()
	var names []string
	for _, c := range r.GetChildren() {
		names = append(names, c.GetName())
		if !bytes.Equal(c.GetData(), want[c.GetName()]) {
			t.Errorf("child %s has %d bytes of data, want %d", c.GetName(), len(c.GetData()), len(want[c.GetName()]))
		}
	}
	return names
}

// TestListDataThroughFollower pages a listing with data of /farm (five
// children of 400 KiB: two a page) through a follower: a caught-up
// follower serves pages itself; a lagging one has the leader serve them,
// and the leader's "listing changed" comes back as fsm.ErrListingChanged;
// a serializable page on a follower behind the listing's zxid waits for
// it rather than answering from an older state.
func TestListDataThroughFollower(t *testing.T) {
	c, l, f := readCluster(t)
	ln, fn := c.Node(l), c.Node(f)
	mustPropose(t, ln, createCmd("/farm", []byte("farm")))
	want := map[string][]byte{}
	var lastCreate uint64
	for i, name := range []string{"a", "b", "c", "d", "e"} {
		want[name] = bytes.Repeat([]byte{byte('0' + i)}, 400<<10)
		lastCreate = mustPropose(t, ln, createCmd("/farm/"+name, want[name])).Index
	}
	c.Converged(t)

	p1, err := listData(t, fn, "", nil, waitTimeout)
	if err != nil {
		t.Fatalf("List(/farm, with data) page 1 on %s: %v", fn.ID(), err)
	}
	z := p1.GetListingZxid()
	if got := pageNames(t, p1, want); fmt.Sprint(got) != "[a b]" || p1.GetNextPageToken() == "" {
		t.Fatalf("page 1 = %v, next %q; want [a b] and a next page", got, p1.GetNextPageToken())
	}
	if z < lastCreate || p1.GetHeader().GetZxid() < z || p1.GetHeader().GetNodeId() != fn.ID() {
		t.Fatalf("page 1 listing_zxid %d, header %v; want a zxid >= %d, served by %s", z, p1.GetHeader(), lastCreate, fn.ID())
	}
	if !proto.Equal(p1.GetStat(), mustStat(t, ln, "/farm")) {
		t.Errorf("page 1 parent stat = %v, want %v", p1.GetStat(), mustStat(t, ln, "/farm"))
	}

	// The follower stores entries it does not know to be committed: it
	// hands its linearizable reads to the leader.
	c.Transport(l).HoldCommit(c.RaftAddr(f), true)
	held := true
	defer func() {
		if held {
			c.Transport(l).HoldCommit(c.RaftAddr(f), false)
		}
	}()
	mustPropose(t, ln, createCmd("/elsewhere", nil))
	eventually(t, waitTimeout, func() error {
		if got, last := fn.Raft().LastIndex(), ln.Raft().LastIndex(); got < last {
			return fmt.Errorf("%s stores up to %d, want %d", fn.ID(), got, last)
		}
		return nil
	})
	reads := forwarded(t, fn, "read")
	p2, err := listData(t, fn, p1.GetNextPageToken(), nil, waitTimeout)
	if err != nil {
		t.Fatalf("page 2 on lagging %s: %v", fn.ID(), err)
	}
	if got := pageNames(t, p2, want); fmt.Sprint(got) != "[c d]" || p2.GetListingZxid() != z || p2.GetHeader().GetNodeId() != ln.ID() {
		t.Fatalf("page 2 = %v, listing_zxid %d, header %v; want [c d] at %d from the leader %s", got, p2.GetListingZxid(), p2.GetHeader(), z, ln.ID())
	}
	if got := forwarded(t, fn, "read") - reads; got != 1 {
		t.Errorf("forwarded reads rose by %v, want 1", got)
	}

	// /farm/e, on page 3, changes: the leader refuses the page.
	want["e"] = []byte("changed")
	setE := mustPropose(t, ln, setCmd("/farm/e", want["e"]))
	if r, err := listData(t, fn, p2.GetNextPageToken(), nil, waitTimeout); !errors.Is(err, fsm.ErrListingChanged) {
		t.Fatalf("page 3 after /farm/e changed = %v, %v; want fsm.ErrListingChanged", r.GetChildren(), err)
	}

	// A new listing at the leader's state, which the follower has not
	// applied: a serializable next page on the follower waits for the
	// listing's zxid instead of failing or answering from its own state.
	q1, err := listData(t, ln, "", nil, waitTimeout)
	if err != nil || q1.GetListingZxid() < setE.Index {
		t.Fatalf("new listing on the leader: zxid %d, %v; want a zxid >= %d", q1.GetListingZxid(), err, setE.Index)
	}
	if got := fn.FSM().AppliedIndex(); got >= q1.GetListingZxid() {
		t.Fatalf("%s applied %d, want it behind the listing's zxid %d", fn.ID(), got, q1.GetListingZxid())
	}
	if r, err := listData(t, fn, q1.GetNextPageToken(), serializable(0), time.Second); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("serializable page 2 on %s behind the listing = %v, %v; want it to wait (DeadlineExceeded)", fn.ID(), r.GetChildren(), err)
	}
	c.Transport(l).HoldCommit(c.RaftAddr(f), false)
	held = false
	q2, err := listData(t, fn, q1.GetNextPageToken(), serializable(0), waitTimeout)
	if err != nil {
		t.Fatalf("serializable page 2 on %s: %v", fn.ID(), err)
	}
	// /farm/e now holds a few bytes: it shares the page with c and d.
	if got := pageNames(t, q2, want); fmt.Sprint(got) != "[c d e]" || q2.GetNextPageToken() != "" ||
		q2.GetHeader().GetNodeId() != fn.ID() || q2.GetListingZxid() != q1.GetListingZxid() {
		t.Fatalf("serializable page 2 = %v, next %q, header %v, listing_zxid %d; want [c d e], the last page, from %s at %d",
			got, q2.GetNextPageToken(), q2.GetHeader(), q2.GetListingZxid(), fn.ID(), q1.GetListingZxid())
	}
}

func TestListDataBadToken(t *testing.T) {
	c, l, f := readCluster(t)
	mustPropose(t, c.Node(l), createCmd("/farm", nil))
	mustPropose(t, c.Node(l), createCmd("/farm/a", nil))
	mustPropose(t, c.Node(l), createCmd("/farm/b", nil))
	first, err := c.Node(l).List(context.Background(), &paddockv1.ListRequest{Path: "/farm", WithData: true, PageSize: 1})
	if err != nil || first.GetNextPageToken() == "" {
		t.Fatalf("List(/farm, with data, page_size 1) = %v, %v; want a next page", first, err)
	}
	for _, i := range []int{l, f} {
		n := c.Node(i)
		r, err := listData(t, n, "garbage", nil, waitTimeout)
		if !errors.Is(err, fsm.ErrBadArgument) {
			t.Errorf("List(/farm, with data, token garbage) on %s = %v, %v; want fsm.ErrBadArgument", n.ID(), r, err)
		}
		// A with_data token without with_data, and the other way round.
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		plain, err := n.List(ctx, &paddockv1.ListRequest{Path: "/farm", PageToken: first.GetNextPageToken()})
		cancel()
		if !errors.Is(err, fsm.ErrBadArgument) {
			t.Errorf("List(/farm) on %s with a with_data token = %v, %v; want fsm.ErrBadArgument", n.ID(), plain.GetChildren(), err)
		}
		if r, err := listData(t, n, "YQ", nil, waitTimeout); !errors.Is(err, fsm.ErrBadArgument) { // "a": a plain List token
			t.Errorf("List(/farm, with data) on %s with a plain token = %v, %v; want fsm.ErrBadArgument", n.ID(), r.GetChildren(), err)
		}
	}
}

// mustStat is n's Stat of path, read linearizably.
func mustStat(t *testing.T, n *node.Node, path string) *paddockv1.Stat {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_, st, err := linearGet(ctx, n, path)
	if err != nil {
		t.Fatalf("Get(%s) on %s: %v", path, n.ID(), err)
	}
	return st
}

// TestListDataForwardedLarge: full pages of a listing with data
// (ListPageBytes each) that a lagging follower forwards together do not
// fit one InternalService.Read response: the leader answers those that
// fit and the follower sends the others again, so every read succeeds.
func TestListDataForwardedLarge(t *testing.T) {
	c, l, f := readCluster(t)
	ln, fn := c.Node(l), c.Node(f)
	want := map[string][]byte{}
	mustPropose(t, ln, createCmd("/farm", nil))
	for _, name := range []string{"a", "b"} {
		want[name] = bytes.Repeat([]byte(name), fsm.MaxDataSize)
		mustPropose(t, ln, createCmd("/farm/"+name, want[name]))
	}
	c.Converged(t)
	// The follower stores entries it does not know are committed: its
	// linearizable reads go to the leader.
	c.Transport(l).HoldCommit(c.RaftAddr(f), true)
	defer c.Transport(l).HoldCommit(c.RaftAddr(f), false)
	mustPropose(t, ln, createCmd("/elsewhere", nil))
	eventually(t, waitTimeout, func() error {
		if got, last := fn.Raft().LastIndex(), ln.Raft().LastIndex(); got < last {
			return fmt.Errorf("%s stores up to %d, want %d", fn.ID(), got, last)
		}
		return nil
	})
	r0 := forwarded(t, fn, "read")
	var wg sync.WaitGroup
	pages := make([]*paddockv1.ListResponse, 8)
	errs := make([]error, len(pages))
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pages[i], errs[i] = listData(t, fn, "", nil, waitTimeout)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("forwarded List(/farm, with data) #%d: %v", i, err)
			continue
		}
		if names := pageNames(t, pages[i], want); len(names) == 0 || pages[i].GetHeader().GetNodeId() != ln.ID() {
			t.Errorf("page #%d = %v from %s, want children of /farm from the leader %s", i, names, pages[i].GetHeader().GetNodeId(), ln.ID())
		}
	}
	if got := forwarded(t, fn, "read") - r0; got < float64(len(pages)) {
		t.Errorf("forwarded reads rose by %v, want at least %d", got, len(pages))
	}
}
