package rpc

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock/paddock/fsm"
	"github.com/paddock/paddock/node"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// call is one RPC the fake services received.
type call struct {
	method    string // "Get"
	req       proto.Message
	requestID []string // paddock-request-id metadata
}

// recorder collects the calls of the fake services.
type recorder struct {
	mu    sync.Mutex
	calls []call
}

func (r *recorder) record(ctx context.Context, method string, req proto.Message) {
	md, _ := metadata.FromIncomingContext(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, call{method: method, req: proto.Clone(req), requestID: md.Get(RequestIDMetadata)})
}

// take returns the calls recorded since the last take.
func (r *recorder) take() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.calls
	r.calls = nil
	return out
}

// fakeTree answers like the real TreeService for the paths the tests use:
// it validates the path as the state machine does, and fails a few paths
// with the domain error the test expects the gateway to map.
type fakeTree struct {
	paddockv1.UnimplementedTreeServiceServer
	rec *recorder
}

// pathErr is the domain error a path stands for in the fakes.
func pathErr(path string) error {
	if err := fsm.ValidatePath(path, false); err != nil {
		return err
	}
	switch path {
	case "/missing":
		return fmt.Errorf("%w: %s", fsm.ErrNoNode, path)
	case "/exists":
		return fmt.Errorf("%w: %s", fsm.ErrNodeExists, path)
	case "/cas":
		return fmt.Errorf("%w: %s", fsm.ErrBadVersion, path)
	case "/full":
		return fmt.Errorf("%w: %s", fsm.ErrNotEmpty, path)
	case "/noleader":
		return node.ErrNoLeader
	case "/slow":
		return context.DeadlineExceeded
	case "/compacted":
		return status.Error(codes.OutOfRange, "node: watch history compacted")
	case "/relisted":
		return fmt.Errorf("%w: listing of %s at zxid 5: its children changed at zxid 6; list again without page_token", fsm.ErrListingChanged, path)
	}
	return nil
}

func testHeader() *paddockv1.ResponseHeader {
	return &paddockv1.ResponseHeader{NodeId: "n9", Term: 2, Zxid: 7}
}

func (f *fakeTree) Create(ctx context.Context, req *paddockv1.CreateRequest) (*paddockv1.CreateResponse, error) {
	f.rec.record(ctx, "Create", req)
	if err := pathErr(req.GetPath()); err != nil {
		return nil, toStatus(err)
	}
	return &paddockv1.CreateResponse{Header: testHeader(), Path: req.GetPath(), Stat: &paddockv1.Stat{Czxid: 7, Mzxid: 7}}, nil
}

func (f *fakeTree) Get(ctx context.Context, req *paddockv1.GetRequest) (*paddockv1.GetResponse, error) {
	f.rec.record(ctx, "Get", req)
	if err := pathErr(req.GetPath()); err != nil {
		return nil, toStatus(err)
	}
	return &paddockv1.GetResponse{Header: testHeader(), Data: []byte("hi"), Stat: &paddockv1.Stat{Czxid: 7, DataLength: 2}}, nil
}

func (f *fakeTree) Set(ctx context.Context, req *paddockv1.SetRequest) (*paddockv1.SetResponse, error) {
	f.rec.record(ctx, "Set", req)
	if err := pathErr(req.GetPath()); err != nil {
		return nil, toStatus(err)
	}
	return &paddockv1.SetResponse{Header: testHeader()}, nil
}

func (f *fakeTree) Delete(ctx context.Context, req *paddockv1.DeleteRequest) (*paddockv1.DeleteResponse, error) {
	f.rec.record(ctx, "Delete", req)
	if err := pathErr(req.GetPath()); err != nil {
		return nil, toStatus(err)
	}
	return &paddockv1.DeleteResponse{Header: testHeader()}, nil
}

func (f *fakeTree) Exists(ctx context.Context, req *paddockv1.ExistsRequest) (*paddockv1.ExistsResponse, error) {
	f.rec.record(ctx, "Exists", req)
	if err := pathErr(req.GetPath()); err != nil {
		return nil, toStatus(err)
	}
	return &paddockv1.ExistsResponse{Header: testHeader()}, nil
}

