package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/paddock/paddock/fsm"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// Errors a watch or poll ends with, wrapped by a *CanceledError that says
// where to go on from. A node shutting down ends them with one matching
// ErrShuttingDown.
var (
	// ErrCompacted: the start is older than the node's event history
	// (or a snapshot install replaced it); the client must re-read.
	ErrCompacted = errors.New("node: watch history compacted")
	// ErrSlowWatcher: the watcher fell too far behind and was dropped; it
	// can resume.
	ErrSlowWatcher = errors.New("node: watcher too slow")
	// ErrFutureZxid: the start is beyond what the cluster has committed,
	// so the events the caller expects before it will never come.
	ErrFutureZxid = errors.New("node: zxid is beyond the cluster's latest")
)

// Limits of the watch API.
const (
	// MinWatchProgressInterval is the shortest progress interval a watch
	// may ask for; shorter ones are raised to it.
	MinWatchProgressInterval = 100 * time.Millisecond
	// DefaultPollTimeout and MaxPollTimeout bound a Poll's wait.
	DefaultPollTimeout = 30 * time.Second
	MaxPollTimeout     = 300 * time.Second
	// MaxPollEvents is the default and largest max_events of a Poll.
	MaxPollEvents = 1000
)

// CanceledError ends a watch or poll that cannot go on. Reason,
// CompactZxid, ResumeZxid and CurrentZxid have the meaning of
// paddockv1.WatchCanceled. It matches ErrCompacted (COMPACTED,
// SNAPSHOT_RESTORED), ErrSlowWatcher (SLOW), ErrFutureZxid (FUTURE_ZXID)
// or ErrShuttingDown (SHUTTING_DOWN) with errors.Is.
type CanceledError struct {
	Reason      paddockv1.WatchCancelReason
	CompactZxid uint64
	ResumeZxid  uint64
	CurrentZxid uint64
	// Asked is the zxid a FUTURE_ZXID refusal was asked for, for the
	// message.
	Asked uint64
}

func (e *CanceledError) Error() string {
	switch e.Reason {
	case paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_COMPACTED:
		return fmt.Sprintf("%v: oldest start zxid served is %d", ErrCompacted, e.CompactZxid)
	case paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_SNAPSHOT_RESTORED:
		return fmt.Sprintf("%v: snapshot installed, re-read and watch from %d", ErrCompacted, e.CompactZxid)
	case paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_SLOW:
		return fmt.Sprintf("%v: resume from zxid %d", ErrSlowWatcher, e.ResumeZxid)
	case paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_FUTURE_ZXID:
		return fmt.Sprintf("%v: asked for zxid %d, the cluster is at %d (watch from at most %d, poll after at most %d)",
			ErrFutureZxid, e.Asked, e.CurrentZxid, e.CurrentZxid+1, e.CurrentZxid)
	}
	return fmt.Sprintf("%v: resume from zxid %d", ErrShuttingDown, e.ResumeZxid)
}

// Unwrap returns the sentinel of e's reason.
func (e *CanceledError) Unwrap() error {
	switch e.Reason {
	case paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_COMPACTED,
		paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_SNAPSHOT_RESTORED:
		return ErrCompacted
	case paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_SLOW:
		return ErrSlowWatcher
	case paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_FUTURE_ZXID:
		return ErrFutureZxid
	}
	return ErrShuttingDown
}

// Detail is e as the status detail the API sends.
func (e *CanceledError) Detail() *paddockv1.WatchCanceled {
	return &paddockv1.WatchCanceled{Reason: e.Reason, CompactZxid: e.CompactZxid, ResumeZxid: e.ResumeZxid, CurrentZxid: e.CurrentZxid}
}

// watchNow is "now" for a watch or poll that gives no start: the newest
// change this node knows of, the larger of its applied index and its raft
// commit index. The applied index is published before the watch hub hears
// of the batch (the fsm calls its sinks after releasing its lock), and
// entries committed may still wait to be applied: a start taken from the
// hub alone could come before changes a read on this node already showed,
// or this node already knew were committed, and replay them.
func (n *Node) watchNow() uint64 {
	return max(n.fsm.AppliedIndex(), n.raft.CommitIndex())
}

