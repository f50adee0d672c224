package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// Pauses between passes over the endpoints while a watch cannot reconnect:
// from watchPause, doubling up to maxWatchPause. A watch retries until it is
// closed, so the pause is capped low enough to notice a node coming back.
const (
	watchPause    = 100 * time.Millisecond
	maxWatchPause = 2 * time.Second
)

// errWatchStalled breaks a watch stream that has been silent for much
// longer than its progress interval: the node or the path to it is stuck.
var errWatchStalled = errors.New("client: watch stream stalled")

// WatchOptions tunes a watch. The zero value watches one znode for every
// kind of change from now on.
type WatchOptions struct {
	// Recursive watches the path and every znode below it.
	Recursive bool
	// Kinds keeps only these kinds of events; empty means all.
	Kinds []paddockv1.EventKind
	// StartZxid is the first zxid to deliver events of; 0 means only the
	// changes applied after the watch is created. To see every change after
	// a read, pass the read's header.zxid + 1.
	StartZxid uint64
	// PrevData asks for the data before each set and delete.
	PrevData bool
	// ProgressInterval is how often an idle watch hears from its node; 0
	// takes the node's default, negative turns progress off. When it is set
	// (> 0), a stream silent for 3 intervals plus a second is taken as
	// stuck and the watch moves to the next endpoint.
	ProgressInterval time.Duration
}

// WatchResponse is what a Watcher delivers: the events of one or more
// whole zxids in zxid order, or, with no events, a progress report.
type WatchResponse struct {
	// Zxid is the zxid the watch is up to date with: every matching event
	// up to Zxid has been delivered, in this response or an earlier one.
	Zxid uint64
	// Events are the changes, in zxid order; empty for a progress report.
	Events []*paddockv1.Event
}

// IsProgress reports whether r only reports progress.
func (r WatchResponse) IsProgress() bool { return len(r.Events) == 0 }

// CompactedError ends a watch whose start is older than the event history
// of the node it reached (reason COMPACTED), or whose node installed a
// snapshot (SNAPSHOT_RESTORED): events were lost to it, so the caller must
// re-read the state and watch again from CompactZxid or later. It matches
// ErrCompacted with errors.Is.
type CompactedError struct {
	// Reason is WATCH_CANCEL_REASON_COMPACTED or
	// WATCH_CANCEL_REASON_SNAPSHOT_RESTORED.
	Reason paddockv1.WatchCancelReason
	// CompactZxid is the oldest start zxid the node can serve.
	CompactZxid uint64
	// StartZxid is the start zxid the watch asked for.
	StartZxid uint64
}

// Error describes the gap.
func (e *CompactedError) Error() string {
	return fmt.Sprintf("%v: start zxid %d, oldest available %d (%s)", ErrCompacted, e.StartZxid, e.CompactZxid, e.Reason)
}

// Is makes errors.Is(err, ErrCompacted) hold.
func (e *CompactedError) Is(target error) bool { return target == ErrCompacted }

// CancelReason is Reason, for callers that match the error by behaviour
// without importing this package (farm's exporter re-reads on it).
func (e *CompactedError) CancelReason() paddockv1.WatchCancelReason { return e.Reason }

// Watcher delivers the events of one watch, resuming on another endpoint
// whenever its stream breaks, until it is closed, its context ends, or the
// watch cannot go on without a gap (CompactedError).
type Watcher struct {
	c      *Client
	req    *paddockv1.WatchRequest // template: start_zxid is set per stream
	stall  time.Duration           // 0: no stall detection
	ch     chan WatchResponse
	done   chan struct{} // closed when err is set, before ch is closed
	cancel context.CancelCauseFunc
	stop   func() bool // unregisters the Client.Close hook
	err    error
	zxid   atomic.Uint64 // the resume point, for Zxid

	// Owned by the run goroutine (and by Watch before it starts).
	idx    int    // endpoint of the current stream
	last   uint64 // every matching event up to last has been delivered
	pinned bool   // last is known: set by StartZxid or the first created
}

