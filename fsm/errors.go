package fsm

import (
	"errors"
	"fmt"
	"strings"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
)

// Errors returned by the state machine. Match them with errors.Is: the
// returned errors wrap them with the path or id they concern.
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

// codedError is an error rebuilt from the wire: it keeps the original
// message and matches its sentinel with errors.Is.
type codedError struct {
	sentinel error
	msg      string
}

func (e *codedError) Error() string { return e.msg }
func (e *codedError) Unwrap() error { return e.sentinel }

// DecodeError rebuilds an error from its wire form. failedOp >= 0 wraps it
// in a MultiError; msg may then be the MultiError's whole message or the
// failed op's alone, and Error() gives back the whole message either way.
func DecodeError(code raftv1.ErrorCode, msg string, failedOp int32) error {
	if code == raftv1.ErrorCode_ERROR_CODE_UNSPECIFIED {
		return nil
	}
	if failedOp >= 0 {
		msg = strings.TrimPrefix(msg, (&MultiError{Index: int(failedOp)}).prefix())
	}
	var err error = &codedError{sentinel: ErrBadEntry, msg: msg}
	for _, ec := range errorCodes {
		if ec.code == code {
			err = &codedError{sentinel: ec.err, msg: msg}
			break
		}
	}
	if failedOp >= 0 {
		return &MultiError{Index: int(failedOp), Err: err}
	}
	return err
}
