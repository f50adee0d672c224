package e2e

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/textproto"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// curlResponse is one HTTP response as curl received it.
type curlResponse struct {
	code   int
	header textproto.MIMEHeader
	body   string
}

// curl GETs http://addr+path with curl and parses the response.
func curl(t *testing.T, addr, path string) curlResponse {
	t.Helper()
	return curlDo(t, addr, "GET", path, "")
}

// curlDo sends one request with curl: method, path (sent as is: curl
// neither squashes "/./" nor "//"), a body if not "" (with Content-Type
// application/json) and extra headers ("Name: value").
func curlDo(t *testing.T, addr, method, path, body string, headers ...string) curlResponse {
	t.Helper()
	if curlBin == "" {
		t.Fatal("curl is not on PATH")
	}
	// -i prints the status line and headers before the body; --max-time
	// so a hung server fails the call, not the test binary.
	args := []string{"-sS", "-i", "--path-as-is", "--max-time", "5", "-X", method}
	if body != "" {
		args = append(args, "-H", "Content-Type: application/json", "--data-binary", body)
	}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	what := method + " " + addr + path
	r := run(t, nil, curlBin, append(args, "http://"+addr+path)...)
	if r.code != 0 {
		t.Fatalf("curl %s: %v", what, r)
	}
	head, body, ok := strings.Cut(r.stdout, "\r\n\r\n")
	if !ok {
		t.Fatalf("curl %s: no header/body separator in %q", what, r.stdout)
	}
	lines := strings.Split(head, "\r\n")
	// "HTTP/1.1 200 OK"
	fields := strings.Fields(lines[0])
	if len(fields) < 2 {
		t.Fatalf("curl %s: bad status line %q", what, lines[0])
	}
	code, err := strconv.Atoi(fields[1])
	if err != nil {
		t.Fatalf("curl %s: bad status line %q", what, lines[0])
	}
	h := textproto.MIMEHeader{}
	for _, l := range lines[1:] {
		if k, v, ok := strings.Cut(l, ":"); ok {
			h.Add(textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(k)), strings.TrimSpace(v))
		}
	}
	return curlResponse{code: code, header: h, body: body}
}

