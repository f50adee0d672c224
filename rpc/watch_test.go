package rpc_test

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/paddock/paddock/node"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
	"github.com/paddock/paddock/rpc"
)

// singleNode starts a one-node cluster serving gRPC on 127.0.0.1 and
// returns it and a client connection to it; both close at cleanup.
func singleNode(t testing.TB, tune func(*node.Config)) (*node.Node, *grpc.ClientConn) {
	t.Helper()
	var leakOpts []goleak.Option
	if _, ok := t.(*testing.B); ok {
		// A benchmark's cleanup runs while the benchmark's caller waits.
		leakOpts = append(leakOpts, goleak.IgnoreCurrent())
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr, trans := raft.NewInmemTransport("")
	cfg := node.Config{
		ID:               "n1",
		DataDir:          t.TempDir(),
		GRPCAddr:         lis.Addr().String(),
		Transport:        trans,
		Bootstrap:        []raft.Server{{Suffrage: raft.Voter, ID: "n1", Address: addr}},
		HeartbeatTimeout: 100 * time.Millisecond,
		ElectionTimeout:  100 * time.Millisecond,
		Logger:           hclog.NewNullLogger(),
	}
	if tune != nil {
		tune(&cfg)
	}
	n, err := node.New(cfg)
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
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Stop()
		<-served
		if err := n.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		trans.Close()
		goleak.VerifyNone(t, leakOpts...)
	})
	deadline := time.Now().Add(10 * time.Second)
	for !n.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("single node did not become ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return n, conn
}

// canceledStatus checks err is a status with code and a WatchCanceled
// detail of reason, and returns the detail.
func canceledStatus(t *testing.T, what string, err error, code codes.Code, reason paddockv1.WatchCancelReason) *paddockv1.WatchCanceled {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code {
		t.Fatalf("%s: error %v, want code %v", what, err, code)
	}
	for _, d := range st.Details() {
		if wc, ok := d.(*paddockv1.WatchCanceled); ok {
			if wc.GetReason() != reason {
				t.Fatalf("%s: WatchCanceled reason %v, want %v", what, wc.GetReason(), reason)
			}
			return wc
		}
	}
	t.Fatalf("%s: status %v has no WatchCanceled detail", what, st)
	return nil
}

