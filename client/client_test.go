package client

import (
	"context"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

func TestRetryable(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"unavailable", status.Error(codes.Unavailable, "no leader"), true},
		{"not found", status.Error(codes.NotFound, "x"), false},
		{"exists", status.Error(codes.AlreadyExists, "x"), false},
		{"invalid argument", status.Error(codes.InvalidArgument, "x"), false},
		{"failed precondition", status.Error(codes.FailedPrecondition, "x"), false},
		{"deadline", status.Error(codes.DeadlineExceeded, "x"), false},
		{"plain error", errors.New("x"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := retryable(tt.err); got != tt.want {
				t.Errorf("retryable(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestReadFailsOverFromDeadEndpoint(t *testing.T) {
	live := startNode(t, "live")
	c := newTestClient(t, deadAddr(t), live.addr)
	ctx := context.Background()

	resp, err := c.Get(ctx, &paddockv1.GetRequest{Path: "/a"})
	if err != nil {
		t.Fatalf("Get(/a) error = %v", err)
	}
	if got := string(resp.Data); got != "live" {
		t.Errorf("Get(/a) served by %q, want live", got)
	}
	if got := c.current(); got != 1 {
		t.Errorf("current() = %d after failover, want 1", got)
	}
}

func TestReadFailsOverOnServerUnavailable(t *testing.T) {
	a, b := startNode(t, "a"), startNode(t, "b")
	a.set(func(n *fakeNode) { n.err = status.Error(codes.Unavailable, "no leader") })
	c := newTestClient(t, a.addr, b.addr)

	resp, err := c.Get(context.Background(), &paddockv1.GetRequest{Path: "/a"})
	if err != nil {
		t.Fatalf("Get(/a) error = %v", err)
	}
	if got := string(resp.Data); got != "b" {
		t.Errorf("Get(/a) served by %q, want b", got)
	}
}

func TestNoFailoverOnDomainError(t *testing.T) {
	a, b := startNode(t, "a"), startNode(t, "b")
	a.set(func(n *fakeNode) { n.err = status.Error(codes.NotFound, "fsm: node does not exist") })
	c := newTestClient(t, a.addr, b.addr)

	_, err := c.Get(context.Background(), &paddockv1.GetRequest{Path: "/a"})
	if !IsNotFound(err) {
		t.Errorf("Get(/a) error = %v, want NotFound", err)
	}
	if got := b.callCount(); got != 0 {
		t.Errorf("b got %d calls, want 0", got)
	}
}

func TestWriteFailsOverWhenNeverSent(t *testing.T) {
	live := startNode(t, "live")
	c := newTestClient(t, deadAddr(t), live.addr)

	resp, err := c.Create(context.Background(), &paddockv1.CreateRequest{Path: "/a"})
	if err != nil {
		t.Fatalf("Create(/a) error = %v", err)
	}
	if resp.Path != "/a" {
		t.Errorf("Create(/a) path = %q, want /a", resp.Path)
	}
	if got := live.callCount(); got != 1 {
		t.Errorf("live got %d calls, want 1", got)
	}
}

// isRequestID reports whether id looks like NewRequestID's: 32 lowercase
// hex characters.
func isRequestID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil && strings.ToLower(id) == id
}

func TestWriteRetriedWithSameRequestID(t *testing.T) {
	ctx := context.Background()
	writes := []struct {
		name string
		call func(c *Client) error
	}{
		{"Create", func(c *Client) error {
			_, err := c.Create(ctx, &paddockv1.CreateRequest{Path: "/a"})
			return err
		}},
		{"Set", func(c *Client) error {
			_, err := c.Set(ctx, &paddockv1.SetRequest{Path: "/a"})
			return err
		}},
		{"Delete", func(c *Client) error {
			_, err := c.Delete(ctx, &paddockv1.DeleteRequest{Path: "/a"})
			return err
		}},
		{"Multi", func(c *Client) error {
			_, err := c.Multi(ctx, &paddockv1.MultiRequest{})
			return err
		}},
		{"OpenSession", func(c *Client) error {
			_, err := c.OpenSession(ctx, &paddockv1.OpenSessionRequest{TimeoutMs: 1000})
			return err
		}},
		{"CloseSession", func(c *Client) error {
			_, err := c.CloseSession(ctx, &paddockv1.CloseSessionRequest{SessionId: 7})
			return err
		}},
	}
	for _, tt := range writes {
		t.Run(tt.name, func(t *testing.T) {
			a, b := startNode(t, "a"), startNode(t, "b")
			a.set(func(n *fakeNode) { n.err = status.Error(codes.Unavailable, "leadership lost") })
			c := newTestClient(t, a.addr, b.addr)

			if err := tt.call(c); err != nil {
				t.Fatalf("%s error = %v, want it retried on b", tt.name, err)
			}
			aIDs, bIDs := a.ids(), b.ids()
			if len(aIDs) != 1 || len(bIDs) != 1 {
				t.Fatalf("%s attempts: a got ids %q, b got %q; want one each", tt.name, aIDs, bIDs)
			}
			if !isRequestID(aIDs[0]) || aIDs[0] != bIDs[0] {
				t.Errorf("%s request ids: a %q, b %q; want the same 32-hex id", tt.name, aIDs[0], bIDs[0])
			}

			// The next logical write gets a fresh id.
			a.set(func(n *fakeNode) { n.err = nil })
			if err := tt.call(c); err != nil {
				t.Fatalf("second %s error = %v", tt.name, err)
			}
			if ids := b.ids(); len(ids) != 2 || ids[1] == ids[0] || !isRequestID(ids[1]) {
				t.Errorf("%s ids on b = %q, want two different ids", tt.name, ids)
			}
		})
	}
}

// A node applies a create and dies before answering: the client sees its
// connection break, retries on b with the same id, and b (sharing the
// replicated state and its request ids) returns the original result rather
// than AlreadyExists. The create is applied once.
func TestWriteRetriedAfterBrokenConnectionAppliedOnce(t *testing.T) {
	shared := newFakeState()
	a, b := startNode(t, "a"), startNode(t, "b")
	a.set(func(n *fakeNode) { n.shared, n.dieAfterApply, n.zxid = shared, true, 5 })
	b.set(func(n *fakeNode) { n.shared, n.zxid = shared, 6 })
	c := newTestClient(t, a.addr, b.addr)

	resp, err := c.Create(context.Background(), &paddockv1.CreateRequest{Path: "/once"})
	if err != nil {
		t.Fatalf("Create(/once) error = %v, want the first result", err)
	}
	if got := resp.GetHeader().GetZxid(); got != 5 {
		t.Errorf("Create(/once) zxid = %d, want 5 (a's original result)", got)
	}
	if got := shared.timesApplied("/once"); got != 1 {
		t.Errorf("/once applied %d times, want 1", got)
	}
	if aIDs, bIDs := a.ids(), b.ids(); len(aIDs) != 1 || len(bIDs) != 1 || aIDs[0] != bIDs[0] {
		t.Errorf("request ids: a %q, b %q; want one each, equal", aIDs, bIDs)
	}

	// Without an id the same retry would have failed: b says it exists.
	_, err = b.Create(context.Background(), &paddockv1.CreateRequest{Path: "/once"})
	if !IsExists(err) {
		t.Errorf("Create(/once) without request id = %v, want AlreadyExists", err)
	}
}

func TestCallerRequestIDKept(t *testing.T) {
	n := startNode(t, "n")
	c := newTestClient(t, n.addr)
	id := NewRequestID()
	ctx := WithRequestID(context.Background(), id)
	if _, err := c.Create(ctx, &paddockv1.CreateRequest{Path: "/a"}); err != nil {
		t.Fatalf("Create(/a) error = %v", err)
	}
	if got := n.ids(); !slices.Equal(got, []string{id}) {
		t.Errorf("request ids = %q, want [%q]", got, id)
	}
}

func TestWriteNotRetriedOnDomainError(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{"exists", status.Error(codes.AlreadyExists, "fsm: node exists")},
		{"invalid argument", status.Error(codes.InvalidArgument, "fsm: bad path")},
		{"failed precondition", status.Error(codes.FailedPrecondition, "fsm: bad version")},
		{"not found", status.Error(codes.NotFound, "fsm: no parent")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := startNode(t, "a"), startNode(t, "b")
			a.set(func(n *fakeNode) { n.err = tt.err })
			c := newTestClient(t, a.addr, b.addr)

			_, err := c.Create(context.Background(), &paddockv1.CreateRequest{Path: "/a"})
			if status.Code(err) != status.Code(tt.err) {
				t.Errorf("Create(/a) error = %v, want %v", err, status.Code(tt.err))
			}
			if got := b.callCount(); got != 0 {
				t.Errorf("b got %d calls, want 0", got)
			}
		})
	}
}

func TestWriteGivesUpWhenAllUnavailable(t *testing.T) {
	a, b := startNode(t, "a"), startNode(t, "b")
	for _, n := range []*fakeNode{a, b} {
		n.set(func(n *fakeNode) { n.err = status.Error(codes.Unavailable, "no leader") })
	}
	c, err := New(context.Background(), Config{Endpoints: []string{a.addr, b.addr}, RetryTimeout: 400 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })

	_, err = c.Create(context.Background(), &paddockv1.CreateRequest{Path: "/a"})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("Create(/a) error = %v, want Unavailable", err)
	}
	// Pauses of 100ms and 200ms fit in 400ms, 400ms more would not: three
	// passes over both endpoints.
	if got, want := a.callCount()+b.callCount(), 6; got != want {
		t.Errorf("attempts = %d, want %d (3 passes over 2 endpoints within the retry timeout)", got, want)
	}
	ids := append(a.ids(), b.ids()...)
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("request ids = %q, want all the same", ids)
		}
	}
}

