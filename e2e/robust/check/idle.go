package check

import (
	"cmp"
	"slices"
	"time"
)

// idleGrace is the slack IdleNodes gives a TTL or container znode beyond
// its bound and an election: the "election timeout + 1 s".
const idleGrace = time.Second

// Call is one call of the TTL and container workload as its client saw it.
type Call struct {
	// Path is the znode the call was on (a child's, for child calls).
	Path    string
	Outcome Outcome
	// Call is when the request was sent, Return when its answer arrived.
	Call, Return time.Duration
}

// IdleNode is one TTL or container znode of a run and the calls made on
// it and on its children.
type IdleNode struct {
	Path string
	// TTL is a TTL znode's TTL; 0 for a container.
	TTL time.Duration
	// Created is its create call (OK or Unknown: only those are recorded).
	Created Call
	// Sets are the calls that set its data.
	Sets []Call
	// ChildCreates and ChildDeletes are the calls on its children; a
	// child is never created again once deleted.
	ChildCreates, ChildDeletes []Call
}

// IdleNodes checks when the TTL and container znodes disappeared. deleted
// maps a path to a time by which it was deleted (the earliest a watcher
// saw it, or the acknowledgement of a write the log holds after it); present
// holds the paths that existed at end, when the run's final read was
// taken; electionTimeout is the cluster's; leaderChanges are the times,
// in order, at which a leader of a new term was first seen; pauses are
// the times nodes were stopped (SIGSTOP to SIGCONT).
//
// The rules:
//
//   - No early deletion of a TTL znode: not before TTL after the send time
//     of its last acknowledged change (its create, or a set) sent before
//     the deletion was seen. The cluster cannot have applied the change
//     before it was sent, and may delete the znode only TTL after it. (A
//     create whose outcome is unknown counts too: if the znode existed,
//     that create made it.)
//   - Neither kind is deleted while it has a child: a deletion seen before
//     the delete call of a child whose create and delete were both
//     acknowledged happened while that child existed (the child's create
//     could not have succeeded under a deleted parent).
//   - A container whose create of a child was never even tried is never
//     deleted, and exists at the end.
//   - Deleted in time: a TTL znode, and a container that had a child and
//     has none, must be seen deleted by start + TTL (0 for a container) +
//     electionTimeout + 1 s, and must not be in present when end is past
//     that bound. start is the latest return of an acknowledged change
//     (create, set, child delete), or the last leader change after it and
//     before the deletion was seen (or before end): a new leader cannot
//     trust the previous leader's clock, so it gives every TTL its full
//     length from its own start. A znode with any call of unknown outcome
//     escapes this rule: the call may have been applied at any time.
//     The deletion is a write, and no write commits while the cluster
//     cannot (a quorum cut off, a follower installing a snapshot): the
//     bound is at least 1 s after the first acknowledged write of the
//     workload (writes) sent once the znode was due, which the leader's
//     deletion, proposed when it was due, precedes in the log.
//     A stopped leader acts on nothing, and one that resumes without
//     having lost its leadership (the followers' pre-votes rejected
//     while it was stopped: no leader change) fires its due timers only
//     then: a pause overlapping [start, bound] pushes the bound to at
//     least the pause's end + electionTimeout + 1 s (pastPauses).
//
// The early rules are conservative as Sessions' are: a deletion is
// flagged only when even the time a watcher saw it is before the bound.
// A znode neither seen deleted nor present at the end escapes the timing
// rules (Watches catches the lost event).
func IdleNodes(nodes []IdleNode, deleted map[string]time.Duration, present map[string]bool, end, electionTimeout time.Duration, leaderChanges []time.Duration, pauses []Span, writes []Call) []Violation {
	r := report{check: "idle"}
	pauses = sortedPauses(pauses)
	writes = slices.Clone(writes)
	slices.SortFunc(writes, func(a, b Call) int { return cmp.Compare(a.Call, b.Call) })
	for _, n := range nodes {
		what := "TTL znode"
		if n.TTL == 0 {
			what = "container"
		}
		seen, gone := deleted[n.Path]
		unknown := n.Created.Outcome == Unknown
		last := n.Created.Return
		base := n.Created.Call
		for _, s := range n.Sets {
			switch s.Outcome {
			case Unknown:
				unknown = true
			case OK:
				last = max(last, s.Return)
				if !gone || s.Call < seen {
					base = max(base, s.Call)
				}
			}
		}
		tried, had := len(n.ChildCreates) > 0, false
		for _, c := range n.ChildCreates {
			switch c.Outcome {
			case Unknown:
				unknown = true
			case OK:
				had = true
			}
		}
		okCreate := func(path string) bool {
			return slices.ContainsFunc(n.ChildCreates, func(c Call) bool { return c.Path == path && c.Outcome == OK })
		}
		deletedChildren := 0
		for _, d := range n.ChildDeletes {
			switch d.Outcome {
			case Unknown:
				unknown = true
			case OK:
				deletedChildren++
				last = max(last, d.Return)
				if gone && seen < d.Call && okCreate(d.Path) {
					r.addf("%s %s was deleted (seen at %v) while its child %s existed (deleted by a call sent at %v)", what, n.Path, seen, d.Path, d.Call)
				}
			}
		}
		if gone && n.TTL > 0 && seen < base+n.TTL {
			r.addf("TTL znode %s was deleted (seen at %v) before %v, %v after its last acknowledged change sent at %v", n.Path, seen, base+n.TTL, n.TTL, base)
		}
		if n.TTL == 0 && !tried {
			if gone {
				r.addf("container %s was deleted (seen at %v) though it never had a child", n.Path, seen)
			} else if !present[n.Path] && !unknown {
				r.addf("container %s, never given a child, is missing at the end (%v)", n.Path, end)
			}
			continue
		}
		if unknown || (n.TTL == 0 && (!had || deletedChildren < countOK(n.ChildCreates))) {
			continue // no bound: a call may apply late, or it never emptied
		}
		deadline := func(at time.Duration) time.Duration {
			start := last
			if i, _ := slices.BinarySearch(leaderChanges, at); i > 0 {
				start = max(start, leaderChanges[i-1])
			}
			due := start + n.TTL
			bound := due + electionTimeout + idleGrace
			if c, ok := firstCommit(writes, due); ok {
				bound = max(bound, c+idleGrace)
			}
			return pastPauses(start, bound, pauses, electionTimeout+idleGrace)
		}
		if d := deadline(seen); gone && seen > d {
			r.addf("%s %s was deleted (seen at %v) after %v, its last change acknowledged at %v", what, n.Path, seen, d, last)
		}
		if d := deadline(end); present[n.Path] && end > d {
			r.addf("%s %s still exists at the end (%v), past %v, its last change acknowledged at %v", what, n.Path, end, d, last)
		}
	}
	return r.violations()
}

