package node

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/paddock/paddock/fsm"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// liveHeap is the heap in use after a full collection.
func liveHeap() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// BenchmarkHistoryMemory reports the heap the watch history takes per
// event when it is full at the default limits: creates of 128-byte znodes
// applied by a real state machine (each gives a CREATED and a
// CHILDREN_CHANGED event), measured as the heap with the history minus the
// heap once the history is replaced by an empty one. Paths shared with the
// tree are the tree's, not the history's.
func BenchmarkHistoryMemory(b *testing.B) {
	d := DefaultConfig()
	var perEvent float64
	for b.Loop() {
		h := newHub(d.WatchHistory, d.WatchHistoryBytes, d.WatchHistory/2)
		f := fsm.New(h)
		data := make([]byte, 128)
		for i := range d.WatchHistory / 2 {
			cmd := &raftv1.Command{TimeUnixMs: 1_700_000_000_000 + int64(i), Op: &raftv1.Command_Create{
				Create: &paddockv1.CreateRequest{Path: fmt.Sprintf("/node-%08d", i), Data: data},
			}}
			enc, err := proto.Marshal(cmd)
			if err != nil {
				b.Fatal(err)
			}
			if r := f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: enc}).(*fsm.Result); r.Err != nil {
				b.Fatalf("apply: %v", r.Err)
			}
		}
		if h.hist.n != d.WatchHistory {
			b.Fatalf("history holds %d events, want %d", h.hist.n, d.WatchHistory)
		}
		with := liveHeap()
		h.mu.Lock()
		h.hist = newHistory(d.WatchHistory, d.WatchHistoryBytes)
		h.mu.Unlock()
		perEvent = float64(with-liveHeap()) / float64(d.WatchHistory)
		runtime.KeepAlive(f)
	}
	b.ReportMetric(perEvent, "heapB/event")
}

// BenchmarkApplyHub applies creates of 128-byte znodes in batches of 64
// through a real state machine whose sink is a hub with the default
// history (full after the first 32,768): the apply goroutine's work for
// every write on every node, with no watcher.
func BenchmarkApplyHub(b *testing.B) {
	d := DefaultConfig()
	h := newHub(d.WatchHistory, d.WatchHistoryBytes, d.WatchHistory/2)
	f := fsm.New(h)
	data := make([]byte, 128)
	const batch = 64
	logs := make([]*raft.Log, 0, batch)
	index := uint64(0)
	apply := func() {
		for _, r := range f.ApplyBatch(logs) {
			if err := r.(*fsm.Result).Err; err != nil {
				b.Fatalf("apply: %v", err)
			}
		}
		logs = logs[:0]
	}
	entry := func(i int) *raft.Log {
		index++
		cmd := &raftv1.Command{TimeUnixMs: 1_700_000_000_000 + int64(index), Op: &raftv1.Command_Create{
			Create: &paddockv1.CreateRequest{Path: fmt.Sprintf("/n-%09d", i), Data: data},
		}}
		enc, err := proto.Marshal(cmd)
		if err != nil {
			b.Fatal(err)
		}
		return &raft.Log{Index: index, Type: raft.LogCommand, Data: enc}
	}
	for i := range d.WatchHistory / 2 { // fill the history first
		logs = append(logs, entry(-i-1))
		if len(logs) == batch {
			apply()
		}
	}
	apply()
	b.ReportAllocs()
	b.ResetTimer()
	// Entries are encoded a chunk at a time with the timer stopped.
	const chunk = batch * 256
	var pending []*raft.Log
	for i := 0; i < b.N; i += chunk {
		b.StopTimer()
		pending = pending[:0]
		for j := i; j < min(i+chunk, b.N); j++ {
			pending = append(pending, entry(j))
		}
		b.StartTimer()
		for len(pending) > 0 {
			k := min(batch, len(pending))
			logs = append(logs, pending[:k]...)
			pending = pending[k:]
			apply()
		}
	}
}