func (f *fakeTree) List(ctx context.Context, req *paddockv1.ListRequest) (*paddockv1.ListResponse, error) {
	f.rec.record(ctx, "List", req)
	if err := pathErr(req.GetPath()); err != nil {
		return nil, toStatus(err)
	}
	if req.GetWithData() {
		return &paddockv1.ListResponse{Header: testHeader(), Children: []*paddockv1.Child{{Name: "a", Data: []byte("hi")}}, ListingZxid: 7, NextPageToken: "tok"}, nil
	}
	return &paddockv1.ListResponse{Header: testHeader(), Children: []*paddockv1.Child{{Name: "a"}}}, nil
}

func (f *fakeTree) Multi(ctx context.Context, req *paddockv1.MultiRequest) (*paddockv1.MultiResponse, error) {
	f.rec.record(ctx, "Multi", req)
	for i, op := range req.GetOps() {
		if err := pathErr(op.GetCheck().GetPath()); op.GetCheck() != nil && err != nil {
			return nil, toStatus(&fsm.MultiError{Index: i, Err: err})
		}
	}
	return &paddockv1.MultiResponse{Header: testHeader()}, nil
}

// fakeWatch streams two responses, the second only once the test has read
// the first (so a gateway that did not flush per message would hang).
type fakeWatch struct {
	paddockv1.UnimplementedWatchServiceServer
	rec  *recorder
	next chan struct{}
}

func (f *fakeWatch) Watch(req *paddockv1.WatchRequest, stream paddockv1.WatchService_WatchServer) error {
	f.rec.record(stream.Context(), "Watch", req)
	if err := pathErr(req.GetPath()); err != nil {
		return toStatus(err)
	}
	if err := stream.Send(&paddockv1.WatchResponse{Header: testHeader(), Created: true}); err != nil {
		return err
	}
	select {
	case <-f.next:
	case <-stream.Context().Done():
		return stream.Context().Err()
	}
	return stream.Send(&paddockv1.WatchResponse{Header: testHeader(), Events: []*paddockv1.Event{{
		Zxid: 8, Kind: paddockv1.EventKind_EVENT_KIND_CREATED, Path: req.GetPath() + "/x",
	}}})
}

func (f *fakeWatch) Poll(ctx context.Context, req *paddockv1.PollRequest) (*paddockv1.PollResponse, error) {
	f.rec.record(ctx, "Poll", req)
	if err := pathErr(req.GetPath()); err != nil {
		return nil, toStatus(err)
	}
	return &paddockv1.PollResponse{Header: testHeader()}, nil
}

// fakeSession answers GetSession, to check non-tree routes pass ids and
// metadata through.
type fakeSession struct {
	paddockv1.UnimplementedSessionServiceServer
	rec *recorder
}

func (f *fakeSession) OpenSession(ctx context.Context, req *paddockv1.OpenSessionRequest) (*paddockv1.OpenSessionResponse, error) {
	f.rec.record(ctx, "OpenSession", req)
	return &paddockv1.OpenSessionResponse{Header: testHeader(), SessionId: 1 << 60, TimeoutMs: req.GetTimeoutMs()}, nil
}

func (f *fakeSession) GetSession(ctx context.Context, req *paddockv1.GetSessionRequest) (*paddockv1.GetSessionResponse, error) {
	f.rec.record(ctx, "GetSession", req)
	return nil, toStatus(fmt.Errorf("%w: %d", fsm.ErrNoSession, req.GetSessionId()))
}

// gatewayFixture is an HTTP server running the handler against fake
// services on a real gRPC server.
type gatewayFixture struct {
	url   string
	rec   *recorder
	watch *fakeWatch
}