func TestRetryStopsWithContext(t *testing.T) {
	n := startNode(t, "n")
	n.set(func(n *fakeNode) { n.err = status.Error(codes.Unavailable, "no leader") })
	c := newTestClient(t, n.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()

	_, err := c.Create(ctx, &paddockv1.CreateRequest{Path: "/a"})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("Create(/a) error = %v, want Unavailable", err)
	}
	if got := n.callCount(); got >= maxRounds {
		t.Errorf("attempts = %d, want fewer than %d: the context ended the retries", got, maxRounds)
	}
}

func TestAllEndpointsDown(t *testing.T) {
	c := newTestClient(t, deadAddr(t), deadAddr(t))
	_, err := c.Status(context.Background(), &paddockv1.StatusRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("Status() error = %v, want Unavailable", err)
	}
}

func TestListAllFollowsPages(t *testing.T) {
	n := startNode(t, "n")
	c := newTestClient(t, n.addr)
	req := &paddockv1.ListRequest{Path: "/p", PageSize: 2}

	resp, err := c.ListAll(context.Background(), req)
	if err != nil {
		t.Fatalf("ListAll(/p) error = %v", err)
	}
	var names []string
	for _, ch := range resp.Children {
		names = append(names, ch.Name)
	}
	if want := []string{"c0", "c1", "c2", "c3", "c4"}; !slices.Equal(names, want) {
		t.Errorf("ListAll(/p) = %v, want %v", names, want)
	}
	if resp.NextPageToken != "" {
		t.Errorf("ListAll(/p) next_page_token = %q, want empty", resp.NextPageToken)
	}
	if want := []uint64{0, 10, 11}; !slices.Equal(n.minZxids, want) {
		t.Errorf("min_zxid per page = %v, want %v", n.minZxids, want)
	}
	if req.PageToken != "" || req.Read != nil {
		t.Errorf("ListAll modified its request: %v", req)
	}
}

