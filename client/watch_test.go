package client

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// newTestWatcher starts a watch on /w, closed when the test ends.
func newTestWatcher(t *testing.T, c *Client, opts WatchOptions) *Watcher {
	t.Helper()
	opts.Recursive = true
	w, err := c.Watch(context.Background(), "/w", opts)
	if err != nil {
		t.Fatalf("Watch(/w) error = %v", err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// receive reads w's responses until one reaches zxid until, and returns
// them.
func receive(t *testing.T, w *Watcher, until uint64) []WatchResponse {
	t.Helper()
	var got []WatchResponse
	timeout := time.After(5 * time.Second)
	for {
		select {
		case resp, ok := <-w.Responses():
			if !ok {
				t.Fatalf("watch ended before zxid %d: %v (got %v)", until, w.Err(), got)
			}
			got = append(got, resp)
			if resp.Zxid >= until {
				return got
			}
		case <-timeout:
			t.Fatalf("timed out waiting for zxid %d (got %v)", until, got)
		}
	}
}

// paths lists the paths of the events in resps, in order.
func paths(resps []WatchResponse) []string {
	var out []string
	for _, r := range resps {
		for _, ev := range r.Events {
			out = append(out, ev.Path)
		}
	}
	return out
}

// logPaths lists the paths of log's events from zxid from on.
func logPaths(log []*paddockv1.Event, from uint64) []string {
	var out []string
	for _, ev := range log {
		if ev.Zxid >= from {
			out = append(out, ev.Path)
		}
	}
	return out
}

// checkEnded waits for w to end and checks its Err.
func checkEnded(t *testing.T, w *Watcher, want error) {
	t.Helper()
	select {
	case <-w.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("watch still running after 5s")
	}
	for range w.Responses() {
		// drain: the channel closes right after Done
	}
	if !errors.Is(w.Err(), want) {
		t.Errorf("Err() = %v, want %v", w.Err(), want)
	}
}

var (
	slow         = &paddockv1.WatchCanceled{Reason: paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_SLOW, ResumeZxid: 5}
	shuttingDown = &paddockv1.WatchCanceled{Reason: paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_SHUTTING_DOWN, ResumeZxid: 5}
	compacted    = &paddockv1.WatchCanceled{Reason: paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_COMPACTED, CompactZxid: 50}
	restored     = &paddockv1.WatchCanceled{Reason: paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_SNAPSHOT_RESTORED, CompactZxid: 60}
)

// The stream on a breaks after 4 zxids (zxid 3 carrying two events); the
// watch resumes on b from the next zxid with nothing lost or repeated.
func TestWatchResumesOnNextEndpoint(t *testing.T) {
	log := eventLog(zxidRange(1, 10), 3)
	tests := []struct {
		name string
		err  error
	}{
		{"unavailable", status.Error(codes.Unavailable, "transport is closing")},
		{"slow", canceled(codes.ResourceExhausted, slow)},
		{"shutting down", canceled(codes.Unavailable, shuttingDown)},
		{"end of stream", nil}, // the node ended the stream with OK
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := startNode(t, "a"), startNode(t, "b")
			a.set(func(n *fakeNode) { n.watch = fakeWatch{log: log, breakAfter: 4, breakErr: tt.err} })
			b.set(func(n *fakeNode) { n.watch = fakeWatch{log: log} })
			c := newTestClient(t, a.addr, b.addr)
			w := newTestWatcher(t, c, WatchOptions{StartZxid: 1})

			got := receive(t, w, 10)
			if want := logPaths(log, 1); !slices.Equal(paths(got), want) {
				t.Errorf("events = %v, want %v", paths(got), want)
			}
			if got, want := b.watchStarts(), []uint64{5}; !slices.Equal(got, want) {
				t.Errorf("start_zxid on b = %v, want %v", got, want)
			}
			if got := w.Zxid(); got < 4 {
				t.Errorf("Zxid() = %d, want at least 4", got)
			}
		})
	}
}

// a is stopped while its stream is open: the connection breaks and the
// watch resumes on b after the last zxid received.
func TestWatchResumesWhenNodeKilled(t *testing.T) {
	log := eventLog(zxidRange(1, 6))
	a, b := startNode(t, "a"), startNode(t, "b")
	a.set(func(n *fakeNode) { n.watch = fakeWatch{log: log[:3]} })
	b.set(func(n *fakeNode) { n.watch = fakeWatch{log: log} })
	c := newTestClient(t, a.addr, b.addr)
	w := newTestWatcher(t, c, WatchOptions{StartZxid: 1})

	first := receive(t, w, 3)
	a.srv.Stop()
	rest := receive(t, w, 6)
	if got, want := paths(append(first, rest...)), logPaths(log, 1); !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
	if got, want := b.watchStarts(), []uint64{4}; !slices.Equal(got, want) {
		t.Errorf("start_zxid on b = %v, want %v", got, want)
	}
}

// A progress report moves the resume point past zxids with no matching
// event, so the resumed watch does not ask for them again.
func TestWatchProgressAdvancesResumePoint(t *testing.T) {
	log := eventLog([]uint64{2, 12})
	a, b := startNode(t, "a"), startNode(t, "b")
	a.set(func(n *fakeNode) { n.watch = fakeWatch{log: log[:1], head: 9, progress: true} })
	b.set(func(n *fakeNode) { n.watch = fakeWatch{log: log} })
	c := newTestClient(t, a.addr, b.addr)
	w := newTestWatcher(t, c, WatchOptions{StartZxid: 1})

	got := receive(t, w, 9)
	if last := got[len(got)-1]; !last.IsProgress() || last.Zxid != 9 {
		t.Fatalf("last response = %+v, want progress at 9", last)
	}
	waitFor(t, "Zxid() = 9 after progress", func() bool { return w.Zxid() == 9 })
	a.srv.Stop()
	rest := receive(t, w, 12)
	if got, want := paths(append(got, rest...)), logPaths(log, 1); !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
	if got, want := b.watchStarts(), []uint64{10}; !slices.Equal(got, want) {
		t.Errorf("start_zxid on b = %v, want %v", got, want)
	}
}

// A watch from "now" pins its start at the created zxid, so that resuming
// asks for what follows it rather than for a new "now".
func TestWatchFromNowResumesFromCreated(t *testing.T) {
	log := eventLog(zxidRange(6, 8))
	a, b := startNode(t, "a"), startNode(t, "b")
	a.set(func(n *fakeNode) {
		n.watch = fakeWatch{log: log, head: 5, breakAfter: 1, breakErr: status.Error(codes.Unavailable, "gone")}
	})
	b.set(func(n *fakeNode) { n.watch = fakeWatch{log: log, head: 8} })
	c := newTestClient(t, a.addr, b.addr)
	w := newTestWatcher(t, c, WatchOptions{})

	got := receive(t, w, 8)
	if want := logPaths(log, 6); !slices.Equal(paths(got), want) {
		t.Errorf("events = %v, want %v", paths(got), want)
	}
	if got, want := a.watchStarts(), []uint64{0}; !slices.Equal(got, want) {
		t.Errorf("start_zxid on a = %v, want %v", got, want)
	}
	if got, want := b.watchStarts(), []uint64{7}; !slices.Equal(got, want) {
		t.Errorf("start_zxid on b = %v, want %v", got, want)
	}
}

// b ignores start_zxid and replays its whole log in one response: the
// watcher drops the events it delivered already and keeps the rest.
func TestWatchDropsRepeatedEvents(t *testing.T) {
	log := eventLog(zxidRange(1, 6), 2, 5)
	a, b := startNode(t, "a"), startNode(t, "b")
	a.set(func(n *fakeNode) {
		n.watch = fakeWatch{log: log, breakAfter: 3, breakErr: status.Error(codes.Unavailable, "gone")}
	})
	b.set(func(n *fakeNode) { n.watch = fakeWatch{log: log, ignoreStart: true, batch: true} })
	c := newTestClient(t, a.addr, b.addr)
	w := newTestWatcher(t, c, WatchOptions{StartZxid: 1})

	got := receive(t, w, 6)
	if want := logPaths(log, 1); !slices.Equal(paths(got), want) {
		t.Errorf("events = %v, want %v", paths(got), want)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Zxid <= got[i-1].Zxid {
			t.Errorf("response %d at zxid %d after %d, want increasing", i, got[i].Zxid, got[i-1].Zxid)
		}
	}
}

// A gap ends the watch with a *CompactedError, whether the node says so
// when the watch starts (Watch fails) or on a resumed stream (Err); the
// watch never skips to another node.
func TestWatchCompacted(t *testing.T) {
	log := eventLog(zxidRange(1, 6))
	tests := []struct {
		name   string
		wc     *paddockv1.WatchCanceled
		atOnce bool // the first Watch fails, not a resumed one
	}{
		{"compacted at start", compacted, true},
		{"snapshot restored at start", restored, true},
		{"compacted mid-stream", compacted, false},
		{"snapshot restored mid-stream", restored, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := startNode(t, "a"), startNode(t, "b")
			gap := canceled(codes.OutOfRange, tt.wc)
			if tt.atOnce {
				a.set(func(n *fakeNode) { n.watch = fakeWatch{err: gap} })
			} else {
				a.set(func(n *fakeNode) { n.watch = fakeWatch{log: log, breakAfter: 2, breakErr: gap} })
			}
			b.set(func(n *fakeNode) { n.watch = fakeWatch{log: log} })
			c := newTestClient(t, a.addr, b.addr)

			var err error
			wantStart := uint64(3)
			if tt.atOnce {
				wantStart = 1
				_, err = c.Watch(context.Background(), "/w", WatchOptions{StartZxid: 1})
			} else {
				w := newTestWatcher(t, c, WatchOptions{StartZxid: 1})
				receive(t, w, 2)
				checkEnded(t, w, ErrCompacted)
				err = w.Err()
			}
			var ce *CompactedError
			if !errors.Is(err, ErrCompacted) || !errors.As(err, &ce) {
				t.Fatalf("error = %v, want a *CompactedError", err)
			}
			if ce.Reason != tt.wc.Reason || ce.CompactZxid != tt.wc.CompactZxid || ce.StartZxid != wantStart {
				t.Errorf("CompactedError = %+v, want reason %v, compact zxid %d, start %d", ce, tt.wc.Reason, tt.wc.CompactZxid, wantStart)
			}
			if got := b.watchStarts(); len(got) != 0 {
				t.Errorf("b got watches from %v, want none: a gap must not be skipped", got)
			}
		})
	}
}

