package node_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paddock/paddock/node"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// benchCluster is a settled 3-node cluster and its leader and a follower.
func benchCluster(b *testing.B) (c *cluster, leader, follower *node.Node) {
	b.Helper()
	// Saturated CPUs delay heartbeats: slower timings than the tests' keep
	// leadership where it is for the whole run.
	c = newCluster(b, 3, withConfig(func(cfg *node.Config) {
		cfg.HeartbeatTimeout = time.Second
		cfg.ElectionTimeout = time.Second
	}))
	l := c.WaitLeader(b)
	return c, c.node(l), c.node(c.followers(l)[0])
}

// BenchmarkWrite creates distinct znodes with 128 bytes of data from 1, 16
// and 128 concurrent writers, through the leader and through a follower
// (which forwards to the leader over gRPC).
func BenchmarkWrite(b *testing.B) {
	_, leader, follower := benchCluster(b)
	data := make([]byte, 128)
	var run atomic.Int64
	for _, via := range []struct {
		name string
		n    *node.Node
	}{{"leader", leader}, {"follower", follower}} {
		for _, writers := range []int{1, 16, 128} {
			b.Run(fmt.Sprintf("via=%s/writers=%d", via.name, writers), func(b *testing.B) {
				parent := fmt.Sprintf("/bench-%d", run.Add(1))
				mustPropose(b, via.n, createCmd(parent, nil))
				var next atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				start := time.Now()
				for range writers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						ctx := context.Background()
						for {
							i := next.Add(1)
							if i > int64(b.N) {
								return
							}
							if _, err := via.n.Propose(ctx, createCmd(fmt.Sprintf("%s/%d", parent, i), data)); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
			})
		}
	}
}

// BenchmarkReadLinearizable reads one znode with a read index, on the
// leader and on a follower (which asks the leader for it over gRPC).
func BenchmarkReadLinearizable(b *testing.B) {
	benchRead(b, nil)
}

// BenchmarkReadSerializable reads one znode from the local state.
func BenchmarkReadSerializable(b *testing.B) {
	benchRead(b, &paddockv1.ReadOptions{Consistency: paddockv1.ReadConsistency_READ_CONSISTENCY_SERIALIZABLE})
}

func benchRead(b *testing.B, opts *paddockv1.ReadOptions) {
	_, leader, follower := benchCluster(b)
	res := mustPropose(b, leader, createCmd("/read", make([]byte, 128)))
	// Both nodes must have applied the znode before a serializable read.
	for _, n := range []*node.Node{leader, follower} {
		if err := n.WaitRead(context.Background(), &paddockv1.ReadOptions{MinZxid: res.Index}); err != nil {
			b.Fatal(err)
		}
	}
	for _, via := range []struct {
		name string
		n    *node.Node
	}{{"leader", leader}, {"follower", follower}} {
		b.Run("via="+via.name, func(b *testing.B) {
			b.SetParallelism(16) // 16 readers per CPU: lets reads share rounds
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					if err := via.n.WaitRead(ctx, opts); err != nil {
						b.Error(err)
						return
					}
					if _, _, err := via.n.FSM().Get("/read"); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
		})
	}
}
