package client

import (
	"context"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// fakeNode is an in-process gRPC server standing in for a Paddock node: just
// enough of each service to see which node a call reached, what it carried,
// and to serve a scripted watch.
type fakeNode struct {
	paddockv1.UnimplementedTreeServiceServer
	paddockv1.UnimplementedSessionServiceServer
	paddockv1.UnimplementedClusterServiceServer
	paddockv1.UnimplementedWatchServiceServer

	name string
	addr string
	srv  *grpc.Server

	mu            sync.Mutex
	err           error                    // returned by every unary call when set
	streamErr     error                    // ends keepalive streams when set
	expired       bool                     // keepalive responses say expired
	calls         int                      // unary calls received
	keepalives    int                      // keepalives received on streams
	closed        []uint64                 // sessions closed
	lockDelays    []int64                  // OpenSessionRequest.lock_delay_ms of each open
	minZxids      []uint64                 // ReadOptions.min_zxid of each List
	reads         []*paddockv1.ReadOptions // ReadOptions of each Get and Exists
	zxid          uint64                   // header.zxid of every response
	requestIDs    []string                 // request id of each write, "" if none
	shared        *fakeState               // when set, Create applies to it
	dieAfterApply bool                     // Create applies, then the node dies
	hangPolls     bool                     // Poll never answers (answers lost)
	hangReads     bool                     // Get never answers (answers lost)

	watch fakeWatch
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
	paddockv1.RegisterWatchServiceServer(n.srv, n)
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
	// A short retry timeout keeps tests of dead endpoints quick.
	c, err := New(context.Background(), Config{Endpoints: addrs, RetryTimeout: time.Second})
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

// header is the ResponseHeader of every response of n.
func (n *fakeNode) header() *paddockv1.ResponseHeader {
	n.mu.Lock()
	defer n.mu.Unlock()
	return &paddockv1.ResponseHeader{NodeId: n.name, Zxid: n.zxid}
}

// write records the request id a write carries, then acts like unary.
func (n *fakeNode) write(ctx context.Context) (string, error) {
	id := ""
	if ids := metadata.ValueFromIncomingContext(ctx, RequestIDMetadataKey); len(ids) > 0 {
		id = ids[0]
	}
	n.set(func(n *fakeNode) { n.requestIDs = append(n.requestIDs, id) })
	return id, n.unary()
}

// ids returns the request ids of the writes n received.
func (n *fakeNode) ids() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.requestIDs)
}

func (n *fakeNode) Get(ctx context.Context, req *paddockv1.GetRequest) (*paddockv1.GetResponse, error) {
	if err := n.unary(); err != nil {
		return nil, err
	}
	n.mu.Lock()
	hang := n.hangReads
	n.mu.Unlock()
	if hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	n.set(func(n *fakeNode) { n.reads = append(n.reads, req.GetRead()) })
	return &paddockv1.GetResponse{Header: n.header(), Data: []byte(n.name)}, nil
}

func (n *fakeNode) Exists(_ context.Context, req *paddockv1.ExistsRequest) (*paddockv1.ExistsResponse, error) {
	if err := n.unary(); err != nil {
		return nil, err
	}
	n.set(func(n *fakeNode) { n.reads = append(n.reads, req.GetRead()) })
	return &paddockv1.ExistsResponse{Header: n.header()}, nil
}

// fakeState is the replicated state that several fake nodes share: what
// Create applied, and the result of each request id, as the real server
// de-duplicates them.
type fakeState struct {
	mu      sync.Mutex
	applied map[string]int                       // path -> times created
	results map[string]*paddockv1.CreateResponse // request id -> result
}

func newFakeState() *fakeState {
	return &fakeState{applied: map[string]int{}, results: map[string]*paddockv1.CreateResponse{}}
}

