// Package fsm is Paddock's replicated state machine: the znode tree, client
// sessions and the member table, changed only by applying raft log entries.
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
// # Failures
//
// A command that fails (a missing znode, a wrong version, a bad path) is a
// value: Apply returns a Result whose Err matches one of this package's
// sentinel errors with errors.Is, and the state is unchanged. A Multi is all
// or nothing: its ops run against a copy-on-write clone of the tree that is
// kept only if every op succeeds.
//
// An entry that cannot be decoded, or that carries an operation this build
// does not know, is rejected with ErrBadEntry and changes nothing. It does
// not panic: every replica decodes the same bytes the same way, so every
// replica rejects it alike and the state stays identical, and a cluster in a
// rolling upgrade keeps running instead of crash-looping. The entry is
// counted (BadEntries) so operators can see it.
//
// # Immutability and snapshots
//
// Znodes are stored in a copy-on-write B-tree (github.com/google/btree)
// ordered by (parent path, name), so a node's children are one contiguous
// range (listing is a range scan, never quadratic). A stored znode is never
// modified in place: a change stores a new copy. Snapshot therefore clones
// the tree in O(1) and Persist streams the clone while applies go on.
//
// # Lock order
//
// One RWMutex (mu) guards all state. Apply holds it for writing for a whole
// batch; reads hold it for reading. Snapshot and StateHash hold it for
// writing, briefly: cloning the tree writes to it. The event sink is called
// after mu is released and must not block.
package fsm
