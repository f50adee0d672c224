package e2e

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// grpcurlJSON runs a unary RPC with grpcurl and decodes its JSON answer
// into out, failing the test if the RPC fails.
func grpcurlJSON(t *testing.T, addr, method, req string, out any) {
	t.Helper()
	r := grpcurl(t, addr, method, req)
	if r.code != 0 {
		t.Fatalf("grpcurl %s %s: %v", method, req, r)
	}
	if err := json.Unmarshal([]byte(r.stdout), out); err != nil {
		t.Fatalf("grpcurl %s %s: output is not JSON: %v: %q", method, req, err, r.stdout)
	}
}

// wantCode checks that r is a failed RPC with the given gRPC code (or one
// of several, "A|B").
func wantCode(t *testing.T, what string, r result, code string) (message string) {
	t.Helper()
	got, msg := r.grpcStatus()
	if !slices.Contains(strings.Split(code, "|"), got) {
		t.Errorf("%s: code = %s, want %s (%v)", what, got, code, r)
	}
	return msg
}

// getResponse is the part of a TreeService/Get answer the tests read.
type getResponse struct {
	Header struct {
		NodeID string `json:"nodeId"`
		Zxid   string `json:"zxid"`
	} `json:"header"`
	Data string `json:"data"` // base64
	Stat struct {
		Version       int    `json:"version"`
		Mzxid         string `json:"mzxid"`
		DataLength    int    `json:"dataLength"`
		NumChildren   int    `json:"numChildren"`
		EphemeralOwer string `json:"ephemeralOwner"`
	} `json:"stat"`
}

func TestGrpcurl(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	n1, n2, n3 := c.agents[0], c.agents[1], c.agents[2]

	// Reflection lists the public services on a bare node.
	r := grpcurl(t, n1.grpcAddr, "list")
	if r.code != 0 {
		t.Fatalf("grpcurl list: %v", r)
	}
	services := map[string]bool{}
	for _, s := range strings.Fields(r.stdout) {
		services[s] = true
	}
	for _, s := range []string{"paddock.v1.TreeService", "paddock.v1.SessionService", "paddock.v1.ClusterService"} {
		if !services[s] {
			t.Errorf("grpcurl list: missing %s in %q", s, r.stdout)
		}
	}
	r = run(t, nil, grpcurlBin, "-plaintext", n1.grpcAddr, "describe", "paddock.v1.TreeService")
	if r.code != 0 || !strings.Contains(r.stdout, "rpc Create") {
		t.Errorf("grpcurl describe paddock.v1.TreeService: %v, want the service with rpc Create", r)
	}

	// Create on n1, read on n2 (linearizable by default) and n3.
	var created struct {
		Header struct {
			NodeID string `json:"nodeId"`
			Zxid   string `json:"zxid"`
		} `json:"header"`
		Path string `json:"path"`
	}
	grpcurlJSON(t, n1.grpcAddr, "paddock.v1.TreeService/Create", `{"path":"/e2e","data":"aGk="}`, &created)
	if created.Path != "/e2e" {
		t.Errorf("Create(/e2e).path = %q, want %q", created.Path, "/e2e")
	}
	if created.Header.NodeID != n1.id || atoi(created.Header.Zxid) == 0 {
		t.Errorf("Create(/e2e).header = %+v, want node %s and a zxid", created.Header, n1.id)
	}
	for _, a := range []*agent{n2, n3} {
		var got getResponse
		grpcurlJSON(t, a.grpcAddr, "paddock.v1.TreeService/Get", `{"path":"/e2e"}`, &got)
		if got.Data != "aGk=" {
			t.Errorf("Get(/e2e) on %s: data = %q, want %q", a.id, got.Data, "aGk=")
		}
		if got.Header.NodeID != a.id {
			t.Errorf("Get(/e2e) on %s: header.nodeId = %q, want %q", a.id, got.Header.NodeID, a.id)
		}
		if atoi(got.Header.Zxid) < atoi(created.Header.Zxid) {
			t.Errorf("Get(/e2e) on %s: header.zxid = %s, want >= %s (the create's)", a.id, got.Header.Zxid, created.Header.Zxid)
		}
		if got.Stat.DataLength != 2 {
			t.Errorf("Get(/e2e) on %s: stat.dataLength = %d, want 2", a.id, got.Stat.DataLength)
		}
	}

	// A read that carries min_zxid is served from local state once applied.
	var got getResponse
	grpcurlJSON(t, n3.grpcAddr, "paddock.v1.TreeService/Get",
		`{"path":"/e2e","read":{"consistency":"READ_CONSISTENCY_SERIALIZABLE","minZxid":"`+created.Header.Zxid+`"}}`, &got)
	if want := base64.StdEncoding.EncodeToString([]byte("hi")); got.Data != want {
		t.Errorf("Get(/e2e, serializable, min_zxid) on n3: data = %q, want %q", got.Data, want)
	}

	// The served-by header names the node that answered.
	r = run(t, nil, grpcurlBin, "-plaintext", "-v", "-d", `{"path":"/e2e"}`, n2.grpcAddr, "paddock.v1.TreeService/Exists")
	if r.code != 0 || !strings.Contains(r.stdout, "served-by: "+n2.id) {
		t.Errorf("grpcurl -v Exists on n2: %v, want a served-by: %s header", r, n2.id)
	}

	// Bad paths are the caller's fault, on writes and reads.
	for _, tc := range []struct{ method, req string }{
		{"paddock.v1.TreeService/Create", `{"path":"e2e-relative"}`},
		{"paddock.v1.TreeService/Create", `{"path":"/e2e/"}`},
		{"paddock.v1.TreeService/Create", `{"path":"/a//b"}`},
		{"paddock.v1.TreeService/Get", `{"path":"no-slash"}`},
		{"paddock.v1.TreeService/Set", `{"path":"/e2e/../x"}`},
		{"paddock.v1.TreeService/Delete", `{"path":""}`},
		{"paddock.v1.TreeService/List", `{"path":"bad"}`},
		{"paddock.v1.TreeService/Exists", `{"path":"bad"}`},
	} {
		r := grpcurl(t, n2.grpcAddr, tc.method, tc.req)
		wantCode(t, tc.method+" "+tc.req, r, "InvalidArgument")
	}

	// ClusterService/Status describes the node asked.
	for _, a := range c.agents {
		var st struct {
			ID       string `json:"id"`
			Role     string `json:"role"`
			LeaderID string `json:"leaderId"`
			Ready    bool   `json:"ready"`
			Znodes   string `json:"znodes"`
		}
		grpcurlJSON(t, a.grpcAddr, "paddock.v1.ClusterService/Status", "{}", &st)
		if st.ID != a.id || st.LeaderID == "" || !st.Ready {
			t.Errorf("Status on %s = %+v, want its own id, a leader, ready", a.id, st)
		}
		if st.Role != "ROLE_LEADER" && st.Role != "ROLE_FOLLOWER" {
			t.Errorf("Status on %s: role = %q, want ROLE_LEADER or ROLE_FOLLOWER", a.id, st.Role)
		}
		if atoi(st.Znodes) < 1 {
			t.Errorf("Status on %s: znodes = %q, want >= 1 (/e2e)", a.id, st.Znodes)
		}
	}
}
