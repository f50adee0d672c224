package check

import "time"

// Kind is the operation of a RegisterOp.
type Kind uint8

// The operations on a register znode.
const (
	// Create creates the key with Value; OK means version 0.
	Create Kind = iota + 1
	// Get is a linearizable read of the key.
	Get
	// Set sets Value when the version is ExpectVersion (-1: any).
	Set
	// Delete deletes the key when the version is ExpectVersion (-1: any).
	Delete
)

// Outcome is what the client learned of an operation.
type Outcome uint8

// The outcomes.
const (
	// OK: the operation happened.
	OK Outcome = iota + 1
	// NotFound: the key did not exist; nothing changed.
	NotFound
	// Exists: Create found the key; nothing changed.
	Exists
	// BadVersion: the expected version did not match; nothing changed.
	BadVersion
	// Unknown: the client gave up (timeout, connection lost) and does not
	// know whether a write happened. Reads with this outcome carry no
	// information and may be left out of a history.
	Unknown
)

// RegisterOp is one call on a register znode as its client saw it. Times
// are since the run's start, on the checking process's monotonic clock.
type RegisterOp struct {
	// Client identifies the caller; one client's calls never overlap.
	Client int
	Key    string
	Kind   Kind
	// Value is the value written (Create, Set) or read (Get with OK).
	Value string
	// ExpectVersion is the version Set and Delete require, -1 for any.
	ExpectVersion int64
	// Version is the version read (Get) or the version after the write
	// (Create: 0, Set), when Outcome is OK.
	Version int64
	Outcome Outcome
	// Call is when the request was sent; Return when its answer arrived
	// (ignored when Outcome is Unknown: it may take effect any time later).
	Call, Return time.Duration
}

// SeqCreate is one create of a sequential znode under a parent.
type SeqCreate struct {
	Client int
	// Path is the created path the cluster answered (Outcome OK).
	Path    string
	Outcome Outcome
	// Zxid is the zxid of the answer (the create's), when Outcome is OK.
	Zxid         uint64
	Call, Return time.Duration
}

// Child is a znode found under a parent at the end of a run.
type Child struct {
	// Name is the child's name (not its whole path).
	Name string
	// Czxid is the zxid that created it.
	Czxid uint64
}

// Fate is how a run treated a session.
type Fate uint8

// The fates.
const (
	// KeptAlive sessions are kept alive until the run ends.
	KeptAlive Fate = iota + 1
	// Abandoned sessions stop being kept alive at AbandonedAt (the client
	// behaves as if killed) and must expire.
	Abandoned
	// Closed sessions are closed by their client at ClosedAt.
	Closed
)

// Session is one client session and the ephemerals it created.
type Session struct {
	ID      string
	Timeout time.Duration
	// Opened is when the open call was sent.
	Opened time.Duration
	// KeepAlives are the send times of the keepalives the cluster
	// acknowledged, in order.
	KeepAlives []time.Duration
	// Ephemerals are the paths of the ephemerals whose create was
	// acknowledged, with the send time of each create.
	Ephemerals []Ephemeral
	Fate       Fate
	// AbandonedAt (Abandoned) or ClosedAt (Closed, the close call's send
	// time) end the session's life on the client side. An Abandoned
	// session whose close call's outcome is unknown has both, the same.
	AbandonedAt, ClosedAt time.Duration
}

// Ephemeral is one acknowledged ephemeral create.
type Ephemeral struct {
	Path string
	Call time.Duration
}

// EventType is the type of a WatchEvent.
type EventType uint8

// The event types.
const (
	Created EventType = iota + 1
	Changed
	Deleted
)

// WatchEvent is one event a watcher received.
type WatchEvent struct {
	Zxid uint64
	Type EventType
	Path string
	// Data is the znode's data after the event (Created, Changed).
	Data string
	// Seen is when the watcher received it.
	Seen time.Duration
}

// WatchStream is everything one watcher received, from one start.
type WatchStream struct {
	// Name identifies the watcher in violations (e.g. "watcher n2").
	Name string
	// Prefix is the watched subtree ("/" for all).
	Prefix string
	// Start is the first zxid the watch asked for: events below it are
	// not expected.
	Start uint64
	// Events in the order received.
	Events []WatchEvent
	// Compacted is set when the stream ended with an explicit COMPACTED
	// (or SNAPSHOT_RESTORED) answer: no events after End are expected.
	Compacted bool
	// End is the zxid the watcher was known to be up to date with when it
	// stopped (its last event or progress report).
	End uint64
}

// Violation is one broken property.
type Violation struct {
	// Check names the checker ("linearizable", "sequential", "sessions",
	// "watches", "state").
	Check string
	// Detail says what was wrong, with the ids, paths and times involved.
	Detail string
}

func (v Violation) String() string { return v.Check + ": " + v.Detail }
