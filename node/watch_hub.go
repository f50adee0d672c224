package node

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paddock/paddock/fsm"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// Response budgets: a response holds up to this many events or bytes
// (rough), then the rest follows in the next one. The events of one zxid
// are never split, so one zxid may exceed either.
const (
	maxResponseEvents = 1000
	maxResponseBytes  = 1 << 20
)

// watchSlowGrace is the hub's slowGrace.
const watchSlowGrace = 250 * time.Millisecond

// hub is the node's watch hub: the fsm's event sink, a bounded history of
// recent events, and the watchers reading it.
//
// The apply goroutine only appends to the history and wakes the watchers
// by closing a channel: O(events) per batch, nothing per watcher, never a
// wait on one. Each watcher (a Watch stream, a waiting Poll) runs on its
// caller's goroutine with its own cursor, copies the events after it under
// the read lock and sends them; it notices by itself that it has fallen
// too far behind (its lag is checked on every wake while a send is in
// flight) and is dropped with a SLOW cancel while its resume point is
// still in the history; the resume point is reported once the send in
// flight has ended (delivered or failed).
type hub struct {
	slowLag int
	// slowGrace is how long a send must have been blocked before its
	// watcher may be judged slow: a watcher whose goroutine merely was
	// not scheduled during a burst of applies is not slow.
	slowGrace time.Duration
	header    func(zxid uint64) *paddockv1.ResponseHeader

	mu   sync.RWMutex
	hist *history
	// through is the raft index the history covers: every event with a
	// zxid <= through is in it (or was evicted). Coverage goes by index,
	// not by events, so entries that emit none still advance it.
	through uint64
	// compact is the oldest start zxid the history serves: every event
	// with a zxid >= compact is held.
	compact uint64
	// epoch counts snapshot restores: a watcher registered in an older
	// epoch has a cursor from a history that no longer exists.
	epoch  uint64
	closed bool
	// wake is closed and replaced whenever the above change.
	wake chan struct{}

	watchers atomic.Int64

	// stall, when set (tests only), is waited on before a batch is taken
	// in: the moment after the fsm published an applied index and before
	// the hub holds its events.
	stall atomic.Pointer[chan struct{}]
}

var _ fsm.Sink = (*hub)(nil)

func newHub(history int, historyBytes int64, slowLag int) *hub {
	return &hub{
		slowLag:   slowLag,
		slowGrace: watchSlowGrace,
		header:    func(z uint64) *paddockv1.ResponseHeader { return &paddockv1.ResponseHeader{Zxid: z} },
		hist:      newHistory(history, historyBytes),
		compact:   1,
		wake:      make(chan struct{}),
	}
}

// broadcast wakes every watcher. Callers hold mu for writing.
func (h *hub) broadcast() {
	close(h.wake)
	h.wake = make(chan struct{})
}

// Applied implements fsm.Sink: it appends a batch's events and advances
// the covered index.
func (h *hub) Applied(index uint64, events []fsm.Event) {
	if ch := h.stall.Load(); ch != nil {
		<-*ch
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if index <= h.through && len(events) == 0 {
		return
	}
	// Converted in place under the lock: an entry is a copy of a few
	// words, cheaper than a slice of them allocated per batch (events is
	// the fsm's buffer and is not kept).
	for i := range events {
		if ev := h.hist.push(newEntry(events[i])); ev >= h.compact {
			h.compact = ev + 1
		}
	}
	h.through = max(h.through, index)
	h.broadcast()
}

// Restored implements fsm.Sink: the state was replaced by a snapshot at
// index, so the events before it are gone. The history restarts there and
// every open watcher is canceled (they see the new epoch).
func (h *hub) Restored(index uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hist.reset()
	h.through = index
	h.compact = index + 1
	h.epoch++
	h.broadcast()
}

// close ends every watcher with SHUTTING_DOWN, and refuses new ones.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.closed = true
		h.broadcast()
	}
}

// count is the number of open watches and waiting polls.
func (h *hub) count() int { return int(h.watchers.Load()) }

// watchSpec is what a watcher selects.
type watchSpec struct {
	path      string
	prefix    string // path + "/" for a recursive watch, "" otherwise
	kinds     kindSet
	prevData  bool
	maxEvents int
}

