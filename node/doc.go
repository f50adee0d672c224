// Package node runs one Paddock server: the raft replica and everything a
// node does around it.
//
//   - Raft wiring (node.go): network transport on the raft address
//     (shared with the internal service, see Peer traffic), the log and
//     stable store behind a LogCache, file snapshots, batched apply,
//     pre-vote. The transport
//     is wrapped (transport.go, guard) so that an AppendEntries request
//     never moves a follower's commit index past the entries it verified
//     (hashicorp/raft's own rule would let a deposed leader apply entries
//     of its old term that the cluster never committed), and so that a
//     leader can tell answers to requests sent after a moment from older
//     ones (VerifyLeader counts both).
//   - Log store (logstore.go): raft-boltdb/v2's file format on bbolt, as
//     DESIGN.md says, written by internal/boltlog (raft-boltdb itself
//     built a msgpack handle per entry). For a while hashicorp/raft-wal was the default (one fsync per
//     batch instead of bbolt's two, twice the single-client write rate on
//     a loopback cluster), but v0.4.0, the newest release on the module
//     proxy, cannot read its log after a restart once raft has truncated
//     the log's tail, which a follower does whenever a new leader
//     overwrites entries it never committed (hashicorp/raft-wal#31; a
//     killed follower of CI's seed 1009 panicked in raft.NewRaft; see
//     TestLogStoreReopensAfterTailTruncation). A data dir holding a
//     raft-wal log is refused
//     (ErrLogStoreUnsupported) rather than opened empty, which would make
//     the node forget its term and vote. The data dir is flock'ed
//     (ErrDataDirLocked).
//     Three nodes started with the same bootstrap list bootstrap the same
//     configuration; a node with existing state ignores the list.
//   - Peer traffic (peer.go, internal.go): everything nodes send each
//     other goes to the raft address, never to a client port: raft's
//     RPCs, and the internal gRPC service (forwarded writes, forwarded
//     reads and read index, keepalive batches, web session calls), which takes raw commands
//     (close any session, register a member, write under /paddock) and so
//     must not be reachable where clients are. One address per node keeps
//     --bootstrap and member records as they were. The node listens on the
//     raft address itself (peerMux) and routes each accepted connection by
//     its first byte, which both protocols already fix, so no dialer writes
//     a header of its own and raft's wire format is unchanged (a node of
//     the previous version still replicates with this one; its forwarding,
//     which dialed the client port, does not): raft's NetworkTransport
//     starts every connection with the type byte of its RPC (0 to 4 in
//     raft v1.7; bytes up to 0x0f go to raft, which closes types it does
//     not know), a gRPC client with the HTTP/2 preface "PRI * HTTP/2.0"
//     ('P' goes to the internal gRPC server, a grpc.Server of the node's
//     own serving InternalService alone, without reflection). Any other
//     first byte is closed and logged. Each new connection waits for its
//     first byte in its own goroutine, at most firstByteTimeout, so a silent
//     one blocks no other. Close stops the internal server gracefully
//     (internalStopTimeout) while raft still runs, so forwarded calls in
//     flight get their answers, then closes raft, the mux, and every
//     connection handed to raft (raft's transport leaves accepted
//     connections open). Followers dial the leader's raft address as raft
//     reports it (LeaderWithID), not the client address it registered.
//     With Config.Transport (tests: raft in memory) there is no mux: the
//     internal service is served on the listeners given to ServeInternal,
//     and Config.DialPeer maps a raft address to one of them (package
//     nodetest does this). The internal server records its calls in the
//     node's paddock_grpc_server_* series, shared with rpc's client server
//     (GRPCMetrics).
//   - Writes (propose.go): any node accepts them. The leader applies them;
//     a follower forwards the encoded command to the leader over gRPC on a
//     kept-open connection to the leader's raft address (InternalService,
//     which this package serves there: it is the nodes' own protocol, not
//     a client API). A request id in the
//     context (WithRequestID) goes into the command, travels with it when
//     forwarded, and makes the state machine apply it at most once: a
//     client may retry a write with the same id on any node and gets the
//     first result and zxid (see package fsm). A command handed to raft
//     holds one of applySlots until it is answered, so raft's apply queue
//     always has room and raft.Apply needs no timer; a write whose
//     context has no deadline ends RequestTimeout after it began, checked
//     at coarse ticks shared by all writes (call.go), not by a timer and a
//     context of its own.
//   - Forwarding (forward.go, internal.go): a unary Propose per write cost
//     each side HTTP/2 headers, interceptors, a socket write and a wakeup
//     per write, as much CPU as the rest of the write on this 2-core box.
//     A follower sends its writes on one ProposeStream per leader address
//     instead: callers queue (seq, command); a sender goroutine sends
//     whatever is queued in one message, without waiting for more (while
//     one message is on its way the next accumulates, as raft's
//     BatchApplyCh does), and a receiver hands each result to its caller by
//     seq. The leader's handler hands each command of a message to raft
//     at once (Apply only queues it), waits for the futures in order (the
//     order raft answers them) and sends the results that are ready in one
//     message. A proposal's answer is exactly what Propose would answer
//     (result, or gRPC status mapped back by fromPeer); the leader alone
//     stamps the time, checks and decodes as before, and hands raft the
//     follower's encoding with its stamps appended (the last of a
//     repeated field wins), not a second encoding. A caller that gives
//     up leaves the stream alone (its proposal may still be applied: an
//     unknown outcome, as before). A broken stream fails the proposals it
//     carries with its gRPC error, as a broken unary call would; the next
//     caller opens a new stream. When the leader changes, the old stream
//     takes nothing new and closes once it has answered what it carries.
//     Messages stay under MaxMessageSize: a command too large to share
//     one, and every command to a leader without ProposeStream (an older
//     version during a rolling upgrade, which is why Propose is still
//     served), goes in a unary Propose. One stream shares one HTTP/2 flow
//     control window, so a large value delays the small writes behind it
//     on the same follower; loopback windows grow fast enough that this
//     has not shown. CloseStreams (before a graceful stop) makes the
//     leader's streams refuse new proposals and end once the begun ones
//     are answered.
//   - Reads (read.go, query.go): linearizable reads on any node use a read
//     index: the leader takes its commit index and confirms its
//     leadership with one round shared by every read waiting at that
//     moment (confirmLeadership: VerifyLeader, then a quorum's answers to
//     requests sent after the round began, transport.go), and the
//     serving node waits until it has applied that
//     index. A new leader answers read index requests only after a
//     barrier entry of its own term has been applied. Serializable reads
//     are local; min_zxid waits for the local applied index. A lagging
//     follower hands linearizable reads to the leader (Follower reads).
//     Config.UnsafeLocalReads (the agent's hidden --unsafe-local-reads)
//     breaks this on purpose, for the robustness checker's own test: a
//     linearizable read is then served as a serializable one (min_zxid
//     still waited for; no read index, no forwarding), so a follower cut
//     off from the leader answers with stale data. Never in production.
//   - Listing with data (list.go): a later page of a List with with_data
//     is read as any read, with its token's zxid as a min_zxid too, so no
//     node answers it from a state older than the listing's (the fsm
//     then serves it only if nothing it returns changed since).
//   - Readiness (node.go): a node is Ready when it knows the leader and
//     has caught up since it started: a leader once its barrier is
//     applied, a follower once it has applied the first commit index the
//     leader sent it (the guard records it from the first AppendEntries
//     carrying one, before capping it). Until then a restarted node, whose
//     log replays only once it learns a commit index, may hold anything
//     from an empty tree up: it refuses serializable reads and watches or
//     polls from now with ErrCatchingUp (Unavailable: the client tries
//     another node), as a ZooKeeper follower serves nothing before it has
//     synced with the leader. Linearizable reads need no such check (they
//     wait for a read index). Caught up latches: a later lag is ordinary.
//   - Status (member.go): the node's raft and state machine figures; on
//     request also fsm.StateHashAndIndex, a digest of the whole state
//     with the applied index it was taken at, which replicas at the same
//     index must agree on (the robustness tests compare them).
//   - Leader deadlines (deadline.go): leader-only timed work runs on one
//     generic tracker per kind (a set of keyed deadlines with a value
//     each), all on one timer loop per leader term. At term start, after
//     the barrier, each kind's set is rebuilt from the replicated state;
//     when leadership ends it is dropped. The tracker acts only by
//     proposing the kind's command when a deadline passes; a failed
//     proposal is retried at the next tick, and a key set again while its
//     command was in flight keeps its new deadline. A kind is a key type,
//     a load from the fsm and a fire; sessions and TTL/container nodes
//     are kinds.
//   - TTL and container znodes (ttl.go): a kind of leader deadline keyed
//     by path. The leader learns of their changes as the fsm's event
//     sink (a field check per event while leading, nothing otherwise). A
//     TTL counts from the later of the last change this leader applied
//     (creation, data change, removal of the last child) and its term
//     start, never from mtime (another leader's clock); a container is
//     due 250 ms after it empties or after term start. The leader then
//     proposes DeleteIdle with the zxids it saw, so a racing change wins.
//   - Sessions (session.go): the leader alone decides expiry. Followers
//     forward keepalives in batches. A new leader starts every session's
//     clock from its checkpointed remaining time (or its full timeout),
//     and checkpoints idle sessions' remaining time through raft, so that
//     fast leader changes cannot keep a dead client's session alive. A
//     keepalive is answered only after the leader has confirmed it still
//     leads (the reads' shared round, begun after the renewal was recorded)
//     and, for a session with a checkpoint, after clearing it in the log:
//     an answer then holds for a full timeout whatever leader comes next.
//   - PHP web sessions (websession.go, websession_locks.go): rows of an
//     fsm table; the locks and the access times are the leader's, in
//     memory, so a page view that changes nothing writes nothing to the
//     log and one that changes the session writes once (a write carries
//     the version read and applies only at it: a lost lock cannot lose an
//     update). A lock is a lease with FIFO waiters, each woken by the
//     release or the lease's end through a channel; a write in flight
//     keeps its lease alive until it is answered. A new leader's table
//     starts in a grace period (Config.WebSessionLockGrace, election
//     timeout + 2 s) in which it grants no lock and accepts the tokens of
//     its predecessor's holders; a lost leadership drops the table and
//     fails its waiters with ErrNotLeader. Idle expiry is a kind of
//     leader deadline keyed by session id (last access + max lifetime;
//     full lifetime from a new leader's takeover); when due, the leader
//     takes the session's lock itself, so no reader is handed a session
//     being deleted, and proposes a delete conditional on the version it
//     sees. A follower hands every call to the leader whole
//     (InternalService.WebSession, with the caller's deadline and request
//     id); a write retried with a request id the state machine remembers
//     passes a lock taken by another since, and gets its first result.
//     A write-through write goes to raft through the leader's group
//     commit (group.go): one round of writes in raft at a time, those
//     arriving meanwhile handed over together as the next, so that the
//     log appends (a bbolt commit on each node) are shared by more
//     writes (paddock_group_commit_commands). Each node counts the
//     commands it applies by operation
//     (paddock_applied_commands_total{op}, metrics.go).
//   - Members (member.go): each node registers its client addresses in the
//     replicated state, which is how followers find the leader's gRPC
//     address, and the feature level its binary supports.
//   - Feature levels (propose.go, node.go): the leader stamps every command
//     with its operation's level (fsm.OpFeatureLevel) in startApply, and
//     refuses one above fsm.BaseFeatureLevel, with fsm.ErrFeatureLevel
//     naming the member, unless every member of the raft configuration
//     records that level. Base commands need no record, so bootstrapping
//     and registration cannot deadlock. Propose waits (registrationWait)
//     while a member has no record yet, as on a new cluster, rather than
//     fail a command that a moment later passes. A node whose state machine stops
//     at an entry it cannot apply (fsm.ErrUpgradeRequired) refuses reads
//     and writes, ends the reads waiting for an index past that entry
//     (ErrShuttingDown: the read waiter watches fsm.Failed), renews no
//     session, answers the writes committed after it ErrUnknownOutcome
//     (fsm.ErrNotApplied), hands leadership over if it leads, and shuts
//     itself down (Halted, Err); the agent and dev exit non-zero with
//     the message.
//   - Watches (watch.go, watch_hub.go, watch_history.go): the watch hub is
//     the fsm's event sink (before the read waiter, so a read at index i
//     implies the hub has the events up to i). It keeps a bounded history
//     of recent events (Config.WatchHistory) and the raft index it covers;
//     a watch or poll starts at any zxid still in it, or fails with
//     COMPACTED. "From now" (no start) is after the newest change this
//     node knows of: the larger of its applied index (published before
//     the hub hears of the batch) and its raft commit index, not the
//     hub's own index, which may trail both. A start beyond this node's
//     applied index costs a read index round: beyond the cluster's commit
//     index (+ 1 for a watch, whose start is the next zxid wanted) it
//     fails with FUTURE_ZXID and the commit index, otherwise it is
//     accepted (a poll first waits until that zxid is applied, as a
//     read's min_zxid does). A snapshot install restarts the history and cancels every
//     watcher (SNAPSHOT_RESTORED). Each watcher runs on its caller's
//     goroutine with a cursor; a watcher blocked in a send while the
//     history moves Config.WatchSlowLag events past it is dropped (SLOW)
//     while it can still resume. Its resume_zxid (as SHUTTING_DOWN's) is
//     the first zxid it was not sent: the response in flight may still
//     reach the client (gRPC queues the status behind it), so the dropped
//     watcher leaves the hub, waits for that send to end and counts it if
//     it went out. A held event is a compact value (about
//     120 bytes; its path and previous data are the tree's): the API
//     message is built when it is sent, once for the newest 4,096 events
//     (shared by every watcher that keeps up) and per send for older ones
//     (BenchmarkHistoryMemory reports the heap per event).
//
// # Follower reads
//
// A follower learns that entries are committed only with the leader's next
// AppendEntries, which comes 5-10 ms later when writes pause (CommitTimeout,
// randomised; lowering it costs the leader CPU on every idle tick). Under a
// steady trickle of writes a follower is usually that far behind, and a
// read waiting for the read index would wait for that append. So:
//
//   - A follower that stores entries beyond its commit index, or is asked
//     for a min_zxid beyond it, forwards the whole read
//     (InternalService.Read) and the leader serves it with a read index of
//     its own: one round trip, as linearizable as any read on the leader.
//     Entries committed but not yet applied do not count: they are applied
//     within microseconds.
//   - Otherwise it asks for a read index. If that is beyond its commit
//     index (the leader committed entries this follower has not even
//     received), it forwards the read with the index as min_zxid and the
//     receiving node serves it as soon as it has applied that far, with no
//     second VerifyLeader: a state at or past a read index answers the read
//     linearizably on any node. Else it waits for the index and serves
//     locally, as a caught-up follower always does.
//
// Forwarded reads travel in batches, as read index rounds do: the reads
// waiting when a batch leaves go in it, the others wait for the next one,
// and the leader takes one read index for the batch. A forwarded read
// costs the leader one lookup and its share of a call and of a read index
// round; the batches keep the cluster's CPU per read where it was. A batch
// that reaches a node no longer leading fails with ErrNotLeader and its
// reads are tried again, as a read index request is; the receiving node
// never forwards further. A read whose min_zxid is beyond the receiving
// node's log is answered beyond_log instead of holding up its batch: the
// follower then waits for that zxid itself, as before. A response stays
// under MaxMessageSize: the leader answers the reads in order while they
// fit (the first always) and marks the others deferred, and the follower
// sends those again at the head of its next batch (batcher.again), so a
// read that fits alone is always served and none waits behind newer
// ones. Serializable reads never forward. The response header of a forwarded read is the leader's
// (its id, term and applied index); the served-by header still names the
// node the client called.
//
// # Leader contact
//
// Polls and watches are answered from the node's own state, so a node
// cut off from the leader would answer "nothing changed" for as long as
// the cut lasts. A node out of contact (it knows no leader, or has not
// heard from it for a heartbeat timeout: raft's own rule for starting an
// election) refuses them and ends the running ones with ErrLostLeader
// (Unavailable), and clients resume from their last zxid elsewhere; see
// contact.go. A monitor goroutine judges contact every 100 ms and closes
// a channel that waiting polls and watches select on.
//
// # Concurrency
//
// raft and the fsm own their goroutines. The node adds: a leadership
// watcher, which runs the leader-only work (barrier, deadline loop) in a
// goroutine per term and cancels it when leadership is lost; a member
// registration loop; and the batchers (batch.go: read index rounds,
// forwarded reads) and the keepalive batcher, whose loops run only while
// requests are waiting; each watch adds one sender
// goroutine, so a blocked send never stops its watcher from noticing it is
// behind. A follower's propose stream has a sender and a receiver
// goroutine; the leader serves each with its handler (the sender), a
// receiver and a collector, joined by bounded channels, so a follower
// that sends faster than raft commits is held back by gRPC flow control.
// The apply goroutine never waits on a watcher: it appends to the
// history under the hub's lock and closes a broadcast channel. Locks are
// leaf locks: no node lock is held while calling raft, the fsm, the
// network or a watcher's send; the nestings are forwarder.mu, then a
// fwdStream's mu; the fsm's lock, then wsBackup.mu (the web session hook
// runs under the fsm's lock); and wsDelayed.mu, then the fsm's lock for
// reading (a delayed write is checked against the applied state).
package node
