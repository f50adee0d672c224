package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"weak"

	"github.com/hashicorp/raft"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// TestFailedCreateChangesNothing: a create that finds its path taken
// (plain, sequential onto a taken suffix, ephemeral, and the same as the
// last op of a multi) leaves the state hash, the existing znode (the very
// one: data, stat), the ephemeral index and the events as they were, on a
// tree that a snapshot shares (copy-on-write) and on one that it does not.
func TestFailedCreateChangesNothing(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("snapshot=%t", shared), func(t *testing.T) {
			h := newHarness(t)
			sid := h.openSession(10_000)
			// Enough znodes for a tree of several levels, so that the
			// insert splits full nodes on its way down.
			for i := range 300 {
				h.mustCreate(fmt.Sprintf("/n%03d", i), fmt.Sprint(i))
			}
			h.mustCreate("/s", "")
			h.mustCreate("/s/x-0000000000", "taken")
			h.must(cmdEphemeral("/e", sid, false))
			if shared {
				snap, err := h.f.Snapshot()
				if err != nil {
					t.Fatal(err)
				}
				defer snap.Release()
			}
			hash := h.f.StateHash()
			events := len(h.sink.events)
			old := h.f.state.tree.nodes.Len()
			var before *znode
			h.f.state.tree.nodes.Ascend(func(n *znode) bool {
				if n.path == "/n150" {
					before = n
				}
				return true
			})
			for _, cmd := range []*raftv1.Command{
				cmdCreate("/n150", []byte("other")),
				cmdCreateReq(&paddockv1.CreateRequest{Path: "/s/x-", Sequential: true, Data: []byte("seq")}),
				cmdEphemeral("/n150", sid, false),
				cmdEphemeral("/e", sid, false),
				cmdMulti(opCreate(&paddockv1.CreateRequest{Path: "/m"}), opCreate(&paddockv1.CreateRequest{Path: "/n150"})),
			} {
				res := h.apply(cmd)
				var me *MultiError
				if !errors.Is(res.Err, ErrNodeExists) && !(errors.As(res.Err, &me) && errors.Is(me.Err, ErrNodeExists)) {
					t.Fatalf("Apply(%v) error = %v, want %v", cmd, res.Err, ErrNodeExists)
				}
				if got := h.f.StateHash(); got != hash {
					t.Fatalf("after the failed %v the state hash changed", cmd)
				}
				if len(h.sink.events) != events {
					t.Fatalf("after the failed %v: %d events, want %d", cmd, len(h.sink.events), events)
				}
				if n := h.f.state.tree.nodes.Len(); n != old {
					t.Fatalf("after the failed %v: %d znodes, want %d", cmd, n, old)
				}
				var now *znode
				h.f.state.tree.nodes.Ascend(func(n *znode) bool {
					if n.path == "/n150" {
						now = n
					}
					return true
				})
				if now != before {
					t.Fatalf("after the failed %v, /n150 is another znode", cmd)
				}
				data, st, err := h.f.Get("/n150")
				if err != nil || !bytes.Equal(data, []byte("150")) || st.GetEphemeralOwner() != 0 {
					t.Fatalf("after the failed %v, Get(/n150) = %q, %v, %v", cmd, data, st, err)
				}
				if len(h.f.state.tree.ephemerals[sid]) != 1 {
					t.Fatalf("after the failed %v, session %d owns %v", cmd, sid, h.f.state.tree.ephemerals[sid])
				}
			}
			checkInvariants(t, h.f)
		})
	}
}

