package rpc_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/paddock/paddock/node"
	"github.com/paddock/paddock/node/nodetest"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
	"github.com/paddock/paddock/rpc"
)

// wsHTTP sends a request to the gateway, with an Idempotency-Key when key
// is not empty, and decodes the JSON answer.
func wsHTTP(t *testing.T, method, url, body, key string) (int, map[string]any) {
	t.Helper()
	header := http.Header{}
	if key != "" {
		header.Set("Idempotency-Key", key)
	}
	code, b := sendHTTP(t, method, url, body, header)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s %s: %d %q is not JSON: %v", method, url, code, b, err)
	}
	return code, out
}

// sendHTTP sends one request and returns the status and the body.
func sendHTTP(t *testing.T, method, url, body string, header http.Header) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	maps.Copy(req.Header, header)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// metricLine is the value of the series named exactly series (name and
// labels as /metrics prints them) on the handler at base, "" when absent.
func metricLine(t *testing.T, base, series string) string {
	t.Helper()
	_, b := sendHTTP(t, "GET", base+"/metrics", "", nil)
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

// wantHTTPError checks an error answer's HTTP status, gRPC code and the
// start of its message.
func wantHTTPError(t *testing.T, what string, code int, body map[string]any, wantStatus int, wantCode codes.Code, wantMsg string) {
	t.Helper()
	msg, _ := body["message"].(string)
	if code != wantStatus || body["code"] != float64(wantCode) || !strings.HasPrefix(msg, wantMsg) {
		t.Errorf("%s = %d %v; want %d, code %d (%v), message %q...", what, code, body, wantStatus, wantCode, wantCode, wantMsg)
	}
}

// TestWebSessionOverGRPCAndHTTP: the web session calls through a follower
// (which hands them to the leader) over the HTTP gateway and gRPC: JSON
// names and types (data base64, versions and tokens as strings), the
// status of each refusal (locked: 409 ABORTED, lock held or stale version:
// 412 FAILED_PRECONDITION, bad input: 400 INVALID_ARGUMENT), and a write
// retried with its Idempotency-Key after another request took the lock
// gets its first answer.
func TestWebSessionOverGRPCAndHTTP(t *testing.T) {
	checkLeaks(t)
	nodes := threeNodes(t)
	_, follower := leaderAndFollower(t, nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	h, err := rpc.NewHTTPHandler(ctx, follower.n, follower.addr)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(h)
	defer hs.Close()
	ws := paddockv1.NewWebSessionServiceClient(follower.conn)
	url := hs.URL + "/v1/web-sessions"

	// Create over HTTP: an id in the asked alphabet, valid at once.
	code, body := wsHTTP(t, "POST", url, `{"sid_bits_per_character":6,"max_lifetime_ms":"60000"}`, "")
	id, _ := body["id"].(string)
	if code != 200 || len(id) != 22 || body["version"] != "1" {
		t.Fatalf("POST /v1/web-sessions = %d %v; want an id of 22 characters, version \"1\"", code, body)
	}
	// The gateway serves the web-session routes in this process, through
	// the gRPC server's interceptors all the same: the call is counted
	// under its method, and answered with the served-by header.
	if got := metricLine(t, hs.URL, `paddock_grpc_server_handled_total{grpc_code="OK",grpc_method="CreateWebSession",grpc_service="paddock.v1.WebSessionService",grpc_type="unary"}`); got != "1" {
		t.Errorf("CreateWebSession calls counted OK after one over HTTP = %q, want 1", got)
	}
	if resp, err := http.Get(url + "/" + id); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
		if got := resp.Header.Get("Grpc-Metadata-Served-By"); got != follower.n.ID() {
			t.Errorf("Grpc-Metadata-Served-By = %q, want %q", got, follower.n.ID())
		}
	}
	if v, err := ws.ValidateWebSession(ctx, &paddockv1.ValidateWebSessionRequest{Id: id}); err != nil || !v.GetValid() {
		t.Fatalf("ValidateWebSession(new id) = %v, %v; want valid", v, err)
	}
	if code, body := wsHTTP(t, "GET", url+"/"+id, "", ""); code != 200 || body["valid"] != true {
		t.Errorf("GET /v1/web-sessions/ID = %d %v; want valid", code, body)
	}

	// A locked read: version and token are strings, data "" for an empty
	// session.
	code, body = wsHTTP(t, "POST", url+"/"+id+"/read", `{"lock":true,"lock_ttl_ms":"10000"}`, "")
	tok, _ := body["token"].(string)
	if code != 200 || body["found"] != true || body["version"] != "1" || body["data"] != "" || tok == "" || tok == "0" ||
		body["max_lifetime_ms"] != "60000" {
		t.Fatalf("locked read = %d %v; want found, version \"1\", a token", code, body)
	}
	// A second locked read waits wait_ms, then 409 ABORTED.
	start := time.Now()
	code, body = wsHTTP(t, "POST", url+"/"+id+"/read", `{"lock":true,"wait_ms":"300"}`, "")
	if took := time.Since(start); took < 300*time.Millisecond || took > 3*time.Second {
		t.Errorf("locked read with wait_ms 300 took %v", took)
	}
	wantHTTPError(t, "locked read of a held lock", code, body, 409, codes.Aborted, "web session locked by another request")
	// Writes without the token are refused while the lock is held.
	code, body = wsHTTP(t, "PUT", url+"/"+id, `{"data":"eA==","version":"1"}`, "")
	wantHTTPError(t, "write without the token", code, body, 412, codes.FailedPrecondition, "web session lock held by another request")
	code, body = wsHTTP(t, "DELETE", url+"/"+id, "", "")
	wantHTTPError(t, "destroy without the token", code, body, 412, codes.FailedPrecondition, "web session lock held by another request")

	// The holder writes binary data; the write releases the lock.
	data := []byte("n|i:1;\x00\xff")
	put := `{"data":"` + base64.StdEncoding.EncodeToString(data) + `","version":"1","token":"` + tok + `"}`
	code, body = wsHTTP(t, "PUT", url+"/"+id, put, "k-write-1")
	if code != 200 || body["version"] != "2" {
		t.Fatalf("write with the token = %d %v; want version \"2\"", code, body)
	}
	// Another request takes the lock at once.
	r2, err := ws.ReadWebSession(ctx, &paddockv1.ReadWebSessionRequest{Id: id, Lock: true, WaitMs: 1000})
	if err != nil || !bytes.Equal(r2.GetData(), data) || r2.GetVersion() != 2 || r2.GetToken() == 0 {
		t.Fatalf("ReadWebSession after the write = %v, %v; want the data, version 2, a token", r2, err)
	}
	// The first write, retried with its key (its answer lost), gets its
	// first answer although the lock is another's now.
	code, body = wsHTTP(t, "PUT", url+"/"+id, put, "k-write-1")
	if code != 200 || body["version"] != "2" {
		t.Errorf("write retried with its Idempotency-Key = %d %v; want its first answer, version \"2\"", code, body)
	}
	// The same over gRPC metadata.
	wctx := metadata.AppendToOutgoingContext(ctx, rpc.RequestIDMetadata, "k-write-1")
	if w, err := ws.WriteWebSession(wctx, &paddockv1.WriteWebSessionRequest{Id: id, Data: data, Version: 1, Token: 1}); err != nil || w.GetVersion() != 2 {
		t.Errorf("WriteWebSession retried with its request id = %v, %v; want version 2", w, err)
	}
	// A stale version with the current token: refused, nothing changes.
	code, body = wsHTTP(t, "PUT", url+"/"+id, `{"data":"eQ==","version":"1","token":"`+itoa(r2.GetToken())+`","keep_lock":true}`, "")
	wantHTTPError(t, "stale write", code, body, 412, codes.FailedPrecondition, "version does not match")
	// Too large: INVALID_ARGUMENT.
	_, err = ws.WriteWebSession(ctx, &paddockv1.WriteWebSessionRequest{Id: id, Data: make([]byte, node.DefaultWebSessionMaxBytes+1), Version: 2, Token: r2.GetToken(), KeepLock: true})
	if status.Code(err) != codes.InvalidArgument || !strings.HasPrefix(status.Convert(err).Message(), "data too large") {
		t.Errorf("WriteWebSession of %d bytes = %v; want InvalidArgument data too large", node.DefaultWebSessionMaxBytes+1, err)
	}
	if g, err := ws.ReadWebSession(ctx, &paddockv1.ReadWebSessionRequest{Id: id}); err != nil || g.GetVersion() != 2 || !bytes.Equal(g.GetData(), data) {
		t.Errorf("ReadWebSession after the refusals = %v, %v; want version 2 unchanged", g, err)
	}

	// Release, once; touch; destroy with ?token=, once.
	rel := `{"token":"` + itoa(r2.GetToken()) + `"}`
	if code, body := wsHTTP(t, "POST", url+"/"+id+"/release", rel, ""); code != 200 || body["released"] != true {
		t.Errorf("release = %d %v; want released", code, body)
	}
	if code, body := wsHTTP(t, "POST", url+"/"+id+"/release", rel, ""); code != 200 || body["released"] != false {
		t.Errorf("second release = %d %v; want released false", code, body)
	}
	if code, body := wsHTTP(t, "POST", url+"/"+id+"/touch", `{}`, ""); code != 200 || body["found"] != true {
		t.Errorf("touch = %d %v; want found", code, body)
	}
	code, body = wsHTTP(t, "POST", url+"/"+id+"/read", `{"lock":true}`, "k-read-1")
	tok, _ = body["token"].(string)
	if code != 200 || tok == "" || tok == "0" {
		t.Fatalf("locked read = %d %v", code, body)
	}
	// The read retried with its Idempotency-Key (its answer lost) gets
	// its lock back at once; another key waits for it.
	code, body = wsHTTP(t, "POST", url+"/"+id+"/read", `{"lock":true,"wait_ms":"5000"}`, "k-read-1")
	if code != 200 || body["token"] != tok {
		t.Errorf("locked read retried with its key = %d %v; want token %s at once", code, body, tok)
	}
	code, body = wsHTTP(t, "POST", url+"/"+id+"/read", `{"lock":true,"wait_ms":"100"}`, "k-read-2")
	wantHTTPError(t, "locked read with another key", code, body, 409, codes.Aborted, "web session locked by another request")
	// A read without the lock ignores its key, as other reads do; a
	// locked read's key is checked like a write's.
	long := strings.Repeat("k", 65)
	if code, body := wsHTTP(t, "POST", url+"/"+id+"/read", `{}`, long); code != 200 || body["found"] != true {
		t.Errorf("unlocked read with a key of 65 bytes = %d %v; want the session", code, body)
	}
	code, body = wsHTTP(t, "POST", url+"/"+id+"/read", `{"lock":true,"wait_ms":"1"}`, long)
	wantHTTPError(t, "locked read with a key of 65 bytes", code, body, 400, codes.InvalidArgument, "bad argument")
	if code, body := wsHTTP(t, "DELETE", url+"/"+id+"?token="+tok, "", ""); code != 200 || body["destroyed"] != true {
		t.Errorf("destroy with the token = %d %v; want destroyed", code, body)
	}
	if code, body := wsHTTP(t, "DELETE", url+"/"+id, "", ""); code != 200 || body["destroyed"] != false {
		t.Errorf("second destroy = %d %v; want destroyed false", code, body)
	}
	if code, body := wsHTTP(t, "GET", url+"/"+id, "", ""); code != 200 || body["valid"] != false {
		t.Errorf("GET of a destroyed session = %d %v; want valid false", code, body)
	}
	if code, body := wsHTTP(t, "POST", url+"/"+id+"/read", `{}`, ""); code != 200 || body["found"] != false || body["version"] != "0" {
		t.Errorf("read of a destroyed session = %d %v; want found false, version \"0\"", code, body)
	}

	// Bad input: 400, nothing created.
	for _, c := range []struct{ what, method, path, body string }{
		{"an id outside PHP's grammar", "GET", "/a!b", ""},
		{"an id of 257 characters", "POST", "/" + strings.Repeat("a", 257) + "/read", `{}`},
		{"sid_bits_per_character 7", "POST", "", `{"sid_bits_per_character":7}`},
		{"a lease over 10 minutes", "POST", "/abc/read", `{"lock":true,"lock_ttl_ms":"600001"}`},
		{"a negative wait", "POST", "/abc/read", `{"lock":true,"wait_ms":"-1"}`},
		{"a negative lifetime", "PUT", "/abc", `{"version":"0","max_lifetime_ms":"-5"}`},
		{"an unknown field", "POST", "/abc/read", `{"lock":true,"timeout_ms":"5"}`},
		{"write mode 7", "PUT", "/abc", `{"version":"0","mode":7}`},
		{"an unknown write mode", "PUT", "/abc", `{"version":"0","mode":"WEB_SESSION_WRITE_MODE_LATER"}`},
	} {
		code, body := wsHTTP(t, c.method, url+c.path, c.body, "")
		if code != 400 || body["code"] != float64(codes.InvalidArgument) {
			t.Errorf("%s: %s %s = %d %v; want 400 INVALID_ARGUMENT", c.what, c.method, c.path, code, body)
		}
	}
	if v, err := ws.ValidateWebSession(ctx, &paddockv1.ValidateWebSessionRequest{Id: "abc"}); err != nil || v.GetValid() {
		t.Errorf("ValidateWebSession(abc) after refused calls = %v, %v; want not valid", v, err)
	}
}

// TestWebSessionDelayedOverGRPCAndHTTP: a delayed write over the gateway
// (mode by name) and gRPC through a follower, read back at once; a mode
// out of the enum is INVALID_ARGUMENT.
func TestWebSessionDelayedOverGRPCAndHTTP(t *testing.T) {
	checkLeaks(t)
	nodes := threeNodes(t)
	_, follower := leaderAndFollower(t, nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	h, err := rpc.NewHTTPHandler(ctx, follower.n, follower.addr)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(h)
	defer hs.Close()
	ws := paddockv1.NewWebSessionServiceClient(follower.conn)
	url := hs.URL + "/v1/web-sessions/dhttp"

	code, body := wsHTTP(t, "POST", url+"/read", `{"lock":true}`, "")
	tok, _ := body["token"].(string)
	if code != 200 || tok == "" {
		t.Fatalf("locked read = %d %v", code, body)
	}
	code, body = wsHTTP(t, "PUT", url, `{"data":"YQ==","version":"0","token":"`+tok+`","mode":"WEB_SESSION_WRITE_MODE_DELAYED"}`, "")
	if code != 200 || body["version"] != "1" {
		t.Fatalf("delayed PUT = %d %v; want version \"1\"", code, body)
	}
	r, err := ws.ReadWebSession(ctx, &paddockv1.ReadWebSessionRequest{Id: "dhttp", Lock: true})
	if err != nil || string(r.GetData()) != "a" || r.GetVersion() != 1 {
		t.Fatalf("read after the delayed write = %v, %v; want a, version 1", r, err)
	}
	w, err := ws.WriteWebSession(ctx, &paddockv1.WriteWebSessionRequest{Id: "dhttp", Data: []byte("b"), Version: 1, Token: r.GetToken(),
		Mode: paddockv1.WebSessionWriteMode_WEB_SESSION_WRITE_MODE_DELAYED})
	if err != nil || w.GetVersion() != 2 {
		t.Fatalf("delayed WriteWebSession = %v, %v; want version 2", w, err)
	}
	_, err = ws.WriteWebSession(ctx, &paddockv1.WriteWebSessionRequest{Id: "dhttp", Data: []byte("c"), Version: 2, Mode: 9})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "write mode 9") {
		t.Errorf("WriteWebSession with mode 9 = %v; want InvalidArgument", err)
	}
	if g, err := ws.ReadWebSession(ctx, &paddockv1.ReadWebSessionRequest{Id: "dhttp"}); err != nil || string(g.GetData()) != "b" || g.GetVersion() != 2 {
		t.Errorf("ReadWebSession = %v, %v; want b, version 2", g, err)
	}
}

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }

