package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock/paddock/farm"
	"github.com/paddock/paddock/fsm"
	"github.com/paddock/paddock/node"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// errorCodes is the one table from domain errors to gRPC codes and to the
// words a user reads, matched in order with errors.Is (so wrapped errors
// map like their sentinel). The message of a status is built from msg and
// the error's typed detail (userMessage), never from the Go error string,
// which carries package prefixes and the wrapping of every layer.
var errorCodes = []struct {
	err  error
	code codes.Code
	msg  string
}{
	{fsm.ErrNoNode, codes.NotFound, "node does not exist"},
	{fsm.ErrNoSession, codes.NotFound, "no such session"},
	{fsm.ErrNodeExists, codes.AlreadyExists, "node already exists"},
	{fsm.ErrBadVersion, codes.FailedPrecondition, "version does not match"},
	{fsm.ErrNotEmpty, codes.FailedPrecondition, "node has children"},
	{fsm.ErrEphemeralParent, codes.FailedPrecondition, "ephemeral nodes cannot have children"},
	{fsm.ErrSessionExpired, codes.FailedPrecondition, "session expired or unknown"},
	{fsm.ErrFenceLost, codes.FailedPrecondition, "fence lost"},
	{fsm.ErrNotHeld, codes.FailedPrecondition, "not held"},
	{fsm.ErrLimitMismatch, codes.FailedPrecondition, "lock limit differs"},
	{fsm.ErrFeatureLevel, codes.FailedPrecondition, "feature level not supported by every member"},
	{fsm.ErrBadPath, codes.InvalidArgument, "bad path"},
	{fsm.ErrTooLarge, codes.InvalidArgument, "data too large"},
	{fsm.ErrBadArgument, codes.InvalidArgument, "bad argument"},
	{fsm.ErrReservedPath, codes.InvalidArgument, "path is reserved for the system"},
	{fsm.ErrRequestIDReused, codes.InvalidArgument, "request id reused for a different request"},
	{fsm.ErrBadEntry, codes.Internal, "undecodable raft entry"},
	{fsm.ErrUpgradeRequired, codes.Unavailable, "this node stopped: upgrade required"},
	{node.ErrCompacted, codes.OutOfRange, "watch history compacted"},
	{fsm.ErrListingChanged, codes.OutOfRange, "listing is no longer current"},
	{node.ErrFutureZxid, codes.OutOfRange, "zxid is beyond the cluster's latest"},
	{node.ErrSlowWatcher, codes.ResourceExhausted, "watcher too slow"},
	// A web session's lock: a read that waited its wait_ms out is
	// ABORTED (HTTP 409: PHP's session_start fails, the caller may try
	// again), not UNAVAILABLE, on which clients would fail over and
	// wait again on another node.
	{node.ErrWebSessionLocked, codes.Aborted, "web session locked by another request"},
	{node.ErrWebSessionLockLost, codes.FailedPrecondition, "web session lock held by another request"},
	{node.ErrNoLeader, codes.Unavailable, "no leader"},
	{node.ErrNotLeader, codes.Unavailable, "not the leader"},
	{node.ErrShuttingDown, codes.Unavailable, "shutting down"},
	{node.ErrUnknownOutcome, codes.Unavailable, "leadership lost, write outcome unknown"},
	{node.ErrCatchingUp, codes.Unavailable, "node is catching up"},
	// farm's errors: a request that can never succeed as it is, but for
	// ErrConflict, a compare-and-set that kept losing to other writers.
	// That is ABORTED (gRPC's "concurrency conflict, retry at a higher
	// level"; 409 over HTTP), not UNAVAILABLE: nothing is wrong with the
	// node, and the Go client must not fail over to another endpoint and
	// repeat the fight on its own. The caller decides whether to try
	// again.
	{farm.ErrBadField, codes.InvalidArgument, "bad field"},
	{farm.ErrBadFilter, codes.InvalidArgument, "bad filter"},
	{farm.ErrBadFormat, codes.InvalidArgument, "bad format"},
	{farm.ErrBadConf, codes.InvalidArgument, "bad configuration"},
	{farm.ErrBadThreshold, codes.InvalidArgument, "bad threshold"},
	{farm.ErrConflict, codes.Aborted, "too many concurrent changes"},
	{context.DeadlineExceeded, codes.DeadlineExceeded, "request timed out"},
	{context.Canceled, codes.Canceled, "request canceled"},
}

