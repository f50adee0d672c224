package client

import (
	"context"
	"errors"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

func TestFailover(t *testing.T) {
	unavailable := status.Error(codes.Unavailable, "no leader")
	tests := []struct {
		name string
		kind retry
		err  error
		sent bool
		want bool
	}{
		{"read unavailable sent", idempotent, unavailable, true, true},
		{"read unavailable unsent", idempotent, unavailable, false, true},
		{"read not found", idempotent, status.Error(codes.NotFound, "x"), true, false},
		{"read deadline", idempotent, status.Error(codes.DeadlineExceeded, "x"), false, false},
		{"write unavailable unsent", atMostOnce, unavailable, false, true},
		{"write unavailable sent", atMostOnce, unavailable, true, false},
		{"write exists", atMostOnce, status.Error(codes.AlreadyExists, "x"), true, false},
		{"plain error", idempotent, errors.New("x"), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := failover(tt.kind, tt.err, tt.sent); got != tt.want {
				t.Errorf("failover(%v, %v, %v) = %v, want %v", tt.kind, tt.err, tt.sent, got, tt.want)
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

func TestWriteNotRepeatedOnceSent(t *testing.T) {
	a, b := startNode(t, "a"), startNode(t, "b")
	a.set(func(n *fakeNode) { n.err = status.Error(codes.Unavailable, "leadership lost") })
	c := newTestClient(t, a.addr, b.addr)

	_, err := c.Create(context.Background(), &paddockv1.CreateRequest{Path: "/a"})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("Create(/a) error = %v, want Unavailable", err)
	}
	if got := b.callCount(); got != 0 {
		t.Errorf("b got %d calls, want 0: a write that reached a node was repeated", got)
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
