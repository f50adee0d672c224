package client

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// fakeNode is an in-process gRPC server standing in for a Paddock node: just
// enough of each service to see which node a call reached.
type fakeNode struct {
	paddockv1.UnimplementedTreeServiceServer
	paddockv1.UnimplementedSessionServiceServer
	paddockv1.UnimplementedClusterServiceServer

	name string
	addr string
	srv  *grpc.Server

	mu         sync.Mutex
	err        error    // returned by every unary call when set
	streamErr  error    // ends keepalive streams when set
	expired    bool     // keepalive responses say expired
	calls      int      // unary calls received
	keepalives int      // keepalives received on streams
	closed     []uint64 // sessions closed
	minZxids   []uint64 // ReadOptions.min_zxid of each List
}

// startNode serves a fakeNode on a loopback port until the test ends.
func startNode(t *testing.T, name string) *fakeNode {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &fakeNode{name: name, addr: lis.Addr().String(), srv: grpc.NewServer()}
	paddockv1.RegisterTreeServiceServer(n.srv, n)
	paddockv1.RegisterSessionServiceServer(n.srv, n)
	paddockv1.RegisterClusterServiceServer(n.srv, n)
	go n.srv.Serve(lis)
	t.Cleanup(n.srv.Stop)
	return n
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

// newTestClient returns a client of addrs closed when the test ends.
func newTestClient(t *testing.T, addrs ...string) *Client {
	t.Helper()
	c, err := New(context.Background(), Config{Endpoints: addrs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (n *fakeNode) set(f func(n *fakeNode)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	f(n)
}

// unary counts a call and returns the configured error.
func (n *fakeNode) unary() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls++
	return n.err
}

func (n *fakeNode) callCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.calls
}

func (n *fakeNode) keepaliveCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.keepalives
}

func (n *fakeNode) Get(_ context.Context, req *paddockv1.GetRequest) (*paddockv1.GetResponse, error) {
	if err := n.unary(); err != nil {
		return nil, err
	}
	return &paddockv1.GetResponse{Data: []byte(n.name)}, nil
}

func (n *fakeNode) Create(_ context.Context, req *paddockv1.CreateRequest) (*paddockv1.CreateResponse, error) {
	if err := n.unary(); err != nil {
		return nil, err
	}
	return &paddockv1.CreateResponse{Path: req.Path}, nil
}

// List serves the children c0..c4, two per page, at zxid 10 + page.
func (n *fakeNode) List(_ context.Context, req *paddockv1.ListRequest) (*paddockv1.ListResponse, error) {
	if err := n.unary(); err != nil {
		return nil, err
	}
	n.set(func(n *fakeNode) { n.minZxids = append(n.minZxids, req.GetRead().GetMinZxid()) })
	start, _ := strconv.Atoi(req.PageToken)
	resp := &paddockv1.ListResponse{Header: &paddockv1.ResponseHeader{Zxid: uint64(10 + start/2)}}
	for i := start; i < 5 && i < start+2; i++ {
		resp.Children = append(resp.Children, &paddockv1.Child{Name: "c" + strconv.Itoa(i)})
	}
	if start+2 < 5 {
		resp.NextPageToken = strconv.Itoa(start + 2)
	}
	return resp, nil
}

func (n *fakeNode) Status(context.Context, *paddockv1.StatusRequest) (*paddockv1.StatusResponse, error) {
	if err := n.unary(); err != nil {
		return nil, err
	}
	return &paddockv1.StatusResponse{Id: n.name}, nil
}

func (n *fakeNode) OpenSession(_ context.Context, req *paddockv1.OpenSessionRequest) (*paddockv1.OpenSessionResponse, error) {
	if err := n.unary(); err != nil {
		return nil, err
	}
	return &paddockv1.OpenSessionResponse{SessionId: 7, TimeoutMs: req.TimeoutMs}, nil
}

func (n *fakeNode) CloseSession(_ context.Context, req *paddockv1.CloseSessionRequest) (*paddockv1.CloseSessionResponse, error) {
	if err := n.unary(); err != nil {
		return nil, err
	}
	n.set(func(n *fakeNode) { n.closed = append(n.closed, req.SessionId) })
	return &paddockv1.CloseSessionResponse{}, nil
}

// KeepAliveStream answers every keepalive until streamErr is set.
func (n *fakeNode) KeepAliveStream(stream grpc.BidiStreamingServer[paddockv1.KeepAliveStreamRequest, paddockv1.KeepAliveStreamResponse]) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			return err
		}
		n.mu.Lock()
		streamErr, expired := n.streamErr, n.expired
		if streamErr == nil {
			n.keepalives++
		}
		n.mu.Unlock()
		if streamErr != nil {
			return streamErr
		}
		if err := stream.Send(&paddockv1.KeepAliveStreamResponse{SessionId: req.SessionId, Expired: expired}); err != nil {
			return err
		}
	}
}
