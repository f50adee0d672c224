package robust

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/paddock/paddock/e2e/robust/check"
)

// FaultKind is one kind of fault a run injects.
type FaultKind int

// The faults.
const (
	// KillLeader kills the leader with SIGKILL and restarts it.
	KillLeader FaultKind = iota
	// KillFollower kills a follower with SIGKILL and restarts it.
	KillFollower
	// PauseLeader stops the leader with SIGSTOP for 1-10 s, then SIGCONT.
	PauseLeader
	// IsolateLeader cuts the leader off from the other two nodes.
	IsolateLeader
	// IsolateFollower cuts one follower off from the other two nodes.
	IsolateFollower
	// OneWay drops the packets from one node to another, not back.
	OneWay
	// SnapshotInstall keeps a follower cut off until the leader has
	// compacted its log past it, so it must install a snapshot.
	SnapshotInstall
	// DropResponses drops a node's packets to the clients for longer than
	// a call's timeout: calls it serves commit, but their callers never
	// learn it.
	DropResponses
	numFaultKinds
)

var faultNames = [...]string{
	KillLeader:      "kill-leader",
	KillFollower:    "kill-follower",
	PauseLeader:     "pause-leader",
	IsolateLeader:   "isolate-leader",
	IsolateFollower: "isolate-follower",
	OneWay:          "one-way",
	SnapshotInstall: "snapshot-install",
	DropResponses:   "drop-responses",
}

func (k FaultKind) String() string {
	if k >= 0 && k < numFaultKinds {
		return faultNames[k]
	}
	return fmt.Sprintf("fault(%d)", int(k))
}

// ParseFaultKind is the FaultKind named s.
func ParseFaultKind(s string) (FaultKind, error) {
	for k, name := range faultNames {
		if name == s {
			return FaultKind(k), nil
		}
	}
	return 0, fmt.Errorf("robust: unknown fault %q (one of %s)", s, strings.Join(faultNames[:], ", "))
}

// fault is one planned fault: after a quiet time, held for a while.
type fault struct {
	kind FaultKind
	// after is the quiet time before it, from the run's start or the end
	// of the fault before.
	after time.Duration
	// hold is how long it lasts (kill: time until the restart).
	hold time.Duration
	// pick chooses among followers or directions.
	pick int
}

func (f fault) String() string {
	return fmt.Sprintf("%s after %v for %v", f.kind, f.after.Round(time.Millisecond), f.hold.Round(time.Millisecond))
}

// planFaults draws 1 or 2 faults (or the kinds asked for) from rng.
func planFaults(rng *rand.Rand, kinds []FaultKind) []fault {
	if len(kinds) == 0 {
		kinds = append(kinds, FaultKind(rng.IntN(int(numFaultKinds))))
		if rng.IntN(2) == 0 {
			kinds = append(kinds, FaultKind(rng.IntN(int(numFaultKinds))))
		}
	}
	var plan []fault
	for _, k := range kinds {
		f := fault{kind: k, after: ms(rng, 300, 1500), pick: rng.IntN(2)}
		switch k {
		case KillLeader, KillFollower:
			f.hold = ms(rng, 200, 3000)
		case PauseLeader:
			f.hold = ms(rng, 1000, 10000)
		case DropResponses:
			// Longer than opTimeout, so calls end with their outcome
			// unknown rather than late.
			f.hold = opTimeout + ms(rng, 500, 2000)
		case SnapshotInstall:
			f.hold = 0 // until the leader's log has moved past the follower
		default:
			f.hold = ms(rng, 1000, 4000)
		}
		plan = append(plan, f)
	}
	return plan
}

func ms(rng *rand.Rand, lo, hi int) time.Duration {
	return time.Duration(lo+rng.IntN(hi-lo+1)) * time.Millisecond
}