func TestWatchNotRetriedOnBadRequest(t *testing.T) {
	a, b := startNode(t, "a"), startNode(t, "b")
	a.set(func(n *fakeNode) { n.watch = fakeWatch{err: status.Error(codes.InvalidArgument, "fsm: bad path")} })
	c := newTestClient(t, a.addr, b.addr)

	_, err := c.Watch(context.Background(), "bad", WatchOptions{})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("Watch(bad) error = %v, want InvalidArgument", err)
	}
	if got := b.watchStarts(); len(got) != 0 {
		t.Errorf("b got watches %v, want none", got)
	}
}

func TestWatchFailsOverFromDeadEndpoint(t *testing.T) {
	live := startNode(t, "live")
	live.set(func(n *fakeNode) { n.watch = fakeWatch{log: eventLog(zxidRange(1, 2))} })
	c := newTestClient(t, deadAddr(t), live.addr)
	w := newTestWatcher(t, c, WatchOptions{StartZxid: 1})
	if got, want := paths(receive(t, w, 2)), []string{"/w/1", "/w/2"}; !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
}

func TestWatchAllEndpointsDown(t *testing.T) {
	c := newTestClient(t, deadAddr(t), deadAddr(t))
	_, err := c.Watch(context.Background(), "/w", WatchOptions{})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("Watch(/w) error = %v, want Unavailable", err)
	}
}

