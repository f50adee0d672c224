package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"google.golang.org/protobuf/proto"

	"github.com/paddock/paddock/fsm"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// Unit tests of the watch hub, fed by calling its fsm.Sink methods
// directly, without raft.

const hubWait = 10 * time.Second

func set(zxid uint64, path string, prev string) fsm.Event {
	return fsm.Event{Zxid: zxid, Type: fsm.EventDataChanged, Path: path, Stat: fsm.Stat{Mzxid: zxid}, PrevData: []byte(prev)}
}

func created(zxid uint64, path string) fsm.Event {
	return fsm.Event{Zxid: zxid, Type: fsm.EventCreated, Path: path, Stat: fsm.Stat{Czxid: zxid}}
}

func childrenChanged(zxid uint64, path string) fsm.Event {
	return fsm.Event{Zxid: zxid, Type: fsm.EventChildrenChanged, Path: path, Stat: fsm.Stat{Pzxid: zxid}}
}

func deleted(zxid uint64, path string, prev string) fsm.Event {
	return fsm.Event{Zxid: zxid, Type: fsm.EventDeleted, Path: path, PrevData: []byte(prev)}
}

// applySets applies zxids from..to, one set of path each.
func applySets(h *hub, from, to uint64, path string) {
	for z := from; z <= to; z++ {
		h.Applied(z, []fsm.Event{set(z, path, fmt.Sprint(z-1))})
	}
}

func mustSpec(t *testing.T, path string, recursive bool, kinds ...paddockv1.EventKind) *watchSpec {
	t.Helper()
	s, err := newWatchSpec(path, recursive, kinds, false, maxResponseEvents)
	if err != nil {
		t.Fatalf("newWatchSpec(%s): %v", path, err)
	}
	return s
}

// testWatch is one watcher run by h.watch on its own goroutine.
type testWatch struct {
	resps  chan *paddockv1.WatchResponse
	done   chan error
	cancel context.CancelFunc
}

