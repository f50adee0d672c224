package check

import (
	"slices"
	"time"
)

// expiryGrace is the slack Sessions gives an abandoned session beyond two
// timeouts and an election: the issue's "2 x timeout + election timeout +
// 1 s".
const expiryGrace = time.Second

// Sessions checks when the sessions' ephemerals disappeared. deleted maps
// a path to the earliest time any watcher saw it deleted; present holds
// the paths that existed at end, when the run's final read was taken;
// electionTimeout is the cluster's; leaderChanges are the times, in
// order, at which a leader of a new term was first seen; pauses are the
// times nodes were stopped (SIGSTOP to SIGCONT).
//
// The rules:
//
//   - No early expiry: an ephemeral must not be deleted before its
//     session's timeout ran out. The bound is Timeout after the send time
//     of the session's last acknowledged keepalive sent before the
//     deletion was seen (Opened when there is none): the cluster cannot
//     have received the keepalive before it was sent, so it cannot expire
//     the session before that bound. Creating an ephemeral does not renew
//     a Paddock session, so Ephemeral.Call is no bound. A session's
//     ephemerals may also go at or after ClosedAt, when it is set: a
//     Closed session's, and an Abandoned one's whose close call's outcome
//     is unknown (the close may have taken effect).
//   - Abandoned sessions expire: each ephemeral must be seen deleted by
//     start + 2*Timeout + electionTimeout + 1s, and must not be in
//     present when end is past that bound. start is AbandonedAt, or the
//     last leader change after it and before the deletion was seen (or
//     before end): a new leader cannot know when it last heard from a
//     session that was renewed since the last checkpoint, so it gives the
//     session a fresh timeout, as ZooKeeper and etcd do. Leadership that
//     moves twice in a row (a leader isolated, re-elected when it comes
//     back, then replaced) may thus hold an abandoned session past the
//     bound counted from AbandonedAt alone; run 1009 of the long run did.
//     A leader stopped (SIGSTOP) and resumed without losing its
//     leadership expires nothing while stopped: a pause overlapping
//     [start, bound] pushes the bound to at least the pause's end +
//     electionTimeout + 1 s, as IdleNodes does (pastPauses).
//   - Closed sessions' ephemerals are gone at the end.
//   - KeptAlive sessions' ephemerals may disappear only as the first rule
//     allows (a fault can legitimately keep keepalives from arriving).
//
// The first rule is conservative: the watcher saw the deletion at or
// after it happened, so a deletion is flagged only when even the time it
// was seen is before the bound; an early deletion that watchers learned
// of late passes. Keepalives are counted from their send time, which is
// the earliest the cluster can have refreshed the session: a session that
// the cluster refreshed later (network delay, a new leader's fresh
// timeout) only moves the real bound later, so no legal expiry is
// flagged. The check also relies on ephemerals being deleted only by
// their session's end: a workload that deletes its own ephemerals must
// leave them out.
//
// A session must be recorded as Closed only when its close call was
// acknowledged; a close whose outcome is unknown is an Abandoned session
// from the close call's send time, with ClosedAt that same time. An ephemeral that is neither seen
// deleted nor present at the end (its deletion event was never received)
// escapes the timing rules; Watches is what catches the lost event.
func Sessions(sessions []Session, deleted map[string]time.Duration, present map[string]bool, end, electionTimeout time.Duration, leaderChanges []time.Duration, pauses []Span) []Violation {
	r := report{check: "sessions"}
	pauses = sortedPauses(pauses)
	// deadline is when an abandoned session's ephemerals must be gone,
	// judged at time at.
	deadline := func(s Session, at time.Duration) time.Duration {
		start := s.AbandonedAt
		if i, _ := slices.BinarySearch(leaderChanges, at); i > 0 {
			start = max(start, leaderChanges[i-1])
		}
		return pastPauses(start, start+2*s.Timeout+electionTimeout+expiryGrace, pauses, electionTimeout+expiryGrace)
	}
	for _, s := range sessions {
		keepAlives := slices.Clone(s.KeepAlives)
		slices.Sort(keepAlives)
		for _, e := range s.Ephemerals {
			seen, gone := deleted[e.Path]
			if gone && !(s.ClosedAt > 0 && seen >= s.ClosedAt) {
				// The last keepalive sent before the deletion was seen.
				base, what := s.Opened, "the session's open call"
				if i, _ := slices.BinarySearch(keepAlives, seen); i > 0 && keepAlives[i-1] > base {
					base, what = keepAlives[i-1], "its last acknowledged keepalive before that"
				}
				if seen < base+s.Timeout {
					r.addf("ephemeral %s of session %s was deleted (seen at %v) before %v, %v after %s at %v", e.Path, s.ID, seen, base+s.Timeout, s.Timeout, what, base)
				}
			}
			switch s.Fate {
			case Abandoned:
				if d := deadline(s, seen); gone && seen > d {
					r.addf("ephemeral %s of session %s, abandoned at %v with timeout %v, was deleted (seen at %v) after %v", e.Path, s.ID, s.AbandonedAt, s.Timeout, seen, d)
				}
				if d := deadline(s, end); present[e.Path] && end > d {
					r.addf("ephemeral %s of session %s, abandoned at %v with timeout %v, still exists at the end (%v), past %v", e.Path, s.ID, s.AbandonedAt, s.Timeout, end, d)
				}
			case Closed:
				if present[e.Path] {
					r.addf("ephemeral %s of session %s, closed at %v, still exists at the end (%v)", e.Path, s.ID, s.ClosedAt, end)
				}
			}
		}
	}
	return r.violations()
}