func newGatewayFixture(t *testing.T, opts ...HTTPOption) *gatewayFixture {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	watch := &fakeWatch{rec: rec, next: make(chan struct{}, 1)}
	srv := grpc.NewServer()
	paddockv1.RegisterTreeServiceServer(srv, &fakeTree{rec: rec})
	paddockv1.RegisterWatchServiceServer(srv, watch)
	paddockv1.RegisterSessionServiceServer(srv, &fakeSession{rec: rec})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "paddock_test_total", Help: "A test series."}))
	h, err := newHTTPHandler(ctx, httpNode{id: "n9", ready: func() bool { return true }, metrics: reg}, lis.Addr().String(), opts...)
	if err != nil {
		t.Fatalf("newHTTPHandler: %v", err)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	return &gatewayFixture{url: hs.URL, rec: rec, watch: watch}
}

// do sends one request and returns the response with its body read.
func (g *gatewayFixture) do(t *testing.T, method, path, body string, header map[string]string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, g.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp, string(b)
}

// rpcPath is the path field of a recorded request ("" if it has none).
func rpcPath(m proto.Message) string {
	if p, ok := m.(interface{ GetPath() string }); ok {
		return p.GetPath()
	}
	return ""
}

func TestHTTPGatewayRoutes(t *testing.T) {
	g := newGatewayFixture(t)
	longPath := "/v1/tree/" + strings.Repeat("a", fsm.MaxPathLength)
	tests := []struct {
		name, method, path, body string
		header                   map[string]string
		wantStatus               int
		wantCall                 string // "Get /services/db"; "" for no call
		wantCode                 codes.Code
		check                    func(t *testing.T, c call, body string)
	}{
		{name: "get", method: "GET", path: "/v1/tree/services/db", wantStatus: 200, wantCall: "Get /services/db",
			check: func(t *testing.T, _ call, body string) {
				// snake_case names, zero values present, bytes base64,
				// 64-bit integers as strings.
				for _, want := range []string{`"node_id":"n9"`, `"data":"aGk="`, `"version":0`, `"data_length":2`, `"zxid":"7"`, `"ephemeral_owner":"0"`} {
					if !strings.Contains(body, want) {
						t.Errorf("body %s does not contain %s", body, want)
					}
				}
			}},
		{name: "get root", method: "GET", path: "/v1/tree", wantStatus: 200, wantCall: "Get /"},
		{name: "get root slash", method: "GET", path: "/v1/tree/", wantStatus: 200, wantCall: "Get /"},
		{name: "colon in name", method: "GET", path: "/v1/tree/services/db/10.0.0.1:3306", wantStatus: 200, wantCall: "Get /services/db/10.0.0.1:3306"},
		{name: "escaped space", method: "GET", path: "/v1/tree/a%20b", wantStatus: 200, wantCall: "Get /a b"},
		{name: "read options", method: "GET", path: "/v1/tree/a?read.consistency=READ_CONSISTENCY_SERIALIZABLE&read.min_zxid=42", wantStatus: 200, wantCall: "Get /a",
			check: func(t *testing.T, c call, _ string) {
				r := c.req.(*paddockv1.GetRequest).GetRead()
				if r.GetConsistency() != paddockv1.ReadConsistency_READ_CONSISTENCY_SERIALIZABLE || r.GetMinZxid() != 42 {
					t.Errorf("read options = %v, want serializable, min_zxid 42", r)
				}
			}},
		{name: "double slash", method: "GET", path: "/v1/tree/a//b", wantStatus: 400, wantCall: "Get /a//b", wantCode: codes.InvalidArgument},
		{name: "leading double slash", method: "GET", path: "/v1/tree//a", wantStatus: 400, wantCall: "Get //a", wantCode: codes.InvalidArgument},
		{name: "trailing slash", method: "GET", path: "/v1/tree/a/", wantStatus: 400, wantCall: "Get /a/", wantCode: codes.InvalidArgument},
		{name: "too long", method: "GET", path: longPath, wantStatus: 400, wantCall: "Get /" + strings.Repeat("a", fsm.MaxPathLength), wantCode: codes.InvalidArgument},
		{name: "dot segment", method: "GET", path: "/v1/tree/a/./b", wantStatus: 400, wantCall: "Get /a/./b", wantCode: codes.InvalidArgument},
		{name: "missing", method: "GET", path: "/v1/tree/missing", wantStatus: 404, wantCall: "Get /missing", wantCode: codes.NotFound},
		{name: "no leader", method: "GET", path: "/v1/tree/noleader", wantStatus: 503, wantCall: "Get /noleader", wantCode: codes.Unavailable},
		{name: "deadline", method: "GET", path: "/v1/tree/slow", wantStatus: 504, wantCall: "Get /slow", wantCode: codes.DeadlineExceeded},

		{name: "children", method: "GET", path: "/v1/tree/services/db?children=true&page_size=2&page_token=YQ", wantStatus: 200, wantCall: "List /services/db",
			check: func(t *testing.T, c call, body string) {
				r := c.req.(*paddockv1.ListRequest)
				if r.GetPageSize() != 2 || r.GetPageToken() != "YQ" {
					t.Errorf("List page_size %d, page_token %q; want 2, YQ", r.GetPageSize(), r.GetPageToken())
				}
				if !strings.Contains(body, `"children":[{"name":"a"`) {
					t.Errorf("body %s: want the children", body)
				}
			}},
		{name: "children with data", method: "GET", path: "/v1/tree/services/db?children=true&with_data=true&page_token=tok", wantStatus: 200, wantCall: "List /services/db",
			check: func(t *testing.T, c call, body string) {
				r := c.req.(*paddockv1.ListRequest)
				if !r.GetWithData() || r.GetPageToken() != "tok" {
					t.Errorf("List with_data %v, page_token %q; want true, tok", r.GetWithData(), r.GetPageToken())
				}
				for _, want := range []string{`"children":[{"name":"a"`, `"data":"aGk="`, `"listing_zxid":"7"`, `"next_page_token":"tok"`} {
					if !strings.Contains(body, want) {
						t.Errorf("body %s does not contain %s", body, want)
					}
				}
			}},
		{name: "children with data changed", method: "GET", path: "/v1/tree/relisted?children=true&with_data=true&page_token=tok", wantStatus: 410, wantCall: "List /relisted", wantCode: codes.OutOfRange,
			check: func(t *testing.T, _ call, body string) {
				if !strings.Contains(body, "list again without page_token") {
					t.Errorf("body %s: want the reason and what to do", body)
				}
			}},
		{name: "children of root", method: "GET", path: "/v1/tree?children=1", wantStatus: 200, wantCall: "List /"},
		{name: "children false", method: "GET", path: "/v1/tree/a?children=false", wantStatus: 200, wantCall: "Get /a"},
		{name: "children bad", method: "GET", path: "/v1/tree/a?children=maybe", wantStatus: 400, wantCode: codes.InvalidArgument},
		{name: "children twice", method: "GET", path: "/v1/tree/a?children=true&children=false", wantStatus: 400, wantCode: codes.InvalidArgument},
		{name: "list route", method: "GET", path: "/v1/children/a", wantStatus: 200, wantCall: "List /a"},
		{name: "exists", method: "GET", path: "/v1/exists/a/b", wantStatus: 200, wantCall: "Exists /a/b",
			check: func(t *testing.T, _ call, body string) {
				if !strings.Contains(body, `"exists":false`) {
					t.Errorf("body %s: want exists false present", body)
				}
			}},

		{name: "create", method: "POST", path: "/v1/tree/a", body: `{"data":"aGk=","type":"NODE_TYPE_EPHEMERAL","session_id":"5"}`, wantStatus: 200, wantCall: "Create /a",
			check: func(t *testing.T, c call, _ string) {
				r := c.req.(*paddockv1.CreateRequest)
				if string(r.GetData()) != "hi" || r.GetType() != paddockv1.NodeType_NODE_TYPE_EPHEMERAL || r.GetSessionId() != 5 {
					t.Errorf("Create request = %v, want data hi, ephemeral, session 5", r)
				}
			}},
		{name: "create form content type", method: "POST", path: "/v1/tree/a", body: `{}`, header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, wantStatus: 200, wantCall: "Create /a"},
		{name: "create body path ignored", method: "POST", path: "/v1/tree/a", body: `{"path":"/b"}`, wantStatus: 200, wantCall: "Create /a"},
		{name: "create exists", method: "POST", path: "/v1/tree/exists", wantStatus: 409, wantCall: "Create /exists", wantCode: codes.AlreadyExists},
		{name: "garbage json", method: "POST", path: "/v1/tree/a", body: `{"data":`, wantStatus: 400, wantCode: codes.InvalidArgument},
		{name: "unknown field", method: "POST", path: "/v1/tree/a", body: `{"dta":"aGk="}`, wantStatus: 400, wantCode: codes.InvalidArgument},
		{name: "bad base64", method: "POST", path: "/v1/tree/a", body: `{"data":"!!"}`, wantStatus: 400, wantCode: codes.InvalidArgument},
		{name: "set", method: "PUT", path: "/v1/tree/a", body: `{"data":"aGk=","version":0}`, wantStatus: 200, wantCall: "Set /a",
			check: func(t *testing.T, c call, _ string) {
				if r := c.req.(*paddockv1.SetRequest); r.Version == nil || r.GetVersion() != 0 {
					t.Errorf("Set version = %v, want 0 (present)", r.Version)
				}
			}},
		{name: "set bad version", method: "PUT", path: "/v1/tree/cas", body: `{"version":3}`, wantStatus: 412, wantCall: "Set /cas", wantCode: codes.FailedPrecondition},
		{name: "delete", method: "DELETE", path: "/v1/tree/a?version=2&recursive=true", wantStatus: 200, wantCall: "Delete /a",
			check: func(t *testing.T, c call, _ string) {
				if r := c.req.(*paddockv1.DeleteRequest); r.GetVersion() != 2 || !r.GetRecursive() {
					t.Errorf("Delete request = %v, want version 2, recursive", r)
				}
			}},
		{name: "delete not empty", method: "DELETE", path: "/v1/tree/full", wantStatus: 412, wantCall: "Delete /full", wantCode: codes.FailedPrecondition},
		{name: "multi failed op", method: "POST", path: "/v1/multi", body: `{"ops":[{"check":{"path":"/a"}},{"check":{"path":"/missing"}}]}`, wantStatus: 404, wantCall: "Multi ", wantCode: codes.NotFound,
			check: func(t *testing.T, _ call, body string) {
				if !strings.Contains(body, `"@type":"type.googleapis.com/paddock.v1.MultiFailure"`) || !strings.Contains(body, `"failed_index":1`) {
					t.Errorf("body %s: want a MultiFailure detail with failed_index 1", body)
				}
			}},

		{name: "idempotency key", method: "POST", path: "/v1/tree/a", header: map[string]string{"Idempotency-Key": "k1"}, wantStatus: 200, wantCall: "Create /a",
			check: func(t *testing.T, c call, _ string) {
				if len(c.requestID) != 1 || c.requestID[0] != "k1" {
					t.Errorf("request id metadata = %q, want [k1]", c.requestID)
				}
			}},
		{name: "request id", method: "POST", path: "/v1/tree/a", header: map[string]string{"Paddock-Request-Id": "k2"}, wantStatus: 200, wantCall: "Create /a",
			check: func(t *testing.T, c call, _ string) {
				if len(c.requestID) != 1 || c.requestID[0] != "k2" {
					t.Errorf("request id metadata = %q, want [k2]", c.requestID)
				}
			}},
		{name: "no request id", method: "POST", path: "/v1/tree/a", wantStatus: 200, wantCall: "Create /a",
			check: func(t *testing.T, c call, _ string) {
				if len(c.requestID) != 0 {
					t.Errorf("request id metadata = %q, want none", c.requestID)
				}
			}},
		{name: "request ids agree", method: "POST", path: "/v1/tree/a", header: map[string]string{"Idempotency-Key": "k3", "Paddock-Request-Id": "k3"}, wantStatus: 200, wantCall: "Create /a",
			check: func(t *testing.T, c call, _ string) {
				// One value: the server refuses a request id key with two.
				if len(c.requestID) != 1 || c.requestID[0] != "k3" {
					t.Errorf("request id metadata = %q, want [k3]", c.requestID)
				}
			}},
		{name: "request ids disagree", method: "POST", path: "/v1/tree/a", header: map[string]string{"Idempotency-Key": "k3", "Paddock-Request-Id": "k4"}, wantStatus: 400, wantCode: codes.InvalidArgument},

		{name: "open session", method: "POST", path: "/v1/sessions", body: `{"timeout_ms":"5000"}`, wantStatus: 200, wantCall: "OpenSession ",
			check: func(t *testing.T, _ call, body string) {
				if !strings.Contains(body, `"session_id":"1152921504606846976"`) {
					t.Errorf("body %s: want the session id as an exact string", body)
				}
			}},
		{name: "no session", method: "GET", path: "/v1/sessions/12", wantStatus: 404, wantCall: "GetSession ", wantCode: codes.NotFound},
		{name: "poll", method: "GET", path: "/v1/poll/a?after_zxid=3&timeout_ms=10", wantStatus: 200, wantCall: "Poll /a"},
		{name: "poll kinds both spellings", method: "GET", path: "/v1/poll/a?kinds=deleted&kinds=EVENT_KIND_CREATED,data-changed", wantStatus: 200, wantCall: "Poll /a",
			check: func(t *testing.T, c call, _ string) {
				got := c.req.(*paddockv1.PollRequest).GetKinds()
				want := []paddockv1.EventKind{paddockv1.EventKind_EVENT_KIND_DELETED, paddockv1.EventKind_EVENT_KIND_CREATED, paddockv1.EventKind_EVENT_KIND_DATA_CHANGED}
				if !slices.Equal(got, want) {
					t.Errorf("kinds = %v, want %v", got, want)
				}
			}},
		{name: "poll bad kind", method: "GET", path: "/v1/poll/a?kinds=bogus", wantStatus: 400, wantCode: codes.InvalidArgument},
		{name: "poll compacted", method: "GET", path: "/v1/poll/compacted", wantStatus: 410, wantCall: "Poll /compacted", wantCode: codes.OutOfRange},
		{name: "unimplemented", method: "GET", path: "/v1/cluster/status", wantStatus: 501, wantCode: codes.Unimplemented},
		{name: "no route", method: "GET", path: "/v1/nothing", wantStatus: 404, wantCode: codes.NotFound},
		{name: "not under v1", method: "GET", path: "/no/such/path", wantStatus: 404, wantCode: codes.NotFound},
		{name: "wrong method", method: "PATCH", path: "/v1/tree/a", wantStatus: 405, wantCode: codes.Unimplemented},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := g.do(t, tt.method, tt.path, tt.body, tt.header)
			calls := g.rec.take()
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("%s %s: status %d, want %d (body %s)", tt.method, tt.path, resp.StatusCode, tt.wantStatus, body)
			}
			if got := resp.Header.Get("Served-By"); got != "n9" {
				t.Errorf("%s %s: Served-By = %q, want n9", tt.method, tt.path, got)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("%s %s: Content-Type = %q, want application/json", tt.method, tt.path, ct)
			}
			var got []string
			for _, c := range calls {
				got = append(got, c.method+" "+rpcPath(c.req))
			}
			var want []string
			if tt.wantCall != "" {
				want = []string{tt.wantCall}
			}
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Fatalf("%s %s: calls %q, want %q", tt.method, tt.path, got, want)
			}
			if tt.wantStatus != 200 {
				var st struct {
					Code    *int            `json:"code"`
					Message string          `json:"message"`
					Details json.RawMessage `json:"details"`
				}
				if err := json.Unmarshal([]byte(body), &st); err != nil || st.Code == nil || st.Message == "" || st.Details == nil {
					t.Fatalf("%s %s: error body %s, want {code, message, details} (%v)", tt.method, tt.path, body, err)
				}
				if codes.Code(*st.Code) != tt.wantCode {
					t.Errorf("%s %s: code %v, want %v (message %q)", tt.method, tt.path, codes.Code(*st.Code), tt.wantCode, st.Message)
				}
			}
			if tt.check != nil {
				var c call
				if len(calls) > 0 {
					c = calls[0]
				}
				tt.check(t, c, body)
			}
		})
	}
}