// startWatch starts a watcher whose sends go to a channel of buf
// responses (0: every send blocks until read). It is canceled, and waited
// for, at the end of the test.
func startWatch(t *testing.T, h *hub, s *watchSpec, start uint64, progress time.Duration, buf int) *testWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &testWatch{resps: make(chan *paddockv1.WatchResponse, buf), done: make(chan error, 1), cancel: cancel}
	send := func(r *paddockv1.WatchResponse) error {
		select {
		case w.resps <- r:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	go func() { w.done <- h.watch(ctx, s, start, progress, send) }()
	// A send still in flight when watch returns ends with ctx.
	t.Cleanup(cancel)
	return w
}

func (w *testWatch) next(t *testing.T) *paddockv1.WatchResponse {
	t.Helper()
	select {
	case r := <-w.resps:
		return r
	case err := <-w.done:
		t.Fatalf("watch ended: %v", err)
	case <-time.After(hubWait):
		t.Fatal("no watch response")
	}
	return nil
}

// until reads responses until one is up to date with zxid, checking the
// stream's rules on the way, and returns the events read.
func (w *testWatch) until(t *testing.T, zxid uint64) []*paddockv1.Event {
	t.Helper()
	var out []*paddockv1.Event
	for {
		r := w.next(t)
		if r.GetCreated() {
			t.Fatalf("created response after the first: %v", r)
		}
		if len(r.GetEvents()) > 0 && r.GetProgress() {
			t.Fatalf("progress response with events: %v", r)
		}
		if evs := r.GetEvents(); len(evs) > 0 && evs[len(evs)-1].GetZxid() > r.GetHeader().GetZxid() {
			t.Fatalf("response header zxid %d is before its last event %d", r.GetHeader().GetZxid(), evs[len(evs)-1].GetZxid())
		}
		out = append(out, r.GetEvents()...)
		if r.GetHeader().GetZxid() >= zxid {
			return out
		}
	}
}

// created reads the first response and returns its zxid.
func (w *testWatch) created(t *testing.T) uint64 {
	t.Helper()
	r := w.next(t)
	if !r.GetCreated() || len(r.GetEvents()) > 0 {
		t.Fatalf("first response = %v, want created without events", r)
	}
	return r.GetHeader().GetZxid()
}

// rest reads a watcher to its end, as a client reading a dropped stream
// to its status does, and returns the events read and watch's error. A
// response still offered once watch returned is read too: a gRPC client
// would receive it before the status.
func (w *testWatch) rest(t *testing.T) ([]*paddockv1.Event, error) {
	t.Helper()
	var evs []*paddockv1.Event
	for {
		select {
		case r := <-w.resps:
			evs = append(evs, r.GetEvents()...)
		case err := <-w.done:
			for {
				select {
				case r := <-w.resps:
					evs = append(evs, r.GetEvents()...)
				default:
					return evs, err
				}
			}
		case <-time.After(hubWait):
			t.Fatal("watch did not end")
		}
	}
}

func (w *testWatch) end(t *testing.T) error {
	t.Helper()
	select {
	case err := <-w.done:
		return err
	case <-time.After(hubWait):
		t.Fatal("watch did not end")
	}
	return nil
}

func zxids(evs []*paddockv1.Event) []uint64 {
	out := make([]uint64, len(evs))
	for i, e := range evs {
		out[i] = e.GetZxid()
	}
	return out
}

func seq(from, to uint64) []uint64 {
	var out []uint64
	for z := from; z <= to; z++ {
		out = append(out, z)
	}
	return out
}

// canceled checks that err is a *CanceledError with want's fields.
func canceled(t *testing.T, what string, err error, want CanceledError) {
	t.Helper()
	var ce *CanceledError
	if !errors.As(err, &ce) || *ce != want {
		t.Fatalf("%s ended with %v, want %+v", what, err, want)
	}
}

const (
	reasonCompacted = paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_COMPACTED
	reasonRestored  = paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_SNAPSHOT_RESTORED
	reasonSlow      = paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_SLOW
	reasonShutdown  = paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_SHUTTING_DOWN
)

func TestHubResumeAtHistoryBoundaries(t *testing.T) {
	h := newHub(10, 1<<30, 9)
	applySets(h, 1, 20, "/a") // keeps 11..20
	h.Applied(21, nil)        // a barrier: covers 21, no event
	for _, tc := range []struct {
		name        string
		start       uint64
		wantCreated uint64
		want        []uint64
		compacted   bool
	}{
		{name: "oldest held", start: 11, wantCreated: 10, want: seq(11, 20)},
		{name: "middle", start: 15, wantCreated: 14, want: seq(15, 20)},
		{name: "one before the oldest", start: 10, compacted: true},
		{name: "long gone", start: 1, compacted: true},
		{name: "now", start: 0, wantCreated: 21},
		{name: "after the barrier", start: 22, wantCreated: 21},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := startWatch(t, h, mustSpec(t, "/a", false), tc.start, 0, 100)
			if tc.compacted {
				canceled(t, fmt.Sprintf("watch from %d", tc.start), w.end(t), CanceledError{Reason: reasonCompacted, CompactZxid: 11})
				return
			}
			if got := w.created(t); got != tc.wantCreated {
				t.Fatalf("created header zxid = %d, want %d", got, tc.wantCreated)
			}
			if tc.want != nil {
				if got := zxids(w.until(t, 20)); !slices.Equal(got, tc.want) {
					t.Fatalf("events = %v, want %v", got, tc.want)
				}
			}
		})
	}
	// Poll has the same boundary: events after after_zxid.
	ctx := context.Background()
	evs, upTo, err := h.poll(ctx, mustSpec(t, "/a", false), 10, time.Second)
	if err != nil || !slices.Equal(zxids(evs), seq(11, 20)) || upTo != 21 {
		t.Fatalf("poll(after 10) = %v, %d, %v; want 11..20, 21", zxids(evs), upTo, err)
	}
	_, _, err = h.poll(ctx, mustSpec(t, "/a", false), 9, time.Second)
	canceled(t, "poll(after 9)", err, CanceledError{Reason: reasonCompacted, CompactZxid: 11})
	if !errors.Is(err, ErrCompacted) {
		t.Fatalf("poll(after 9) error %v does not match ErrCompacted", err)
	}
}

