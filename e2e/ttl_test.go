package e2e

import (
	"strings"
	"testing"
	"time"
)

// goneSoon waits until `tree stat PATH` answers NotFound.
func goneSoon(t *testing.T, eps, path string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		r := paddock(t, "tree", "stat", path, "--endpoints", eps)
		if r.code != 0 && strings.HasPrefix(r.stderr, "paddock: NotFound: ") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still there after %v: %v", path, within, r)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestTTLAndContainerNodes(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	all := c.endpoints()
	f := c.agents[(c.leader()+1)%len(c.agents)]

	// CLI: a TTL node shows its TTL and goes once idle.
	if got := tree(t, all, "create", "--ttl", "1s", "/ttl", "x"); got != "/ttl\n" {
		t.Errorf("tree create --ttl 1s /ttl = %q", got)
	}
	if stat := tree(t, all, "stat", "/ttl"); !strings.Contains(stat, "ttl_ms = 1000\n") || !strings.Contains(stat, "ephemeral_owner = 0\n") {
		t.Errorf("tree stat /ttl = %q, want ttl_ms = 1000 and no owner", stat)
	}
	goneSoon(t, all, "/ttl", 10*time.Second)

	// A container goes after its last child.
	tree(t, all, "create", "--container", "/box")
	tree(t, all, "create", "/box/kid")
	if stat := tree(t, all, "stat", "/box"); !strings.Contains(stat, "container = true\n") {
		t.Errorf("tree stat /box = %q, want container = true", stat)
	}
	tree(t, all, "rm", "/box/kid")
	goneSoon(t, all, "/box", 10*time.Second)

	treeFails(t, all, "InvalidArgument", "create", "--ttl", "0s", "/bad")
	treeFails(t, all, "InvalidArgument", "create", "--container", "--sequential", "/bad-")
	if r := paddock(t, "tree", "create", "--ttl", "1s", "--ephemeral", "/bad", "--endpoints", all); r.code == 0 {
		t.Errorf("tree create --ttl --ephemeral succeeded: %v", r)
	}

	// HTTP: the same through the gateway.
	var created struct {
		Path string `json:"path"`
		Stat struct {
			TTLMs     string `json:"ttl_ms"`
			Container bool   `json:"container"`
		} `json:"stat"`
	}
	call{method: "POST", path: "/v1/tree/web", body: `{"type":"NODE_TYPE_TTL","ttl_ms":"1000"}`, status: 200}.do(t, f, &created)
	if created.Path != "/web" || created.Stat.TTLMs != "1000" {
		t.Errorf("POST /v1/tree/web (TTL) = %+v, want ttl_ms \"1000\"", created)
	}
	call{method: "POST", path: "/v1/tree/hbox", body: `{"type":"NODE_TYPE_CONTAINER"}`, status: 200}.do(t, f, &created)
	if !created.Stat.Container {
		t.Errorf("POST /v1/tree/hbox (container) = %+v, want container true", created)
	}
	for _, bad := range []call{
		{method: "POST", path: "/v1/tree/x", body: `{"type":"NODE_TYPE_EPHEMERAL","session_id":"1","ttl_ms":"1000"}`, status: 400, code: codeInvalidArgument},
		{method: "POST", path: "/v1/tree/x", body: `{"type":"NODE_TYPE_TTL"}`, status: 400, code: codeInvalidArgument},
		{method: "POST", path: "/v1/tree/x", body: `{"ttl_ms":"1000"}`, status: 400, code: codeInvalidArgument},
	} {
		bad.do(t, f, nil)
	}
	deadline := time.Now().Add(10 * time.Second)
	for curl(t, f.httpAddr, "/v1/tree/web").code != 404 {
		if time.Now().After(deadline) {
			t.Fatalf("GET /v1/tree/web still found after the TTL")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r := curl(t, f.httpAddr, "/v1/tree/hbox"); r.code != 200 {
		t.Errorf("GET /v1/tree/hbox (a container never given a child) = %d, want 200", r.code)
	}

	// gRPC, as grpcurl sends it (protojson names).
	var viaGRPC struct {
		Stat struct {
			TTLMs string `json:"ttlMs"`
		} `json:"stat"`
	}
	grpcurlJSON(t, f.grpcAddr, "paddock.v1.TreeService/Create", `{"path":"/rpc","type":"NODE_TYPE_TTL","ttl_ms":"30000"}`, &viaGRPC)
	if viaGRPC.Stat.TTLMs != "30000" {
		t.Errorf("grpcurl Create TTL = %+v, want ttlMs \"30000\"", viaGRPC)
	}
	wantCode(t, "grpcurl Create container sequential", grpcurl(t, f.grpcAddr, "paddock.v1.TreeService/Create", `{"path":"/rpc-","type":"NODE_TYPE_CONTAINER","sequential":true}`), "InvalidArgument")
}