func TestHTTPStatusTable(t *testing.T) {
	tests := []struct {
		code codes.Code
		want int
	}{
		{codes.OK, 200},
		{codes.InvalidArgument, 400},
		{codes.NotFound, 404},
		{codes.AlreadyExists, 409},
		{codes.FailedPrecondition, 412},
		{codes.OutOfRange, 410},
		{codes.Unavailable, 503},
		{codes.DeadlineExceeded, 504},
		{codes.Canceled, 499},
		{codes.ResourceExhausted, 429},
		{codes.Aborted, 409},
		{codes.Unauthenticated, 401},
		{codes.PermissionDenied, 403},
		{codes.Unimplemented, 501},
		{codes.Internal, 500},
		{codes.Unknown, 500},
		{codes.DataLoss, 500},
	}
	for _, tt := range tests {
		t.Run(tt.code.String(), func(t *testing.T) {
			if got := httpStatus(tt.code); got != tt.want {
				t.Errorf("httpStatus(%v) = %d, want %d", tt.code, got, tt.want)
			}
		})
	}
	// Every domain error the rpc table maps lands on a distinct enough
	// status: a bad version is never mistaken for a bad path or "exists".
	for _, ec := range errorCodes {
		if got := httpStatus(ec.code); got < 400 {
			t.Errorf("%v (%v) maps to HTTP %d, want an error status", ec.err, ec.code, got)
		}
	}
	if a, b, c := httpStatus(codes.FailedPrecondition), httpStatus(codes.InvalidArgument), httpStatus(codes.AlreadyExists); a == b || a == c {
		t.Errorf("FailedPrecondition %d shares a status with InvalidArgument %d or AlreadyExists %d", a, b, c)
	}
}

