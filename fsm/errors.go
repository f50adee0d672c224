package fsm

import (
	"errors"
	"fmt"
	"strings"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
)

// Errors returned by the state machine. Match them with errors.Is: the
// returned errors are an *Error wrapping one with the path or id it
// concerns.
var (
	ErrNoNode          = errors.New("fsm: node does not exist")
	ErrNodeExists      = errors.New("fsm: node already exists")
	ErrBadVersion      = errors.New("fsm: version does not match")
	ErrNotEmpty        = errors.New("fsm: node has children")
	ErrEphemeralParent = errors.New("fsm: ephemeral nodes cannot have children")
	ErrBadPath         = errors.New("fsm: bad path")
	ErrTooLarge        = errors.New("fsm: data too large")
	ErrBadArgument     = errors.New("fsm: bad argument")
	ErrSessionExpired  = errors.New("fsm: session expired or unknown")
	ErrReservedPath    = errors.New("fsm: path is reserved for the system")
	ErrBadEntry        = errors.New("fsm: undecodable raft entry")
	ErrNoSession       = errors.New("fsm: no such session")
	// ErrFeatureLevel refuses to propose a command that a member of the
	// cluster does not support yet; nothing was appended.
	ErrFeatureLevel = errors.New("fsm: feature level not supported by every member")
	// ErrUpgradeRequired is the fatal error of a replica that met an
	// entry it cannot understand: it stopped applying and needs a newer
	// binary.
	ErrUpgradeRequired = errors.New("fsm: replica stopped, upgrade required")
	// ErrListingChanged: a later page of a listing with data cannot be
	// served at the listing's zxid (list.go); the caller starts over.
	ErrListingChanged = errors.New("fsm: listing is no longer current")
	// ErrRequestIDReused: a command carried a request id the table
	// remembers for a different command (another operation, path or
	// body). It is refused and changes nothing.
	ErrRequestIDReused = errors.New("fsm: request id reused for a different request")
	// ErrFenceLost: a fenced write's token no longer holds its election
	// or lock (or never did).
	ErrFenceLost = errors.New("fsm: fence lost")
	// ErrNotHeld: a token is not in its election's or lock's line.
	ErrNotHeld = errors.New("fsm: not held")
	// ErrLimitMismatch: a semaphore's holder limit differs from its
	// line's.
	ErrLimitMismatch = errors.New("fsm: lock limit mismatch")
	// ErrNotApplied is the result of an entry after the one a replica
	// stopped at (ErrUpgradeRequired): the entry is committed, and the
	// replicas that go on apply it, but this one does not know whether
	// the command succeeded. A retry with the same request id gets the
	// outcome from a replica that applied it. It never goes on the wire:
	// the node answers "outcome unknown" instead.
	ErrNotApplied = errors.New("fsm: entry not applied by this node, outcome unknown")
)

// errorCodes pairs every sentinel with its wire code, so errors survive
// being forwarded from the leader to the follower that took the request.
var errorCodes = []struct {
	err  error
	code raftv1.ErrorCode
}{
	{ErrNoNode, raftv1.ErrorCode_ERROR_CODE_NO_NODE},
	{ErrNodeExists, raftv1.ErrorCode_ERROR_CODE_NODE_EXISTS},
	{ErrBadVersion, raftv1.ErrorCode_ERROR_CODE_BAD_VERSION},
	{ErrNotEmpty, raftv1.ErrorCode_ERROR_CODE_NOT_EMPTY},
	{ErrEphemeralParent, raftv1.ErrorCode_ERROR_CODE_EPHEMERAL_PARENT},
	{ErrBadPath, raftv1.ErrorCode_ERROR_CODE_BAD_PATH},
	{ErrTooLarge, raftv1.ErrorCode_ERROR_CODE_TOO_LARGE},
	{ErrBadArgument, raftv1.ErrorCode_ERROR_CODE_BAD_ARGUMENT},
	{ErrSessionExpired, raftv1.ErrorCode_ERROR_CODE_SESSION_EXPIRED},
	{ErrReservedPath, raftv1.ErrorCode_ERROR_CODE_RESERVED_PATH},
	{ErrBadEntry, raftv1.ErrorCode_ERROR_CODE_BAD_ENTRY},
	{ErrNoSession, raftv1.ErrorCode_ERROR_CODE_NO_SESSION},
	{ErrFeatureLevel, raftv1.ErrorCode_ERROR_CODE_FEATURE_LEVEL},
	{ErrUpgradeRequired, raftv1.ErrorCode_ERROR_CODE_UPGRADE_REQUIRED},
	{ErrListingChanged, raftv1.ErrorCode_ERROR_CODE_LISTING_CHANGED},
	{ErrRequestIDReused, raftv1.ErrorCode_ERROR_CODE_REQUEST_ID_REUSED},
	{ErrFenceLost, raftv1.ErrorCode_ERROR_CODE_FENCE_LOST},
	{ErrNotHeld, raftv1.ErrorCode_ERROR_CODE_NOT_HELD},
	{ErrLimitMismatch, raftv1.ErrorCode_ERROR_CODE_LIMIT_MISMATCH},
}