// sortedPauses is a copy of pauses sorted by start, as pastPauses wants.
func sortedPauses(pauses []Span) []Span {
	pauses = slices.Clone(pauses)
	slices.SortFunc(pauses, func(a, b Span) int { return cmp.Compare(a.Start, b.Start) })
	return pauses
}

// pastPauses is bound, the time by which the leader must have acted on
// something due from start on, pushed to after + the end of every pause
// in pauses (sorted by Start) that overlaps [start, bound]. A stopped
// node acts on nothing: a paused leader that stays leader fires what fell
// due only once resumed, and does so at once (its timers are past due)
// or loses its leadership within an election timeout, when a new leader
// counts from its own start (the leader-change rules). A bound pushed
// past one pause may reach the next: sorted by Start, one pass sees it.
func pastPauses(start, bound time.Duration, pauses []Span, after time.Duration) time.Duration {
	for _, p := range pauses {
		if p.Start <= bound && p.End >= start {
			bound = max(bound, p.End+after)
		}
	}
	return bound
}

// firstCommit is the earliest return of an acknowledged write (any
// answer but Unknown) among writes, sorted by Call, sent at or after at.
func firstCommit(writes []Call, at time.Duration) (time.Duration, bool) {
	i, _ := slices.BinarySearchFunc(writes, at, func(c Call, t time.Duration) int { return cmp.Compare(c.Call, t) })
	var first time.Duration
	found := false
	for _, c := range writes[i:] {
		if c.Outcome != Unknown && (!found || c.Return < first) {
			first, found = c.Return, true
		}
	}
	return first, found
}

func countOK(calls []Call) int {
	n := 0
	for _, c := range calls {
		if c.Outcome == OK {
			n++
		}
	}
	return n
}
