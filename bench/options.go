package bench

import (
	"fmt"
	"io"
	"slices"
	"time"
)

// The workloads, by the names Options.Workloads and Row.Workload use.
const (
	WorkloadWrite            = "write"
	WorkloadReadLinearizable = "read-linearizable"
	WorkloadReadSerializable = "read-serializable"
	WorkloadMixed            = "mixed"
	WorkloadWatch            = "watch"
	WorkloadSessionChurn     = "session-churn"
	WorkloadEphemeralCleanup = "ephemeral-cleanup"
	WorkloadMemory           = "memory"
	WorkloadRestart          = "restart"
	// WorkloadLock is lock acquire + release round trips, every client
	// on one lock (see lock.go).
	WorkloadLock = "lock"
	// WorkloadElection is election failover: SIGKILL of the leading
	// contender's process to the next leader learning that it leads.
	WorkloadElection = "election"
	// WorkloadElectionServerKill counts the leading contenders that
	// stopped needlessly while the cluster's own leader server was
	// SIGKILLed and restarted.
	WorkloadElectionServerKill = "election-server-kill"
)

// Workloads are every workload, in the order reports list them.
var Workloads = []string{
	WorkloadWrite, WorkloadReadLinearizable, WorkloadReadSerializable,
	WorkloadMixed, WorkloadWatch, WorkloadSessionChurn,
	WorkloadEphemeralCleanup, WorkloadMemory, WorkloadRestart,
	WorkloadLock, WorkloadElection, WorkloadElectionServerKill,
}

// runOrder is the order Run executes workloads in, which differs from the
// report order: memory runs first, right after the preload, so that it
// measures the servers holding Keys keys and not also the keys the write
// workload leaves behind; restart runs last because it disturbs the
// cluster (clients fail over, the restarted node catches up), and so does
// election-server-kill, which runs just before it.
var runOrder = []string{
	WorkloadMemory, WorkloadReadLinearizable, WorkloadReadSerializable,
	WorkloadMixed, WorkloadWrite, WorkloadWatch, WorkloadSessionChurn,
	WorkloadEphemeralCleanup, WorkloadLock, WorkloadElection,
	WorkloadElectionServerKill, WorkloadRestart,
}

// Options of a run; zero fields take defaults.
type Options struct {
	// Duration is the measured window of each row (default 10s); Warmup
	// precedes it unmeasured (default 2s).
	Duration, Warmup time.Duration
	// Clients are the concurrency levels of the write, read, mixed and
	// session-churn workloads (default 1, 16, 128).
	Clients []int
	// Workloads to run (default all, see Workloads).
	Workloads []string
	// Keys is how many keys are preloaded for the read, mixed, memory and
	// restart workloads (default 100000).
	Keys int
	// ValueSize is the size of every value written (default 128).
	ValueSize int
	// Watchers are the watcher counts of the watch workload (default 1,
	// 1000).
	Watchers []int
	// SessionTTL is the session timeout of session churn, ephemeral
	// cleanup and the election workloads' contenders (default 2s).
	SessionTTL time.Duration
	// LockClients are the concurrency levels of the lock workload
	// (default 1, 16).
	LockClients []int
	// ElectionRounds is how many leading contenders the election
	// workload kills (default 20); ServerKills how many times
	// election-server-kill kills the cluster's leader server (default 3).
	ElectionRounds, ServerKills int
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// withDefaults returns o with its zero fields set to their defaults, or
// an error for a value that cannot be run.
func (o Options) withDefaults() (Options, error) {
	if o.Duration == 0 {
		o.Duration = 10 * time.Second
	}
	if o.Warmup == 0 {
		o.Warmup = 2 * time.Second
	}
	if len(o.Clients) == 0 {
		o.Clients = []int{1, 16, 128}
	}
	if len(o.Workloads) == 0 {
		o.Workloads = slices.Clone(Workloads)
	}
	if o.Keys == 0 {
		o.Keys = 100000
	}
	if o.ValueSize == 0 {
		o.ValueSize = 128
	}
	if len(o.Watchers) == 0 {
		o.Watchers = []int{1, 1000}
	}
	if o.SessionTTL == 0 {
		o.SessionTTL = 2 * time.Second
	}
	if len(o.LockClients) == 0 {
		o.LockClients = []int{1, 16}
	}
	if o.ElectionRounds == 0 {
		o.ElectionRounds = 20
	}
	if o.ServerKills == 0 {
		o.ServerKills = 3
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	switch {
	case o.Duration < 0 || o.Warmup < 0 || o.SessionTTL < 0:
		return o, fmt.Errorf("bench: negative duration, warmup or session ttl")
	case o.Keys < 0 || o.ValueSize < 0:
		return o, fmt.Errorf("bench: negative keys (%d) or value size (%d)", o.Keys, o.ValueSize)
	case o.ElectionRounds < 0 || o.ServerKills < 0:
		return o, fmt.Errorf("bench: negative election rounds (%d) or server kills (%d)", o.ElectionRounds, o.ServerKills)
	}
	for _, l := range [][]int{o.Clients, o.Watchers, o.LockClients} {
		s := slices.Clone(l)
		slices.Sort(s)
		if s[0] <= 0 {
			return o, fmt.Errorf("bench: clients, watchers and lock clients must be > 0, got %d", s[0])
		}
		if len(slices.Compact(s)) != len(l) {
			return o, fmt.Errorf("bench: repeated concurrency level in %v", l)
		}
	}
	for _, w := range o.Workloads {
		if !slices.Contains(Workloads, w) {
			return o, fmt.Errorf("bench: unknown workload %q (want one of %v)", w, Workloads)
		}
	}
	return o, nil
}
