// Package bench is Paddock's load generator: workloads run side by side
// against Paddock, etcd and ZooKeeper clusters through one small interface
// per system (Cluster, Client, Session), with latency percentiles, server
// CPU seconds per 1,000 operations, RSS and on-disk size, in a markdown
// table and a JSON file.
//
// The Paddock cluster lives in this module (paddock bench); the etcd and
// ZooKeeper ones live in the separate module under e2e/bench, so that
// their client libraries stay out of this module's go.mod.
//
// In DESIGN.md's layering bench sits beside cmd's client commands: it is
// used by cmd/paddock and e2e/bench, and it uses only client/ and the
// public protos (cmd -> bench -> client), never node or rpc.
//
// # Measurement
//
// Run executes each row as a closed loop: every worker (one per Client)
// issues its next operation as soon as the last returns, for Warmup
// (unmeasured) then Duration. Operations started inside the window are
// measured; ops/s is their count over Duration. Each worker records its
// latencies in its own slice, merged and sorted when the window ends, so
// measuring takes no lock per operation and the percentiles (nearest rank)
// are exact. Server CPU is utime + stime of the cluster's PIDs from
// /proc/PID/stat at the window's edges, per 1,000 operations; it includes
// every node's work (replication, fsync syscalls) but not the load
// generator's.
//
// The preloaded keys (Options.Keys) are created once per run by 64
// workers and shared by the read, mixed, memory and restart workloads.
// Memory runs first so that RSS and disk are those of the preloaded keys
// alone; restart runs last. Every key of a run is under /bench with a
// prefix unique to the run.
//
// Watch latency is, for each write and each watcher, the event's arrival
// (taken by the Client as it receives it) minus the moment the writer got
// the write's reply; an event that beats the reply counts as 0. Ephemeral
// cleanup SIGKILLs a child process holding the key (HoldCommand) and polls
// Exists every 10ms: its latencies carry up to 10ms of polling. Restart
// closes the pool's clients, stops the first follower (the node of client
// 0), waits until the others serve, starts it and polls a linearizable
// read through a fresh client of that node alone every 10ms.
//
// # Elections and locks
//
// The election workloads run three contender processes of one election
// (ContenderCluster: `paddock bench contend` for Paddock, the comparison
// program's `bench contend` for etcd and ZooKeeper), which print what
// happens to them with their own clock (the contender protocol,
// WriteContenderLine). A contender leads until it sees another leader,
// its session ends, or it has not confirmed its session for one session
// timeout, as `paddock elect` stops its CMD; it then ends its session and
// campaigns again. election SIGKILLs the leading contender's process,
// times the kill to the next "elected" line (the moment a CMD would
// start) and puts a new process in the killed one's slot, ElectionRounds
// times; election-server-kill SIGKILLs the cluster's leader server
// instead (Killer), ServerKills times, and counts the leading contenders
// that stopped in the round though none was killed (Row.Stops), with the
// time until the cluster served a linearizable read again. lock runs
// closed-loop Lock + Unlock round trips (Locker), every worker with a
// mutex and session of its own on one lock shared by the row, at each of
// LockClients.
//
// # Placement
//
// Where a client connects decides much of what it measures (a write or a
// linearizable read through a follower pays a hop to the leader that one
// through the leader does not). With whole-cluster clients a one-client
// row landed on the leader or on a follower by chance, and the leader is
// random, so it swung two- or threefold between runs and between systems.
// So every Client of the pool is a client of one node alone, the same rule
// for every system (Placement): before each row the runner asks the
// cluster for its leader (Cluster.Leader, FindLeader) and client i goes to
// node (leader + 1 + i) mod nodes. One client is then on a follower, as
// two of three clients of a three-node cluster are, and 16 clients spread
// 6, 5 and 5 with the leader among those getting fewer; the watch
// workload's writer is the client after its watchers'. If the leader moved
// since the last row, the pool is closed and reopened around the new one,
// so a row never runs with a stale placement; each row records its leader
// (Row.Leader) and the table's footnote names it.
//
// # Farms
//
// RunFarm (paddock bench farm) measures a farm, Paddock's alone: etcd and
// ZooKeeper have none to compare, and its figures are not rows of
// operations, so it is not one of Workloads. On a cluster this package
// started (it needs the paddock binary for its children) it:
//
//   - serialises DEST for the whole farm in-process, through the
//     exporter's own Format.Write (json), and takes this process's CPU
//     per write (getrusage) before anything else runs in it;
//   - registers Hosts joiners through Join's own registration step
//     (farm.Register, farm.RaiseSizeToHosts), each with its own session
//     on one shared client, Concurrency at a time, timing each from its
//     session's opening to its size raised: Join itself would also run a
//     local file watch per joiner, and 1,000 inotify instances pass
//     Linux's default limit of 128;
//   - starts Joins real `paddock farm join` processes one after the
//     other, each timed from its start to the creation event of its
//     znode, received by a long poll of the farm issued before the start;
//   - starts a real `paddock farm export FARM DEST.json` whose first
//     endpoint is a follower, and makes Changes changes one at a time
//     through farm.SetField on a client of the other follower: each is
//     timed from SetField's start (and from its return) to the fsnotify
//     event on DEST after which DEST holds the change's value (the value
//     is unique and of fixed width). The exporter's utime + stime from
//     /proc over the changes, divided by Changes, is its CPU per change;
//     its farm.ExportStats, logged when it stops, show what it read.
package bench
