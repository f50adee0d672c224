package node_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paddock/paddock/node"
	"github.com/paddock/paddock/node/nodetest"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// benchCluster is a settled 3-node cluster and its leader and a follower.
func benchCluster(b *testing.B) (c *nodetest.Cluster, leader, follower *node.Node) {
	b.Helper()
	// Saturated CPUs delay heartbeats.
	c = newCluster(b, 3, nodetest.WithSteadyLeader())
	l := c.WaitLeader(b)
	return c, c.Node(l), c.Node(c.Followers(l)[0])
}

// BenchmarkWrite creates distinct znodes with 128 bytes of data from 1, 16
// and 128 concurrent writers, through the leader and through a follower
// (which forwards to the leader over gRPC).
func BenchmarkWrite(b *testing.B) {
	_, leader, follower := benchCluster(b)
	data := make([]byte, 128)
	var run atomic.Int64
	for _, via := range vias(leader, follower) {
		for _, writers := range []int{1, 16, 128} {
			b.Run(fmt.Sprintf("via=%s/writers=%d", via.name, writers), func(b *testing.B) {
				parent := fmt.Sprintf("/bench-%d", run.Add(1))
				mustPropose(b, via.n, createCmd(parent, nil))
				closedLoop(b, writers, func(ctx context.Context, i int64) error {
					_, err := via.n.Propose(ctx, createCmd(fmt.Sprintf("%s/%d", parent, i), data))
					return err
				})
			})
		}
	}
}

// closedLoop runs b.N calls of op, numbered from 1, from callers
// goroutines that each call again as soon as their call returns, and
// reports the rate.
func closedLoop(b *testing.B, callers int, op func(ctx context.Context, i int64) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				if err := op(ctx, i); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
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
		if _, err := n.Get(context.Background(), &paddockv1.GetRequest{Path: "/read", Read: &paddockv1.ReadOptions{MinZxid: res.Index}}); err != nil {
			b.Fatal(err)
		}
	}
	for _, via := range vias(leader, follower) {
		b.Run("via="+via.name, func(b *testing.B) {
			b.SetParallelism(16) // 16 readers per CPU: lets reads share rounds
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					if _, err := via.n.Get(ctx, &paddockv1.GetRequest{Path: "/read", Read: opts}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
		})
	}
}

// benchWatchers starts count watches of req on n; each sends the time it
// received every event to its own channel. They end with b.
func benchWatchers(b *testing.B, n *node.Node, req *paddockv1.WatchRequest, count int) []chan time.Time {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	b.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	chans := make([]chan time.Time, count)
	created := make(chan struct{}, count)
	for i := range chans {
		ch := make(chan time.Time, 1024)
		chans[i] = ch
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = n.Watch(ctx, req, func(r *paddockv1.WatchResponse) error {
				now := time.Now()
				if r.GetCreated() {
					created <- struct{}{}
				}
				for range r.GetEvents() {
					select {
					case ch <- now:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				return nil
			})
		}()
	}
	for range count {
		<-created
	}
	return chans
}

// BenchmarkWatchLatency measures the time from a write's acknowledgement
// (Propose returning on the leader) to the delivery of its event to every
// watcher of the znode, on the leader and on a follower, with 1 and 1000
// watchers. On the leader the event may be delivered before the
// acknowledgement (the hub hears of it first): that counts as 0.
func BenchmarkWatchLatency(b *testing.B) {
	_, leader, follower := benchCluster(b)
	var run atomic.Int64
	for _, via := range vias(leader, follower) {
		for _, watchers := range []int{1, 1000} {
			b.Run(fmt.Sprintf("via=%s/watchers=%d", via.name, watchers), func(b *testing.B) {
				path := fmt.Sprintf("/lat-%d", run.Add(1))
				mustPropose(b, leader, createCmd(path, nil))
				chans := benchWatchers(b, via.n, &paddockv1.WatchRequest{
					Path: path, Kinds: []paddockv1.EventKind{paddockv1.EventKind_EVENT_KIND_DATA_CHANGED}, ProgressIntervalMs: -1,
				}, watchers)
				lat := make([]time.Duration, 0, b.N*watchers)
				data := make([]byte, 128)
				b.ResetTimer()
				for range b.N {
					if _, err := leader.Propose(context.Background(), setCmd(path, data)); err != nil {
						b.Fatal(err)
					}
					ack := time.Now()
					for _, ch := range chans {
						lat = append(lat, max(0, (<-ch).Sub(ack)))
					}
				}
				b.StopTimer()
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-us")
			})
		}
	}
}

// BenchmarkWatchFanout measures events delivered per second to 1000
// watchers of a subtree on the leader while 16 writers create znodes in
// it (two events each: the znode and its parent's children).
func BenchmarkWatchFanout(b *testing.B) {
	const watchers = 1000
	_, leader, _ := benchCluster(b)
	mustPropose(b, leader, createCmd("/fan", nil))
	chans := benchWatchers(b, leader, &paddockv1.WatchRequest{Path: "/fan", Recursive: true, ProgressIntervalMs: -1}, watchers)
	var delivered atomic.Int64
	var readers sync.WaitGroup
	for _, ch := range chans {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for range 2 * b.N {
				<-ch
				delivered.Add(1)
			}
		}()
	}
	var next atomic.Int64
	var writers sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range 16 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				if _, err := leader.Propose(context.Background(), createCmd(fmt.Sprintf("/fan/%d", i), nil)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	writers.Wait()
	readers.Wait()
	b.ReportMetric(float64(delivered.Load())/time.Since(start).Seconds(), "events/s")
}

// benchVia is a node a benchmark calls, named for its sub-benchmarks.
type benchVia struct {
	name string
	n    *node.Node
}

// vias lists a benchmark cluster's leader and follower.
func vias(leader, follower *node.Node) []benchVia {
	return []benchVia{{"leader", leader}, {"follower", follower}}
}

// BenchmarkKeepAlive renews 128 sessions from 1 and 128 callers, on the
// leader and on a follower (which forwards its keepalives in batches). A
// renewal on the leader waits for a shared leadership check.
func BenchmarkKeepAlive(b *testing.B) {
	_, leader, follower := benchCluster(b)
	ids := make([]uint64, 128)
	for i := range ids {
		ids[i] = mustOpenSession(b, leader, time.Minute)
	}
	for _, via := range vias(leader, follower) {
		for _, callers := range []int{1, 128} {
			b.Run(fmt.Sprintf("via=%s/callers=%d", via.name, callers), func(b *testing.B) {
				closedLoop(b, callers, func(ctx context.Context, i int64) error {
					_, err := via.n.KeepAlive(ctx, ids[int(i)%len(ids)])
					return err
				})
			})
		}
	}
}