func TestHTTP(t *testing.T) {
	t.Parallel()
	c := startCluster(t)

	for _, a := range c.agents {
		for _, path := range []string{"/healthz", "/readyz"} {
			resp := curl(t, a.httpAddr, path)
			if resp.code != http.StatusOK {
				t.Errorf("GET %s on %s: status = %d, want %d (body %q)", path, a.id, resp.code, http.StatusOK, resp.body)
			}
			if got := resp.header.Get("Served-By"); got != a.id {
				t.Errorf("GET %s on %s: Served-By = %q, want %q", path, a.id, got, a.id)
			}
		}

		resp := curl(t, a.httpAddr, "/v1/cluster/status")
		if resp.code != http.StatusOK {
			t.Errorf("GET /v1/cluster/status on %s: status = %d, want %d (body %q)", a.id, resp.code, http.StatusOK, resp.body)
		}
		if got := resp.header.Get("Served-By"); got != a.id {
			t.Errorf("GET /v1/cluster/status on %s: Served-By = %q, want %q", a.id, got, a.id)
		}
		if ct := resp.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("GET /v1/cluster/status on %s: Content-Type = %q, want application/json", a.id, ct)
		}
		var st struct {
			ID       string `json:"id"`
			LeaderID string `json:"leader_id"`
			Ready    bool   `json:"ready"`
		}
		if err := json.Unmarshal([]byte(resp.body), &st); err != nil {
			t.Errorf("GET /v1/cluster/status on %s: body is not JSON: %v: %q", a.id, err, resp.body)
		}
		if st.ID != a.id || st.LeaderID == "" || !st.Ready {
			t.Errorf("GET /v1/cluster/status on %s: id %q, leader_id %q, ready %t; want id %q, a leader, ready", a.id, st.ID, st.LeaderID, st.Ready, a.id)
		}

		resp = curl(t, a.httpAddr, "/v1/cluster/members")
		var members struct {
			Members []struct {
				ID       string `json:"id"`
				GrpcAddr string `json:"grpc_addr"`
				HTTPAddr string `json:"http_addr"`
			} `json:"members"`
		}
		if err := json.Unmarshal([]byte(resp.body), &members); err != nil {
			t.Errorf("GET /v1/cluster/members on %s: body is not JSON: %v: %q", a.id, err, resp.body)
		}
		if resp.code != http.StatusOK || len(members.Members) != len(c.agents) {
			t.Errorf("GET /v1/cluster/members on %s: status %d, %d members; want 200, %d", a.id, resp.code, len(members.Members), len(c.agents))
		}
		if got := resp.header.Get("Served-By"); got != a.id {
			t.Errorf("GET /v1/cluster/members on %s: Served-By = %q, want %q", a.id, got, a.id)
		}

		resp = curl(t, a.httpAddr, "/no/such/path")
		if resp.code != http.StatusNotFound {
			t.Errorf("GET /no/such/path on %s: status = %d, want %d", a.id, resp.code, http.StatusNotFound)
		}
		if got := resp.header.Get("Served-By"); got != a.id {
			t.Errorf("GET /no/such/path on %s: Served-By = %q, want %q", a.id, got, a.id)
		}
	}

	// Registration is asynchronous: every member's addresses show up
	// eventually, on every node.
	for _, a := range c.agents {
		ok, last := poll(10*time.Second, func() (bool, string) {
			resp := curl(t, a.httpAddr, "/v1/cluster/members")
			var members struct {
				Members []struct {
					ID       string `json:"id"`
					GrpcAddr string `json:"grpc_addr"`
					HTTPAddr string `json:"http_addr"`
				} `json:"members"`
			}
			_ = json.Unmarshal([]byte(resp.body), &members)
			want := map[string]string{}
			for _, b := range c.agents {
				want[b.id] = b.grpcAddr + " " + b.httpAddr
			}
			for _, m := range members.Members {
				if want[m.ID] == m.GrpcAddr+" "+m.HTTPAddr {
					delete(want, m.ID)
				}
			}
			return len(want) == 0, resp.body
		})
		if !ok {
			t.Errorf("GET /v1/cluster/members on %s: want every member's grpc and http address, last %s", a.id, last)
		}
	}

	// With two of three nodes gone the survivor has no leader: /readyz
	// says 503 while /healthz stays 200.
	l := c.leader()
	survivor := (l + 1) % 3
	for i := range c.agents {
		if i != survivor {
			c.kill9(i)
		}
	}
	s := c.agents[survivor]
	ok, last := poll(15*time.Second, func() (bool, string) {
		resp := curl(t, s.httpAddr, "/readyz")
		return resp.code == http.StatusServiceUnavailable, strconv.Itoa(resp.code) + " " + resp.body
	})
	if !ok {
		t.Errorf("GET /readyz on %s without quorum: last %s, want 503", s.id, last)
	}
	if resp := curl(t, s.httpAddr, "/healthz"); resp.code != http.StatusOK {
		t.Errorf("GET /healthz on %s without quorum: status = %d, want %d", s.id, resp.code, http.StatusOK)
	}
}

// apiError is the JSON body of a failed gateway call (google.rpc.Status).
type apiError struct {
	Code    *int              `json:"code"`
	Message string            `json:"message"`
	Details []json.RawMessage `json:"details"`
}

// call is one gateway request and what must come back: the HTTP status
// and, for a failure, the gRPC code number in the JSON body.
type call struct {
	method, path, body string
	headers            []string
	status             int
	code               int // gRPC code of a failure (0 for success)
}

