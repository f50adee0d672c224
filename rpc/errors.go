package rpc

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock/paddock/fsm"
	"github.com/paddock/paddock/node"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// errorCodes is the one table from domain errors to gRPC codes, matched
// in order with errors.Is (so wrapped errors map like their sentinel).
var errorCodes = []struct {
	err  error
	code codes.Code
}{
	{fsm.ErrNoNode, codes.NotFound},
	{fsm.ErrNoSession, codes.NotFound},
	{fsm.ErrNodeExists, codes.AlreadyExists},
	{fsm.ErrBadVersion, codes.FailedPrecondition},
	{fsm.ErrNotEmpty, codes.FailedPrecondition},
	{fsm.ErrEphemeralParent, codes.FailedPrecondition},
	{fsm.ErrSessionExpired, codes.FailedPrecondition},
	{fsm.ErrFeatureLevel, codes.FailedPrecondition},
	{fsm.ErrBadPath, codes.InvalidArgument},
	{fsm.ErrTooLarge, codes.InvalidArgument},
	{fsm.ErrBadArgument, codes.InvalidArgument},
	{fsm.ErrReservedPath, codes.InvalidArgument},
	{fsm.ErrRequestIDReused, codes.InvalidArgument},
	{fsm.ErrBadEntry, codes.Internal},
	{fsm.ErrUpgradeRequired, codes.Unavailable},
	{node.ErrCompacted, codes.OutOfRange},
	{fsm.ErrListingChanged, codes.OutOfRange},
	{node.ErrFutureZxid, codes.OutOfRange},
	{node.ErrSlowWatcher, codes.ResourceExhausted},
	{node.ErrNoLeader, codes.Unavailable},
	{node.ErrNotLeader, codes.Unavailable},
	{node.ErrShuttingDown, codes.Unavailable},
	{node.ErrUnknownOutcome, codes.Unavailable},
	{node.ErrCatchingUp, codes.Unavailable},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
	{context.Canceled, codes.Canceled},
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
	code := codes.Internal
	for _, ec := range errorCodes {
		if errors.Is(err, ec.err) {
			code = ec.code
			break
		}
	}
	if code == codes.Internal {
		slog.Error("internal error", "error", err)
	}
	st := status.New(code, err.Error())
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
