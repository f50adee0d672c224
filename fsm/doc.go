// Package fsm is Paddock's replicated state machine: the znode tree, client
// sessions, the member table and PHP web sessions, changed only by
// applying raft log entries.
//
// # Contract
//
// The state machine is pure and deterministic. Apply never reads a clock,
// draws random numbers, depends on map iteration order or does I/O: time
// comes from the command (stamped by the leader when it proposed it), ids
// come from raft indexes (a session's id is the index that opened it, a
// znode's zxids are the indexes that changed it). The same log applied to
// two fresh state machines gives byte-identical snapshots.
//
// hashicorp/raft calls Apply/ApplyBatch, Snapshot and Restore from one
// goroutine; FSMSnapshot.Persist runs on another, concurrently with later
// applies. Reads (Get, List, Session, ...) come from any goroutine.
//
// # Tables
//
// The state is one value (state.go) holding every table: the znode tree
// with its derived ephemeral index (tree.go, znode.go), sessions
// (session.go), members (member.go), request ids (dedupe.go) and PHP web
// sessions (websession.go). Each
// table is a type in its own file that captures, writes and restores its
// own snapshot records (its kinds of SnapshotRecord); reset is a new state
// value, Restore swaps the whole value, and Snapshot and StateHash write
// every table that state.tables lists. TestStateTablesListed,
// TestStateRoundTrip and TestStateHashCoversEveryTable fail when a table
// is left out of any of them.
//
// Apply has one switch on the operation (state.apply); every case calls
// a domain method of the same shape, func (s *state) applyX(c *applyCtx,
// op *X) (proto.Message, error), where applyCtx carries the entry's
// index, the command's time and the batch's events.
//
// # Failures
//
// A command that fails (a missing znode, a wrong version, a bad path) is a
// value: Apply returns a Result whose Err matches one of this package's
// sentinel errors with errors.Is (an *Error: the sentinel and a Detail
// naming what it concerns, so that rpc builds the user's message from
// parts; a failed Multi wraps it in a *MultiError with the op's index),
// and the state is unchanged. A Multi is all
// or nothing: its ops run against a copy-on-write clone of the tree that is
// kept only if every op succeeds.
//
// # Feature levels and fatal entries
//
// Every kind of command belongs to the feature level that introduced it
// (OpFeatureLevel: level 1, BaseFeatureLevel, is the first release's;
// level 2 brought elections, locks, fences and lock-delays; level 3 PHP
// web sessions, WebSessionWrite and WebSessionDelete), and
// the leader stamps it in the entry (Command.feature_level). Members
// record the level their binary supports (RegisterMember.feature_level);
// a leader proposes a command above the base level only when every member
// of the raft configuration records at least its level, and refuses it
// otherwise with ErrFeatureLevel naming the member (CheckFeatureLevel).
// Commands of the base level need no record: every binary understands
// them, and a new cluster must be able to register its members.
//
// An entry this binary cannot understand (it does not decode, its level
// is above FeatureLevel, or its operation is unknown) is fatal for the
// replica, never skipped: skipping would let a mixed-version cluster
// diverge. The state machine stops (Failed, Err, matching
// ErrUpgradeRequired, with a message naming the entry and the upgrade):
// that entry and every later one are refused without changing anything
// (a later entry's result is ErrNotApplied: it is committed, and its
// outcome is known only to the replicas that go on), the applied index
// stays at the last entry applied, and Snapshot and Restore are refused,
// so nothing labels the state with an index it has not reached. The node
// shuts down; a newer binary restarts from the log and applies the entry.
// A snapshot written by a newer binary (a newer format, or a kind of
// record this one does not know) stops the state machine in the same
// way; a corrupt snapshot is only an error, and the state stays as it was.
//
// # Request ids
//
// A command may carry a client's request id (Command.request_id, at most
// MaxRequestIDLength bytes), so a client can retry a write on another node
// without it being applied twice. The state machine keeps a table of the
// ids it applied, each with the entry's index, the command's time, its
// operation, its fingerprint and its result (the encoded ProposeResponse:
// the response, or the domain error with the failed multi op). The
// fingerprint is 8 bytes of the SHA-256 of the command's deterministic
// encoding without request_id and time_unix_ms: what the request asked
// for. A command whose id is in the table with the same operation and
// fingerprint is a retry and is replayed: Apply returns the first result
// with the first index (Result.Replayed), so the caller sees the original
// zxid, and changes nothing else: no events, no state. The same id with
// another operation or fingerprint (another path, data, version, flag) is
// not a retry: it is refused with ErrRequestIDReused and changes nothing,
// the table included. Failed commands are remembered too (a retry must
// fail alike); bad entries are not.
//
// The table is bounded and deterministic. An entry lives RequestIDWindow
// (5 minutes) of command time, not of any clock: when an id is added, the
// entries whose time is more than the window before the new command's are
// dropped, oldest (in apply order) first, and then the oldest until the
// table holds at most MaxRequestIDs entries and MaxRequestIDBytes bytes.
// Commands without an id never touch it. Only the log decides, so every
// replica keeps the same entries; the table is in the snapshot (request
// records, oldest first) and so in StateHash. A result over MaxDataSize
// encoded is kept as an ErrTooLarge error naming its index, so a retry
// still applies nothing.
//
// # TTL and container znodes
//
// A TTL znode (NodeType TTL, ttl_ms) and a container znode are ZooKeeper's
// (ttl.go). The state machine never decides that one is due: the leader
// proposes DeleteIdle with the mzxid and pzxid it saw, and the znode is
// deleted only if it is still a TTL or container znode with no children,
// with those zxids (a container also must have had a child); otherwise
// nothing changes and the response says 0 deleted. A deletion emits the
// usual deleted and children-changed events. The kind is kept in the
// znode's owner field, and in the Stat value's EphemeralOwner, as
// ZooKeeper's ephemeralOwner does, so a znode stays 96 bytes and an
// event's Stat 64; the snapshot and the API's Stat carry it in fields of
// their own (ephemeral_owner stays a session id or 0, plus ttl_ms and
// container).
//
// # PHP web sessions
//
// The web session table (websession.go) holds one row per session id:
// its data, its version (counting its writes, from 1), its idle timeout
// and its creation and last write times (the commands'). Only what must
// survive a leader change is here: the per-session lock and the access
// times live in the leader's memory (node), and the leader decides
// expiry. WebSessionWrite stores a session's data if the session is at
// the version the writer read (0: it must not exist), else fails with
// ErrBadVersion; the version goes up by one (or to new_version, which
// must be above the version: the leader's coalesced delayed writes, whose
// versions it answered from memory), a max_lifetime_ms of 0 keeps
// the session's (DefaultWebSessionLifetimeMs for a new one), and
// keep_data changes the lifetime only. WebSessionDelete deletes a
// session, only at its version when it names one (the leader's expiry,
// which must not delete a session written after it decided); a missing
// session or another version is a no-op, not an error, and the response
// says whether it deleted. An id outside PHP's grammar
// (ValidWebSessionID), a negative lifetime, a new_version not above the
// version or data over MaxDataSize is refused (the agent's own, lower, size limit is the node's check).
// Neither command emits an event: sessions change on every page view and
// must not flood the watch history. Rows are values in a copy-on-write
// B-tree ordered by id (snapshot records in id order, WebSessions in id
// order, a snapshot's clone in O(1)).
//
// # Immutability and snapshots
//
// Znodes are stored in a copy-on-write B-tree (github.com/google/btree)
// ordered by (parent path, name), so a node's children are one contiguous
// range (listing is a range scan, never quadratic). A stored znode is never
// modified in place: a change stores a new copy. Snapshot therefore clones
// the tree in O(1) and Persist streams the clone while applies go on.
//
// # Listing with data
//
// ListData (list.go) pages through a znode's children with their data and
// Stats, every page reflecting the state at the first page's applied index
// (the listing's zxid, carried by an opaque page token). Without a
// multi-version store a later page is read from the current state, and
// served only when the zxids prove that what it returns (the parent, the
// set of names, each child on the page) has not changed since; otherwise
// it fails with ErrListingChanged and the caller starts over. Pages are
// bounded by count and by ListPageBytes of encoded children.
//
// # Memory
//
// A node holds the whole state in memory, so its representation is kept
// compact (BenchmarkTreeMemory and BenchmarkDedupe report the heap per
// znode and per request id):
//
//   - a znode is 96 bytes besides its data and path: the path is stored
//     once (parent and name are slices of it), and the Stat fields that
//     only a parent needs (pzxid, cversion, children, sequence counter)
//     are in a dirStat that a node which never had a child does without;
//   - events carry a Stat value and the tree's own path and data slices,
//     so a sink that keeps them (the watch history) allocates nothing;
//   - a request id entry is one 48-byte struct (fingerprint included:
//     the struct was 40 bytes in the same size class before) and one
//     allocation holding
//     its id, packed to 16 bytes when it is hex or a UUID, and its encoded
//     result; the index over them is an open-addressing table that the
//     table's FIFO churn does not bloat (see requestIndex);
//   - a web session is a 72-byte value in its B-tree's node besides its
//     id and data, no allocation of its own; the data is the decoded
//     command's slice, which the decoder allocated for that entry (no
//     web session message is a reused decode target).
//
// The apply goroutine reuses, under mu, what an entry needs only while it
// is applied: the decode target (and a create's or set's request message,
// see FSM.decode), the B-tree lookup key, the request id table's result
// encoding buffers, and the batch's event buffer (handed to the sink,
// which copies what it keeps, then taken back). None of them may be kept
// by the state: what the state keeps of an entry the decoder allocated
// afresh.
//
// # Lock order
//
// One RWMutex (mu) guards all state. Apply holds it for writing for a whole
// batch; reads hold it for reading. Snapshot and StateHash(AndIndex) hold
// it for writing, briefly: cloning the tree writes to it (so does
// WebSessions, which walks a clone of the web session table outside it). The applied index
// is published under mu too, so the index a snapshot or a state hash
// carries is the one its view was taken at. The event sink is called after
// mu is released and must not block. The web session hook
// (WithWebSessionHook) is the exception: it is called under mu, as each
// row changes, so it must be quick and must not call the state machine.
package fsm
