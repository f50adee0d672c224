package client

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock/paddock/node"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
	"github.com/paddock/paddock/rpc"
)

// startRealNode serves a one-node cluster's gRPC API (rpc.NewServer) on
// a loopback port until the test ends, and returns its address.
func startRealNode(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr, trans := raft.NewInmemTransport("")
	n, err := node.New(node.Config{
		ID:               "n1",
		DataDir:          t.TempDir(),
		GRPCAddr:         lis.Addr().String(),
		Transport:        trans,
		Bootstrap:        []raft.Server{{Suffrage: raft.Voter, ID: "n1", Address: addr}},
		HeartbeatTimeout: 100 * time.Millisecond,
		ElectionTimeout:  100 * time.Millisecond,
		Logger:           hclog.NewNullLogger(),
	})
	if err != nil {
		lis.Close()
		t.Fatalf("node.New: %v", err)
	}
	srv := rpc.NewServer(n)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-served
		if err := n.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		trans.Close()
	})
	waitFor(t, "the node to be ready", n.Ready)
	return lis.Addr().String()
}

func TestFarmClient(t *testing.T) {
	c := newTestClient(t, startRealNode(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, z := range []struct{ path, data string }{
		{"/f", `{"size":"2"}`}, {"/f/h1", `{"up":"1"}`}, {"/f/h2", `{"up":"0"}`},
	} {
		if _, err := c.Create(ctx, &paddockv1.CreateRequest{Path: z.path, Data: []byte(z.data)}); err != nil {
			t.Fatalf("Create(%s): %v", z.path, err)
		}
	}

	// A retry of SetField with the same request id (a call applied but
	// not answered) writes nothing more and returns the same Stat.
	rctx := WithRequestID(ctx, NewRequestID())
	set := &paddockv1.SetFieldRequest{Host: "/f", Field: "running_filter", Value: &paddockv1.FieldValue{Value: proto.String("up=1")}}
	first, err := c.SetField(rctx, set)
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.SetField(rctx, set)
	if err != nil {
		t.Fatalf("SetField retried: %v", err)
	}
	if first.GetStat().GetVersion() != 1 || again.GetStat().GetMzxid() != first.GetStat().GetMzxid() {
		t.Errorf("SetField then its retry: stat version %d mzxid %d, then mzxid %d; want version 1, the same mzxid",
			first.GetStat().GetVersion(), first.GetStat().GetMzxid(), again.GetStat().GetMzxid())
	}
	if c.LastZxid() < first.GetStat().GetMzxid() {
		t.Errorf("LastZxid = %d after SetField, want >= %d", c.LastZxid(), first.GetStat().GetMzxid())
	}

	got, err := c.GetFarm(ctx, &paddockv1.GetFarmRequest{Farm: "/f", Filters: "up=1"})
	if err != nil {
		t.Fatal(err)
	}
	if m := got.GetFarm(); len(m.GetHosts()) != 1 || m.GetHosts()["h1"] == nil || m.GetRunning() != 1 || m.GetRunningFilter() != "up=1" {
		t.Errorf("GetFarm(/f, up=1) = %v, want h1 alone, running 1", m)
	}
	check, err := c.CheckFarm(ctx, &paddockv1.CheckFarmRequest{Farm: "/f", Max: "2", Warn: "1"})
	if err != nil {
		t.Fatal(err)
	}
	if check.GetStatus() != paddockv1.FarmCheckStatus_FARM_CHECK_STATUS_WARNING || check.GetMessage() != "1/2 nodes running, 1 nodes failing, max allowed 2" {
		t.Errorf("CheckFarm(/f, max 2, warn 1) = %v %q, want WARNING", check.GetStatus(), check.GetMessage())
	}

	poll, err := c.PollFarm(ctx, &paddockv1.PollFarmRequest{Farm: "/f", AfterZxid: got.GetHeader().GetZxid(), TimeoutMs: 100})
	if err != nil || poll.GetChanged() {
		t.Fatalf("PollFarm(after %d, 100 ms) = changed %v, %v; want unchanged", got.GetHeader().GetZxid(), poll.GetChanged(), err)
	}
	if _, err := c.UnsetField(ctx, &paddockv1.UnsetFieldRequest{Host: "/f/h2", Field: "up"}); err != nil {
		t.Fatal(err)
	}
	poll, err = c.PollFarm(ctx, &paddockv1.PollFarmRequest{Farm: "/f", AfterZxid: poll.GetHeader().GetZxid(), TimeoutMs: 10000})
	if err != nil || !poll.GetChanged() || len(poll.GetFarm().GetHosts()["h2"].GetFields()) != 0 {
		t.Fatalf("PollFarm after UnsetField(h2 up) = %v, %v; want changed, h2 {}", poll, err)
	}
	_, err = c.UnsetField(ctx, &paddockv1.UnsetFieldRequest{Host: "/f/h3", Field: "up"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("UnsetField(/f/h3) = %v, want NotFound", err)
	}
}
