package rpc_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// BenchmarkServer measures a whole gRPC call on a single node served by
// rpc.NewServer over 127.0.0.1, with a real gRPC client in the same
// process: the per-call cost of the server (HTTP/2, interceptors, metrics,
// headers, handler) and of the client that the benchmark's load generator
// shares the cores with. 16 callers per GOMAXPROCS keep several calls in
// flight, as a loaded node has. Reads are serializable, so they measure the
// gRPC path rather than a read index round; a write also pays its raft
// commit and fsync, so its allocs/op is the figure to watch there.
func BenchmarkServer(b *testing.B) {
	_, conn := singleNode(b, nil)
	tree := paddockv1.NewTreeServiceClient(conn)
	ctx := context.Background()
	if _, err := tree.Create(ctx, &paddockv1.CreateRequest{Path: "/k", Data: make([]byte, 32)}); err != nil {
		b.Fatal(err)
	}
	serializable := &paddockv1.ReadOptions{Consistency: paddockv1.ReadConsistency_READ_CONSISTENCY_SERIALIZABLE}

	b.Run("Get", func(b *testing.B) {
		req := &paddockv1.GetRequest{Path: "/k", Read: serializable}
		parallel(b, func(ctx context.Context, _ int64) error {
			_, err := tree.Get(ctx, req)
			return err
		})
	})
	// As the benchmark's load generator: every caller has a connection of
	// its own, mostly idle, so per-connection work (flow control, pings,
	// flushes) is paid per call.
	b.Run("GetConnPerCaller", func(b *testing.B) {
		req := &paddockv1.GetRequest{Path: "/k", Read: serializable}
		callers := 16 * runtime.GOMAXPROCS(0)
		trees := make([]paddockv1.TreeServiceClient, callers)
		for i := range trees {
			c, err := grpc.NewClient(conn.Target(), grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithInitialWindowSize(clientWindow), grpc.WithInitialConnWindowSize(clientWindow))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			trees[i] = paddockv1.NewTreeServiceClient(c)
		}
		var caller atomic.Int64
		b.SetParallelism(16)
		b.ReportAllocs()
		b.ResetTimer()
		cpu := cpuTime(b)
		b.RunParallel(func(pb *testing.PB) {
			tree := trees[int(caller.Add(1)-1)%callers]
			for pb.Next() {
				if _, err := tree.Get(ctx, req); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(cpuTime(b)-cpu)/float64(b.N), "cpu-ns/op")
	})
	b.Run("Exists", func(b *testing.B) {
		req := &paddockv1.ExistsRequest{Path: "/k", Read: serializable}
		parallel(b, func(ctx context.Context, _ int64) error {
			_, err := tree.Exists(ctx, req)
			return err
		})
	})
	var run, ids atomic.Int64
	b.Run("Create", func(b *testing.B) {
		parent := fmt.Sprintf("/bench-%d", run.Add(1))
		if _, err := tree.Create(ctx, &paddockv1.CreateRequest{Path: parent}); err != nil {
			b.Fatal(err)
		}
		data := make([]byte, 32)
		parallel(b, func(ctx context.Context, i int64) error {
			// As the client does: every write carries a fresh request id.
			ctx = metadata.AppendToOutgoingContext(ctx, "paddock-request-id", fmt.Sprintf("%032x", ids.Add(1)))
			_, err := tree.Create(ctx, &paddockv1.CreateRequest{Path: fmt.Sprintf("%s/%d", parent, i), Data: data})
			return err
		})
	})
	b.Run("Set", func(b *testing.B) {
		data := make([]byte, 32)
		parallel(b, func(ctx context.Context, i int64) error {
			ctx = metadata.AppendToOutgoingContext(ctx, "paddock-request-id", fmt.Sprintf("%032x", ids.Add(1)))
			_, err := tree.Set(ctx, &paddockv1.SetRequest{Path: "/k", Data: data})
			return err
		})
	})
}

// clientWindow is the flow control window of the connections of
// GetConnPerCaller, static as the client package's (client.New).
const clientWindow = 4 << 20

// parallel runs op b.N times from 16 goroutines per GOMAXPROCS, each call
// numbered uniquely from 1.
func parallel(b *testing.B, op func(ctx context.Context, i int64) error) {
	var next atomic.Int64
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime(b)
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if err := op(ctx, next.Add(1)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	// The process's CPU time per call (server, client and raft alike) is
	// steadier than ns/op on a machine that other work shares.
	b.ReportMetric(float64(cpuTime(b)-cpu)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the user and system CPU time the process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
