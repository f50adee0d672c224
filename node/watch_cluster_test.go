package node_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/paddock/paddock/node"
	"github.com/paddock/paddock/node/nodetest"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// nodeWatch is a Watch on one node, run on its own goroutine; its
// responses go to a buffered channel.
type nodeWatch struct {
	n      *node.Node
	resps  chan *paddockv1.WatchResponse
	ended  chan struct{}
	err    error
	cancel context.CancelFunc
}

func startNodeWatch(t *testing.T, n *node.Node, req *paddockv1.WatchRequest) *nodeWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &nodeWatch{n: n, resps: make(chan *paddockv1.WatchResponse, 10000), ended: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(w.ended)
		w.err = n.Watch(ctx, req, func(r *paddockv1.WatchResponse) error {
			select {
			case w.resps <- r:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	// Runs before the cluster's cleanup (registered earlier).
	t.Cleanup(func() {
		cancel()
		<-w.ended
	})
	return w
}

func (w *nodeWatch) next(t *testing.T) *paddockv1.WatchResponse {
	t.Helper()
	select {
	case r := <-w.resps:
		return r
	case <-w.ended:
		t.Fatalf("watch on %s ended: %v", w.n.ID(), w.err)
	case <-time.After(waitTimeout):
		t.Fatalf("no watch response from %s", w.n.ID())
	}
	return nil
}

// created reads the created response and returns its zxid.
func (w *nodeWatch) created(t *testing.T) uint64 {
	t.Helper()
	r := w.next(t)
	if !r.GetCreated() {
		t.Fatalf("first response from %s = %v, want created", w.n.ID(), r)
	}
	if got := r.GetHeader().GetNodeId(); got != w.n.ID() {
		t.Fatalf("created header node id = %q, want %q", got, w.n.ID())
	}
	return r.GetHeader().GetZxid()
}

// events reads responses until count events came. It fails if no event
// comes for waitTimeout: progress responses alone (every 10s) would
// otherwise keep it waiting until the test binary's timeout, hiding why
// the events stopped (a writer's failure, say).
func (w *nodeWatch) events(t *testing.T, count int) []*paddockv1.Event {
	t.Helper()
	var out []*paddockv1.Event
	deadline := time.Now().Add(waitTimeout)
	for len(out) < count {
		evs := w.next(t).GetEvents()
		if len(evs) > 0 {
			deadline = time.Now().Add(waitTimeout)
		} else if time.Now().After(deadline) {
			t.Fatalf("watch on %s: %d of %d events, then none for %v", w.n.ID(), len(out), count, waitTimeout)
		}
		out = append(out, evs...)
	}
	return out
}

// end waits for the watch to end by itself and returns its error.
func (w *nodeWatch) end(t *testing.T) error {
	t.Helper()
	select {
	case <-w.ended:
		return w.err
	case <-time.After(waitTimeout):
		t.Fatalf("watch on %s did not end", w.n.ID())
	}
	return nil
}

func describe(e *paddockv1.Event) string {
	return fmt.Sprintf("%d %s %s", e.GetZxid(), e.GetKind(), e.GetPath())
}

func describeAll(evs []*paddockv1.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = describe(e)
	}
	return out
}

func TestWatchOnFollowerSeesLeaderWrite(t *testing.T) {
	c := newCluster(t, 3)
	leader := c.WaitLeader(t)
	f := c.Node(c.Followers(leader)[0])
	w := startNodeWatch(t, f, &paddockv1.WatchRequest{Path: "/w", Recursive: true, PrevData: true})
	w.created(t)

	ln := c.Node(leader)
	r1 := mustPropose(t, ln, createCmd("/w", []byte("v1")))
	r2 := mustPropose(t, ln, createCmd("/w/x", nil))
	r3 := mustPropose(t, ln, setCmd("/w", []byte("v2")))
	got := w.events(t, 4)
	want := []string{
		fmt.Sprintf("%d EVENT_KIND_CREATED /w", r1.Index),
		fmt.Sprintf("%d EVENT_KIND_CREATED /w/x", r2.Index),
		fmt.Sprintf("%d EVENT_KIND_CHILDREN_CHANGED /w", r2.Index),
		fmt.Sprintf("%d EVENT_KIND_DATA_CHANGED /w", r3.Index),
	}
	if !slices.Equal(describeAll(got), want) {
		t.Fatalf("events on follower %s = %q, want %q", f.ID(), describeAll(got), want)
	}
	if p := string(got[3].GetPrevData()); p != "v1" {
		t.Fatalf("prev_data of the set = %q, want v1", p)
	}
	if v := got[3].GetStat().GetVersion(); v != 1 {
		t.Fatalf("stat version after the set = %d, want 1", v)
	}
}

// TestWatchResumesOnAnotherNode stops a watch half-way through a stream of
// writes and resumes it on another node from the last zxid seen + 1: the
// union is exactly the writes, in order, none twice.
func TestWatchResumesOnAnotherNode(t *testing.T) {
	const writes = 300
	c := newCluster(t, 3, nodetest.WithSteadyLeader())
	leader := c.WaitLeader(t)
	ln := c.Node(leader)
	fs := c.Followers(leader)
	start := mustPropose(t, ln, createCmd("/r", nil)).Index + 1

	created := []paddockv1.EventKind{paddockv1.EventKind_EVENT_KIND_CREATED}
	w1 := startNodeWatch(t, c.Node(fs[0]), &paddockv1.WatchRequest{Path: "/r", Recursive: true, Kinds: created, StartZxid: start})
	if got := w1.created(t); got != start-1 {
		t.Fatalf("created zxid = %d, want %d", got, start-1)
	}
	wrote := make(chan []string, 1)
	go func() {
		var out []string
		for i := range writes {
			ctx, cancel := context.WithTimeout(context.Background(), testProposeTimeout)
			p := fmt.Sprintf("/r/%d", i)
			res, err := ln.Propose(ctx, createCmd(p, nil))
			cancel()
			if err != nil {
				t.Errorf("Propose(create %s): %v", p, err)
				break
			}
			out = append(out, fmt.Sprintf("%d EVENT_KIND_CREATED %s", res.Index, p))
		}
		wrote <- out
	}()

	first := w1.events(t, writes/2)
	w1.cancel()
	<-w1.ended
	last := first[len(first)-1].GetZxid()
	// A zxid's events are never split across responses: last + 1 is
	// exact.
	w2 := startNodeWatch(t, c.Node(fs[1]), &paddockv1.WatchRequest{Path: "/r", Recursive: true, Kinds: created, StartZxid: last + 1})
	w2.created(t)
	want := <-wrote
	if t.Failed() {
		return
	}
	rest := w2.events(t, writes-len(first))
	got := append(describeAll(first), describeAll(rest)...)
	if !slices.Equal(got, want) {
		t.Fatalf("events across the resume (%d + %d) differ from the %d writes:\ngot  %q\nwant %q", len(first), len(rest), len(want), got, want)
	}
}

func TestWatchSeesEphemeralDeletes(t *testing.T) {
	c := newCluster(t, 3)
	leader := c.WaitLeader(t)
	ln := c.Node(leader)
	f := c.Node(c.Followers(leader)[0])
	for _, tc := range []struct {
		name string
		end  func(t *testing.T, id uint64) // ends the session
	}{
		{"close", func(t *testing.T, id uint64) {
			ctx, cancel := context.WithTimeout(context.Background(), testProposeTimeout)
			defer cancel()
			if _, _, err := f.CloseSession(ctx, id); err != nil {
				t.Fatalf("CloseSession(%d): %v", id, err)
			}
		}},
		{"expiry", func(*testing.T, uint64) {}}, // no keepalive: the leader expires it
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := "/eph-" + tc.name
			id := mustOpenSession(t, ln, time.Second)
			res := mustPropose(t, ln, &raftv1.Command{Op: &raftv1.Command_Create{Create: &paddockv1.CreateRequest{
				Path: path, Data: []byte("owned"), Type: paddockv1.NodeType_NODE_TYPE_EPHEMERAL, SessionId: id,
			}}})
			// From after the create: "now" on the follower may be before
			// it applied the create.
			w := startNodeWatch(t, f, &paddockv1.WatchRequest{Path: path, PrevData: true, StartZxid: res.Index + 1})
			w.created(t)
			tc.end(t, id)
			evs := w.events(t, 1)
			if len(evs) != 1 || evs[0].GetKind() != paddockv1.EventKind_EVENT_KIND_DELETED || evs[0].GetPath() != path {
				t.Fatalf("events = %q, want one DELETED %s", describeAll(evs), path)
			}
			if p := string(evs[0].GetPrevData()); p != "owned" {
				t.Fatalf("prev_data = %q, want owned", p)
			}
		})
	}
}