// create applies req once per request id and returns the first result.
func (s *fakeState) create(id string, req *paddockv1.CreateRequest, h *paddockv1.ResponseHeader) (*paddockv1.CreateResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if resp, ok := s.results[id]; ok && id != "" {
		return resp, nil
	}
	if s.applied[req.Path] > 0 {
		return nil, status.Error(codes.AlreadyExists, "fsm: node exists")
	}
	s.applied[req.Path]++
	resp := &paddockv1.CreateResponse{Header: h, Path: req.Path}
	s.results[id] = resp
	return resp, nil
}

func (s *fakeState) timesApplied(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applied[path]
}

// Create applies to the shared state when there is one. With dieAfterApply
// the node stops right after applying, so the client sees its connection
// break with no answer, as when a node is killed mid-write.
func (n *fakeNode) Create(ctx context.Context, req *paddockv1.CreateRequest) (*paddockv1.CreateResponse, error) {
	id, err := n.write(ctx)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	shared, die := n.shared, n.dieAfterApply
	n.mu.Unlock()
	if shared == nil {
		return &paddockv1.CreateResponse{Header: n.header(), Path: req.Path}, nil
	}
	resp, err := shared.create(id, req, n.header())
	if die {
		go n.srv.Stop()
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return resp, err
}

func (n *fakeNode) Delete(ctx context.Context, req *paddockv1.DeleteRequest) (*paddockv1.DeleteResponse, error) {
	if _, err := n.write(ctx); err != nil {
		return nil, err
	}
	return &paddockv1.DeleteResponse{Header: n.header()}, nil
}

func (n *fakeNode) Multi(ctx context.Context, req *paddockv1.MultiRequest) (*paddockv1.MultiResponse, error) {
	if _, err := n.write(ctx); err != nil {
		return nil, err
	}
	return &paddockv1.MultiResponse{Header: n.header()}, nil
}

func (n *fakeNode) Set(ctx context.Context, req *paddockv1.SetRequest) (*paddockv1.SetResponse, error) {
	if _, err := n.write(ctx); err != nil {
		return nil, err
	}
	return &paddockv1.SetResponse{Header: n.header()}, nil
}

// List serves the children c0..c4, two per page, at zxid 10 + page. With
// data, each child's data is its name, and a later page of /changed fails
// as a listing that changed does.
func (n *fakeNode) List(_ context.Context, req *paddockv1.ListRequest) (*paddockv1.ListResponse, error) {
	if err := n.unary(); err != nil {
		return nil, err
	}
	n.set(func(n *fakeNode) { n.minZxids = append(n.minZxids, req.GetRead().GetMinZxid()) })
	start, _ := strconv.Atoi(req.PageToken)
	if req.GetWithData() && req.GetPath() == "/changed" && start > 0 {
		return nil, status.Error(codes.OutOfRange, "fsm: listing is no longer current: list again without page_token")
	}
	resp := &paddockv1.ListResponse{Header: &paddockv1.ResponseHeader{NodeId: n.name, Zxid: uint64(10 + start/2)}}
	for i := start; i < 5 && i < start+2; i++ {
		ch := &paddockv1.Child{Name: "c" + strconv.Itoa(i)}
		if req.GetWithData() {
			ch.Data = []byte(ch.Name)
		}
		resp.Children = append(resp.Children, ch)
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

func (n *fakeNode) OpenSession(ctx context.Context, req *paddockv1.OpenSessionRequest) (*paddockv1.OpenSessionResponse, error) {
	if _, err := n.write(ctx); err != nil {
		return nil, err
	}
	n.set(func(n *fakeNode) { n.lockDelays = append(n.lockDelays, req.LockDelayMs) })
	return &paddockv1.OpenSessionResponse{SessionId: 7, TimeoutMs: req.TimeoutMs}, nil
}

func (n *fakeNode) CloseSession(ctx context.Context, req *paddockv1.CloseSessionRequest) (*paddockv1.CloseSessionResponse, error) {
	if _, err := n.write(ctx); err != nil {
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