// TestLeaderHTTPHeader: every HTTP answer of a node that knows the leader
// carries Paddock-Leader, the HTTP address the leader registered: on a
// follower, so that a client can call the leader directly next time,
// and on the leader itself.
func TestLeaderHTTPHeader(t *testing.T) {
	checkLeaks(t)
	c := nodetest.NewCluster(t, 3, nodetest.WithServer(func(n *node.Node) *grpc.Server { return rpc.NewServer(n) }),
		nodetest.WithConfig(func(cfg *node.Config) { cfg.HTTPAddr = "web-" + cfg.ID + ".example:2282" }))
	c.WaitLeader(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range c.Size() {
		n := c.Node(i)
		h, err := rpc.NewHTTPHandler(ctx, n, c.GRPCAddr(i))
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(h)
		defer hs.Close()
		// Registration is a raft write of each node's own: poll until
		// the leader's is applied here.
		var got, want string
		deadline := time.Now().Add(20 * time.Second)
		for {
			_, leader := c.Node(0).Raft().LeaderWithID()
			want = "web-" + string(leader) + ".example:2282"
			resp, err := http.Get(hs.URL + "/v1/web-sessions/abc")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got = resp.Header.Get(rpc.LeaderHTTPHeader)
			if (got == want && leader != "") || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if got != want {
			t.Errorf("%s: %s = %q, want %q", n.ID(), rpc.LeaderHTTPHeader, got, want)
		}
	}
}