// Watch starts a watch on path and returns once a node has accepted it.
// The Watcher then runs until Close, until ctx ends, or until Client.Close.
//
// Watch tries every endpoint in turn like a unary call and returns the
// error of the watch if none accepts it (an invalid path, a compacted
// StartZxid as *CompactedError, or Unavailable when none is reachable).
// After that the Watcher reconnects by itself for as long as it runs: see
// the package documentation.
func (c *Client) Watch(ctx context.Context, path string, opts WatchOptions) (*Watcher, error) {
	req := &paddockv1.WatchRequest{
		Path:      path,
		Recursive: opts.Recursive,
		Kinds:     slices.Clone(opts.Kinds),
		PrevData:  opts.PrevData,
	}
	w := &Watcher{
		c:    c,
		req:  req,
		ch:   make(chan WatchResponse),
		done: make(chan struct{}),
		idx:  c.current(),
	}
	switch {
	case opts.ProgressInterval > 0:
		req.ProgressIntervalMs = max(1, opts.ProgressInterval.Milliseconds())
		w.stall = 3*opts.ProgressInterval + time.Second
	case opts.ProgressInterval < 0:
		req.ProgressIntervalMs = -1
	}
	if opts.StartZxid > 0 {
		w.last, w.pinned = opts.StartZxid-1, true
		w.zxid.Store(w.last)
	}
	wctx, cancel := context.WithCancelCause(ctx)
	w.cancel = cancel
	w.stop = context.AfterFunc(c.ctx, func() { cancel(ErrClosed) })

	st, err := w.connect(wctx, maxRounds)
	if err != nil {
		w.stop()
		cancel(nil)
		return nil, err
	}
	go w.run(wctx, st)
	return w, nil
}

// Responses delivers the watch's events and progress reports in zxid order,
// each zxid once. It is closed when the watcher ends; Err then says why.
// It is unbuffered: a consumer that stops reading holds the stream back,
// and the node may then drop it as slow, which the Watcher resumes from.
func (w *Watcher) Responses() <-chan WatchResponse { return w.ch }

// Done is closed when the watcher has ended.
func (w *Watcher) Done() <-chan struct{} { return w.done }

// Err is nil while the watcher runs. Once it has ended it is ErrClosed
// (Close or Client.Close), the context's error, a *CompactedError
// (errors.Is ErrCompacted), or the status error the watch could not resume
// from.
func (w *Watcher) Err() error {
	select {
	case <-w.done:
		return w.err
	default:
		return nil
	}
}

// Zxid is the zxid the watcher is up to date with: every matching event up
// to it has been received from Responses. After the watcher ends, a new
// watch from Zxid()+1 continues where this one stopped. While it runs, Zxid
// may trail the response just received for an instant (never lead it:
// checkpointing it loses nothing); WatchResponse.Zxid is exact.
func (w *Watcher) Zxid() uint64 { return w.zxid.Load() }

// Close stops the watcher and waits for its goroutine to end. It is safe to
// call more than once, and after the watcher ended by itself.
func (w *Watcher) Close() error {
	w.cancel(ErrClosed)
	<-w.done
	return nil
}

// stream is one open watch stream: its first response, read by connect,
// and the function that releases it.
type stream struct {
	grpc.ServerStreamingClient[paddockv1.WatchResponse]
	first  *paddockv1.WatchResponse
	cancel context.CancelCauseFunc
	ctx    context.Context
}

// run delivers the watch's responses, moving to the next endpoint whenever
// a stream breaks in a way it can resume from, until the watcher ends.
func (w *Watcher) run(ctx context.Context, st *stream) {
	err := w.follow(ctx, st)
	w.stop()
	w.cancel(nil)
	w.err = err
	close(w.done)
	close(w.ch)
}

// follow consumes one stream after another and returns why the watch
// ended.
func (w *Watcher) follow(ctx context.Context, st *stream) error {
	for {
		err := w.consume(ctx, st)
		st.cancel(nil)
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if final := w.final(st.ctx, err); final != nil {
			return final
		}
		w.idx = (w.idx + 1) % len(w.c.conns)
		if st, err = w.connect(ctx, 0); err != nil {
			return err
		}
	}
}

