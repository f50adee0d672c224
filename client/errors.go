package client

import (
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var (
	// ErrNoEndpoints is returned by New and ParseEndpoints when no endpoint
	// is given.
	ErrNoEndpoints = errors.New("client: no endpoints")
	// ErrSessionExpired is the Err of a Session the cluster says has
	// expired. Failed keepalives alone never make it (see
	// OnConnectionState).
	ErrSessionExpired = errors.New("client: session expired")
	// ErrClosed is the Err of a Session or Watcher after its Close or
	// Client.Close.
	ErrClosed = errors.New("client: closed")
	// ErrCompacted matches (errors.Is) the *CompactedError that ends a
	// watch which cannot go on without missing events: re-read, then watch
	// again.
	ErrCompacted = errors.New("client: watch history compacted")
)

// IsNotFound reports whether err says the znode or session does not exist.
func IsNotFound(err error) bool { return status.Code(err) == codes.NotFound }

// IsExists reports whether err says the znode already exists.
func IsExists(err error) bool { return status.Code(err) == codes.AlreadyExists }

// IsFailedPrecondition reports whether err is a failed precondition: a bad
// version, a znode that still has children, an expired session or a lock
// not held. The server maps all of these to one code.
func IsFailedPrecondition(err error) bool {
	return status.Code(err) == codes.FailedPrecondition
}

// IsListingChanged reports whether err says a later page of a listing
// with data (ListData, ListRequest.with_data) can no longer be served at
// the listing's zxid: list again from the first page.
func IsListingChanged(err error) bool { return status.Code(err) == codes.OutOfRange }
