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