// Error is a state machine error in its parts, so that a message for a
// user can be built from them (rpc's error table) rather than from the Go
// error string with its package prefix.
type Error struct {
	// Err is the sentinel (ErrNoNode ...).
	Err error
	// Detail is what the error concerns, in the user's terms: "/a",
	// "parent /a", "session 7", "2097152 bytes, limit 1048576". It may
	// be empty.
	Detail string
	// msg, when set, is the whole Go error string: that of an error
	// from the wire that did not start with its sentinel's.
	msg string
}

// Error is the Go error string: the sentinel's, then the detail.
func (e *Error) Error() string {
	if e.msg != "" {
		return e.msg
	}
	if e.Detail == "" {
		return e.Err.Error()
	}
	return e.Err.Error() + ": " + e.Detail
}

// Unwrap lets errors.Is match the sentinel.
func (e *Error) Unwrap() error { return e.Err }

// errorf returns an *Error of sentinel with a formatted detail.
func errorf(sentinel error, format string, args ...any) error {
	return &Error{Err: sentinel, Detail: fmt.Sprintf(format, args...)}
}

// AsError returns err's state machine error in its parts: the *Error in
// its chain, or one rebuilt from an error that wraps a sentinel as
// fmt.Errorf("%w: detail", sentinel) does. It reports false for errors
// that match no sentinel. A MultiError gives the failed op's error.
func AsError(err error) (*Error, bool) {
	if e, ok := errors.AsType[*Error](err); ok {
		return e, true
	}
	for _, ec := range errorCodes {
		if errors.Is(err, ec.err) {
			msg := err.Error()
			if me, ok := errors.AsType[*MultiError](err); ok {
				msg = me.Err.Error()
			}
			return parseError(ec.err, msg), true
		}
	}
	return nil, false
}

// parseError rebuilds the *Error of sentinel whose Go error string is msg.
// A message that does not start with the sentinel's (a code this build
// does not know, decoded as ErrBadEntry) is kept whole, as the detail and
// as the Go error string.
func parseError(sentinel error, msg string) *Error {
	if msg == sentinel.Error() {
		return &Error{Err: sentinel}
	}
	if d, ok := strings.CutPrefix(msg, sentinel.Error()+": "); ok {
		return &Error{Err: sentinel, Detail: d}
	}
	return &Error{Err: sentinel, Detail: msg, msg: msg}
}

// MultiError is the error of a failed Multi: which op failed, and why.
type MultiError struct {
	Index int
	Err   error
}

func (e *MultiError) Error() string { return fmt.Sprintf("%s%v", e.prefix(), e.Err) }

func (e *MultiError) prefix() string { return fmt.Sprintf("fsm: multi op %d: ", e.Index) }

// Unwrap lets errors.Is see the failing op's error.
func (e *MultiError) Unwrap() error { return e.Err }

// ErrorCode returns the wire code of err (ERROR_CODE_UNSPECIFIED for nil or
// for errors that are not the state machine's).
func ErrorCode(err error) raftv1.ErrorCode {
	for _, ec := range errorCodes {
		if errors.Is(err, ec.err) {
			return ec.code
		}
	}
	return raftv1.ErrorCode_ERROR_CODE_UNSPECIFIED
}

// DecodeError rebuilds an error from its wire form: an *Error whose
// Error() is msg, split into sentinel and detail. failedOp >= 0 wraps it
// in a MultiError; msg may then be the MultiError's whole message or the
// failed op's alone, and Error() gives back the whole message either way.
func DecodeError(code raftv1.ErrorCode, msg string, failedOp int32) error {
	if code == raftv1.ErrorCode_ERROR_CODE_UNSPECIFIED {
		return nil
	}
	if failedOp >= 0 {
		msg = strings.TrimPrefix(msg, (&MultiError{Index: int(failedOp)}).prefix())
	}
	sentinel := ErrBadEntry
	for _, ec := range errorCodes {
		if ec.code == code {
			sentinel = ec.err
			break
		}
	}
	var err error = parseError(sentinel, msg)
	if failedOp >= 0 {
		return &MultiError{Index: int(failedOp), Err: err}
	}
	return err
}