func TestHubKeepsAZxidWhole(t *testing.T) {
	h := newHub(4, 1<<30, 3)
	h.Applied(1, []fsm.Event{created(1, "/a"), childrenChanged(1, "/")})
	h.Applied(2, []fsm.Event{created(2, "/a/x"), childrenChanged(2, "/a")})
	// Three events at 3 evict one of zxid 1 and zxid 2's first: neither
	// zxid is whole any more, 3 is the oldest start served.
	h.Applied(3, []fsm.Event{set(3, "/a/x", ""), set(3, "/a", ""), created(3, "/b")})
	// Six events at 4, more than the history holds, are all kept.
	var big []fsm.Event
	for i := range 5 {
		big = append(big, deleted(4, fmt.Sprintf("/eph%d", i), ""))
	}
	big = append(big, childrenChanged(4, "/"))
	h.Applied(4, big)

	w := startWatch(t, h, mustSpec(t, "/", true), 3, 0, 100)
	canceled(t, "watch from 3", w.end(t), CanceledError{Reason: reasonCompacted, CompactZxid: 4})
	w = startWatch(t, h, mustSpec(t, "/", true), 4, 0, 100)
	w.created(t)
	r := w.next(t)
	if got := zxids(r.GetEvents()); len(got) != 6 || r.GetHeader().GetZxid() != 4 {
		t.Fatalf("response = zxids %v up to %d, want six events of 4 up to 4", got, r.GetHeader().GetZxid())
	}

	// A poll of 2 events at most still returns a zxid's 3 events.
	h = newHub(100, 1<<30, 50)
	h.Applied(1, nil)
	h.Applied(2, []fsm.Event{created(2, "/a"), childrenChanged(2, "/")})
	h.Applied(3, []fsm.Event{set(3, "/a", ""), set(3, "/b", ""), set(3, "/c", "")})
	h.Applied(4, []fsm.Event{set(4, "/a", "")})
	s := mustSpec(t, "/", true)
	s.maxEvents = 2
	var got [][]uint64
	for after := uint64(1); after < 4; {
		evs, upTo, err := h.poll(context.Background(), s, after, time.Second)
		if err != nil {
			t.Fatalf("poll(after %d): %v", after, err)
		}
		got = append(got, zxids(evs))
		after = upTo
	}
	want := [][]uint64{{2, 2}, {3, 3, 3}, {4}}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("polls of 2 events = %v, want %v", got, want)
	}
}