// Every way of stopping a watcher ends its goroutine and stream (TestMain's
// goleak check) and says why in Err.
func TestWatchStops(t *testing.T) {
	tests := []struct {
		name string
		stop func(w *Watcher, c *Client, cancel context.CancelFunc)
		want error
	}{
		{"Close", func(w *Watcher, _ *Client, _ context.CancelFunc) { w.Close() }, ErrClosed},
		{"context", func(_ *Watcher, _ *Client, cancel context.CancelFunc) { cancel() }, context.Canceled},
		{"Client.Close", func(_ *Watcher, c *Client, _ context.CancelFunc) { c.Close() }, ErrClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := startNode(t, "n")
			// More events than the test reads: the watcher is blocked
			// handing one over when it is stopped.
			n.set(func(n *fakeNode) { n.watch = fakeWatch{log: eventLog(zxidRange(1, 5))} })
			c := newTestClient(t, n.addr)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			w, err := c.Watch(ctx, "/w", WatchOptions{StartZxid: 1})
			if err != nil {
				t.Fatalf("Watch(/w) error = %v", err)
			}
			receive(t, w, 2)
			tt.stop(w, c, cancel)
			checkEnded(t, w, tt.want)
			if got := w.Zxid(); got != 2 {
				t.Errorf("Zxid() = %d, want 2: only what was received counts", got)
			}
			if err := w.Close(); err != nil {
				t.Errorf("second Close() = %v", err)
			}
		})
	}
}