func TestWatchAndPollOverGRPC(t *testing.T) {
	n, conn := singleNode(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	watch := paddockv1.NewWatchServiceClient(conn)
	tree := paddockv1.NewTreeServiceClient(conn)

	stream, err := watch.Watch(ctx, &paddockv1.WatchRequest{Path: "/x", Recursive: true, PrevData: true})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil || !first.GetCreated() || first.GetHeader().GetNodeId() != "n1" {
		t.Fatalf("first response = %v, %v; want created by n1", first, err)
	}
	cr, err := tree.Create(ctx, &paddockv1.CreateRequest{Path: "/x", Data: []byte("a")})
	if err != nil {
		t.Fatalf("Create(/x): %v", err)
	}
	if _, err := tree.Set(ctx, &paddockv1.SetRequest{Path: "/x", Data: []byte("b")}); err != nil {
		t.Fatalf("Set(/x): %v", err)
	}
	var got []*paddockv1.Event
	for len(got) < 2 {
		r, err := stream.Recv()
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		got = append(got, r.GetEvents()...)
	}
	if got[0].GetKind() != paddockv1.EventKind_EVENT_KIND_CREATED || got[0].GetZxid() != cr.GetHeader().GetZxid() ||
		got[1].GetKind() != paddockv1.EventKind_EVENT_KIND_DATA_CHANGED || string(got[1].GetPrevData()) != "a" {
		t.Fatalf("events = %v, want created at %d then data changed from a", got, cr.GetHeader().GetZxid())
	}

	// Poll: at once when events exist after after_zxid.
	pr, err := watch.Poll(ctx, &paddockv1.PollRequest{Path: "/x", AfterZxid: first.GetHeader().GetZxid()})
	if err != nil || len(pr.GetEvents()) != 2 || pr.GetHeader().GetNodeId() != "n1" {
		t.Fatalf("Poll(after %d) = %v, %v; want the 2 events", first.GetHeader().GetZxid(), pr, err)
	}
	// And none after the timeout, with the zxid to poll after next.
	start := time.Now()
	empty, err := watch.Poll(ctx, &paddockv1.PollRequest{Path: "/x", AfterZxid: pr.GetHeader().GetZxid(), TimeoutMs: 100})
	if err != nil || len(empty.GetEvents()) != 0 || empty.GetHeader().GetZxid() < pr.GetHeader().GetZxid() {
		t.Fatalf("Poll(after %d, 100ms) = %v, %v; want none", pr.GetHeader().GetZxid(), empty, err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("Poll with nothing to return took %v, want the 100ms timeout", d)
	}

	// An idle watch asking for progress every 100ms is told the zxid it is
	// up to date with, past the events it was sent.
	idle, err := watch.Watch(ctx, &paddockv1.WatchRequest{Path: "/idle", ProgressIntervalMs: 100})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := idle.Recv(); err != nil || !r.GetCreated() {
		t.Fatalf("idle watch first response = %v, %v; want created", r, err)
	}
	if r, err := idle.Recv(); err != nil || !r.GetProgress() || len(r.GetEvents()) != 0 || r.GetHeader().GetZxid() < got[1].GetZxid() {
		t.Fatalf("idle watch second response = %v, %v; want progress at >= %d", r, err, got[1].GetZxid())
	}

	// Closing the node's watches ends the stream with where to resume.
	n.CloseStreams()
	for {
		_, err = stream.Recv()
		if err != nil {
			break
		}
	}
	wc := canceledStatus(t, "watch after CloseStreams", err, codes.Unavailable, paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_SHUTTING_DOWN)
	if wc.GetResumeZxid() <= got[1].GetZxid() {
		t.Fatalf("resume_zxid = %d, want after the last event %d", wc.GetResumeZxid(), got[1].GetZxid())
	}
}

func TestWatchCompactedOverGRPC(t *testing.T) {
	_, conn := singleNode(t, func(c *node.Config) { c.WatchHistory, c.WatchSlowLag = 4, 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	watch := paddockv1.NewWatchServiceClient(conn)
	tree := paddockv1.NewTreeServiceClient(conn)
	var last uint64
	for _, p := range []string{"/a", "/b", "/c"} { // 6 events: 2 evicted
		r, err := tree.Create(ctx, &paddockv1.CreateRequest{Path: p})
		if err != nil {
			t.Fatalf("Create(%s): %v", p, err)
		}
		last = r.GetHeader().GetZxid()
	}
	stream, err := watch.Watch(ctx, &paddockv1.WatchRequest{Path: "/", Recursive: true, StartZxid: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	wc := canceledStatus(t, "watch from 1", err, codes.OutOfRange, paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_COMPACTED)
	if wc.GetCompactZxid() <= 1 || wc.GetCompactZxid() > last {
		t.Fatalf("compact_zxid = %d, want in (1, %d]", wc.GetCompactZxid(), last)
	}
	_, err = watch.Poll(ctx, &paddockv1.PollRequest{Path: "/", AfterZxid: 1})
	pc := canceledStatus(t, "poll after 1", err, codes.OutOfRange, paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_COMPACTED)
	if pc.GetCompactZxid() != wc.GetCompactZxid() {
		t.Fatalf("poll compact_zxid = %d, watch's %d", pc.GetCompactZxid(), wc.GetCompactZxid())
	}
	// From compact_zxid on, the watch is served.
	stream, err = watch.Watch(ctx, &paddockv1.WatchRequest{Path: "/", Recursive: true, StartZxid: wc.GetCompactZxid()})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := stream.Recv(); err != nil || !r.GetCreated() || r.GetHeader().GetZxid() != wc.GetCompactZxid()-1 {
		t.Fatalf("watch from compact_zxid %d: %v, %v", wc.GetCompactZxid(), r, err)
	}
}

func TestWatchBadInputOverGRPC(t *testing.T) {
	n, conn := singleNode(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	watch := paddockv1.NewWatchServiceClient(conn)
	for _, tc := range []struct {
		name string
		req  *paddockv1.WatchRequest
	}{
		{"relative path", &paddockv1.WatchRequest{Path: "x"}},
		{"empty path", &paddockv1.WatchRequest{}},
		{"trailing slash", &paddockv1.WatchRequest{Path: "/x/"}},
		{"unknown kind", &paddockv1.WatchRequest{Path: "/x", Kinds: []paddockv1.EventKind{7}}},
		{"unspecified kind", &paddockv1.WatchRequest{Path: "/x", Kinds: []paddockv1.EventKind{0}}},
	} {
		t.Run("watch "+tc.name, func(t *testing.T) {
			stream, err := watch.Watch(ctx, tc.req)
			if err == nil {
				_, err = stream.Recv()
			}
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("Watch(%v) = %v, want InvalidArgument", tc.req, err)
			}
		})
	}
	for _, tc := range []struct {
		name string
		req  *paddockv1.PollRequest
	}{
		{"bad path", &paddockv1.PollRequest{Path: "/a//b"}},
		{"negative timeout", &paddockv1.PollRequest{Path: "/x", TimeoutMs: -1}},
		{"timeout over the max", &paddockv1.PollRequest{Path: "/x", TimeoutMs: 300_001}},
		{"negative max_events", &paddockv1.PollRequest{Path: "/x", MaxEvents: -1}},
		{"max_events over the max", &paddockv1.PollRequest{Path: "/x", MaxEvents: 1001}},
		{"unknown kind", &paddockv1.PollRequest{Path: "/x", Kinds: []paddockv1.EventKind{5}}},
	} {
		t.Run("poll "+tc.name, func(t *testing.T) {
			if _, err := watch.Poll(ctx, tc.req); status.Code(err) != codes.InvalidArgument {
				t.Fatalf("Poll(%v) = %v, want InvalidArgument", tc.req, err)
			}
		})
	}
	if c := n.WatcherCount(); c != 0 {
		t.Fatalf("WatcherCount after refused watches = %d, want 0", c)
	}
}

// TestSlowWatcherDroppedOverGRPC never reads a watch while the watched
// znode keeps changing: once gRPC's flow control blocks the server's
// sends, the watcher is dropped with RESOURCE_EXHAUSTED and a resume
// point that loses nothing and repeats nothing: the stream delivered
// exactly the writes before it. (It need not be the last event received
// + 1: zxids of other entries, with no event for /big, may lie between.)
func TestSlowWatcherDroppedOverGRPC(t *testing.T) {
	n, conn := singleNode(t, func(c *node.Config) { c.WatchHistory, c.WatchSlowLag = 100_000, 50 })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	watch := paddockv1.NewWatchServiceClient(conn)
	tree := paddockv1.NewTreeServiceClient(conn)
	if _, err := tree.Create(ctx, &paddockv1.CreateRequest{Path: "/big"}); err != nil {
		t.Fatal(err)
	}
	stream, err := watch.Watch(ctx, &paddockv1.WatchRequest{Path: "/big", PrevData: true, ProgressIntervalMs: -1})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil || !first.GetCreated() {
		t.Fatalf("first response = %v, %v; want created", first, err)
	}
	data := make([]byte, 64<<10)
	var sets []uint64 // the zxid of every write, in order
	for n.WatcherCount() > 0 {
		if len(sets) == 5000 {
			t.Fatalf("watcher not dropped after %d writes of %d bytes", len(sets), len(data))
		}
		r, err := tree.Set(ctx, &paddockv1.SetRequest{Path: "/big", Data: data})
		if err != nil {
			t.Fatalf("Set(/big): %v", err)
		}
		sets = append(sets, r.GetHeader().GetZxid())
	}
	var got []uint64
	for {
		r, err := stream.Recv()
		if err != nil {
			wc := canceledStatus(t, "unread watch", err, codes.ResourceExhausted, paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_SLOW)
			resume := wc.GetResumeZxid()
			var want []uint64
			for _, z := range sets {
				if z < resume {
					want = append(want, z)
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("resume_zxid = %d, but the stream delivered writes %v; want exactly the writes before it %v (all writes %v)", resume, got, want, sets)
			}
			if len(got) == len(sets) {
				t.Fatalf("dropped as slow after being sent all %d writes", len(sets))
			}
			return
		}
		for _, ev := range r.GetEvents() {
			got = append(got, ev.GetZxid())
		}
	}
}