func TestHubFilters(t *testing.T) {
	h := newHub(100, 1<<30, 50)
	evs := []fsm.Event{
		created(1, "/a"), childrenChanged(1, "/"),
		created(2, "/ab"), childrenChanged(2, "/"),
		created(3, "/a/b"), childrenChanged(3, "/a"),
		set(4, "/a/b", "old"),
		created(5, "/a/b/c"), childrenChanged(5, "/a/b"),
		deleted(6, "/a/b/c", "gone"), childrenChanged(6, "/a/b"),
		set(7, "/ab", "x"),
	}
	for _, e := range evs {
		h.Applied(e.Zxid, []fsm.Event{e})
	}
	const (
		cr  = paddockv1.EventKind_EVENT_KIND_CREATED
		dc  = paddockv1.EventKind_EVENT_KIND_DATA_CHANGED
		del = paddockv1.EventKind_EVENT_KIND_DELETED
		ch  = paddockv1.EventKind_EVENT_KIND_CHILDREN_CHANGED
	)
	for _, tc := range []struct {
		path      string
		recursive bool
		kinds     []paddockv1.EventKind
		want      []string
	}{
		{"/a", false, nil, []string{"1 CREATED /a", "3 CHILDREN_CHANGED /a"}},
		{"/a", true, nil, []string{"1 CREATED /a", "3 CREATED /a/b", "3 CHILDREN_CHANGED /a", "4 DATA_CHANGED /a/b",
			"5 CREATED /a/b/c", "5 CHILDREN_CHANGED /a/b", "6 DELETED /a/b/c", "6 CHILDREN_CHANGED /a/b"}},
		{"/a", true, []paddockv1.EventKind{del, dc}, []string{"4 DATA_CHANGED /a/b", "6 DELETED /a/b/c"}},
		{"/ab", true, nil, []string{"2 CREATED /ab", "7 DATA_CHANGED /ab"}},
		{"/", false, []paddockv1.EventKind{ch}, []string{"1 CHILDREN_CHANGED /", "2 CHILDREN_CHANGED /"}},
		{"/", true, []paddockv1.EventKind{cr}, []string{"1 CREATED /a", "2 CREATED /ab", "3 CREATED /a/b", "5 CREATED /a/b/c"}},
		{"/missing", true, nil, nil},
	} {
		t.Run(fmt.Sprintf("%s recursive=%v kinds=%v", tc.path, tc.recursive, tc.kinds), func(t *testing.T) {
			// Progress responses end the reading of a watch that
			// matches nothing.
			w := startWatch(t, h, mustSpec(t, tc.path, tc.recursive, tc.kinds...), 1, 20*time.Millisecond, 100)
			w.created(t)
			var got []string
			for _, e := range w.until(t, 7) {
				got = append(got, fmt.Sprintf("%d %s %s", e.GetZxid(), e.GetKind().String()[len("EVENT_KIND_"):], e.GetPath()))
				if e.GetPrevData() != nil {
					t.Errorf("event %v has prev_data without asking", e)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("events = %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("prev_data", func(t *testing.T) {
		s, err := newWatchSpec("/a", true, nil, true, maxResponseEvents)
		if err != nil {
			t.Fatal(err)
		}
		w := startWatch(t, h, s, 4, 0, 100)
		w.created(t)
		var got []string
		for _, e := range w.until(t, 7) {
			got = append(got, fmt.Sprintf("%d %q", e.GetZxid(), e.GetPrevData()))
		}
		want := []string{`4 "old"`, `5 ""`, `5 ""`, `6 "gone"`, `6 ""`}
		if !slices.Equal(got, want) {
			t.Fatalf("prev data = %v, want %v", got, want)
		}
	})
}

func TestWatchSpecRejectsBadInput(t *testing.T) {
	for _, tc := range []struct {
		path  string
		kinds []paddockv1.EventKind
		want  error
	}{
		{"", nil, fsm.ErrBadPath},
		{"a", nil, fsm.ErrBadPath},
		{"/a/", nil, fsm.ErrBadPath},
		{"/a//b", nil, fsm.ErrBadPath},
		{"/a", []paddockv1.EventKind{paddockv1.EventKind_EVENT_KIND_UNSPECIFIED}, fsm.ErrBadArgument},
		{"/a", []paddockv1.EventKind{paddockv1.EventKind_EVENT_KIND_CREATED, 9}, fsm.ErrBadArgument},
		{"/a", []paddockv1.EventKind{-1}, fsm.ErrBadArgument},
	} {
		if _, err := newWatchSpec(tc.path, true, tc.kinds, false, 1); !errors.Is(err, tc.want) {
			t.Errorf("newWatchSpec(%q, %v) = %v, want %v", tc.path, tc.kinds, err, tc.want)
		}
	}
}

func TestHubProgressAdvancesPastFilteredEvents(t *testing.T) {
	h := newHub(100, 1<<30, 50)
	w := startWatch(t, h, mustSpec(t, "/watched", false), 0, 20*time.Millisecond, 100)
	if got := w.created(t); got != 0 {
		t.Fatalf("created header zxid = %d, want 0", got)
	}
	applySets(h, 1, 5, "/other")
	h.Applied(6, nil) // e.g. a session keepalive checkpoint
	for {
		r := w.next(t)
		if len(r.GetEvents()) > 0 || !r.GetProgress() {
			t.Fatalf("response = %v, want progress only", r)
		}
		if r.GetHeader().GetZxid() == 6 {
			break
		}
		if r.GetHeader().GetZxid() > 6 {
			t.Fatalf("progress zxid %d is past the applied 6", r.GetHeader().GetZxid())
		}
	}
	// And a matching event after that is delivered, not lost.
	h.Applied(7, []fsm.Event{set(7, "/watched", "")})
	if got := zxids(w.until(t, 7)); !slices.Equal(got, []uint64{7}) {
		t.Fatalf("events = %v, want [7]", got)
	}
}

func TestHubProgressOff(t *testing.T) {
	h := newHub(100, 1<<30, 50)
	w := startWatch(t, h, mustSpec(t, "/a", false), 0, 0, 100)
	w.created(t)
	applySets(h, 1, 3, "/other")
	// Nothing to send: the next response is the event at 4, no progress
	// before it.
	h.Applied(4, []fsm.Event{set(4, "/a", "")})
	r := w.next(t)
	if r.GetProgress() || !slices.Equal(zxids(r.GetEvents()), []uint64{4}) {
		t.Fatalf("response = %v, want the event at 4", r)
	}
}

func TestHubRestoredCancelsWatchers(t *testing.T) {
	h := newHub(100, 1<<30, 50)
	applySets(h, 1, 10, "/a")
	w1 := startWatch(t, h, mustSpec(t, "/a", false), 5, 0, 100)
	w2 := startWatch(t, h, mustSpec(t, "/", true), 0, 0, 100)
	w1.created(t)
	w2.created(t)
	w1.until(t, 10)
	h.Restored(100)
	want := CanceledError{Reason: reasonRestored, CompactZxid: 101}
	canceled(t, "watch 1", w1.end(t), want)
	canceled(t, "watch 2", w2.end(t), want)

	w := startWatch(t, h, mustSpec(t, "/a", false), 50, 0, 100)
	canceled(t, "watch from 50 after the restore", w.end(t), CanceledError{Reason: reasonCompacted, CompactZxid: 101})
	w = startWatch(t, h, mustSpec(t, "/a", false), 0, 0, 100)
	if got := w.created(t); got != 100 {
		t.Fatalf("created after the restore at zxid %d, want 100", got)
	}
	h.Applied(101, []fsm.Event{set(101, "/a", "")})
	if got := zxids(w.until(t, 101)); !slices.Equal(got, []uint64{101}) {
		t.Fatalf("events after the restore = %v, want [101]", got)
	}
	if got := h.count(); got != 1 {
		t.Fatalf("count = %d, want 1 (the canceled watches are gone)", got)
	}
}

func TestHubDropsSlowWatcherOnly(t *testing.T) {
	h := newHub(2000, 1<<30, 50)
	// The fast watcher's buffer holds every response: it is never behind.
	fast := startWatch(t, h, mustSpec(t, "/a", false), 1, 0, 1000)
	fast.created(t)

	// The slow watcher takes the created response and the first events,
	// then never reads again: its sends block.
	slow := startWatch(t, h, mustSpec(t, "/a", false), 1, 0, 0)
	slow.created(t)
	applySets(h, 1, 3, "/a")
	sent := slow.until(t, 3)
	last := applyUntilDropped(t, h, 4, 1) // the fast watcher stays
	// The response in flight when it was dropped still arrives, and the
	// resume point is right after it: nothing is received twice.
	more, err := slow.rest(t)
	sent = append(sent, more...)
	canceled(t, "slow watch", err, CanceledError{Reason: reasonSlow, ResumeZxid: zxids(sent)[len(sent)-1] + 1})

	applySets(h, last+1, last+100, "/a")
	if got := fast.until(t, last+100); !slices.Equal(zxids(got), seq(1, last+100)) {
		t.Fatalf("fast watcher got %d events, want 1..%d", len(got), last+100)
	}
	if n := h.count(); n != 1 {
		t.Fatalf("count = %d, want 1", n)
	}
}

func TestHubSlowWatcherCanResume(t *testing.T) {
	h := newHub(2000, 1<<30, 50)
	slow := startWatch(t, h, mustSpec(t, "/a", false), 0, 0, 0)
	from := slow.created(t) + 1
	last := applyUntilDropped(t, h, from, 0)
	sent, err := slow.rest(t)
	var ce *CanceledError
	if !errors.As(err, &ce) || ce.Reason != reasonSlow || !errors.Is(err, ErrSlowWatcher) {
		t.Fatalf("slow watch ended with %v, want SLOW", err)
	}
	// It was sent exactly the events before its resume point.
	if got := zxids(sent); !slices.Equal(got, seq(from, ce.ResumeZxid-1)) {
		t.Fatalf("resume_zxid %d, but the dropped watch delivered %v", ce.ResumeZxid, got)
	}
	// Resuming where it says loses nothing.
	w := startWatch(t, h, mustSpec(t, "/a", false), ce.ResumeZxid, 0, 1000)
	w.created(t)
	if got := zxids(w.until(t, last)); !slices.Equal(got, seq(ce.ResumeZxid, last)) {
		t.Fatalf("resumed from %d: events %v", ce.ResumeZxid, got)
	}
}

// applyUntilDropped applies one set of /a per zxid from from on until
// the hub's count falls to count (a watcher blocked in a send was dropped
// and left the hub), and returns the last zxid applied. A watcher is
// judged when events arrive while its send has been blocked for the slow
// grace (250 events at one per millisecond); with a history of 2000 and a
// lag limit of 50 it must be dropped long before the history wraps.
func applyUntilDropped(t *testing.T, h *hub, from uint64, count int) uint64 {
	t.Helper()
	for z := from; z < 1500; z++ {
		applySets(h, z, z, "/a")
		if h.count() == count {
			return z
		}
		time.Sleep(time.Millisecond) // pacing the writes, not waiting for a state
	}
	t.Fatal("watcher blocked in a send was not dropped within the history")
	return 0
}

func TestHubPoll(t *testing.T) {
	h := newHub(100, 1<<30, 50)
	applySets(h, 1, 5, "/a")
	ctx := context.Background()
	s := mustSpec(t, "/a", false)

	t.Run("events waiting return at once", func(t *testing.T) {
		start := time.Now()
		evs, upTo, err := h.poll(ctx, s, 2, time.Minute)
		if err != nil || !slices.Equal(zxids(evs), seq(3, 5)) || upTo != 5 {
			t.Fatalf("poll(after 2) = %v, %d, %v; want 3..5 up to 5", zxids(evs), upTo, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("poll with events waiting took %v", d)
		}
	})
	t.Run("timeout returns none and the zxid", func(t *testing.T) {
		h.Applied(6, []fsm.Event{set(6, "/other", "")})
		evs, upTo, err := h.poll(ctx, s, 5, 50*time.Millisecond)
		if err != nil || len(evs) != 0 || upTo != 6 {
			t.Fatalf("poll(after 5) = %v, %d, %v; want none up to 6", zxids(evs), upTo, err)
		}
	})
	t.Run("now returns on the next change", func(t *testing.T) {
		type result struct {
			evs  []*paddockv1.Event
			upTo uint64
			err  error
		}
		res := make(chan result, 1)
		go func() {
			evs, upTo, err := h.poll(ctx, s, 0, time.Minute)
			res <- result{evs, upTo, err}
		}()
		// Writes to other paths do not end the poll; the one to /a does.
		eventually(t, func() error {
			if h.count() != 1 {
				return errors.New("poll not waiting yet")
			}
			return nil
		})
		h.Applied(7, []fsm.Event{set(7, "/other", "")})
		h.Applied(8, []fsm.Event{set(8, "/a", "")})
		select {
		case r := <-res:
			if r.err != nil || !slices.Equal(zxids(r.evs), []uint64{8}) || r.upTo != 8 {
				t.Fatalf("poll(now) = %v, %d, %v; want [8] up to 8", zxids(r.evs), r.upTo, r.err)
			}
		case <-time.After(hubWait):
			t.Fatal("poll did not return on a change")
		}
	})
	t.Run("restore ends a waiting poll", func(t *testing.T) {
		errc := make(chan error, 1)
		go func() {
			_, _, err := h.poll(ctx, s, 8, time.Minute)
			errc <- err
		}()
		eventually(t, func() error {
			if h.count() != 1 {
				return errors.New("poll not waiting yet")
			}
			return nil
		})
		h.Restored(50)
		canceled(t, "poll", <-errc, CanceledError{Reason: reasonRestored, CompactZxid: 51})
	})
}

func TestHubClose(t *testing.T) {
	h := newHub(100, 1<<30, 50)
	applySets(h, 1, 5, "/a")
	w := startWatch(t, h, mustSpec(t, "/a", false), 1, 0, 100)
	w.created(t)
	w.until(t, 5)
	errc := make(chan error, 1)
	go func() {
		_, _, err := h.poll(context.Background(), mustSpec(t, "/b", false), 0, time.Minute)
		errc <- err
	}()
	eventually(t, func() error {
		if h.count() != 2 {
			return fmt.Errorf("count = %d, want 2", h.count())
		}
		return nil
	})
	h.close()
	canceled(t, "watch", w.end(t), CanceledError{Reason: reasonShutdown, ResumeZxid: 6})
	err := <-errc
	canceled(t, "poll", err, CanceledError{Reason: reasonShutdown, ResumeZxid: 6})
	if !errors.Is(err, ErrShuttingDown) {
		t.Fatalf("poll error %v does not match ErrShuttingDown", err)
	}
	w = startWatch(t, h, mustSpec(t, "/a", false), 3, 0, 100)
	canceled(t, "watch after close", w.end(t), CanceledError{Reason: reasonShutdown, ResumeZxid: 3})
	if n := h.count(); n != 0 {
		t.Fatalf("count = %d after close, want 0", n)
	}
}

// TestHubNowMissesNothing registers watchers from "now" while events are
// applied: each gets exactly the events after its created zxid.
func TestHubNowMissesNothing(t *testing.T) {
	const last = 2000
	h := newHub(4*last, 1<<30, 2*last)
	h.Applied(1, []fsm.Event{set(1, "/a", "")})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		applySets(h, 2, last, "/a")
	}()
	for range 20 {
		w := startWatch(t, h, mustSpec(t, "/a", false), 0, 0, last)
		from := w.created(t) + 1
		if from > last {
			break
		}
		if got := zxids(w.until(t, last)); !slices.Equal(got, seq(from, last)) {
			t.Fatalf("watch created at %d got %d events, first %v, want %d..%d", from-1, len(got), got[:min(3, len(got))], from, last)
		}
	}
	wg.Wait()
}

// eventually polls f until it returns nil, for hubWait.
func eventually(t *testing.T, f func() error) {
	t.Helper()
	deadline := time.Now().Add(hubWait)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %v: %v", hubWait, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHubHistoryByteBound: previous data counts against the byte bound, so
// a few large values evict older events long before the event bound does,
// and a zxid bigger than the bound is still kept whole.
func TestHubHistoryByteBound(t *testing.T) {
	big := strings.Repeat("x", 1000)
	h := newHub(100, 2500, 50)
	for z := uint64(1); z <= 5; z++ {
		h.Applied(z, []fsm.Event{set(z, "/a", big)})
	}
	// About 1,000 bytes each: only the last two fit in 2,500.
	if h.hist.n != 2 || h.compact != 4 {
		t.Fatalf("history holds %d events from %d, want 2 from 4", h.hist.n, h.compact)
	}
	if h.hist.bytes > 2500 {
		t.Fatalf("history bytes = %d, want <= 2500", h.hist.bytes)
	}
	ctx := context.Background()
	_, _, err := h.poll(ctx, mustSpec(t, "/a", false), 2, time.Second)
	canceled(t, "poll(after 2)", err, CanceledError{Reason: reasonCompacted, CompactZxid: 4})

	// One zxid of three large events exceeds the bound and is kept whole.
	h.Applied(6, []fsm.Event{set(6, "/a", big), set(6, "/b", big), set(6, "/c", big)})
	events, _, err := h.poll(ctx, mustSpec(t, "/", true), 5, time.Second)
	if err != nil || len(events) != 3 {
		t.Fatalf("poll(after 5) = %d events, %v; want the 3 events of zxid 6", len(events), err)
	}
	if h.compact != 6 {
		t.Fatalf("oldest start served = %d, want 6", h.compact)
	}
}

// TestHistoryMessages checks the messages of a history longer than the
// cache of hot messages: every event's message has its content, the newest
// hotEvents are built once and shared, older ones are built per call, and
// a reset forgets the cached ones.
func TestHistoryMessages(t *testing.T) {
	r := newHistory(2*hotEvents, 1<<30)
	n := hotEvents + 10
	for z := uint64(1); z <= uint64(n); z++ {
		e := created(z, fmt.Sprintf("/n%d", z))
		if z%2 == 0 {
			e = deleted(z, fmt.Sprintf("/n%d", z), "x")
		}
		r.push(newEntry(e))
	}
	for i := range n {
		z := uint64(i + 1)
		want := &paddockv1.Event{Zxid: z, Kind: paddockv1.EventKind_EVENT_KIND_CREATED, Path: fmt.Sprintf("/n%d", z), Stat: &paddockv1.Stat{Czxid: z}}
		if z%2 == 0 {
			want = &paddockv1.Event{Zxid: z, Kind: paddockv1.EventKind_EVENT_KIND_DELETED, Path: fmt.Sprintf("/n%d", z)}
		}
		m := r.message(i)
		if !proto.Equal(m, want) {
			t.Fatalf("message(%d) = %v, want %v", i, m, want)
		}
		hot := i >= n-hotEvents
		if shared := r.message(i) == m; shared != hot {
			t.Fatalf("message(%d) shared = %v, want %v (hot)", i, shared, hot)
		}
	}
	r.reset()
	r.push(newEntry(created(100, "/fresh")))
	if m := r.message(0); m.GetZxid() != 100 || m.GetPath() != "/fresh" {
		t.Fatalf("message(0) after reset = %v, want zxid 100 at /fresh", m)
	}
}

// TestEntrySize guards the layout the history's memory figure relies on.
func TestEntrySize(t *testing.T) {
	if got := unsafe.Sizeof(entry{}); got != 120 {
		t.Errorf("unsafe.Sizeof(entry{}) = %d, want 120", got)
	}
}