// connect opens a stream from the resume point, trying the endpoints in
// turn from w.idx and pausing between passes. rounds bounds the passes (0:
// until ctx ends). It returns the first error it cannot resume from.
func (w *Watcher) connect(ctx context.Context, rounds int) (*stream, error) {
	n := len(w.c.conns)
	pace := pacer{n: n, first: watchPause, most: maxWatchPause}
	var err error
	for attempt := 0; (rounds == 0 || attempt < rounds*n) && pace.next(ctx, time.Time{}); attempt++ {
		var st *stream
		if st, err = w.open(ctx); err == nil {
			w.c.cur.Store(int64(w.idx))
			return st, nil
		}
		if ctx.Err() != nil {
			break
		}
		if final := w.final(st.ctx, err); final != nil {
			return nil, final
		}
		w.idx = (w.idx + 1) % n
	}
	if ctx.Err() != nil {
		return nil, context.Cause(ctx)
	}
	return nil, err
}

// open starts a stream on endpoint w.idx and waits for its first response,
// so that a node that cannot serve the watch fails here. The returned
// stream is never nil: on error, its ctx says whether it was stalled.
func (w *Watcher) open(ctx context.Context) (*stream, error) {
	req := w.requestFrom()
	sctx, cancel := context.WithCancelCause(ctx)
	st := &stream{ctx: sctx, cancel: cancel}
	watch := w.watchdog(st)
	defer watch.Stop()
	var err error
	st.ServerStreamingClient, err = paddockv1.NewWatchServiceClient(w.c.conns[w.idx]).Watch(sctx, req)
	if err == nil {
		st.first, err = st.Recv()
	}
	if err != nil {
		cancel(nil)
		return st, err
	}
	return st, nil
}

// requestFrom is the watch request for the next stream: from the resume
// point once known, else from the caller's start ("now").
func (w *Watcher) requestFrom() *paddockv1.WatchRequest {
	req := &paddockv1.WatchRequest{
		Path:               w.req.Path,
		Recursive:          w.req.Recursive,
		Kinds:              w.req.Kinds,
		PrevData:           w.req.PrevData,
		ProgressIntervalMs: w.req.ProgressIntervalMs,
	}
	if w.pinned {
		req.StartZxid = w.last + 1
	}
	return req
}

// watchdog breaks st with errWatchStalled if it stays silent for w.stall.
// The caller stops the timer while it is not waiting on the stream.
func (w *Watcher) watchdog(st *stream) *time.Timer {
	if w.stall <= 0 {
		return time.NewTimer(math.MaxInt64) // never fires
	}
	return time.AfterFunc(w.stall, func() { st.cancel(errWatchStalled) })
}

// consume delivers st's responses, its first one included, until the
// stream or ctx ends, and returns the stream's error.
func (w *Watcher) consume(ctx context.Context, st *stream) error {
	watch := w.watchdog(st)
	defer watch.Stop()
	resp := st.first
	for {
		watch.Stop()
		if err := w.deliver(ctx, resp); err != nil {
			return err
		}
		if w.stall > 0 {
			watch.Reset(w.stall)
		}
		var err error
		if resp, err = st.Recv(); err != nil {
			return err
		}
	}
}

