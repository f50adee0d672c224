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
// CompactZxid and ResumeZxid have the meaning of paddockv1.WatchCanceled.
// It matches ErrCompacted (COMPACTED, SNAPSHOT_RESTORED), ErrSlowWatcher
// (SLOW) or ErrShuttingDown (SHUTTING_DOWN) with errors.Is.
type CanceledError struct {
	Reason      paddockv1.WatchCancelReason
	CompactZxid uint64
	ResumeZxid  uint64
}

func (e *CanceledError) Error() string {
	switch e.Reason {
	case paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_COMPACTED:
		return fmt.Sprintf("%v: oldest start zxid served is %d", ErrCompacted, e.CompactZxid)
	case paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_SNAPSHOT_RESTORED:
		return fmt.Sprintf("%v: snapshot installed, re-read and watch from %d", ErrCompacted, e.CompactZxid)
	case paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_SLOW:
		return fmt.Sprintf("%v: resume from zxid %d", ErrSlowWatcher, e.ResumeZxid)
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
	}
	return ErrShuttingDown
}

// Detail is e as the status detail the API sends.
func (e *CanceledError) Detail() *paddockv1.WatchCanceled {
	return &paddockv1.WatchCanceled{Reason: e.Reason, CompactZxid: e.CompactZxid, ResumeZxid: e.ResumeZxid}
}

// Watch streams the events req selects to send, as the WatchService
// contract says (proto/paddock/v1/watch.proto): a created response, then
// events in zxid order (one zxid never split), and progress responses
// when idle. It returns when ctx ends, when send fails, or with a
// *CanceledError; bad input fails at once with an error matching
// fsm.ErrBadPath or fsm.ErrBadArgument.
//
// send is called from another goroutine, one call at a time, so that a
// watcher stuck in it can be dropped as slow: Watch may return while a
// send is still blocked, and that send must then return soon (a gRPC
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
	return n.watch.watch(ctx, s, req.GetStartZxid(), progress, send)
}

// Poll returns the events req selects after req.after_zxid, waiting up to
// its timeout for the first ones; the header's zxid is the after_zxid of
// the next poll. It fails like Watch.
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
	events, zxid, err := n.watch.poll(ctx, s, req.GetAfterZxid(), wait)
	if err != nil {
		return nil, err
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