// do sends c to agent a with curl and checks the status, the Served-By
// header and, for a failure, the {code, message, details} body. It
// decodes a successful JSON body into out, if not nil.
func (c call) do(t *testing.T, a *agent, out any) curlResponse {
	t.Helper()
	what := c.method + " " + c.path + " on " + a.id
	resp := curlDo(t, a.httpAddr, c.method, c.path, c.body, c.headers...)
	if resp.code != c.status {
		t.Errorf("%s: status = %d, want %d (body %s)", what, resp.code, c.status, resp.body)
	}
	if got := resp.header.Get("Served-By"); got != a.id {
		t.Errorf("%s: Served-By = %q, want %q", what, got, a.id)
	}
	if ct := resp.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type = %q, want application/json", what, ct)
	}
	if c.status >= 400 {
		var e apiError
		if err := json.Unmarshal([]byte(resp.body), &e); err != nil || e.Code == nil || e.Message == "" || e.Details == nil {
			t.Errorf("%s: error body %q, want {code, message, details} (%v)", what, resp.body, err)
		} else if *e.Code != c.code {
			t.Errorf("%s: code = %d, want %d (message %q)", what, *e.Code, c.code, e.Message)
		}
		return resp
	}
	if out != nil {
		if err := json.Unmarshal([]byte(resp.body), out); err != nil {
			t.Errorf("%s: body is not the JSON expected: %v: %q", what, err, resp.body)
		}
	}
	return resp
}

// gRPC code numbers, as the JSON error bodies carry them.
const (
	codeInvalidArgument    = 3
	codeNotFound           = 5
	codeAlreadyExists      = 6
	codeFailedPrecondition = 9
	codeUnimplemented      = 12
)

// httpStat is the part of a Stat the tests read (snake_case, 64-bit
// integers as strings).
type httpStat struct {
	Version        *int   `json:"version"`
	Mzxid          string `json:"mzxid"`
	DataLength     *int   `json:"data_length"`
	NumChildren    *int   `json:"num_children"`
	EphemeralOwner string `json:"ephemeral_owner"`
}