// deliver hands resp's new events to the consumer and advances the resume
// point. Events at or before the resume point were delivered already (the
// server promises never to send them; a resumed stream is checked anyway)
// and are dropped; a progress report that does not advance is not sent.
func (w *Watcher) deliver(ctx context.Context, resp *paddockv1.WatchResponse) error {
	zxid := resp.GetHeader().GetZxid()
	if resp.GetCreated() && !w.pinned {
		// A watch from "now" starts after the created zxid: pin it, so
		// that resuming asks for exactly what follows.
		w.last, w.pinned = zxid, true
		w.zxid.Store(zxid)
	}
	var events []*paddockv1.Event
	for _, ev := range resp.GetEvents() {
		if ev.GetZxid() > w.last {
			events = append(events, ev)
			zxid = max(zxid, ev.GetZxid())
		}
	}
	if zxid <= w.last {
		return nil
	}
	// Raise the client's LastZxid first: a read made as soon as the
	// consumer has the event must reflect it.
	w.c.observe(zxid)
	select {
	case w.ch <- WatchResponse{Zxid: zxid, Events: events}:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	w.last = zxid
	w.zxid.Store(zxid)
	return nil
}

// final returns nil when a stream that ended with err (under stream context
// sctx) can be resumed on another endpoint, else the error that ends the
// watch: a *CompactedError for a gap, or err itself.
func (w *Watcher) final(sctx context.Context, err error) error {
	if errors.Is(context.Cause(sctx), errWatchStalled) {
		return nil
	}
	if errors.Is(err, io.EOF) {
		// The node ended the stream without saying why; the contract
		// never does that, so resume rather than stop silently.
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	wc := watchCanceled(st)
	switch wc.GetReason() {
	case paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_SLOW,
		paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_SHUTTING_DOWN:
		// Resume from our own resume point: it is what the server calls
		// resume_zxid, and never skips an undelivered event.
		return nil
	}
	if ce := gapError(wc, w.requestFrom().GetStartZxid()); ce != nil {
		return ce
	}
	if st.Code() == codes.Unavailable {
		return nil
	}
	return err
}

// watchCanceled returns st's WatchCanceled detail, or nil.
func watchCanceled(st *status.Status) *paddockv1.WatchCanceled {
	for _, d := range st.Details() {
		if wc, ok := d.(*paddockv1.WatchCanceled); ok {
			return wc
		}
	}
	return nil
}

// gapError returns the *CompactedError of a watch or poll from start that
// the server canceled with wc (nil-safe) for a gap in its history, or nil
// when wc says nothing of a gap.
func gapError(wc *paddockv1.WatchCanceled, start uint64) *CompactedError {
	switch wc.GetReason() {
	case paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_COMPACTED,
		paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_SNAPSHOT_RESTORED:
		return &CompactedError{Reason: wc.GetReason(), CompactZxid: wc.GetCompactZxid(), StartZxid: start}
	}
	return nil
}

// pollGrace is how much longer than its timeout_ms a poll may take to be
// answered before the client gives up on that endpoint and tries the
// next: a node whose answers are lost (a network that drops them, a
// paused process) would otherwise hold the poll until the connection
// breaks, minutes later.
const pollGrace = time.Second

// defaultPollTimeout is the node's default timeout_ms (node.DefaultPollTimeout).
const defaultPollTimeout = 30 * time.Second

// attemptTimedOut reports whether err is the server ending a call at the
// deadline of its attempt context actx, which the server sees (and acts
// on) a moment before the client's own timer fires: a DeadlineExceeded
// while actx's deadline comes before ctx's.
func attemptTimedOut(ctx, actx context.Context, err error) bool {
	if status.Code(err) != codes.DeadlineExceeded {
		return false
	}
	attempt, _ := actx.Deadline()
	whole, ok := ctx.Deadline()
	return !ok || attempt.Before(whole)
}

// Poll returns the events after req.after_zxid, or waits up to
// req.timeout_ms for the first ones: the long-poll form of Watch, for a
// caller that cannot hold a stream. Pass the response's header.zxid as the
// next after_zxid. ctx must outlast timeout_ms. It is a read, retried on
// another endpoint on Unavailable, and also when an endpoint has not
// answered within timeout_ms + 1 s. An after_zxid older than the node's
// history fails with a *CompactedError (errors.Is ErrCompacted).
func (c *Client) Poll(ctx context.Context, req *paddockv1.PollRequest) (*paddockv1.PollResponse, error) {
	limit := defaultPollTimeout
	if ms := req.GetTimeoutMs(); ms > 0 {
		limit = time.Duration(ms) * time.Millisecond
	}
	limit += pollGrace
	poll := func(s paddockv1.WatchServiceClient, ctx context.Context, r *paddockv1.PollRequest, opts ...grpc.CallOption) (*paddockv1.PollResponse, error) {
		actx, cancel := context.WithTimeout(ctx, limit)
		defer cancel()
		resp, err := s.Poll(actx, r, opts...)
		if err != nil && ctx.Err() == nil && (actx.Err() != nil || attemptTimedOut(ctx, actx, err)) {
			return nil, status.Errorf(codes.Unavailable, "client: poll not answered within %v", limit)
		}
		return resp, err
	}
	resp, err := call(ctx, c, read, paddockv1.NewWatchServiceClient, poll, req)
	if err == nil {
		return resp, nil
	}
	if ce := gapError(watchCanceled(status.Convert(err)), req.GetAfterZxid()+1); ce != nil {
		return nil, ce
	}
	return nil, err
}
