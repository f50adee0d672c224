package robust

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The knobs of TestRobust, from the environment:
//
//	PADDOCK_ROBUST_RUNS    how many seeded runs (default 20)
//	PADDOCK_ROBUST_SEED    the first seed (default 1); runs use seed, seed+1, ...
//	PADDOCK_ROBUST_OPS     calls per run at least (default 500)
//	PADDOCK_ROBUST_FAULTS  comma-separated fault kinds for every run
//	                       (default: run i gets kind i mod 8 in CI-sized
//	                       runs, 1-2 drawn kinds when PADDOCK_ROBUST_RUNS is set)
//	PADDOCK_ROBUST_KEEP    keep each run's data and logs (path printed)
//	PADDOCK_ROBUST_ELECTION  1: the election workload in every run, 0: in
//	                       none (default: in the runs electionRun picks)
//	PADDOCK_ROBUST_WEBSESSION  1: the web session workload in every run, 0:
//	                       in none (default: in the runs webSessionRun picks)
//
// Replay one failing seed with
//
//	PADDOCK_ROBUST_RUNS=1 PADDOCK_ROBUST_SEED=<seed> go test -race -run TestRobust -v ./e2e/robust
func TestRobust(t *testing.T) {
	needHarness(t)
	runs, drawn := 20, false
	if s := os.Getenv("PADDOCK_ROBUST_RUNS"); s != "" {
		runs, drawn = envInt(t, "PADDOCK_ROBUST_RUNS", 20), true
	}
	first := int64(envInt(t, "PADDOCK_ROBUST_SEED", 1))
	ops := envInt(t, "PADDOCK_ROBUST_OPS", 500)
	var kinds []FaultKind
	if s := os.Getenv("PADDOCK_ROBUST_FAULTS"); s != "" {
		for _, name := range strings.Split(s, ",") {
			k, err := ParseFaultKind(strings.TrimSpace(name))
			if err != nil {
				t.Fatal(err)
			}
			kinds = append(kinds, k)
		}
	}

	var plan []seededRun
	for i := range runs {
		seed := first + int64(i)
		faults := kinds
		if faults == nil && !drawn {
			// CI's short run covers every kind of fault in turn.
			faults = []FaultKind{FaultKind(seed % int64(numFaultKinds))}
		}
		plan = append(plan, seededRun{seed, faults})
	}
	if !drawn && kinds == nil {
		// Seeds that once failed, with their faults (README,
		// Reliability).
		plan = append(plan, regressionSeeds...)
	}

	var total Report
	elections, webRuns := 0, 0
	byFault := make(map[string]int)
	for _, r := range plan {
		seed, faults := r.seed, r.faults
		ok := t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			dir := t.TempDir()
			if os.Getenv("PADDOCK_ROBUST_KEEP") != "" {
				var err error
				if dir, err = os.MkdirTemp("", fmt.Sprintf("paddock-robust-%d-", seed)); err != nil {
					t.Fatal(err)
				}
				t.Logf("data and logs kept in %s", dir)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			rep, err := Run(ctx, RunConfig{Seed: seed, Ops: ops, Faults: faults, Bin: paddockBin, Dir: dir, Logf: t.Logf})
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			t.Log(rep.Summary())
			total.Ops += rep.Ops
			total.Unknown += rep.Unknown
			total.Sessions += rep.Sessions
			total.Ephemerals += rep.Ephemerals
			total.Idle += rep.Idle
			total.IdleDeleted += rep.IdleDeleted
			total.Events += rep.Events
			total.LeaderChanges += rep.LeaderChanges
			total.FarmJoins += rep.FarmJoins
			total.FarmChanges += rep.FarmChanges
			total.FarmExports += rep.FarmExports
			if rep.Election {
				elections++
				total.ElectionWrites += rep.ElectionWrites
				total.ElectionApplied += rep.ElectionApplied
				total.ElectionJudged += rep.ElectionJudged
				total.ElectionViolations += rep.ElectionViolations
			}
			if rep.WebSession {
				webRuns++
				total.WebSessionViews += rep.WebSessionViews
				total.WebSessionWrites += rep.WebSessionWrites
				total.WebSessionReadRetried += rep.WebSessionReadRetried
				total.WebSessionReadLost += rep.WebSessionReadLost
				total.WebSessionReadRetriedWrote += rep.WebSessionReadRetriedWrote
				total.WebSessionUnknown += rep.WebSessionUnknown
				total.WebSessionApplied += rep.WebSessionApplied
				total.WebSessionViolations += rep.WebSessionViolations
			}
			total.Violations = append(total.Violations, rep.Violations...)
			for _, f := range rep.Faults {
				byFault[strings.Fields(f)[0]]++
			}
			for _, v := range rep.Violations {
				t.Errorf("seed %d: %v", seed, v)
			}
			if len(rep.Violations) > 0 {
				if rep.Visualization != "" {
					t.Logf("porcupine's visualization: %s (kept with PADDOCK_ROBUST_KEEP=1)", rep.Visualization)
				}
				t.Logf("replay: PADDOCK_ROBUST_RUNS=1 PADDOCK_ROBUST_SEED=%d PADDOCK_ROBUST_FAULTS=%s go test -race -run TestRobust -v ./e2e/robust", seed, faultList(faults))
			}
		})
		if !ok && testing.Short() {
			break
		}
	}
	var fs []string
	for k, n := range byFault {
		fs = append(fs, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(fs)
	t.Logf("%d runs, %d ops (%d unknown), %d sessions, %d ephemerals, %d TTL/container znodes (%d seen deleted), %d watch events, farm %d joins %d changes %d exports, election in %d runs (%d fenced writes acknowledged, %d applied, %d regains judged, %d violations), web sessions in %d runs (%d page views, %d reads retried (%d with an attempt unanswered, %d then wrote), %d writes acknowledged, %d unknown, %d increments applied, %d violations), %d leaders; faults: %s; %d violations",
		len(plan), total.Ops, total.Unknown, total.Sessions, total.Ephemerals, total.Idle, total.IdleDeleted, total.Events, total.FarmJoins, total.FarmChanges, total.FarmExports,
		elections, total.ElectionWrites, total.ElectionApplied, total.ElectionJudged, total.ElectionViolations,
		webRuns, total.WebSessionViews, total.WebSessionReadRetried, total.WebSessionReadLost, total.WebSessionReadRetriedWrote, total.WebSessionWrites, total.WebSessionUnknown, total.WebSessionApplied, total.WebSessionViolations, total.LeaderChanges, strings.Join(fs, ", "), len(total.Violations))
}

// seededRun is a seed and the faults it injects (nil: drawn by the seed).
type seededRun struct {
	seed   int64
	faults []FaultKind
}

// regressionSeeds are seeds of long or targeted runs that found
// something, kept in CI's run with the kinds of fault they had. The
// faults' timings are drawn by the seed; they moved when the run stopped
// drawing a log store first, so they are not the failing runs' timings.
var regressionSeeds = []seededRun{
	// An abandoned session outlived the bound counted from its
	// abandonment: the leader was isolated, re-elected when it came back,
	// then replaced, and each new leader gave the session a fresh timeout.
	// The bound now counts from the last leader change (check.Sessions).
	// Later, in CI, the killed follower could not restart: raft-wal had
	// lost the index of its log's truncated tail (README, Reliability);
	// the log store is raft-boltdb again.
	{seed: 1009, faults: []FaultKind{IsolateLeader, KillFollower}},
	// The final listing missed a register every watcher had seen created:
	// a write whose caller had given up was applied late, after the
	// listing, and the watch streams were replayed past it. The listing is
	// now taken at a zxid no later event has passed, and the streams are
	// cut there.
	{seed: 2029, faults: []FaultKind{OneWay, OneWay}},
	// A session's ephemeral went 0.45 s after the session opened: its
	// client's close call had timed out in a one-way partition, so it was
	// recorded as abandoned, but the close had taken effect. A close with
	// an unknown outcome now lets the ephemerals go from its send time.
	{seed: 2120, faults: []FaultKind{OneWay, IsolateLeader}},
	// A watcher never caught up with the final zxid: after a follower
	// installed a snapshot its watch ended with SNAPSHOT_RESTORED, the new
	// stream started past every write, and nothing ever reported that it
	// was up to date. A new stream now counts as up to date with its start
	// - 1 (seed 3083 of the second long run failed the same way).
	{seed: 5012, faults: []FaultKind{SnapshotInstall, OneWay}},
	// A paused leader, resumed, answered keepalives from its own session
	// clock for the few milliseconds before it noticed the new leader,
	// which then expired those sessions 0.02-0.34 s after the answers. A
	// leader now confirms its leadership after recording a renewal and
	// before answering (node: TestKeepAliveOnDeposedLeaderFails).
	{seed: 8060, faults: []FaultKind{PauseLeader}},
}

func faultList(ks []FaultKind) string {
	var s []string
	for _, k := range ks {
		s = append(s, k.String())
	}
	return strings.Join(s, ",")
}

func envInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a number", name, s)
	}
	return n
}