// clusterCommit is the cluster's commit index, learned through a read
// index (the leader's own, or one asked of the leader), tried again while
// leadership moves.
func (n *Node) clusterCommit(ctx context.Context) (uint64, error) {
	ctx, cancel := n.withTimeout(ctx)
	defer cancel()
	for {
		var idx uint64
		var err error
		if n.IsLeader() {
			idx, err = n.confirmedReadIndex(ctx)
		} else {
			idx, err = n.fwdReadIndex.do(ctx, struct{}{})
		}
		if (errors.Is(err, ErrNotLeader) || errors.Is(err, ErrNoLeader)) && sleepCtx(ctx, 20*time.Millisecond) {
			continue
		}
		return idx, err
	}
}

// checkNotFuture refuses a start whose last seen zxid (a watch's
// start_zxid - 1, a poll's after_zxid) is beyond the cluster's commit
// index with FUTURE_ZXID. Only a zxid beyond this node's applied index
// costs a read index round; the common resume, at or below it, costs
// nothing.
func (n *Node) checkNotFuture(ctx context.Context, seen, asked uint64) error {
	if seen <= n.watchNow() {
		return nil
	}
	commit, err := n.clusterCommit(ctx)
	if err != nil {
		return err
	}
	if seen > commit {
		return &CanceledError{Reason: paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_FUTURE_ZXID, CurrentZxid: commit, Asked: asked}
	}
	return nil
}

// Watch streams the events req selects to send, as the WatchService
// contract says (proto/paddock/v1/watch.proto): a created response, then
// events in zxid order (one zxid never split), and progress responses
// when idle. It returns when ctx ends, when send fails, or with a
// *CanceledError; bad input fails at once with an error matching
// fsm.ErrBadPath or fsm.ErrBadArgument.
//
// A watch without start_zxid starts after watchNow. A start_zxid above
// the cluster's commit index + 1 is refused (FUTURE_ZXID); one this node
// has not applied yet is accepted, and its events follow once applied.
//
// send is called from another goroutine, one call at a time, so that a
// watcher stuck in it can be dropped as slow. A cancel with a resume
// point (SLOW, SHUTTING_DOWN) is returned only once the send in flight
// has ended, so the resume point is exactly the first zxid not sent; the
// dropped watch no longer counts in WatcherCount meanwhile. Otherwise
// Watch may return while a send is still blocked (ctx ended, COMPACTED,
// SNAPSHOT_RESTORED), and that send must then return soon (a gRPC
// stream's Send does, once its handler has returned).
func (n *Node) Watch(ctx context.Context, req *paddockv1.WatchRequest, send func(*paddockv1.WatchResponse) error) error {
	s, err := newWatchSpec(req.GetPath(), req.GetRecursive(), req.GetKinds(), req.GetPrevData(), maxResponseEvents)
	if err != nil {
		return err
	}
	progress := n.cfg.WatchProgressInterval
	switch ms := req.GetProgressIntervalMs(); {
	case ms < 0:
		progress = 0
	case ms > 0:
		// Capped at a day before converting, so no value overflows.
		progress = max(time.Duration(min(ms, (24*time.Hour).Milliseconds()))*time.Millisecond, MinWatchProgressInterval)
	}
	if err := n.checkLeaderContact(); err != nil {
		return err
	}
	start := req.GetStartZxid()
	if start == 0 {
		// "Now" on a node still catching up would be long ago.
		if err := n.checkCaughtUp(); err != nil {
			return err
		}
		start = n.watchNow() + 1
	} else if err := n.checkNotFuture(ctx, start-1, start); err != nil {
		return err
	}
	cctx, release := n.withLeaderContact(ctx)
	defer release()
	return lostContact(ctx, cctx, n.watch.watch(cctx, s, start, progress, send))
}