// TestWatchCanceledBySnapshotInstall cuts a follower off until the leader
// has compacted its log, so the follower catches up by installing a
// snapshot: its open watches end with SNAPSHOT_RESTORED, and a new watch
// must start after the snapshot.
func TestWatchCanceledBySnapshotInstall(t *testing.T) {
	// The lagging follower must stay in leader contact (node/contact.go)
	// through the partition, or its watch ends with ErrLostLeader before
	// the snapshot arrives: the partition lasts for the writes and the
	// snapshot, so the heartbeat timeout is long enough for a loaded
	// machine (at the default 250 ms the test failed whenever the writes
	// took longer).
	c := newCluster(t, 3, nodetest.WithSnapshots(64, 16), nodetest.WithConfig(func(cfg *node.Config) {
		cfg.HeartbeatTimeout = 3 * time.Second
		cfg.ElectionTimeout = 3 * time.Second
	}))
	leader := c.WaitLeader(t)
	lag := c.Followers(leader)[0]
	c.Converged(t)
	ln, lagNode := c.Node(leader), c.Node(lag)
	w := startNodeWatch(t, lagNode, &paddockv1.WatchRequest{Path: "/", Recursive: true})
	w.created(t)
	poll := make(chan error, 1)
	go func() {
		_, err := lagNode.Poll(context.Background(), &paddockv1.PollRequest{Path: "/nothing", TimeoutMs: 60_000})
		poll <- err
	}()

	c.Partition(lag)
	writeMany(t, ln, "/snap", 300)
	if err := ln.Snapshot(); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	snapIndex := raftStat(t, ln, "last_snapshot_index")
	c.Heal()

	err := w.end(t)
	var ce *node.CanceledError
	if !errors.As(err, &ce) || ce.Reason != paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_SNAPSHOT_RESTORED {
		t.Fatalf("watch on the lagging follower ended with %v, want SNAPSHOT_RESTORED", err)
	}
	if ce.CompactZxid <= snapIndex {
		t.Fatalf("compact_zxid = %d, want past the leader's snapshot %d", ce.CompactZxid, snapIndex)
	}
	if !errors.Is(err, node.ErrCompacted) {
		t.Fatalf("%v does not match ErrCompacted", err)
	}
	var pce *node.CanceledError
	if err := <-poll; !errors.As(err, &pce) || *pce != *ce {
		t.Fatalf("poll on the lagging follower ended with %v, want %v", err, ce)
	}

	// The history restarts at the snapshot.
	old := startNodeWatch(t, lagNode, &paddockv1.WatchRequest{Path: "/", StartZxid: ce.CompactZxid - 1})
	if err := old.end(t); !errors.As(err, &pce) || pce.Reason != paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_COMPACTED || pce.CompactZxid != ce.CompactZxid {
		t.Fatalf("watch from before the snapshot ended with %v, want COMPACTED at %d", err, ce.CompactZxid)
	}
	fresh := startNodeWatch(t, lagNode, &paddockv1.WatchRequest{Path: "/after", StartZxid: ce.CompactZxid})
	fresh.created(t)
	res := mustPropose(t, ln, createCmd("/after", nil))
	if evs := fresh.events(t, 1); len(evs) != 1 || evs[0].GetZxid() != res.Index {
		t.Fatalf("events after the snapshot = %q, want the create at %d", describeAll(evs), res.Index)
	}
}

func TestWatchEndsOnClose(t *testing.T) {
	c := newCluster(t, 3)
	leader := c.WaitLeader(t)
	f := c.Followers(leader)[0]
	fn := c.Node(f)
	w := startNodeWatch(t, fn, &paddockv1.WatchRequest{Path: "/"})
	from := w.created(t)
	if n := fn.WatcherCount(); n != 1 {
		t.Fatalf("WatcherCount = %d, want 1", n)
	}
	c.Stop(f)
	err := w.end(t)
	var ce *node.CanceledError
	if !errors.As(err, &ce) || ce.Reason != paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_SHUTTING_DOWN || ce.ResumeZxid <= from {
		t.Fatalf("watch ended with %v, want SHUTTING_DOWN resuming after %d", err, from)
	}
	if !errors.Is(err, node.ErrShuttingDown) {
		t.Fatalf("%v does not match ErrShuttingDown", err)
	}
}