func (s *watchSpec) match(e *entry) bool {
	if s.kinds&kindBit(e.kind) == 0 {
		return false
	}
	return e.path == s.path || (s.prefix != "" && strings.HasPrefix(e.path, s.prefix))
}

// eventLocked is the i-th held event as s sends it. Callers hold mu.
func (h *hub) eventLocked(s *watchSpec, i int) *paddockv1.Event {
	m := h.hist.message(i)
	e := h.hist.at(i)
	if !s.prevData || e.prev == nil {
		return m
	}
	return &paddockv1.Event{Zxid: m.GetZxid(), Kind: m.GetKind(), Path: m.GetPath(), Stat: m.GetStat(), PrevData: e.prev}
}

// collectLocked returns the events matching s after cursor, up to the
// response budget and never splitting a zxid, and the zxid they bring the
// watcher up to date with. Callers hold mu and have checked that cursor+1
// is not compacted.
func (h *hub) collectLocked(s *watchSpec, cursor uint64) ([]*paddockv1.Event, uint64) {
	var out []*paddockv1.Event
	bytes := 0
	var last uint64 // zxid of the last event looked at
	for i := h.hist.after(cursor); i < h.hist.n; i++ {
		e := h.hist.at(i)
		z := e.zxid
		if z != last && (len(out) >= s.maxEvents || bytes >= maxResponseBytes) {
			return out, z - 1
		}
		last = z
		if s.match(e) {
			out = append(out, h.eventLocked(s, i))
			bytes += e.size()
			if s.prevData {
				bytes += len(e.prev)
			}
		}
	}
	return out, max(cursor, h.through)
}

// canceledLocked reports why a watcher of epoch whose matching events up
// to cursor were all sent cannot go on, or nil. Callers hold mu.
func (h *hub) canceledLocked(epoch, cursor uint64) error {
	switch {
	case h.epoch != epoch:
		return &CanceledError{Reason: paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_SNAPSHOT_RESTORED, CompactZxid: h.compact}
	case h.closed:
		return &CanceledError{Reason: paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_SHUTTING_DOWN, ResumeZxid: cursor + 1}
	case cursor < h.compact-1: // cursor+1 < compact, without overflow
		return &CanceledError{Reason: paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_COMPACTED, CompactZxid: h.compact}
	}
	return nil
}

// register starts a watcher at start (0 is now, taken under the lock so
// no event falls between "now" and the cursor). It returns the cursor
// (start-1: everything before start is not wanted) and the epoch.
//
// It also returns the lag at which the watcher is dropped as slow: the
// hub's limit, or the lag it starts with if that is more, so that a
// watcher starting far in the past may catch up as long as it does not
// fall further behind.
func (h *hub) register(start uint64) (cursor, epoch uint64, slowLag int, err error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if start == 0 {
		start = h.through + 1
	}
	if err := h.canceledLocked(h.epoch, start-1); err != nil {
		return 0, 0, 0, err
	}
	h.watchers.Add(1)
	return start - 1, h.epoch, max(h.slowLag, h.lagLocked(start-1)), nil
}

// lagLocked is how many held events are after cursor. Callers hold mu.
func (h *hub) lagLocked(cursor uint64) int { return h.hist.n - h.hist.after(cursor) }