func TestListDataFollowsPages(t *testing.T) {
	n := startNode(t, "n")
	c := newTestClient(t, n.addr)
	req := &paddockv1.ListRequest{Path: "/p", PageSize: 2}
	var pages [][]string
	err := c.ListData(context.Background(), req, func(p *paddockv1.ListResponse) error {
		var page []string
		for _, ch := range p.Children {
			page = append(page, ch.Name+"="+string(ch.Data))
		}
		pages = append(pages, page)
		return nil
	})
	if err != nil {
		t.Fatalf("ListData(/p) error = %v", err)
	}
	if want := [][]string{{"c0=c0", "c1=c1"}, {"c2=c2", "c3=c3"}, {"c4=c4"}}; !slices.EqualFunc(pages, want, slices.Equal) {
		t.Errorf("ListData(/p) pages = %v, want %v", pages, want)
	}
	if req.PageToken != "" || req.WithData {
		t.Errorf("ListData modified its request: %v", req)
	}

	stop := errors.New("enough")
	calls := 0
	err = c.ListData(context.Background(), req, func(*paddockv1.ListResponse) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("ListData(/p) with fn failing = %v after %d calls, want %v after 1", err, calls, stop)
	}

	calls = 0
	err = c.ListData(context.Background(), &paddockv1.ListRequest{Path: "/changed", PageSize: 2}, func(*paddockv1.ListResponse) error { calls++; return nil })
	if !IsListingChanged(err) || calls != 1 {
		t.Errorf("ListData(/changed) = %v after %d pages, want a listing changed error after 1", err, calls)
	}
	if IsListingChanged(nil) || IsListingChanged(status.Error(codes.NotFound, "x")) {
		t.Errorf("IsListingChanged matches nil or NotFound")
	}
}

