package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/paddock/paddock/fsm"
	"github.com/paddock/paddock/node"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// TestAgentStopsOnEntryNeedingUpgrade runs a real single-node agent and
// appends, raw through its raft, an entry of a feature level above this
// binary's: the agent's serve returns (the process exits non-zero) with a
// message naming the entry and the upgrade, which its log shows too.
func TestAgentStopsOnEntryNeedingUpgrade(t *testing.T) {
	raftAddr := freeAddr(t)
	voters, err := node.ParseBootstrap("n1=" + raftAddr)
	if err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	a, err := startAgent(context.Background(), node.Config{
		ID: "n1", DataDir: t.TempDir(), RaftAddr: raftAddr,
		GRPCAddr: freeAddr(t), HTTPAddr: freeAddr(t), Bootstrap: voters,
		HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
		Logger: hclog.New(&hclog.LoggerOptions{Name: "n1", Level: hclog.Error, Output: &logs}),
	})
	if err != nil {
		t.Fatalf("startAgent: %v", err)
	}
	t.Cleanup(func() { _ = a.Close() })
	deadline := time.Now().Add(15 * time.Second)
	for !a.node.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("single node not ready after 15s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	served := make(chan error, 1)
	go func() { served <- a.serve(context.Background()) }()

	cmd := &raftv1.Command{
		TimeUnixMs: time.Now().UnixMilli(), FeatureLevel: fsm.FeatureLevel + 1,
		Op: &raftv1.Command_Set{Set: &paddockv1.SetRequest{Path: "/", Data: []byte("x")}},
	}
	data, err := proto.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	f := a.node.Raft().Apply(data, 10*time.Second)
	if err := f.Error(); err != nil {
		t.Fatalf("raft Apply: %v", err)
	}
	if res, _ := f.Response().(*fsm.Result); res == nil || !errors.Is(res.Err, fsm.ErrUpgradeRequired) {
		t.Errorf("raft Apply response = %v, want an error matching %v", f.Response(), fsm.ErrUpgradeRequired)
	}
	select {
	case err = <-served:
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not return after the node met an entry it cannot apply")
	}
	want := fmt.Sprintf("needs feature level %d, this binary supports %d: upgrade paddock on this node", fsm.FeatureLevel+1, fsm.FeatureLevel)
	if !errors.Is(err, fsm.ErrUpgradeRequired) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "node n1 stopped") {
		t.Errorf("serve() = %v, want %v naming n1 and containing %q", err, fsm.ErrUpgradeRequired, want)
	}
	if !strings.Contains(logs.String(), want) {
		t.Errorf("agent log = %q, want it to contain %q", logs.String(), want)
	}
}

// TestAgentWebSessionMaxBytesFlag checks that --web-session-max-bytes
// reaches the node's configuration, 1 MiB by default, and that a value
// over the limit is refused when the node starts.
func TestAgentWebSessionMaxBytesFlag(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want int
	}{
		{[]string{"--id", "n1"}, 1 << 20},
		{[]string{"--id", "n1", "--web-session-max-bytes", "4096"}, 4096},
	} {
		f := &agentFlags{}
		cmd := &cobra.Command{}
		f.register(cmd)
		if err := cmd.Flags().Parse(tt.args); err != nil {
			t.Fatalf("Parse(%q): %v", tt.args, err)
		}
		cfg, err := f.config()
		if err != nil || cfg.WebSessionMaxBytes != tt.want {
			t.Errorf("agent %q: WebSessionMaxBytes = %v, %v; want %v", tt.args, cfg.WebSessionMaxBytes, err, tt.want)
		}
	}
	_, err := node.New(node.Config{ID: "n1", DataDir: t.TempDir(), RaftAddr: "127.0.0.1:0", WebSessionMaxBytes: 2 << 20})
	if err == nil || !strings.Contains(err.Error(), "web session max bytes") {
		t.Errorf("node.New with 2 MiB web sessions: %v, want a refusal", err)
	}
}

// TestAgentWebSessionDelayedFlags checks that --web-session-delayed-max-bytes
// and --web-session-flush-delay reach the node's configuration, and that
// bad values are refused when the node starts.
func TestAgentWebSessionDelayedFlags(t *testing.T) {
	for _, tt := range []struct {
		args     []string
		maxBytes int
		delay    time.Duration
	}{
		{[]string{"--id", "n1"}, node.DefaultWebSessionDelayedMaxBytes, node.DefaultWebSessionFlushDelay},
		{[]string{"--id", "n1", "--web-session-flush-delay", "0"}, node.DefaultWebSessionDelayedMaxBytes, 0},
		{[]string{"--id", "n1", "--web-session-delayed-max-bytes", "1000", "--web-session-flush-delay", "5ms"}, 1000, 5 * time.Millisecond},
	} {
		f := &agentFlags{}
		cmd := &cobra.Command{}
		f.register(cmd)
		if err := cmd.Flags().Parse(tt.args); err != nil {
			t.Fatalf("Parse(%q): %v", tt.args, err)
		}
		cfg, err := f.config()
		if err != nil || cfg.WebSessionDelayedMaxBytes != tt.maxBytes || cfg.WebSessionFlushDelay != tt.delay {
			t.Errorf("agent %q: %v, %v, %v; want %v, %v", tt.args, cfg.WebSessionDelayedMaxBytes, cfg.WebSessionFlushDelay, err, tt.maxBytes, tt.delay)
		}
	}
	for _, c := range []node.Config{
		{WebSessionDelayedMaxBytes: -1},
		{WebSessionFlushDelay: -time.Millisecond},
		{WebSessionFlushDelay: 2 * time.Second},
	} {
		c.ID, c.DataDir, c.RaftAddr = "n1", t.TempDir(), "127.0.0.1:0"
		if _, err := node.New(c); err == nil || !strings.Contains(err.Error(), "web session") {
			t.Errorf("node.New with %v / %v: %v, want a refusal", c.WebSessionDelayedMaxBytes, c.WebSessionFlushDelay, err)
		}
	}
}
