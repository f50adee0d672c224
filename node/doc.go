// Package node runs one Paddock server: the raft replica and everything a
// node does around it.
//
//   - Raft wiring (node.go): TCP transport, raft-boltdb/v2 log and stable
//     store behind a LogCache, file snapshots, batched apply, pre-vote.
//     Three nodes started with the same bootstrap list bootstrap the same
//     configuration; a node with existing state ignores the list.
//   - Writes (propose.go): any node accepts them. The leader applies them;
//     a follower forwards the encoded command to the leader over gRPC on a
//     kept-open connection (InternalService, which this package serves:
//     it is the nodes' own protocol, not a client API). A request id in the
//     context (WithRequestID) goes into the command, travels with it when
//     forwarded, and makes the state machine apply it at most once: a
//     client may retry a write with the same id on any node and gets the
//     first result and zxid (see package fsm).
//   - Reads (read.go): linearizable reads on any node use a read index:
//     the leader takes its commit index and confirms its leadership with
//     one VerifyLeader shared by every read waiting at that moment, and
//     the serving node waits until it has applied that index. A new leader
//     answers read index requests only after a barrier entry of its own
//     term has been applied. Serializable reads are local; min_zxid waits
//     for the local applied index.
//   - Sessions (session.go): the leader alone decides expiry. Followers
//     forward keepalives in batches. A new leader starts every session's
//     clock from its checkpointed remaining time (or its full timeout),
//     and checkpoints idle sessions' remaining time through raft, so that
//     fast leader changes cannot keep a dead client's session alive.
//   - Members (member.go): each node registers its client addresses in the
//     replicated state, which is how followers find the leader's gRPC
//     address.
//   - Watches (watch.go, watch_hub.go, watch_history.go): the watch hub is
//     the fsm's event sink (before the read waiter, so a read at index i
//     implies the hub has the events up to i). It keeps a bounded history
//     of recent events (Config.WatchHistory) and the raft index it covers;
//     a watch or poll starts at any zxid still in it, or fails with
//     COMPACTED. A snapshot install restarts the history and cancels every
//     watcher (SNAPSHOT_RESTORED). Each watcher runs on its caller's
//     goroutine with a cursor; a watcher blocked in a send while the
//     history moves Config.WatchSlowLag events past it is dropped (SLOW)
//     while it can still resume. A held event is a compact value (about
//     120 bytes; its path and previous data are the tree's): the API
//     message is built when it is sent, once for the newest 4,096 events
//     (shared by every watcher that keeps up) and per send for older ones
//     (BenchmarkHistoryMemory reports the heap per event).
//
// # Concurrency
//
// raft and the fsm own their goroutines. The node adds: a leadership
// watcher, which runs the leader-only work (barrier, session tracker) in a
// goroutine per term and cancels it when leadership is lost; a member
// registration loop; and the read index and keepalive coalescers, whose
// loops run only while requests are waiting; each watch adds one sender
// goroutine, so a blocked send never stops its watcher from noticing it is
// behind. The apply goroutine never waits on a watcher: it appends to the
// history under the hub's lock and closes a broadcast channel. Locks are
// leaf locks: no node lock is held while calling raft, the fsm, the
// network or a watcher's send.
package node
