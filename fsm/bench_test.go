package fsm

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/raft"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
)

const (
	benchBatch   = 64
	benchParents = 64
	benchData    = 128
)

var benchPayload = make([]byte, benchData)

// benchApplier feeds encoded commands to an FSM in ApplyBatch batches. It
// encodes a chunk of entries at a time with the timer stopped, so only
// ApplyBatch is measured and memory stays bounded however large b.N is.
type benchApplier struct {
	b     *testing.B
	f     *FSM
	index uint64
}

func (a *benchApplier) run(n int, cmd func(i int) *raftv1.Command) {
	const chunk = benchBatch * 256
	logs := make([]*raft.Log, 0, chunk)
	for start := 0; start < n; start += chunk {
		a.b.StopTimer()
		logs = logs[:0]
		for i := start; i < min(start+chunk, n); i++ {
			a.index++
			logs = append(logs, &raft.Log{Index: a.index, Type: raft.LogCommand, Data: encode(a.b, cmd(i), a.index)})
		}
		a.b.StartTimer()
		for i := 0; i < len(logs); i += benchBatch {
			for _, r := range a.f.ApplyBatch(logs[i:min(i+benchBatch, len(logs))]) {
				if err := r.(*Result).Err; err != nil {
					a.b.Fatalf("apply error = %v", err)
				}
			}
		}
	}
}

// discardSink takes events and drops them, like a hub with no watchers.
type discardSink struct{ events atomic.Int64 }

func (s *discardSink) Applied(_ uint64, events []Event) { s.events.Add(int64(len(events))) }
func (s *discardSink) Restored(uint64)                  {}

// newBenchFSM holds benchParents parents /p00.. and n nodes spread under
// them, each with benchData bytes.
func newBenchFSM(b *testing.B, n int) (*benchApplier, []string) {
	a := &benchApplier{b: b, f: New(&discardSink{})}
	a.run(benchParents, func(i int) *raftv1.Command { return cmdCreate(fmt.Sprintf("/p%02d", i), nil) })
	paths := make([]string, n)
	for i := range paths {
		paths[i] = fmt.Sprintf("/p%02d/node-%08d", i%benchParents, i)
	}
	a.run(n, func(i int) *raftv1.Command { return cmdCreate(paths[i], benchPayload) })
	return a, paths
}

func reportOps(b *testing.B, ops int) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(ops)/s, "ops/s")
	}
}

// liveHeap is the heap in use after a full collection.
func liveHeap() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// BenchmarkTreeMemory reports the live heap a tree of 100,000 znodes of
// benchData bytes takes, per znode: the heap with the FSM minus the heap
// once it is dropped. The sink keeps no events and no command carries a
// request id, so this is the tree alone (znodes, data, paths, B-tree).
func BenchmarkTreeMemory(b *testing.B) {
	const n = 100_000
	var perZnode float64
	for b.Loop() {
		a, _ := newBenchFSM(b, n)
		with := liveHeap()
		a.f = nil
		perZnode = float64(with-liveHeap()) / n
	}
	b.ReportMetric(perZnode, "heapB/znode")
}

func BenchmarkApplyCreate(b *testing.B) {
	a, _ := newBenchFSM(b, 0)
	b.ReportAllocs()
	b.ResetTimer()
	a.run(b.N, func(i int) *raftv1.Command {
		return cmdCreate(fmt.Sprintf("/p%02d/c-%09d", i%benchParents, i), benchPayload)
	})
	b.StopTimer()
	reportOps(b, b.N)
}

func BenchmarkApplySet(b *testing.B) {
	a, paths := newBenchFSM(b, 10_000)
	b.ReportAllocs()
	b.ResetTimer()
	a.run(b.N, func(i int) *raftv1.Command { return cmdSet(paths[i%len(paths)], benchPayload, nil) })
	b.StopTimer()
	reportOps(b, b.N)
}

func BenchmarkGet(b *testing.B) {
	a, paths := newBenchFSM(b, 100_000)
	f := a.f
	var next atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(7919))
		for pb.Next() {
			i++
			if _, _, err := f.Get(paths[i%len(paths)]); err != nil {
				b.Errorf("Get error = %v", err)
				return
			}
		}
	})
	b.StopTimer()
	reportOps(b, b.N)
}

func BenchmarkList10k(b *testing.B) {
	a := &benchApplier{b: b, f: New(nil)}
	a.run(1, func(int) *raftv1.Command { return cmdCreate("/big", nil) })
	a.run(10_000, func(i int) *raftv1.Command { return cmdCreate(fmt.Sprintf("/big/child-%05d", i), benchPayload) })
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		page, err := a.f.List("/big", "", 10_000)
		if err != nil || len(page.Children) != 10_000 {
			b.Fatalf("List(/big) = %d children, %v", len(page.Children), err)
		}
	}
	reportOps(b, b.N)
	b.ReportMetric(float64(b.N)*10_000/b.Elapsed().Seconds(), "children/s")
}

// countingSink is a raft.SnapshotSink that counts and discards.
type countingSink struct{ n int64 }

func (s *countingSink) Write(p []byte) (int, error) { s.n += int64(len(p)); return len(p), nil }
func (s *countingSink) Close() error                { return nil }
func (s *countingSink) Cancel() error               { return nil }
func (s *countingSink) ID() string                  { return "counting" }

var _ raft.SnapshotSink = (*countingSink)(nil)

func BenchmarkSnapshotPersist100k(b *testing.B) {
	const n = 100_000
	a, _ := newBenchFSM(b, n)
	b.ReportAllocs()
	b.ResetTimer()
	var size int64
	for b.Loop() {
		snap, err := a.f.Snapshot()
		if err != nil {
			b.Fatalf("Snapshot() error = %v", err)
		}
		sink := &countingSink{}
		if err := snap.Persist(sink); err != nil {
			b.Fatalf("Persist() error = %v", err)
		}
		snap.Release()
		size = sink.n
	}
	b.SetBytes(size)
	b.ReportMetric(float64(b.N)*n/b.Elapsed().Seconds(), "znodes/s")
	b.ReportMetric(float64(size)/(1<<20), "MB/snapshot")
}