// TestConcurrentLookups runs every reader that looks a path up (Get,
// GetInto, List, ListData, Contention, IdleCandidates) from several
// goroutines while creates, failed creates, sets, multis and deletes are
// applied: for the race detector, over the apply goroutine's lookup key
// and the readers' pooled ones. Each reader also checks what it read is a
// state that existed.
func TestConcurrentLookups(t *testing.T) {
	h := newHarness(t)
	h.mustCreate("/r", "")
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for r := range 4 {
		wg.Go(func() {
			var st paddockv1.Stat
			for i := 0; !stop.Load(); i++ {
				p := fmt.Sprintf("/r/k%d", (i+r)%8)
				if data, err := h.f.GetInto(p, &st); err == nil && !bytes.HasPrefix(data, []byte(p)) {
					errs <- fmt.Errorf("GetInto(%s) = %q", p, data)
					return
				}
				st = paddockv1.Stat{}
				if data, _, err := h.f.Get(p); err == nil && !bytes.HasPrefix(data, []byte(p)) {
					errs <- fmt.Errorf("Get(%s) = %q", p, data)
					return
				}
				_, _ = h.f.List("/r", "", 4)
				_, _ = h.f.ListData("/r", "", 4)
				_, _ = h.f.Contention(raftv1.ContentionKind_CONTENTION_KIND_LOCK, "l")
				_ = h.f.IdleCandidates()
			}
		})
	}
	for i := range 600 {
		p := fmt.Sprintf("/r/k%d", i%8)
		v := []byte(fmt.Sprintf("%s %d", p, i))
		switch i % 4 {
		case 0, 1:
			h.apply(cmdCreate(p, v)) // fails when p exists
		case 2:
			h.apply(cmdSet(p, v, nil))
		case 3:
			h.apply(cmdMulti(opCreate(&paddockv1.CreateRequest{Path: p + "x", Data: v}), opCreate(&paddockv1.CreateRequest{Path: p, Data: v})))
			h.apply(cmdDelete(p, nil, false))
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	checkInvariants(t, h.f)
}

// TestEventBufferKeepsNoDroppedData: the batch event buffer the FSM keeps
// between batches must not keep a znode's data alive once the tree has
// dropped it. A failed multi appends its events to the buffer's spare
// capacity (its txn's events, discarded with it); a later, smaller batch
// does not overwrite them, so unless they are cleared they pin the data
// they refer to (a set's previous data) for the life of the process. The
// multi runs alone, and first in a batch whose later entries succeed (so
// that what it left starts inside the events the batch kept).
func TestEventBufferKeepsNoDroppedData(t *testing.T) {
	for _, then := range []int{0, 1, 3} {
		t.Run(fmt.Sprintf("then=%d", then), func(t *testing.T) {
			h := newHarness(t)
			// A batch of many events, so that the kept buffer has room.
			var ops []*paddockv1.Op
			for i := range 20 {
				ops = append(ops, opCreate(&paddockv1.CreateRequest{Path: fmt.Sprintf("/s%02d", i)}))
			}
			h.must(cmdMulti(ops...))
			h.mustCreate("/big", string(bytes.Repeat([]byte("b"), 512<<10)))
			var data []byte
			h.f.state.tree.nodes.Ascend(func(n *znode) bool {
				if n.path == "/big" {
					data = n.data
				}
				return true
			})
			dropped := weak.Make(&data[0])
			data = nil
			// A multi whose sets append events and whose last op fails:
			// its events, /big's previous data among them, went into the
			// buffer.
			ops = ops[:0]
			for i := range 10 {
				ops = append(ops, opSet(fmt.Sprintf("/s%02d", i), nil, nil))
			}
			ops = append(ops, opSet("/big", []byte("small"), nil), opCheck("/missing", -1))
			logs := []*raft.Log{h.next(cmdMulti(ops...))}
			for i := range then {
				logs = append(logs, h.next(cmdCreate(fmt.Sprintf("/t%d", i), nil)))
			}
			results := h.f.ApplyBatch(logs)
			if results[0].(*Result).Err == nil {
				t.Fatal("the multi succeeded, want it to fail on its last op")
			}
			for i, r := range results[1:] {
				if err := r.(*Result).Err; err != nil {
					t.Fatalf("create %d: %v", i, err)
				}
			}
			h.must(cmdDelete("/big", nil, false))
			// The sink's copies are the test's, not the FSM's.
			h.sink.mu.Lock()
			h.sink.events = nil
			h.sink.mu.Unlock()
			deadline := time.Now().Add(5 * time.Second)
			for dropped.Value() != nil {
				if time.Now().After(deadline) {
					t.Fatal("/big's data, deleted, is still reachable: the FSM's event buffer keeps it")
				}
				runtime.GC()
			}
			// The FSM must outlive the check: its buffer is what is tested.
			runtime.KeepAlive(h.f)
		})
	}
}