// watch runs one watcher until ctx ends, send fails or the watch is
// canceled (a *CanceledError). progress <= 0 turns progress responses off.
//
// send runs on a goroutine of its own so that a watcher blocked in it
// still sees the history move and can give up while its resume point is
// held. A watch canceled with a resume point waits, out of the hub, for
// the send in flight to end (see settle), so that the resume point counts
// exactly what was sent; only a watch ending with ctx, or any other
// cancel, may return while a send is still blocked, and send must then
// fail or return soon (a gRPC stream's Send does once its handler has
// returned). watch never calls send again after returning.
func (h *hub) watch(ctx context.Context, s *watchSpec, start uint64, progress time.Duration, send func(*paddockv1.WatchResponse) error) error {
	cursor, epoch, slowLag, err := h.register(start)
	if err != nil {
		return err
	}
	registered := true
	unregister := func() {
		if registered {
			registered = false
			h.watchers.Add(-1)
		}
	}
	defer unregister()

	out := make(chan *paddockv1.WatchResponse, 1)
	results := make(chan error, 1)
	go func() {
		for r := range out {
			err := send(r)
			results <- err
			if err != nil {
				return
			}
		}
	}()
	defer close(out)

	// cursor: every matching event <= cursor has been sent (send
	// returned). pending: what cursor becomes when the send in flight
	// returns.
	inflight, pending, since := true, cursor, time.Now()
	submit := func(r *paddockv1.WatchResponse, end uint64) {
		out <- r
		inflight, pending, since = true, end, time.Now()
	}
	submit(&paddockv1.WatchResponse{Header: h.header(cursor), Created: true}, cursor)

	var tick <-chan time.Time
	var timer *time.Timer
	if progress > 0 {
		timer = time.NewTimer(progress)
		defer timer.Stop()
	}
	// sent records the end of the send in flight.
	sent := func(err error) error {
		if err != nil {
			return err
		}
		inflight, cursor = false, pending
		if timer != nil {
			timer.Reset(progress)
		}
		return nil
	}
	for {
		// A send that has returned counts before the lag is judged.
		if inflight {
			select {
			case err := <-results:
				if err := sent(err); err != nil {
					return err
				}
			default:
			}
		}
		var events []*paddockv1.Event
		var end uint64
		h.mu.RLock()
		wake := h.wake
		// Checked at the sent cursor, not the pending one: a watcher
		// whose resume point was evicted while a send is blocked can
		// only re-read.
		err := h.canceledLocked(epoch, cursor)
		switch {
		case err != nil:
		case inflight:
			if h.lagLocked(cursor) > slowLag && time.Since(since) >= h.slowGrace {
				err = &CanceledError{Reason: paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_SLOW, ResumeZxid: cursor + 1}
			}
		default:
			events, end = h.collectLocked(s, cursor)
			if len(events) == 0 {
				cursor = end // filtered out: nothing to send
			}
		}
		h.mu.RUnlock()
		if err != nil {
			return h.settle(ctx, err, inflight, pending, results, unregister)
		}
		if len(events) > 0 {
			// The header is built out of the lock: it asks raft for the
			// term.
			submit(&paddockv1.WatchResponse{Header: h.header(end), Events: events}, end)
		}
		if timer != nil && !inflight {
			tick = timer.C
		} else {
			tick = nil
		}
		select {
		case err := <-results:
			if err := sent(err); err != nil {
				return err
			}
		case <-tick:
			submit(&paddockv1.WatchResponse{Header: h.header(cursor), Progress: true}, cursor)
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// settle finishes a watch ending with err. A resume point (SLOW,
// SHUTTING_DOWN) must be the first zxid the client was not sent, but a
// response still in flight may yet reach it: a gRPC Send that has queued
// its message delivers it before the status, and a Send blocked on flow
// control may queue it at any moment until the handler returns. So the
// watcher first leaves the hub (it reads no more history and no longer
// counts), then waits for that send to end: if it succeeds the resume
// point moves past it (pending is its end), if it fails the client is gone
// anyway. A client that never reads holds only this goroutine, as long as
// its stream would be held anyway (the status queues behind the data).
func (h *hub) settle(ctx context.Context, err error, inflight bool, pending uint64, results <-chan error, unregister func()) error {
	var ce *CanceledError
	if !inflight || !errors.As(err, &ce) || ce.ResumeZxid == 0 {
		return err
	}
	unregister()
	select {
	case serr := <-results:
		if serr != nil {
			return serr
		}
		ce.ResumeZxid = pending + 1
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// poll returns the events matching s after after (0 is now), waiting up
// to wait for the first ones, and the zxid the caller is up to date with.
func (h *hub) poll(ctx context.Context, s *watchSpec, after uint64, wait time.Duration) ([]*paddockv1.Event, uint64, error) {
	h.mu.RLock()
	if after == 0 {
		after = h.through
	}
	cursor, epoch := after, h.epoch
	err := h.canceledLocked(epoch, cursor)
	h.mu.RUnlock()
	if err != nil {
		return nil, 0, err
	}
	h.watchers.Add(1)
	defer h.watchers.Add(-1)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		h.mu.RLock()
		wake := h.wake
		err := h.canceledLocked(epoch, cursor)
		var events []*paddockv1.Event
		if err == nil {
			events, cursor = h.collectLocked(s, cursor)
		}
		h.mu.RUnlock()
		if err != nil || len(events) > 0 {
			return events, cursor, err
		}
		select {
		case <-wake:
		case <-timer.C:
			return nil, cursor, nil
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
}