func TestHTTPHealthAndMetrics(t *testing.T) {
	g := newGatewayFixture(t)
	tests := []struct {
		path       string
		wantStatus int
		wantBody   string
	}{
		{"/healthz", 200, "ok"},
		{"/readyz", 200, "ok"},
		{"/metrics", 200, "paddock_test_total 0"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, body := g.do(t, "GET", tt.path, "", nil)
			if resp.StatusCode != tt.wantStatus || !strings.Contains(body, tt.wantBody) {
				t.Errorf("GET %s: %d %q, want %d containing %q", tt.path, resp.StatusCode, body, tt.wantStatus, tt.wantBody)
			}
			if got := resp.Header.Get("Served-By"); got != "n9" {
				t.Errorf("GET %s: Served-By = %q, want n9", tt.path, got)
			}
		})
	}
}

func TestHTTPPprof(t *testing.T) {
	tests := []struct {
		name       string
		opts       []HTTPOption
		path       string
		wantStatus int
		wantBody   string
	}{
		{"off: index is the gateway's 404", nil, "/debug/pprof/", http.StatusNotFound, ""},
		{"off: heap is the gateway's 404", nil, "/debug/pprof/heap?debug=1", http.StatusNotFound, ""},
		{"on: index", []HTTPOption{WithPprof()}, "/debug/pprof/", http.StatusOK, "goroutine"},
		{"on: heap", []HTTPOption{WithPprof()}, "/debug/pprof/heap?debug=1", http.StatusOK, "heap profile"},
		{"on: cmdline", []HTTPOption{WithPprof()}, "/debug/pprof/cmdline", http.StatusOK, ""},
		{"on: gateway still served", []HTTPOption{WithPprof()}, "/v1/nope", http.StatusNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGatewayFixture(t, tt.opts...)
			resp, body := g.do(t, http.MethodGet, tt.path, "", nil)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("GET %s status = %d, want %d; body %q", tt.path, resp.StatusCode, tt.wantStatus, body)
			}
			if !strings.Contains(body, tt.wantBody) {
				t.Errorf("GET %s body = %q, want it to contain %q", tt.path, body, tt.wantBody)
			}
			if got := resp.Header.Get(ServedByHTTPHeader); got != "n9" {
				t.Errorf("GET %s %s = %q, want n9", tt.path, ServedByHTTPHeader, got)
			}
		})
	}
}