// Poll returns the events req selects after req.after_zxid, waiting up to
// its timeout for the first ones; the header's zxid is the after_zxid of
// the next poll. It fails like Watch. An after_zxid above the cluster's
// commit index is refused (FUTURE_ZXID); one this node has not applied
// yet is waited for first, as a read's min_zxid is. after_zxid 0 is
// watchNow.
func (n *Node) Poll(ctx context.Context, req *paddockv1.PollRequest) (*paddockv1.PollResponse, error) {
	maxEvents := int(req.GetMaxEvents())
	switch {
	case maxEvents < 0 || maxEvents > MaxPollEvents:
		return nil, fmt.Errorf("%w: max_events %d is not in [0, %d]", fsm.ErrBadArgument, maxEvents, MaxPollEvents)
	case maxEvents == 0:
		maxEvents = MaxPollEvents
	}
	wait := time.Duration(req.GetTimeoutMs()) * time.Millisecond
	switch {
	case req.GetTimeoutMs() < 0 || req.GetTimeoutMs() > MaxPollTimeout.Milliseconds():
		return nil, fmt.Errorf("%w: timeout_ms %d is not in [0, %d]", fsm.ErrBadArgument, req.GetTimeoutMs(), MaxPollTimeout.Milliseconds())
	case wait == 0:
		wait = DefaultPollTimeout
	}
	s, err := newWatchSpec(req.GetPath(), req.GetRecursive(), req.GetKinds(), req.GetPrevData(), maxEvents)
	if err != nil {
		return nil, err
	}
	if err := n.checkLeaderContact(); err != nil {
		return nil, err
	}
	after := req.GetAfterZxid()
	if after == 0 {
		if err := n.checkCaughtUp(); err != nil {
			return nil, err
		}
		// Not waited for: the hub skips what comes before it.
		after = n.watchNow()
	} else if err := n.checkNotFuture(ctx, after, after); err != nil {
		return nil, err
	} else if after > n.fsm.AppliedIndex() {
		wctx, cancel := n.withTimeout(ctx)
		err = n.waiter.wait(wctx, after)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("node: waiting for after_zxid %d: %w", after, err)
		}
	}
	cctx, release := n.withLeaderContact(ctx)
	defer release()
	events, zxid, err := n.watch.poll(cctx, s, after, wait)
	if err != nil {
		return nil, lostContact(ctx, cctx, err)
	}
	return &paddockv1.PollResponse{Header: n.Header(zxid), Events: events}, nil
}

// WatcherCount is the number of open watches and waiting polls.
func (n *Node) WatcherCount() int { return n.watch.count() }

// kindSet is a set of event kinds, one bit per kind.
type kindSet uint8

const allKinds kindSet = 1<<5 - 2 // the four kinds, bits 1 to 4

func kindBit(k paddockv1.EventKind) kindSet { return 1 << uint(k) }

// newWatchSpec validates what a watch or poll selects.
func newWatchSpec(path string, recursive bool, kinds []paddockv1.EventKind, prevData bool, maxEvents int) (*watchSpec, error) {
	if err := fsm.ValidatePath(path, false); err != nil {
		return nil, err
	}
	s := &watchSpec{path: path, prevData: prevData, maxEvents: maxEvents}
	if recursive {
		s.prefix = path + "/"
		if path == "/" {
			s.prefix = "/"
		}
	}
	for _, k := range kinds {
		if k <= paddockv1.EventKind_EVENT_KIND_UNSPECIFIED || k > paddockv1.EventKind_EVENT_KIND_CHILDREN_CHANGED {
			return nil, fmt.Errorf("%w: unknown event kind %d", fsm.ErrBadArgument, k)
		}
		s.kinds |= kindBit(k)
	}
	if s.kinds == 0 {
		s.kinds = allKinds
	}
	return s, nil
}

// sinks calls every sink in order. The node puts the watch hub before the
// read waiter: once a read at index i may be served, the hub has the
// events up to i, so a watch from "now" that follows a read misses
// nothing the read did not see.
type sinks []fsm.Sink

func (s sinks) Applied(index uint64, events []fsm.Event) {
	for _, k := range s {
		k.Applied(index, events)
	}
}

func (s sinks) Restored(index uint64) {
	for _, k := range s {
		k.Restored(index)
	}
}