// toStatus maps err to a gRPC status error. Errors that already are a
// status (from a peer) pass through. A failed Multi carries a MultiFailure
// detail naming the op; a canceled watch or poll a WatchCanceled detail.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code, msg := codes.Internal, "internal error"
	for _, ec := range errorCodes {
		if errors.Is(err, ec.err) {
			code, msg = ec.code, ec.msg
			break
		}
	}
	if code == codes.Internal {
		slog.Error("internal error", "error", err)
	}
	st := status.New(code, userMessage(err, msg)+farmDetail(err))
	var me *fsm.MultiError
	if errors.As(err, &me) {
		if d, derr := st.WithDetails(&paddockv1.MultiFailure{FailedIndex: int32(me.Index)}); derr == nil {
			st = d
		}
	}
	var ce *node.CanceledError
	if errors.As(err, &ce) {
		if d, derr := st.WithDetails(ce.Detail()); derr == nil {
			st = d
		}
	}
	return st.Err()
}

// userMessage is the message a user sees for err, whose table entry says
// msg: msg, then what the error concerns (the state machine error's
// detail, the zxids of a canceled watch), then the op of a failed Multi:
// "node does not exist: /a (multi op 0)". Node errors other than a
// canceled watch say msg alone: what they wrap (a peer's dial error) is
// for the log, not for the user.
func userMessage(err error, msg string) string {
	if fe, ok := fsm.AsError(err); ok && fe.Detail != "" {
		msg += ": " + fe.Detail
	}
	if ce, ok := errors.AsType[*node.CanceledError](err); ok {
		switch ce.Reason {
		case paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_COMPACTED:
			msg += fmt.Sprintf(": oldest start zxid served is %d", ce.CompactZxid)
		case paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_SNAPSHOT_RESTORED:
			msg += fmt.Sprintf(": snapshot installed, re-read and watch from %d", ce.CompactZxid)
		case paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_FUTURE_ZXID:
			msg += fmt.Sprintf(": asked for zxid %d, the cluster is at %d (watch from at most %d, poll after at most %d)",
				ce.Asked, ce.CurrentZxid, ce.CurrentZxid+1, ce.CurrentZxid)
		default:
			msg += fmt.Sprintf(": resume from zxid %d", ce.ResumeZxid)
		}
	}
	if me, ok := errors.AsType[*fsm.MultiError](err); ok {
		msg += fmt.Sprintf(" (multi op %d)", me.Index)
	}
	return msg
}

// farmDetail is what a farm error says after its sentinel, and the znode
// it concerns when it names one: `: "a..b": empty segment` for
// ErrBadField, `: /farm/h1: invalid character 'x'...` for ErrBadConf. The
// farm package words its details for users (the parser's message); only
// its "farm: " prefix is dropped. "" for other errors.
func farmDetail(err error) string {
	for _, sentinel := range []error{farm.ErrBadField, farm.ErrBadFilter, farm.ErrBadFormat, farm.ErrBadConf, farm.ErrBadThreshold, farm.ErrConflict} {
		if !errors.Is(err, sentinel) {
			continue
		}
		before, after, ok := strings.Cut(err.Error(), sentinel.Error())
		if !ok {
			return ""
		}
		var d string
		if znode := strings.TrimSuffix(before, ": "); strings.HasPrefix(znode, "/") {
			d = ": " + znode
		}
		if after = strings.TrimPrefix(after, ": "); after != "" {
			d += ": " + after
		}
		return d
	}
	return ""
}
