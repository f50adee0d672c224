package bench

import (
	"context"
	"time"
)

// Consistency is how fresh a benchmarked read must be.
type Consistency int

const (
	// Linearizable reads reflect every write acknowledged before they
	// started (Paddock's read index, etcd's default Range, ZooKeeper's
	// sync + getData).
	Linearizable Consistency = iota
	// Serializable reads are served by the contacted node alone and may be
	// stale (Paddock's serializable, etcd's WithSerializable, ZooKeeper's
	// plain getData).
	Serializable
)

// Cluster is one running three-node cluster of a system under test:
// Paddock, etcd or ZooKeeper, each node its own process on loopback with
// its own data directory. The runner measures through it; the system's
// own package starts and stops it.
type Cluster interface {
	// Name is the system's name in reports: "paddock", "etcd", "zookeeper".
	Name() string
	// Nodes is how many server processes the cluster has.
	Nodes() int
	// PIDs are the server processes, for CPU time and RSS.
	PIDs() []int
	// DataDirs are the nodes' data directories, for on-disk size.
	DataDirs() []string
	// Prepare makes whatever the benchmark's keys need exist (parents of the
	// benchmark's keys for tree stores); it is called once before the
	// workloads.
	Prepare(ctx context.Context) error
	// Leader is the index (0 <= i < Nodes()) of the node leading the
	// cluster now, -1 when the leader is none of Nodes() (a cluster reached
	// by some of its endpoints only), or an error wrapping ErrNoLeader
	// while there is none (an election): the runner places clients
	// relative to it and retries on error (see FindLeader).
	Leader(ctx context.Context) (int, error)
	// NewClient opens one client connected to the whole cluster (node is
	// -1) or to node alone (0 <= node < Nodes()): a client of one node
	// sends every request to that node and never fails over.
	NewClient(ctx context.Context, node int) (Client, error)
	// Stop stops node gracefully and Start starts it again on the same
	// ports and data.
	Stop(node int) error
	Start(node int) error
	// HoldCommand is the command line of a child process that opens a
	// session with ttl, creates key as an ephemeral owned by it, prints
	// "ready\n" on stdout and then waits to be killed (the ephemeral
	// cleanup workload kills it with SIGKILL: a real client death).
	HoldCommand(key string, ttl time.Duration) []string
	// Close stops every node.
	Close() error
}

// Client is one client of a Cluster, used by one worker goroutine at a
// time. Keys are slash-separated paths under "/bench" ("/bench/k0000042");
// a key-value store uses them as keys as they are.
type Client interface {
	// Create makes key, which does not exist yet, with value.
	Create(ctx context.Context, key string, value []byte) error
	// Put sets an existing key's value.
	Put(ctx context.Context, key string, value []byte) error
	// Get reads key.
	Get(ctx context.Context, key string, c Consistency) error
	// Exists reports whether key exists (a serializable read of the
	// contacted node is fine: the caller polls).
	Exists(ctx context.Context, key string) (bool, error)
	// Watch watches key's changes until ctx ends: every change reaching
	// the client sends its arrival time (taken as the client receives it)
	// on the returned channel. Watch returns once the watch is
	// established, so a change made after it returns is seen.
	Watch(ctx context.Context, key string) (<-chan time.Time, error)
	// OpenSession opens a session (etcd: a lease kept alive) with ttl.
	OpenSession(ctx context.Context, ttl time.Duration) (Session, error)
	// Close closes the client.
	Close() error
}

// Session is a client session that owns ephemeral keys.
type Session interface {
	// CreateEphemeral makes key owned by the session.
	CreateEphemeral(ctx context.Context, key string, value []byte) error
	// Close ends the session, deleting its ephemerals.
	Close(ctx context.Context) error
}

// ContenderCluster is a Cluster whose election contenders can run as
// processes of their own, for the election workloads: killing one with
// SIGKILL is then a real client death.
type ContenderCluster interface {
	// ContenderCommand is the command line of contender i (0, 1, 2, ...;
	// a system may spread contenders over its nodes by it) of election
	// name (a single path element) with sessions of ttl. The process
	// speaks the contender protocol on stdout (see WriteContenderLine):
	// it campaigns, says when it is in line and when it leads, and while
	// leading stops (says so, ends its session and campaigns again) when
	// it sees that it lost the leadership or when it could not confirm
	// its session for ttl. It runs until it is killed.
	ContenderCommand(name string, ttl time.Duration, i int) []string
}

// Killer is a Cluster that can kill a node's server process with SIGKILL
// (a crash, not a shutdown), for election-server-kill; Start brings the
// node back.
type Killer interface {
	// Kill sends SIGKILL to node's server process and returns once it is
	// reaped.
	Kill(node int) error
}

// Locker is a Client that can take locks, for the lock workload.
type Locker interface {
	// NewMutex opens a session with ttl through the client and returns a
	// mutex on lock name (a single path element) held through it.
	NewMutex(ctx context.Context, name string, ttl time.Duration) (Mutex, error)
}

// Mutex is one client's handle on a lock, used by one goroutine at a
// time.
type Mutex interface {
	// Lock waits until the mutex is held.
	Lock(ctx context.Context) error
	// Unlock releases it at once.
	Unlock(ctx context.Context) error
	// Close ends the mutex's session.
	Close(ctx context.Context) error
}