func TestHTTPWatchStream(t *testing.T) {
	g := newGatewayFixture(t)
	t.Run("ndjson flushed per message", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, "GET", g.url+"/v1/watch/services?recursive=true", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET /v1/watch/services: %v", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Served-By") != "n9" {
			t.Fatalf("GET /v1/watch/services: status %d, Served-By %q; want 200, n9", resp.StatusCode, resp.Header.Get("Served-By"))
		}
		lines := bufio.NewScanner(resp.Body)
		// The fake sends the second message only after this read: the
		// first line arrives only if the gateway flushed it.
		if !lines.Scan() {
			t.Fatalf("first line: %v", lines.Err())
		}
		first := lines.Text()
		g.watch.next <- struct{}{}
		if !lines.Scan() {
			t.Fatalf("second line: %v", lines.Err())
		}
		second := lines.Text()
		if lines.Scan() {
			t.Errorf("third line %q, want the end of the stream", lines.Text())
		}
		for _, tc := range []struct{ line, want string }{
			{first, `"created":true`},
			{second, `"path":"/services/x"`},
			{second, `"kind":"EVENT_KIND_CREATED"`},
		} {
			var m map[string]json.RawMessage
			if err := json.Unmarshal([]byte(tc.line), &m); err != nil || m["result"] == nil {
				t.Errorf("line %q: want a JSON object with result (%v)", tc.line, err)
			}
			if !strings.Contains(tc.line, tc.want) {
				t.Errorf("line %q: want %s", tc.line, tc.want)
			}
		}
		calls := g.rec.take()
		if len(calls) != 1 || calls[0].method != "Watch" || rpcPath(calls[0].req) != "/services" || !calls[0].req.(*paddockv1.WatchRequest).GetRecursive() {
			t.Errorf("calls %v, want one recursive Watch of /services", calls)
		}
	})
	tests := []struct {
		name, path string
		wantStatus int
		wantCode   codes.Code
	}{
		{"compacted", "/v1/watch/compacted", 410, codes.OutOfRange},
		{"bad path", "/v1/watch/a//b", 400, codes.InvalidArgument},
		{"missing", "/v1/watch/missing", 404, codes.NotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := g.do(t, "GET", tt.path, "", nil)
			g.rec.take()
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("GET %s: status %d, want %d (body %s)", tt.path, resp.StatusCode, tt.wantStatus, body)
			}
			if got := resp.Header.Get("Served-By"); got != "n9" {
				t.Errorf("GET %s: Served-By = %q, want n9", tt.path, got)
			}
			var chunk struct {
				Error struct {
					Code int `json:"code"`
				} `json:"error"`
			}
			if err := json.Unmarshal([]byte(body), &chunk); err != nil || codes.Code(chunk.Error.Code) != tt.wantCode {
				t.Errorf("GET %s: body %s, want an error line with code %v (%v)", tt.path, body, tt.wantCode, err)
			}
		})
	}
}

