package client

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// A node that takes a read and never answers holds it for as long as the
// call's ctx allows, unless Config.ReadAttemptTimeout is set: then past
// it the client tries the next endpoint, and stays there, also when that
// endpoint's answer is an error (NotFound): the next call does not go
// back to the silent node.
func TestReadAttemptTimeoutMovesOn(t *testing.T) {
	a, b := startNode(t, "a"), startNode(t, "b")
	a.set(func(n *fakeNode) { n.hangReads = true })

	held := newTestClient(t, a.addr, b.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := held.Get(ctx, &paddockv1.GetRequest{Path: "/x"}); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("Get with a node that never answers, no attempt timeout = %v, want the call's DeadlineExceeded", err)
	}

	c, err := New(context.Background(), Config{Endpoints: []string{a.addr, b.addr}, RetryTimeout: time.Second, ReadAttemptTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	resp, err := c.Get(context.Background(), &paddockv1.GetRequest{Path: "/x"})
	if err != nil || string(resp.GetData()) != "b" {
		t.Fatalf("Get with a node that never answers = %q, %v; want b's answer", resp.GetData(), err)
	}
	calls := a.callCount()
	if _, err := c.Get(context.Background(), &paddockv1.GetRequest{Path: "/x"}); err != nil {
		t.Fatal(err)
	}
	if got := a.callCount(); got != calls {
		t.Errorf("a got %d more reads, want none: the next read goes to b", got-calls)
	}
}

func TestReadAttemptTimeoutStaysOnAnError(t *testing.T) {
	a, b := startNode(t, "a"), startNode(t, "b")
	a.set(func(n *fakeNode) { n.hangReads = true })
	b.set(func(n *fakeNode) { n.err = status.Error(codes.NotFound, "node does not exist: /x") })
	c, err := New(context.Background(), Config{Endpoints: []string{a.addr, b.addr}, RetryTimeout: time.Second, ReadAttemptTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Get(context.Background(), &paddockv1.GetRequest{Path: "/x"}); status.Code(err) != codes.NotFound {
		t.Fatalf("Get = %v, want b's NotFound", err)
	}
	calls := a.callCount()
	if _, err := c.Get(context.Background(), &paddockv1.GetRequest{Path: "/x"}); status.Code(err) != codes.NotFound {
		t.Fatalf("second Get = %v, want b's NotFound", err)
	}
	if got := a.callCount(); got != calls {
		t.Errorf("a got %d more reads after b answered, want none", got-calls)
	}
}
