package main

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/proto"

	"github.com/paddock/paddock/fsm"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// TestDevStopsOnHalt runs the dev cluster on free ports and appends, raw
// through the leader's raft, an entry above this binary's feature level:
// every node halts, and the dev command returns their error, naming the
// upgrade, instead of running on with no node serving.
func TestDevStopsOnHalt(t *testing.T) {
	nodes := make([]devNode, 3)
	for i := range nodes {
		nodes[i] = devNode{id: devNodes[i].id, grpc: freeAddr(t), http: freeAddr(t), raft: freeAddr(t)}
	}
	started := make(chan []*agent, 1)
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logger := func(id string) hclog.Logger {
		return hclog.New(&hclog.LoggerOptions{Name: id, Level: hclog.Off, Output: io.Discard})
	}
	go func() {
		done <- runDev(ctx, io.Discard, t.TempDir(), nodes, logger, func(a []*agent) { started <- a })
	}()
	var agents []*agent
	select {
	case agents = <-started:
	case err := <-done:
		t.Fatalf("runDev: %v", err)
	}
	cmd := &raftv1.Command{
		TimeUnixMs: time.Now().UnixMilli(), FeatureLevel: fsm.FeatureLevel + 1,
		Op: &raftv1.Command_Set{Set: &paddockv1.SetRequest{Path: "/", Data: []byte("x")}},
	}
	data, err := proto.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for applied := false; !applied; {
		for _, a := range agents {
			if a.node.IsLeader() && a.node.Raft().Apply(data, 10*time.Second).Error() == nil {
				applied = true
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no leader took the entry after 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("dev did not stop after its nodes met an entry they cannot apply")
	}
	want := "upgrade paddock on this node"
	if !errors.Is(err, fsm.ErrUpgradeRequired) || !strings.Contains(err.Error(), want) {
		t.Errorf("runDev() = %v, want %v containing %q", err, fsm.ErrUpgradeRequired, want)
	}
}