func TestStreamStatusWriterFlushes(t *testing.T) {
	rec := httptest.NewRecorder()
	var w http.ResponseWriter = &streamStatusWriter{ResponseWriter: rec}
	f, ok := w.(http.Flusher)
	if !ok {
		t.Fatal("streamStatusWriter is not an http.Flusher")
	}
	f.Flush()
	if !rec.Flushed {
		t.Error("Flush did not reach the underlying writer")
	}
	if err := http.NewResponseController(w).Flush(); err != nil {
		t.Errorf("ResponseController.Flush: %v", err)
	}
}

// TestHTTPNodeUnreachable: a gateway that cannot connect to its node says
// so in the user's terms, not with gRPC's dial error.
func TestHTTPNodeUnreachable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h, err := newHTTPHandler(ctx, httpNode{id: "n9", ready: func() bool { return false }, metrics: prometheus.NewRegistry()}, dead)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(h)
	defer hs.Close()
	g := &gatewayFixture{url: hs.URL}
	resp, body := g.do(t, "GET", "/v1/tree/a", "", nil)
	var st struct{ Message string }
	_ = json.Unmarshal([]byte(body), &st)
	want := "no node reachable: " + dead + " (connection refused)"
	if resp.StatusCode != 503 || st.Message != want {
		t.Errorf("GET /v1/tree/a = %d %q, want 503 %q", resp.StatusCode, st.Message, want)
	}
}
