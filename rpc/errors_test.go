package rpc_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/paddock/paddock/node"
	"github.com/paddock/paddock/node/nodetest"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
	"github.com/paddock/paddock/rpc"
)

// served is one node of threeNodes with its gRPC server and a connection.
type served struct {
	n    *node.Node
	addr string
	conn *grpc.ClientConn
	stop func()
}

// threeNodes starts a three-node cluster (nodetest: in-memory raft
// transport, real gRPC servers on 127.0.0.1) and waits for a leader. stop
// of each node is idempotent.
func threeNodes(t *testing.T) []*served {
	t.Helper()
	c := nodetest.NewCluster(t, 3, nodetest.WithServer(func(n *node.Node) *grpc.Server { return rpc.NewServer(n) }))
	c.WaitLeader(t)
	var out []*served
	for i := range c.Size() {
		conn, err := grpc.NewClient(c.GRPCAddr(i), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(rpc.MaxRequestSize)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		stopped := false
		out = append(out, &served{n: c.Node(i), addr: c.GRPCAddr(i), conn: conn, stop: func() {
			if !stopped {
				stopped = true
				c.Stop(i)
			}
		}})
	}
	return out
}

// leaderAndFollower returns the leader of nodes and one follower.
func leaderAndFollower(t *testing.T, nodes []*served) (leader, follower *served) {
	t.Helper()
	for _, s := range nodes {
		if s.n.IsLeader() {
			leader = s
		} else if follower == nil {
			follower = s
		}
	}
	if leader == nil || follower == nil {
		t.Fatal("no leader and follower")
	}
	return leader, follower
}

// TestErrorMessagesOverGRPC: a user reads the error table's words and the
// error's detail, never a Go error string with its package prefixes, and
// the same message from a follower (which forwards writes to the leader)
// as from the leader.
func TestErrorMessagesOverGRPC(t *testing.T) {
	nodes := threeNodes(t)
	leader, follower := leaderAndFollower(t, nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	setup := paddockv1.NewTreeServiceClient(leader.conn)
	for _, p := range []string{"/a", "/p", "/p/c"} {
		if _, err := setup.Create(ctx, &paddockv1.CreateRequest{Path: p}); err != nil {
			t.Fatalf("Create(%s): %v", p, err)
		}
	}
	five := int32(5)
	big := make([]byte, 2<<20)
	tests := []struct {
		name     string
		call     func(tree paddockv1.TreeServiceClient, sess paddockv1.SessionServiceClient) error
		wantCode codes.Code
		wantMsg  string
	}{
		{"not found", func(tree paddockv1.TreeServiceClient, _ paddockv1.SessionServiceClient) error {
			_, err := tree.Get(ctx, &paddockv1.GetRequest{Path: "/missing"})
			return err
		}, codes.NotFound, "node does not exist: /missing"},
		{"delete not found", func(tree paddockv1.TreeServiceClient, _ paddockv1.SessionServiceClient) error {
			_, err := tree.Delete(ctx, &paddockv1.DeleteRequest{Path: "/missing"})
			return err
		}, codes.NotFound, "node does not exist: /missing"},
		{"exists", func(tree paddockv1.TreeServiceClient, _ paddockv1.SessionServiceClient) error {
			_, err := tree.Create(ctx, &paddockv1.CreateRequest{Path: "/a"})
			return err
		}, codes.AlreadyExists, "node already exists: /a"},
		{"bad version", func(tree paddockv1.TreeServiceClient, _ paddockv1.SessionServiceClient) error {
			_, err := tree.Set(ctx, &paddockv1.SetRequest{Path: "/a", Version: &five})
			return err
		}, codes.FailedPrecondition, "version does not match: /a is at version 0, not 5"},
		{"not empty", func(tree paddockv1.TreeServiceClient, _ paddockv1.SessionServiceClient) error {
			_, err := tree.Delete(ctx, &paddockv1.DeleteRequest{Path: "/p"})
			return err
		}, codes.FailedPrecondition, "node has children: /p has 1"},
		{"bad path", func(tree paddockv1.TreeServiceClient, _ paddockv1.SessionServiceClient) error {
			_, err := tree.Create(ctx, &paddockv1.CreateRequest{Path: "a//b"})
			return err
		}, codes.InvalidArgument, `bad path: "a//b" is not absolute`},
		{"too large", func(tree paddockv1.TreeServiceClient, _ paddockv1.SessionServiceClient) error {
			_, err := tree.Create(ctx, &paddockv1.CreateRequest{Path: "/big", Data: big})
			return err
		}, codes.InvalidArgument, "data too large: 2097152 bytes, limit 1048576"},
		{"session expired", func(tree paddockv1.TreeServiceClient, _ paddockv1.SessionServiceClient) error {
			_, err := tree.Create(ctx, &paddockv1.CreateRequest{Path: "/e", Type: paddockv1.NodeType_NODE_TYPE_EPHEMERAL, SessionId: 999})
			return err
		}, codes.FailedPrecondition, "session expired or unknown: session 999"},
		{"multi", func(tree paddockv1.TreeServiceClient, _ paddockv1.SessionServiceClient) error {
			_, err := tree.Multi(ctx, &paddockv1.MultiRequest{Ops: []*paddockv1.Op{
				{Op: &paddockv1.Op_Create{Create: &paddockv1.CreateRequest{Path: "/m"}}},
				{Op: &paddockv1.Op_Delete{Delete: &paddockv1.DeleteRequest{Path: "/missing"}}},
			}})
			return err
		}, codes.NotFound, "node does not exist: /missing (multi op 1)"},
		{"negative session timeout", func(_ paddockv1.TreeServiceClient, sess paddockv1.SessionServiceClient) error {
			_, err := sess.OpenSession(ctx, &paddockv1.OpenSessionRequest{TimeoutMs: -1})
			return err
		}, codes.InvalidArgument, "bad argument: negative session timeout -1ms"},
		{"int64 min session timeout", func(_ paddockv1.TreeServiceClient, sess paddockv1.SessionServiceClient) error {
			_, err := sess.OpenSession(ctx, &paddockv1.OpenSessionRequest{TimeoutMs: math.MinInt64})
			return err
		}, codes.InvalidArgument, "bad argument: negative session timeout -9223372036854775808ms"},
		{"no such session", func(_ paddockv1.TreeServiceClient, sess paddockv1.SessionServiceClient) error {
			_, err := sess.GetSession(ctx, &paddockv1.GetSessionRequest{SessionId: 999})
			return err
		}, codes.NotFound, "no such session: 999"},
	}
	for _, on := range []struct {
		name string
		s    *served
	}{{"leader", leader}, {"follower", follower}} {
		tree, sess := paddockv1.NewTreeServiceClient(on.s.conn), paddockv1.NewSessionServiceClient(on.s.conn)
		for _, tt := range tests {
			t.Run(on.name+"/"+tt.name, func(t *testing.T) {
				err := tt.call(tree, sess)
				st := status.Convert(err)
				if st.Code() != tt.wantCode || st.Message() != tt.wantMsg {
					t.Errorf("error = %v %q, want %v %q", st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
				}
			})
		}
	}

	// A timeout too long for a Duration is clamped like any long one,
	// not wrapped to a negative.
	resp, err := paddockv1.NewSessionServiceClient(follower.conn).OpenSession(ctx, &paddockv1.OpenSessionRequest{TimeoutMs: math.MaxInt64})
	if err != nil || resp.GetTimeoutMs() != (60*time.Second).Milliseconds() {
		t.Errorf("OpenSession(int64 max) = %v, %v; want the 60s maximum", resp, err)
	}

	// No leader: the other two nodes are gone.
	for _, s := range nodes {
		if s != follower {
			s.stop()
		}
	}
	_, err = paddockv1.NewTreeServiceClient(follower.conn).Create(ctx, &paddockv1.CreateRequest{Path: "/nl"})
	if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != "no leader" {
		t.Errorf("Create with no leader = %v %q, want Unavailable %q", st.Code(), st.Message(), "no leader")
	}
}

// TestHTTPBadInputOverRealNode: over HTTP, bad input is a 400 with the
// error table's message: a value of 2 MiB (not gRPC's 429), a path that is
// not UTF-8 (not a 500), data after the JSON body (not ignored).
func TestHTTPBadInputOverRealNode(t *testing.T) {
	nodes := threeNodes(t)
	leader, follower := leaderAndFollower(t, nodes)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h, err := rpc.NewHTTPHandler(ctx, follower.n, follower.addr)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(h)
	defer hs.Close()
	body := func(n int) string {
		return fmt.Sprintf(`{"data":%q}`, base64.StdEncoding.EncodeToString(make([]byte, n)))
	}
	tests := []struct {
		name, method, path, body string
		wantStatus               int
		wantMsg                  string
	}{
		{"2 MiB", "POST", "/v1/tree/big", body(2 << 20), 400, "data too large: 2097152 bytes, limit 1048576"},
		{"1.5 MiB", "POST", "/v1/tree/big", body(3 << 19), 400, "data too large: 1572864 bytes, limit 1048576"},
		{"16.5 MiB", "POST", "/v1/tree/big", body(33 << 19), 400, "data too large: request of 17301515 bytes, limit 1048576 bytes of data"},
		{"20 MiB", "POST", "/v1/tree/big", body(20 << 20), 400, "data too large: request body over 23418196 bytes, limit 1048576 bytes of data"},
		{"invalid utf-8", "GET", "/v1/tree/bad%FFutf", "", 400, `bad path: "/bad\xffutf" is not valid UTF-8`},
		{"trailing garbage", "POST", "/v1/tree/t", `{"data":"eA=="} xyz`, 400, "data after the JSON body: invalid character 'x' looking for beginning of value"},
		{"trailing second value", "POST", "/v1/tree/t", `{"data":"eA=="} {}`, 400, "data after the JSON body: {"},
		{"trailing space", "POST", "/v1/tree/t2", "{\"data\":\"eA==\"} \n", 200, ""},
		{"multi", "POST", "/v1/multi", `{"ops":[{"delete":{"path":"/nope"}}]}`, 404, "node does not exist: /nope (multi op 0)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, hs.URL+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			var st struct{ Message string }
			_ = json.Unmarshal(b, &st)
			if resp.StatusCode != tt.wantStatus || st.Message != tt.wantMsg {
				t.Errorf("%s %s = %d %q, want %d %q", tt.method, tt.path, resp.StatusCode, st.Message, tt.wantStatus, tt.wantMsg)
			}
		})
	}
	// Nothing of the refused requests was written.
	for _, p := range []string{"/big", "/t"} {
		if _, err := paddockv1.NewTreeServiceClient(leader.conn).Get(ctx, &paddockv1.GetRequest{Path: p}); status.Code(err) != codes.NotFound {
			t.Errorf("Get(%s) = %v, want NotFound", p, err)
		}
	}
}