func TestReadYourWritesAcrossEndpoints(t *testing.T) {
	serializable := paddockv1.ReadConsistency_READ_CONSISTENCY_SERIALIZABLE
	tests := []struct {
		name string
		read *paddockv1.ReadOptions // what the caller sends
		want *paddockv1.ReadOptions // what b receives
	}{
		{"no options", nil, &paddockv1.ReadOptions{MinZxid: 42}},
		{"serializable", &paddockv1.ReadOptions{Consistency: serializable}, &paddockv1.ReadOptions{Consistency: serializable, MinZxid: 42}},
		{"caller min_zxid kept", &paddockv1.ReadOptions{MinZxid: 7}, &paddockv1.ReadOptions{MinZxid: 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := startNode(t, "a"), startNode(t, "b")
			a.set(func(n *fakeNode) { n.zxid = 42 })
			b.set(func(n *fakeNode) { n.zxid = 40 })
			c := newTestClient(t, a.addr, b.addr)
			ctx := context.Background()

			if _, err := c.Create(ctx, &paddockv1.CreateRequest{Path: "/a"}); err != nil {
				t.Fatalf("Create(/a) error = %v", err)
			}
			if got := c.LastZxid(); got != 42 {
				t.Fatalf("LastZxid() after Create = %d, want 42", got)
			}
			// a goes away; the reads land on b, which may lag behind.
			a.set(func(n *fakeNode) { n.err = status.Error(codes.Unavailable, "shutting down") })
			get := &paddockv1.GetRequest{Path: "/a", Read: tt.read}
			if _, err := c.Get(ctx, get); err != nil {
				t.Fatalf("Get(/a) error = %v", err)
			}
			if _, err := c.Exists(ctx, &paddockv1.ExistsRequest{Path: "/a", Read: tt.read}); err != nil {
				t.Fatalf("Exists(/a) error = %v", err)
			}
			if _, err := c.List(ctx, &paddockv1.ListRequest{Path: "/a", Read: tt.read}); err != nil {
				t.Fatalf("List(/a) error = %v", err)
			}
			b.mu.Lock()
			reads, lists := b.reads, b.minZxids
			b.mu.Unlock()
			for i, got := range reads {
				if !proto.Equal(got, tt.want) {
					t.Errorf("read %d on b carried %v, want %v", i, got, tt.want)
				}
			}
			if len(reads) != 2 {
				t.Errorf("b served %d Get/Exists, want 2", len(reads))
			}
			if want := []uint64{tt.want.MinZxid}; !slices.Equal(lists, want) {
				t.Errorf("List min_zxid on b = %v, want %v", lists, want)
			}
			if !proto.Equal(get.Read, tt.read) {
				t.Errorf("Get modified its request: read = %v, want %v", get.Read, tt.read)
			}
			// A read's zxid never lowers what the client has seen.
			if got := c.LastZxid(); got != 42 {
				t.Errorf("LastZxid() after reads at 40 = %d, want 42", got)
			}
		})
	}
}

func TestFreshClientSendsNoMinZxid(t *testing.T) {
	n := startNode(t, "n")
	c := newTestClient(t, n.addr)
	get := &paddockv1.GetRequest{Path: "/a"}
	if _, err := c.Get(context.Background(), get); err != nil {
		t.Fatalf("Get(/a) error = %v", err)
	}
	if n.reads[0] != nil {
		t.Errorf("Get(/a) from a fresh client carried %v, want no read options", n.reads[0])
	}
}

// TestDeadEndpointFailsOverAtOnce: a refused connection moves on to the
// next endpoint at once, however long the dial timeout.
func TestDeadEndpointFailsOverAtOnce(t *testing.T) {
	live := startNode(t, "live")
	c, err := New(context.Background(), Config{
		Endpoints:    []string{deadAddr(t), live.addr},
		DialTimeout:  30 * time.Second,
		RetryTimeout: 30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := c.Get(ctx, &paddockv1.GetRequest{Path: "/a"})
		cancel()
		if err != nil {
			t.Fatalf("Get(/a) #%d with a dead first endpoint and a 30s dial timeout: %v", i, err)
		}
		c.cur.Store(0) // start at the dead endpoint again
	}
}

// TestAllEndpointsRefusedMessage: when no endpoint accepts a connection
// the error names them and the cause, not gRPC's dial error.
func TestAllEndpointsRefusedMessage(t *testing.T) {
	a, b := deadAddr(t), deadAddr(t)
	c := newTestClient(t, a, b)
	_, err := c.Status(context.Background(), &paddockv1.StatusRequest{})
	want := "no node reachable: " + a + ", " + b + " (connection refused)"
	if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != want {
		t.Errorf("Status() error = %v %q, want Unavailable %q", st.Code(), st.Message(), want)
	}
}