// injector applies faults to a cluster and records what it did.
type injector struct {
	c    *Cluster
	logf func(string, ...any)
	// snapshotEntries is how many entries past a cut follower the leader's
	// log must move before SnapshotInstall heals (threshold + trailing).
	snapshotEntries uint64
	// done lists what was injected, for the report.
	done []string
	// now is the run's clock; spans are the faults from their start to
	// their end (undone), on it.
	now   func() time.Duration
	spans []check.Span
	// pauses are the spans of the PauseLeader faults: from before the
	// SIGSTOP to after the SIGCONT.
	pauses []check.Span
}

// inject applies f, holds it, and undoes it: every node running and
// reachable again when it returns without error.
func (in *injector) inject(ctx context.Context, f fault) error {
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	leader, err := in.c.Leader(lctx)
	cancel()
	if err != nil {
		return fmt.Errorf("robust: before %s: %w", f.kind, err)
	}
	follower := (leader + 1 + f.pick) % in.c.N()
	start := in.now()
	var target int
	var undo func() error
	switch f.kind {
	case KillLeader, KillFollower:
		target = leader
		if f.kind == KillFollower {
			target = follower
		}
		if err := in.c.Kill(target); err != nil {
			return err
		}
		undo = func() error { return in.c.Restart(ctx, target) }
	case PauseLeader:
		target = leader
		if err := in.c.Pause(target); err != nil {
			return err
		}
		undo = func() error { return in.c.Resume(target) }
	case IsolateLeader, IsolateFollower, SnapshotInstall:
		target = leader
		if f.kind != IsolateLeader {
			target = follower
		}
		if err := in.c.Isolate(target); err != nil {
			return err
		}
		undo = in.c.Heal
	case OneWay:
		from, to := leader, follower
		if f.pick == 1 {
			from, to = follower, leader
		}
		target = from
		if err := in.c.CutOneWay(from, to); err != nil {
			return err
		}
		undo = in.c.Heal
		in.logf("fault: %s n%d -> n%d", f.kind, from+1, to+1)
	case DropResponses:
		target = follower
		if err := in.c.DropResponses(target); err != nil {
			return err
		}
		undo = in.c.Heal
	default:
		return fmt.Errorf("robust: no such fault %v", f.kind)
	}
	in.logf("fault: %s on n%d (leader n%d), hold %v", f.kind, target+1, leader+1, f.hold)
	in.done = append(in.done, fmt.Sprintf("%s n%d %v", f.kind, target+1, f.hold.Round(time.Millisecond)))
	if f.kind == SnapshotInstall {
		err = in.awaitCompaction(ctx, leader, target)
	} else {
		sleep(ctx, f.hold)
	}
	if uerr := undo(); uerr != nil && err == nil {
		err = fmt.Errorf("robust: undoing %s: %w", f.kind, uerr)
	}
	span := check.Span{What: fmt.Sprintf("%s n%d", f.kind, target+1), Start: start, End: in.now()}
	in.spans = append(in.spans, span)
	if f.kind == PauseLeader {
		in.pauses = append(in.pauses, span)
	}
	return err
}

// awaitCompaction waits until the leader's log has moved far enough past
// the cut follower that the entries it lacks have been compacted away.
func (in *injector) awaitCompaction(ctx context.Context, leader, cut int) error {
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	st, err := in.c.Status(sctx, cut)
	cancel()
	if err != nil {
		return fmt.Errorf("robust: status of the cut follower: %w", err)
	}
	target := st.GetAppliedIndex() + in.snapshotEntries
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ls, err := in.c.Status(sctx, leader)
		cancel()
		if err == nil && ls.GetCommitIndex() >= target {
			return nil
		}
		if !sleep(ctx, 100*time.Millisecond) {
			return ctx.Err()
		}
	}
	return fmt.Errorf("robust: the leader's log did not reach index %d in 30s", target)
}

// installedSnapshot reports whether node i's log says it installed a
// snapshot sent by the leader.
func (c *Cluster) installedSnapshot(i int) bool {
	b, err := os.ReadFile(c.LogPath(i))
	return err == nil && strings.Contains(string(b), "Installed remote snapshot")
}
