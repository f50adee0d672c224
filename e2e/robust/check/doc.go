// Package check holds the histories a robustness run records and the
// checkers that judge them: porcupine's linearizability check of the
// register znodes with a model of a versioned znode (writes whose outcome
// the client never learned may or may not have happened), and plain
// checks of sequential creates, session ephemerals, watch streams and
// the replicas' final state.
//
// A checker returns the violations it found; none means the history
// passed. Every checker has tests that feed it a broken history and show
// it fails. Each checker caps its violations (the rest are counted in a
// last one) and states in its comment what it can and cannot detect.
//
// The checkers:
//
//   - Linearizable: every key's ops against a versioned znode, partitioned
//     by key; acknowledged writes not lost and reads not stale follow
//     from it when the history ends with a read of every key.
//   - Sequential: suffixes unique, increasing in zxid and real-time
//     order, every acknowledged create present with its zxid.
//   - Sessions: no ephemeral deleted before its session's timeout after
//     the last acknowledged keepalive; abandoned sessions' ephemerals gone
//     within 2 x timeout + election timeout + 1 s (or, when a node was
//     paused during that window, election timeout + 1 s after the pause
//     ended); closed ones' gone.
//   - IdleNodes: no TTL znode deleted before its TTL after its last
//     acknowledged change, neither kind deleted while it has a child, no
//     container deleted that never had one; each gone within its bound
//     (TTL, or 0 for a container, + election timeout + 1 s) from the
//     later of its last change and the last leader change, or election
//     timeout + 1 s after the end of a pause of a node overlapping that
//     window.
//   - Watches: streams ordered, without duplicates, agreeing with each
//     other, and a complete stream replayed gives the final tree.
//   - Farm: the exporter's final file equals the farm, each joiner that
//     stayed has its local configuration in the farm; no host in the
//     exported file past its bound after it left (1 s after a clean
//     leave, 2 x timeout + election timeout + 1 s after a kill, counted
//     from the later of the leave and the last leader change) once the
//     exporter had learned it was gone 1 s before; no host or value
//     exported before a joiner or a write gave it.
//   - Election: every fenced write applied was made with the token that
//     led the election in the state before it (reconstructed from the
//     candidates' creation and deletion zxids in the watch streams), the
//     tokens of applied fenced writes never go back in zxid order,
//     acknowledged ones are in the tree, elected answers and Leader reads
//     agree with the line and Leader reads are not stale; after each
//     fault, and each leading contender killed or resigning, a contender
//     leads again within session timeout + election timeout + lag + 1 s
//     from the later of the event, the end of an overlapping fault and
//     the last leader change.
//   - WebSessions: per session, the acknowledged writes form a chain of
//     increments (each wrote the counter it read plus one and returned
//     the version it read plus one, no two returned the same version);
//     every read holds a state some write not refused made, never older
//     than a write acknowledged before it (its attempt that answered)
//     was sent; the final counter is
//     the final version - 1, at least the acknowledged writes and at most
//     those and the ones of unknown outcome.
//   - SameState: every replica at the same applied index and hash.
//
// What the recorder must provide for the checks to be sound: times on one
// monotonic clock; a session marked Closed only when its close was
// acknowledged; a sequential parent holding only the workload's creates,
// none deleted; ephemerals deleted only by their session's end; TTL and
// container znodes deleted only by the cluster, their paths never reused,
// a child never created again once deleted; watchers
// stopped, and the final tree read, after the last write.
//
// Nothing here is concurrent: each checker is a pure function of its
// arguments (Linearizable runs porcupine on several goroutines and waits
// for them).
package check