// A stream that stays silent past its progress interval is abandoned for
// the next endpoint.
func TestWatchStalledStreamMovesOn(t *testing.T) {
	log := eventLog(zxidRange(1, 3))
	a, b := startNode(t, "a"), startNode(t, "b")
	a.set(func(n *fakeNode) { n.watch = fakeWatch{log: log[:1]} }) // then silent
	b.set(func(n *fakeNode) { n.watch = fakeWatch{log: log} })
	c := newTestClient(t, a.addr, b.addr)
	w := newTestWatcher(t, c, WatchOptions{StartZxid: 1, ProgressInterval: 10 * time.Millisecond})

	if got, want := paths(receive(t, w, 3)), logPaths(log, 1); !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
	if got, want := b.watchStarts(), []uint64{2}; !slices.Equal(got, want) {
		t.Errorf("start_zxid on b = %v, want %v", got, want)
	}
}

// Events seen by a watch raise LastZxid, so a read after an event reflects
// it on any node.
func TestWatchRaisesLastZxid(t *testing.T) {
	n := startNode(t, "n")
	n.set(func(n *fakeNode) { n.watch = fakeWatch{log: eventLog([]uint64{30})} })
	c := newTestClient(t, n.addr)
	w := newTestWatcher(t, c, WatchOptions{StartZxid: 1})
	receive(t, w, 30)
	if got := c.LastZxid(); got != 30 {
		t.Errorf("LastZxid() = %d, want 30", got)
	}
}

// A node that takes a poll and never answers (its answers dropped, the
// process paused) must not hold the caller: past timeout_ms + 1 s the
// client tries the next endpoint, and stays there.
func TestPollUnansweredMovesOn(t *testing.T) {
	a, b := startNode(t, "a"), startNode(t, "b")
	a.set(func(n *fakeNode) { n.hangPolls = true })
	b.set(func(n *fakeNode) { n.watch = fakeWatch{log: eventLog(zxidRange(1, 4)), head: 4} })
	c := newTestClient(t, a.addr, b.addr)
	start := time.Now()
	resp, err := c.Poll(context.Background(), &paddockv1.PollRequest{Path: "/w", Recursive: true, AfterZxid: 2, TimeoutMs: 200})
	if err != nil {
		t.Fatalf("Poll with a node that never answers = %v, want b's answer", err)
	}
	if got := resp.GetHeader().GetNodeId(); got != "b" {
		t.Fatalf("Poll answered by %q, want b", got)
	}
	if d := time.Since(start); d < 1200*time.Millisecond {
		t.Errorf("Poll moved on after %v, before timeout_ms + 1 s", d)
	}
	if _, err := c.Poll(context.Background(), &paddockv1.PollRequest{Path: "/w", AfterZxid: 4, TimeoutMs: 50}); err != nil {
		t.Fatal(err)
	}
	if got := a.callCount(); got != 1 {
		t.Errorf("a got %d polls, want 1: the next poll goes to b", got)
	}
}

func TestPoll(t *testing.T) {
	log := eventLog(zxidRange(1, 4))
	gap := canceled(codes.OutOfRange, compacted)
	tests := []struct {
		name      string
		watch     fakeWatch
		after     uint64
		want      []string
		wantZxid  uint64
		compacted bool
	}{
		{"events after", fakeWatch{log: log, head: 4}, 2, []string{"/w/3", "/w/4"}, 4, false},
		{"none yet", fakeWatch{log: log, head: 9}, 4, nil, 9, false},
		{"compacted", fakeWatch{err: gap}, 2, nil, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := startNode(t, "a"), startNode(t, "b")
			a.set(func(n *fakeNode) { n.err = status.Error(codes.Unavailable, "gone") })
			b.set(func(n *fakeNode) { n.watch = tt.watch })
			c := newTestClient(t, a.addr, b.addr)

			resp, err := c.Poll(context.Background(), &paddockv1.PollRequest{Path: "/w", Recursive: true, AfterZxid: tt.after})
			if tt.compacted {
				var ce *CompactedError
				if !errors.As(err, &ce) || !errors.Is(err, ErrCompacted) || ce.CompactZxid != 50 || ce.StartZxid != tt.after+1 {
					t.Fatalf("Poll(after %d) error = %v, want *CompactedError at 50 from %d", tt.after, err, tt.after+1)
				}
				return
			}
			if err != nil {
				t.Fatalf("Poll(after %d) error = %v", tt.after, err)
			}
			if got := paths([]WatchResponse{{Events: resp.Events}}); !slices.Equal(got, tt.want) {
				t.Errorf("Poll(after %d) events = %v, want %v", tt.after, got, tt.want)
			}
			if got := resp.GetHeader().GetZxid(); got != tt.wantZxid {
				t.Errorf("Poll(after %d) zxid = %d, want %d", tt.after, got, tt.wantZxid)
			}
		})
	}
}
