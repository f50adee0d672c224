package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/paddock/paddock/node"
)

// freeAddr returns a 127.0.0.1 address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startOneNode runs a real single-voter agent (node, gRPC and HTTP
// gateway) and waits until it leads and has registered its addresses, so
// that nothing more is written unless a test writes. It is closed by t's
// cleanup.
func startOneNode(t *testing.T) *agent {
	t.Helper()
	raftAddr := freeAddr(t)
	voters, err := node.ParseBootstrap("n1=" + raftAddr)
	if err != nil {
		t.Fatal(err)
	}
	a, err := startAgent(context.Background(), node.Config{
		ID: "n1", DataDir: t.TempDir(), RaftAddr: raftAddr,
		GRPCAddr: freeAddr(t), HTTPAddr: freeAddr(t), Bootstrap: voters,
		HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
		Logger: hclog.NewNullLogger(),
	})
	if err != nil {
		t.Fatalf("startAgent: %v", err)
	}
	t.Cleanup(func() {
		if err := a.Close(); err != nil {
			t.Errorf("agent Close: %v", err)
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for _, ok := a.node.FSM().Member("n1"); !a.node.Ready() || !ok; _, ok = a.node.FSM().Member("n1") {
		if time.Now().After(deadline) {
			t.Fatal("single node not ready after 15s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return a
}

// runCLI runs the paddock command line args and returns its output.
func runCLI(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetArgs(args)
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("paddock %q: %v", args, err)
	}
	return out.String()
}

// TestStatusStateHash asks a real node for its state hash through
// `paddock status` and the HTTP gateway: it is there when asked for, at
// the node's applied index, and empty otherwise.
func TestStatusStateHash(t *testing.T) {
	a := startOneNode(t)
	grpcAddr, httpAddr := a.node.Config().GRPCAddr, a.node.Config().HTTPAddr
	runCLI(t, "tree", "create", "--endpoints", grpcAddr, "/h", "x")
	wantHash, wantIdx := a.node.FSM().StateHashAndIndex()

	var doc struct {
		Status struct {
			StateHash      string `json:"state_hash"`
			StateHashIndex string `json:"state_hash_index"`
		} `json:"status"`
	}
	for _, tt := range []struct {
		args          []string
		hash, hashIdx string
	}{
		{[]string{"status", "-o", "json", "--endpoints", grpcAddr}, "", "0"},
		{[]string{"status", "-o", "json", "--state-hash", "--endpoints", grpcAddr}, base64.StdEncoding.EncodeToString(wantHash[:]), fmt.Sprint(wantIdx)},
	} {
		out := runCLI(t, tt.args...)
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("paddock %q: %v in %s", tt.args, err, out)
		}
		if doc.Status.StateHash != tt.hash || doc.Status.StateHashIndex != tt.hashIdx {
			t.Errorf("paddock %q: stateHash %q at %s, want %q at %s", tt.args, doc.Status.StateHash, doc.Status.StateHashIndex, tt.hash, tt.hashIdx)
		}
	}
	text := runCLI(t, "status", "--state-hash", "--endpoints", grpcAddr)
	if want := fmt.Sprintf(`(?m)^state hash +%x at index %d$`, wantHash, wantIdx); !regexp.MustCompile(want).MatchString(text) {
		t.Errorf("paddock status --state-hash:\n%s\nwant a line matching %s", text, want)
	}
	if text := runCLI(t, "status", "--endpoints", grpcAddr); regexp.MustCompile(`state hash`).MatchString(text) {
		t.Errorf("paddock status:\n%s\nwant no state hash line", text)
	}

	var body struct {
		StateHash      string `json:"state_hash"`
		StateHashIndex string `json:"state_hash_index"`
	}
	for _, tt := range []struct {
		query         string
		hash, hashIdx string
	}{
		{"", "", "0"},
		{"?state_hash=false", "", "0"},
		{"?state_hash=true", base64.StdEncoding.EncodeToString(wantHash[:]), fmt.Sprint(wantIdx)},
	} {
		resp, err := http.Get("http://" + httpAddr + "/v1/cluster/status" + tt.query)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /v1/cluster/status%s: %d %s, %v", tt.query, resp.StatusCode, b, err)
		}
		if err := json.Unmarshal(b, &body); err != nil {
			t.Fatalf("GET /v1/cluster/status%s: %v in %s", tt.query, err, b)
		}
		if body.StateHash != tt.hash || body.StateHashIndex != tt.hashIdx {
			t.Errorf("GET /v1/cluster/status%s: state_hash %q at %s, want %q at %s", tt.query, body.StateHash, body.StateHashIndex, tt.hash, tt.hashIdx)
		}
	}
}

// TestAgentUnsafeLocalReadsFlag: the hidden flag reaches the node's
// configuration, and is off by default.
func TestAgentUnsafeLocalReadsFlag(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want bool
	}{
		{[]string{"--id", "n1"}, false},
		{[]string{"--id", "n1", "--unsafe-local-reads"}, true},
	} {
		f := &agentFlags{}
		cmd := &cobra.Command{}
		f.register(cmd)
		if err := cmd.Flags().Parse(tt.args); err != nil {
			t.Fatalf("Parse(%q): %v", tt.args, err)
		}
		cfg, err := f.config()
		if err != nil || cfg.UnsafeLocalReads != tt.want {
			t.Errorf("agent %q: UnsafeLocalReads = %v, %v; want %v", tt.args, cfg.UnsafeLocalReads, err, tt.want)
		}
	}
	if fl := newAgentCmd().Flags().Lookup("unsafe-local-reads"); fl == nil || !fl.Hidden {
		t.Errorf("agent flag unsafe-local-reads = %v, want a hidden flag", fl)
	}
}