type httpHeader struct {
	NodeID string `json:"node_id"`
	Zxid   string `json:"zxid"`
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestHTTPGateway drives every non-watch gateway route with curl: tree,
// children, multi, sessions, cluster, their error statuses, request id
// headers, and /metrics.
func TestHTTPGateway(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	l := c.leader()
	f := c.agents[(l+1)%3] // writes through a follower are forwarded
	ld := c.agents[l]

	var created struct {
		Header httpHeader `json:"header"`
		Path   string     `json:"path"`
		Stat   httpStat   `json:"stat"`
	}
	call{method: "POST", path: "/v1/tree/app", body: `{"data":"` + b64("v1") + `"}`, status: 200}.do(t, f, &created)
	if created.Path != "/app" || created.Stat.Version == nil || *created.Stat.Version != 0 || created.Header.Zxid == "" {
		t.Errorf("POST /v1/tree/app = %+v, want path /app, version 0 present, a zxid", created)
	}

	// Every node answers a linearizable read of the write, and says so.
	servedBy := map[string]bool{}
	for _, a := range c.agents {
		var got struct {
			Header httpHeader `json:"header"`
			Data   string     `json:"data"`
			Stat   httpStat   `json:"stat"`
		}
		resp := call{method: "GET", path: "/v1/tree/app", status: 200}.do(t, a, &got)
		servedBy[resp.header.Get("Served-By")] = true
		if got.Data != b64("v1") || got.Stat.Version == nil || *got.Stat.Version != 0 || got.Header.NodeID != a.id ||
			got.Stat.EphemeralOwner != "0" || got.Stat.DataLength == nil || *got.Stat.DataLength != 2 {
			t.Errorf("GET /v1/tree/app on %s = %+v, want data %q, version 0, ephemeral_owner \"0\", data_length 2, node_id %s", a.id, got, b64("v1"), a.id)
		}
	}
	if len(servedBy) != len(c.agents) {
		t.Errorf("Served-By over the %d nodes: %v, want %d different ids", len(c.agents), servedBy, len(c.agents))
	}

	for _, h := range []string{"h1", "10.0.0.2:3306"} {
		call{method: "POST", path: "/v1/tree/app/" + h, body: `{}`, status: 200}.do(t, f, nil)
	}
	longPath := "/v1/tree/" + strings.Repeat("a", 4097)
	for _, tc := range []call{
		{method: "POST", path: "/v1/tree/app", body: `{}`, status: 409, code: codeAlreadyExists},
		{method: "GET", path: "/v1/tree/missing", status: 404, code: codeNotFound},
		{method: "GET", path: "/v1/tree/app//h1", status: 400, code: codeInvalidArgument},
		{method: "GET", path: "/v1/tree//app", status: 400, code: codeInvalidArgument},
		{method: "GET", path: "/v1/tree/app/", status: 400, code: codeInvalidArgument},
		{method: "GET", path: "/v1/tree/app/./h1", status: 400, code: codeInvalidArgument},
		{method: "GET", path: longPath, status: 400, code: codeInvalidArgument},
		{method: "POST", path: "/v1/tree/bad", body: `{"data":`, status: 400, code: codeInvalidArgument},
		{method: "POST", path: "/v1/tree/bad", body: `{"dta":"eA=="}`, status: 400, code: codeInvalidArgument},
		{method: "POST", path: "/v1/tree/bad", body: `{"data":"not base64!"}`, status: 400, code: codeInvalidArgument},
		{method: "PUT", path: "/v1/tree/app", body: `{"data":"eA==","version":5}`, status: 412, code: codeFailedPrecondition},
		{method: "DELETE", path: "/v1/tree/app", status: 412, code: codeFailedPrecondition},
		{method: "DELETE", path: "/v1/tree/app?version=7&recursive=true", status: 412, code: codeFailedPrecondition},
		{method: "GET", path: "/v1/tree/app?children=maybe", status: 400, code: codeInvalidArgument},
		{method: "GET", path: "/v1/children/missing", status: 404, code: codeNotFound},
		{method: "GET", path: "/v1/nothing/here", status: 404, code: codeNotFound},
		{method: "PATCH", path: "/v1/tree/app", body: `{}`, status: 405, code: codeUnimplemented},
		{method: "POST", path: "/v1/tree/bad", body: `{}`, headers: []string{"Idempotency-Key: k1", "Paddock-Request-Id: k2"}, status: 400, code: codeInvalidArgument},
	} {
		tc.do(t, f, nil)
	}
	// Nothing the failures above asked for exists.
	for _, p := range []string{"/v1/exists/bad", "/v1/exists/app/h1/x"} {
		var ex struct {
			Exists *bool `json:"exists"`
		}
		call{method: "GET", path: p, status: 200}.do(t, f, &ex)
		if ex.Exists == nil || *ex.Exists {
			t.Errorf("GET %s: exists = %v, want false (present)", p, ex.Exists)
		}
	}

	// Compare-and-set: version 0 matches; the data is base64 both ways.
	var set struct {
		Stat httpStat `json:"stat"`
	}
	call{method: "PUT", path: "/v1/tree/app", body: `{"data":"` + b64("v2") + `","version":0}`, status: 200}.do(t, f, &set)
	if set.Stat.Version == nil || *set.Stat.Version != 1 {
		t.Errorf("PUT /v1/tree/app version 0: stat %+v, want version 1", set.Stat)
	}
	var ex struct {
		Exists bool     `json:"exists"`
		Stat   httpStat `json:"stat"`
	}
	call{method: "GET", path: "/v1/exists/app", status: 200}.do(t, ld, &ex)
	if !ex.Exists || ex.Stat.NumChildren == nil || *ex.Stat.NumChildren != 2 {
		t.Errorf("GET /v1/exists/app: %+v, want exists, 2 children", ex)
	}

	// Children: ?children=true is the List route, query kept.
	type listed struct {
		Children []struct {
			Name string `json:"name"`
		} `json:"children"`
		NextPageToken string `json:"next_page_token"`
	}
	names := func(l listed) string {
		var out []string
		for _, ch := range l.Children {
			out = append(out, ch.Name)
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct {
		path, want, wantNext string
	}{
		{"/v1/tree/app?children=true", "10.0.0.2:3306,h1", ""},
		{"/v1/children/app", "10.0.0.2:3306,h1", ""},
		{"/v1/tree/app?children=true&page_size=1&read.consistency=READ_CONSISTENCY_SERIALIZABLE", "10.0.0.2:3306", "set"},
		{"/v1/tree/app?children=false", "", ""},
	} {
		var got listed
		call{method: "GET", path: tc.path, status: 200}.do(t, f, &got)
		if names(got) != tc.want || (tc.wantNext == "") != (got.NextPageToken == "") {
			t.Errorf("GET %s: children %q, next %q; want %q, next token %t", tc.path, names(got), got.NextPageToken, tc.want, tc.wantNext != "")
		}
		if tc.wantNext != "" {
			var rest listed
			call{method: "GET", path: "/v1/tree/app?children=true&page_size=1&page_token=" + got.NextPageToken, status: 200}.do(t, f, &rest)
			if names(rest) != "h1" || rest.NextPageToken != "" {
				t.Errorf("second page of /v1/tree/app: %q, next %q; want h1, none", names(rest), rest.NextPageToken)
			}
		}
	}
	var root listed
	call{method: "GET", path: "/v1/tree?children=true", status: 200}.do(t, f, &root)
	if names(root) != "app,paddock" {
		t.Errorf("GET /v1/tree?children=true: children %q, want app,paddock", names(root))
	}
	var rootGet struct {
		Stat httpStat `json:"stat"`
	}
	call{method: "GET", path: "/v1/tree", status: 200}.do(t, f, &rootGet)
	if rootGet.Stat.NumChildren == nil || *rootGet.Stat.NumChildren != 2 {
		t.Errorf("GET /v1/tree: stat %+v, want the root with 2 children", rootGet.Stat)
	}

	// Multi: all or nothing; a failure names the op.
	multiBad := `{"ops":[{"create":{"path":"/app/m1"}},{"check":{"path":"/app","version":0}}]}`
	resp := call{method: "POST", path: "/v1/multi", body: multiBad, status: 412, code: codeFailedPrecondition}.do(t, f, nil)
	if !strings.Contains(resp.body, `"failed_index":1`) || !strings.Contains(resp.body, "paddock.v1.MultiFailure") {
		t.Errorf("POST /v1/multi failing op 1: body %s, want a MultiFailure detail with failed_index 1", resp.body)
	}
	call{method: "GET", path: "/v1/tree/app/m1", status: 404, code: codeNotFound}.do(t, f, nil)
	var multi struct {
		Results []json.RawMessage `json:"results"`
	}
	multiOK := `{"ops":[{"create":{"path":"/app/m1"}},{"check":{"path":"/app","version":1}},{"set":{"path":"/app","data":"` + b64("v3") + `"}}]}`
	call{method: "POST", path: "/v1/multi", body: multiOK, status: 200}.do(t, f, &multi)
	if len(multi.Results) != 3 {
		t.Errorf("POST /v1/multi: %d results, want 3", len(multi.Results))
	}
	// Recursive delete with the right version.
	call{method: "DELETE", path: "/v1/tree/app?recursive=true&version=2", status: 200}.do(t, f, nil)
	call{method: "GET", path: "/v1/tree/app", status: 404, code: codeNotFound}.do(t, ld, nil)

	// A request id header is accepted on a write.
	call{method: "POST", path: "/v1/tree/idem", body: `{}`, headers: []string{"Idempotency-Key: 7d1c"}, status: 200}.do(t, f, nil)
	call{method: "POST", path: "/v1/tree/idem2", body: `{}`, headers: []string{"Paddock-Request-Id: 7d1d"}, status: 200}.do(t, f, nil)
	testHTTPRequestIDReuse(t, f, ld)

	testHTTPSessions(t, f, ld)
	testHTTPMetrics(t, c, l, f)
}

// testHTTPRequestIDReuse: a request id reused for another request of the
// same kind (another path, another body) is refused with 400 and creates
// nothing, on a follower and on the leader; a true retry still replays.
func testHTTPRequestIDReuse(t *testing.T, f, ld *agent) {
	t.Helper()
	var first struct {
		Path string `json:"path"`
	}
	call{method: "POST", path: "/v1/tree/reuse1", body: `{}`, headers: []string{"Idempotency-Key: reuse-k1"}, status: 200}.do(t, f, &first)
	for _, a := range []*agent{f, ld} {
		for _, tc := range []call{
			{method: "POST", path: "/v1/tree/reuse2", body: `{}`, headers: []string{"Idempotency-Key: reuse-k1"}},
			{method: "POST", path: "/v1/tree/reuse1", body: `{"data":"` + b64("x") + `"}`, headers: []string{"Paddock-Request-Id: reuse-k1"}},
		} {
			tc.status, tc.code = 400, codeInvalidArgument
			resp := tc.do(t, a, nil)
			if !strings.Contains(resp.body, "request id reused") {
				t.Errorf("%s %s with a reused id on %s: body %s, want a message saying the request id was reused", tc.method, tc.path, a.id, resp.body)
			}
		}
	}
	call{method: "GET", path: "/v1/tree/reuse2", status: 404, code: codeNotFound}.do(t, ld, nil)
	var retry struct {
		Path string `json:"path"`
	}
	call{method: "POST", path: "/v1/tree/reuse1", body: `{}`, headers: []string{"Idempotency-Key: reuse-k1"}, status: 200}.do(t, ld, &retry)
	if first.Path != "/reuse1" || retry.Path != "/reuse1" {
		t.Errorf("first and retried POST /v1/tree/reuse1: paths %q, %q; want /reuse1 twice", first.Path, retry.Path)
	}
}

// testHTTPSessions opens, renews, reads, lists and closes a session over
// HTTP, with an ephemeral znode that goes with it.
func testHTTPSessions(t *testing.T, f, ld *agent) {
	t.Helper()
	var opened struct {
		SessionID string `json:"session_id"`
		TimeoutMs string `json:"timeout_ms"`
	}
	call{method: "POST", path: "/v1/sessions", body: `{"timeout_ms":"10000"}`, status: 200}.do(t, f, &opened)
	if opened.SessionID == "" || opened.SessionID == "0" || opened.TimeoutMs != "10000" {
		t.Fatalf("POST /v1/sessions = %+v, want a session id, timeout_ms \"10000\"", opened)
	}
	id := opened.SessionID
	var ka struct {
		SessionID string `json:"session_id"`
		TimeoutMs string `json:"timeout_ms"`
	}
	call{method: "PUT", path: "/v1/sessions/" + id + "/keepalive", status: 200}.do(t, f, &ka)
	if ka.SessionID != id || ka.TimeoutMs != "10000" {
		t.Errorf("PUT /v1/sessions/%s/keepalive = %+v, want session %s, timeout 10000", id, ka, id)
	}
	var eph struct {
		Stat httpStat `json:"stat"`
	}
	call{method: "POST", path: "/v1/tree/eph", body: `{"type":"NODE_TYPE_EPHEMERAL","session_id":"` + id + `"}`, status: 200}.do(t, f, &eph)
	if eph.Stat.EphemeralOwner != id {
		t.Errorf("POST /v1/tree/eph: ephemeral_owner %q, want %s", eph.Stat.EphemeralOwner, id)
	}
	var got struct {
		Session struct {
			ID string `json:"id"`
		} `json:"session"`
	}
	call{method: "GET", path: "/v1/sessions/" + id, status: 200}.do(t, ld, &got)
	if got.Session.ID != id {
		t.Errorf("GET /v1/sessions/%s = %+v, want that session", id, got)
	}
	var list struct {
		Sessions []struct {
			ID string `json:"id"`
		} `json:"sessions"`
	}
	call{method: "GET", path: "/v1/sessions", status: 200}.do(t, ld, &list)
	if len(list.Sessions) != 1 || list.Sessions[0].ID != id {
		t.Errorf("GET /v1/sessions = %+v, want just %s", list, id)
	}
	call{method: "DELETE", path: "/v1/sessions/" + id, status: 200}.do(t, f, nil)
	for _, tc := range []call{
		{method: "GET", path: "/v1/sessions/" + id, status: 404, code: codeNotFound},
		{method: "GET", path: "/v1/tree/eph", status: 404, code: codeNotFound},
		{method: "PUT", path: "/v1/sessions/" + id + "/keepalive", status: 412, code: codeFailedPrecondition},
		{method: "GET", path: "/v1/sessions/notanumber", status: 400, code: codeInvalidArgument},
		{method: "POST", path: "/v1/tree/eph2", body: `{"type":"NODE_TYPE_EPHEMERAL","session_id":"` + id + `"}`, status: 412, code: codeFailedPrecondition},
	} {
		tc.do(t, f, nil)
	}
}

// testHTTPMetrics checks /metrics on every node: the required series, the
// leader's state, the follower's forwarded writes and its gRPC counts.
func testHTTPMetrics(t *testing.T, c *cluster, leader int, f *agent) {
	t.Helper()
	required := []string{
		`paddock_raft_state{state="leader"}`, `paddock_raft_state{state="follower"}`,
		"paddock_raft_term ", "paddock_raft_commit_index ", "paddock_raft_applied_index ",
		"paddock_raft_last_log_index ", "paddock_raft_leader_known 1",
		"paddock_apply_duration_seconds_bucket", "paddock_propose_duration_seconds_bucket",
		"paddock_grpc_server_handled_total{", "paddock_grpc_server_handling_seconds_bucket{",
		"paddock_sessions ", "paddock_znodes ", "paddock_watchers ", `paddock_forwarded_requests_total{kind="read"} `, "paddock_fsm_stopped 0",
	}
	for i, a := range c.agents {
		resp := curl(t, a.httpAddr, "/metrics")
		if resp.code != 200 {
			t.Errorf("GET /metrics on %s: status %d, want 200", a.id, resp.code)
		}
		if got := resp.header.Get("Served-By"); got != a.id {
			t.Errorf("GET /metrics on %s: Served-By = %q, want %q", a.id, got, a.id)
		}
		for _, s := range required {
			if !strings.Contains(resp.body, s) {
				t.Errorf("GET /metrics on %s: no %s", a.id, s)
			}
		}
		wantLeader := `paddock_raft_state{state="leader"} 0`
		if i == leader {
			wantLeader = `paddock_raft_state{state="leader"} 1`
		}
		if !strings.Contains(resp.body, wantLeader+"\n") {
			t.Errorf("GET /metrics on %s: want %s", a.id, wantLeader)
		}
	}
	body := curl(t, f.httpAddr, "/metrics").body
	for _, re := range []string{
		// The follower forwarded the writes above to the leader.
		`(?m)^paddock_forwarded_requests_total\{kind="write"\} ([1-9][0-9]*)$`,
		// The gateway's calls went through the gRPC server and its metrics.
		`(?m)^paddock_grpc_server_handled_total\{grpc_code="AlreadyExists",grpc_method="Create",grpc_service="paddock.v1.TreeService",grpc_type="unary"\} ([1-9][0-9]*)$`,
		`(?m)^paddock_grpc_server_handling_seconds_count\{grpc_method="Get",grpc_service="paddock.v1.TreeService",grpc_type="unary"\} ([1-9][0-9]*)$`,
	} {
		if !regexp.MustCompile(re).MatchString(body) {
			t.Errorf("GET /metrics on %s: no line matching %s", f.id, re)
		}
	}
}
