package check

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// electionGrace is the slack Election gives a new leader beyond its
// bound: the "1 s of slack".
const electionGrace = time.Second

// FenceOutcome is what a contender learned of one fenced write.
type FenceOutcome uint8

// The outcomes of a fenced write.
const (
	// FenceOK: the write was applied (its token held the election).
	FenceOK FenceOutcome = iota + 1
	// FenceLost: the cluster refused it, "fence lost"; nothing changed.
	FenceLost
	// FenceUnknown: the contender gave up; it may apply at any time.
	FenceUnknown
	// FenceFailed: another definite refusal; nothing changed.
	FenceFailed
)

func (o FenceOutcome) String() string {
	switch o {
	case FenceOK:
		return "ok"
	case FenceLost:
		return "fence lost"
	case FenceUnknown:
		return "unknown"
	case FenceFailed:
		return "failed"
	}
	return fmt.Sprintf("FenceOutcome(%d)", int(o))
}

// Campaign is one Campaign call of a contender.
type Campaign struct {
	Contender string
	Session   uint64
	// Call is when it was sent, Return when its answer arrived.
	Call, Return time.Duration
	// Answered is set when the cluster answered (Elected or not); an
	// error leaves it unset and the rest empty.
	Answered bool
	Elected  bool
	// Key and Token are the candidate's, Zxid the state the answer saw.
	Key   string
	Token uint64
	Zxid  uint64
}

// FencedWrite is one fenced create of a contender, made while it
// believed it led with Token.
type FencedWrite struct {
	Contender string
	Token     uint64
	// Path is the created path (FenceOK), else the path asked for.
	Path         string
	Call, Return time.Duration
	Outcome      FenceOutcome
	// Zxid is the created znode's czxid (FenceOK).
	Zxid uint64
}

// AppliedWrite is a fenced create found in the tree at the end: applied,
// whatever its contender learned. Token is the token it was fenced with
// (the workload writes it in the znode's name), Zxid its czxid.
type AppliedWrite struct {
	Path  string
	Token uint64
	Zxid  uint64
}

// Candidate is one candidate znode of the election as the watch streams
// and the campaigns' answers show it: alive from its creation at Token
// (its czxid) until the state at Deleted (0: no deletion was seen).
type Candidate struct {
	Key   string
	Token uint64
	// Deleted is the zxid of the entry that deleted it, 0 when unknown.
	Deleted uint64
	// Present: it was in the tree at the end (never deleted).
	Present bool
}

// LeaderRead is one linearizable Leader call that was answered.
type LeaderRead struct {
	Call, Return time.Duration
	// Zxid is the state the answer saw; Token the leader's (0: none).
	Zxid  uint64
	Token uint64
}

// ElectionEvent is something after which a contender must lead again
// within the bound: a leading contender killed (its session abandoned)
// or resigning.
type ElectionEvent struct {
	At   time.Duration
	What string
}

// Span is a fault from its start to its end (healed, restarted,
// resumed).
type Span struct {
	What       string
	Start, End time.Duration
}

// ElectionHistory is what an election workload recorded.
type ElectionHistory struct {
	// Name is the election.
	Name      string
	Campaigns []Campaign
	Writes    []FencedWrite
	// Applied are the fenced creates in the tree at the end.
	Applied []AppliedWrite
	// Candidates are the election's candidates (ElectionCandidates).
	Candidates []Candidate
	Reads      []LeaderRead
	Events     []ElectionEvent
	Faults     []Span
	// SessionTimeout is the contenders' session timeout.
	SessionTimeout time.Duration
	// Lag is how long a contender may take to notice that it leads once
	// the cluster can tell it (a campaign's wait, a call stuck on a node
	// that stopped answering until the client tries another).
	Lag time.Duration
	// End is when the contenders stopped: a bound past it is not judged.
	End time.Duration
}

// ElectionCandidates reconstructs the candidates of the election whose
// line is the znode dir from the watch streams (merged: every Created
// and Deleted event of a direct child of dir that any stream received),
// the campaigns' answers (a candidate whose creation no stream saw) and
// final, the tree at the end. A child's token is the zxid of its
// Created event (its czxid); a path created again after its deletion
// (the line was emptied, deleted and made anew) is a new candidate.
func ElectionCandidates(streams []WatchStream, dir string, campaigns []Campaign, final map[string]string) []Candidate {
	type ev struct {
		zxid uint64
		typ  EventType
		path string
	}
	seen := map[ev]bool{}
	var evs []ev
	for _, s := range streams {
		for _, e := range s.Events {
			if e.Type == Changed || !strings.HasPrefix(e.Path, dir+"/") || strings.Contains(e.Path[len(dir)+1:], "/") {
				continue
			}
			k := ev{e.Zxid, e.Type, e.Path}
			if !seen[k] {
				seen[k] = true
				evs = append(evs, k)
			}
		}
	}
	slices.SortStableFunc(evs, func(a, b ev) int { return cmp.Compare(a.zxid, b.zxid) })
	var out []Candidate
	open := map[string]int{} // path -> index in out of its live candidate
	known := map[uint64]bool{}
	for _, e := range evs {
		switch e.typ {
		case Created:
			open[e.path] = len(out)
			out = append(out, Candidate{Key: e.path, Token: e.zxid})
			known[e.zxid] = true
		case Deleted:
			if i, ok := open[e.path]; ok {
				out[i].Deleted = e.zxid
				delete(open, e.path)
			}
		}
	}
	for _, c := range campaigns {
		if !c.Answered || c.Token == 0 || known[c.Token] {
			continue
		}
		known[c.Token] = true
		cand := Candidate{Key: c.Key, Token: c.Token}
		for _, e := range evs {
			if e.typ == Deleted && e.path == c.Key && e.zxid > c.Token {
				cand.Deleted = e.zxid
				break
			}
		}
		out = append(out, cand)
	}
	// The last candidate of each path in the final tree is still there.
	last := map[string]int{}
	for i, c := range out {
		if j, ok := last[c.Key]; !ok || out[j].Token < c.Token {
			last[c.Key] = i
		}
	}
	for path, i := range last {
		if _, ok := final[path]; ok && out[i].Deleted == 0 {
			out[i].Present = true
		}
	}
	slices.SortFunc(out, func(a, b Candidate) int { return cmp.Compare(a.Token, b.Token) })
	return out
}

// Election checks an election workload's history: contenders campaigning
// on one election and, while they believe they lead, creating znodes
// fenced with their token, under faults. electionTimeout is the
// cluster's; leaderChanges are the times, in order, at which a leader of
// a new Paddock term was first seen.
//
// Who led at each zxid is reconstructed from the candidates (see
// ElectionCandidates): in the state after entry S, the candidates alive
// are those with Token <= S < Deleted (Present: never deleted), and the
// leader is the one with the smallest token (the line is in czxid
// order; the workload's sessions have no lock-delay, and a lock-delay
// placeholder would lead no one but still be ahead). A fence is checked
// against the state before its write's entry, S = zxid - 1.
//
// The rules:
//
//   - Fenced writes by the leader only: every fenced create applied (in
//     the tree at the end, whatever its contender learned, and every one
//     acknowledged) was made with the token of the leader in the state
//     before its entry: its token's candidate was not deleted by then,
//     and no candidate with a smaller token was surely alive then (its
//     creation at or before S and its deletion seen after S, or never).
//     A candidate whose deletion no stream saw and that is gone at the end
//     has an unknown end: it proves nothing either way.
//   - Tokens never go back: the applied fenced creates, in zxid order,
//     have non-decreasing tokens (a smaller token led once a larger one
//     had, which no line in czxid order allows). This needs no
//     reconstruction.
//   - Acknowledged writes stay: every fenced create acknowledged is in
//     the tree at the end with the zxid it was answered with.
//   - Answers agree with the line: a Campaign answered elected, and a
//     Leader read, name the leader of the state they saw (Zxid) as above
//     (a read answering no leader while a candidate was surely alive is
//     wrong too); and a Leader read is linearizable: its zxid is not
//     below that of a fenced create acknowledged before it was sent.
//   - Leadership regained: after each event (a leading contender killed
//     or resigning) and after each fault ends, a contender leads again: a
//     Campaign answered elected or a fenced create acknowledged, sent at
//     or after the event, returns by start + session timeout + election
//     timeout + Lag + 1 s, where start is the later of the event, the end
//     of any fault that overlaps the wait, and the last Paddock leader
//     change before the bound (a new leader gives every session a fresh
//     timeout). Events whose bound falls after End are not judged.
//
// What it does not check: fenced writes whose outcome is unknown and that
// were never applied, or applied after the final listing; that "fence
// lost" was answered only to tokens that had lost (the answer has no
// zxid); a candidate every stream missed (a gap shared by all streams)
// hides only violations, never makes one.
func Election(h ElectionHistory, electionTimeout time.Duration, leaderChanges []time.Duration) []Violation {
	r := report{check: "election"}
	cands := slices.Clone(h.Candidates)
	slices.SortFunc(cands, func(a, b Candidate) int { return cmp.Compare(a.Token, b.Token) })
	byToken := map[uint64]Candidate{}
	for _, c := range cands {
		byToken[c.Token] = c
	}
	// notLeader says why token surely did not lead in the state after
	// entry s, "" when it may have.
	notLeader := func(token, s uint64) string {
		if token > s {
			return fmt.Sprintf("token %d was created after zxid %d", token, s)
		}
		if c, ok := byToken[token]; ok && c.Deleted != 0 && c.Deleted <= s {
			return fmt.Sprintf("token %d's candidate %s was deleted at zxid %d", token, c.Key, c.Deleted)
		}
		for _, c := range cands {
			if c.Token >= token {
				break
			}
			if alive, until := surelyAlive(c, s); alive {
				return fmt.Sprintf("candidate %s with the smaller token %d was ahead in line (created at zxid %d, %s)", c.Key, c.Token, c.Token, until)
			}
		}
		return ""
	}

	// Fenced writes by the leader only, and tokens never go back.
	applied := slices.Clone(h.Applied)
	slices.SortFunc(applied, func(a, b AppliedWrite) int { return cmp.Compare(a.Zxid, b.Zxid) })
	var prev *AppliedWrite
	for i, w := range applied {
		if why := notLeader(w.Token, w.Zxid-1); why != "" {
			r.addf("fenced write %s at zxid %d with token %d was applied though its token did not lead before it: %s", w.Path, w.Zxid, w.Token, why)
		}
		if prev != nil && w.Token < prev.Token {
			r.addf("fenced write %s at zxid %d has token %d, smaller than token %d of the fenced write %s at zxid %d before it", w.Path, w.Zxid, w.Token, prev.Token, prev.Path, prev.Zxid)
		}
		prev = &applied[i]
	}

	// Acknowledged writes stay.
	inTree := map[string]uint64{}
	for _, w := range h.Applied {
		inTree[w.Path] = w.Zxid
	}
	for _, w := range h.Writes {
		if w.Outcome != FenceOK {
			continue
		}
		switch z, ok := inTree[w.Path]; {
		case !ok:
			r.addf("fenced write %s by %s with token %d, acknowledged at zxid %d (sent at %v), is not in the tree at the end", w.Path, w.Contender, w.Token, w.Zxid, w.Call)
		case z != w.Zxid:
			r.addf("fenced write %s by %s with token %d was acknowledged at zxid %d but is in the tree with zxid %d", w.Path, w.Contender, w.Token, w.Zxid, z)
		}
	}

	// Answers agree with the line.
	for _, c := range h.Campaigns {
		if !c.Answered || !c.Elected {
			continue
		}
		if why := notLeader(c.Token, c.Zxid); why != "" {
			r.addf("campaign of %s (session %d) sent at %v was answered elected with token %d at zxid %d, but %s", c.Contender, c.Session, c.Call, c.Token, c.Zxid, why)
		}
	}
	acked := slices.Clone(h.Writes)
	acked = slices.DeleteFunc(acked, func(w FencedWrite) bool { return w.Outcome != FenceOK })
	slices.SortFunc(acked, func(a, b FencedWrite) int { return cmp.Compare(a.Return, b.Return) })
	for _, rd := range h.Reads {
		if rd.Token != 0 {
			if why := notLeader(rd.Token, rd.Zxid); why != "" {
				r.addf("Leader read sent at %v answered token %d at zxid %d, but %s", rd.Call, rd.Token, rd.Zxid, why)
			}
		} else {
			for _, c := range cands {
				if c.Token > rd.Zxid {
					break
				}
				if alive, until := surelyAlive(c, rd.Zxid); alive {
					r.addf("Leader read sent at %v answered no leader at zxid %d, but candidate %s (token %d) was in line (%s)", rd.Call, rd.Zxid, c.Key, c.Token, until)
					break
				}
			}
		}
		// The newest fenced write acknowledged before the read was sent.
		var newest *FencedWrite
		for i := range acked {
			if acked[i].Return >= rd.Call {
				break
			}
			if newest == nil || acked[i].Zxid > newest.Zxid {
				newest = &acked[i]
			}
		}
		if newest != nil && rd.Zxid < newest.Zxid {
			r.addf("Leader read sent at %v answered the state at zxid %d (leader token %d), older than the fenced write %s at zxid %d acknowledged at %v: a stale read", rd.Call, rd.Zxid, rd.Token, newest.Path, newest.Zxid, newest.Return)
		}
	}

	electionRegained(&r, h, electionTimeout, leaderChanges)
	return r.violations()
}

// surelyAlive reports whether candidate c surely existed in the state
// after entry s, and says until when it lived.
func surelyAlive(c Candidate, s uint64) (bool, string) {
	if c.Token > s {
		return false, ""
	}
	switch {
	case c.Deleted > s:
		return true, fmt.Sprintf("deleted only at zxid %d", c.Deleted)
	case c.Deleted == 0 && c.Present:
		return true, "still in line at the end"
	}
	return false, ""
}

// leadership is a proof that a contender led: an elected campaign or an
// acknowledged fenced write, sent at Call and answered at Return.
type leadership struct {
	call, ret time.Duration
	what      string
}

// Regain is the "leadership regained" rule applied to one event or fault
// end.
type Regain struct {
	What string
	// At is the event's time, Bound when a contender had to lead by.
	At, Bound time.Duration
	// Led is when the first proof of leadership sent since At was
	// answered, -1 when there was none.
	Led time.Duration
	// Judged: a contender led by Bound, or Bound fell before End.
	Judged bool
}

// electionRegained checks the "leadership regained" rule.
func electionRegained(r *report, h ElectionHistory, electionTimeout time.Duration, leaderChanges []time.Duration) []Regain {
	var proofs []leadership
	for _, c := range h.Campaigns {
		if c.Answered && c.Elected {
			proofs = append(proofs, leadership{c.Call, c.Return, fmt.Sprintf("%s elected with token %d", c.Contender, c.Token)})
		}
	}
	for _, w := range h.Writes {
		if w.Outcome == FenceOK {
			proofs = append(proofs, leadership{w.Call, w.Return, fmt.Sprintf("%s's fenced write with token %d", w.Contender, w.Token)})
		}
	}
	slices.SortFunc(proofs, func(a, b leadership) int { return cmp.Compare(a.call, b.call) })

	var out []Regain
	events := electionEvents(h)
	d := h.SessionTimeout + electionTimeout + h.Lag + electionGrace
	for _, e := range events {
		bound, from := regainBound(h, d, leaderChanges, e)
		i, _ := slices.BinarySearchFunc(proofs, e.At, func(p leadership, t time.Duration) int { return cmp.Compare(p.call, t) })
		// The first proof answered since the event.
		var first *leadership
		for k := range proofs[i:] {
			if p := &proofs[i+k]; first == nil || p.ret < first.ret {
				first = p
			}
		}
		ok, next := first != nil && first.ret <= bound, "none"
		if first != nil {
			next = fmt.Sprintf("%s, sent at %v, answered at %v", first.what, first.call, first.ret)
		}
		g := Regain{What: e.What, At: e.At, Bound: bound, Led: -1, Judged: ok || bound <= h.End}
		if first != nil {
			g.Led = first.ret
		}
		out = append(out, g)
		if ok || bound > h.End {
			continue
		}
		r.addf("no contender led again within %v after %s: the bound %v counts from %s; the first proof of leadership since: %s", d, e.What, bound, from, next)
	}
	return out
}

// regainBound is when a contender must lead again after e, and what the
// bound counts from: the later of e, the end of a fault that overlaps
// the wait, and the last Paddock leader change before the bound, plus d.
func regainBound(h ElectionHistory, d time.Duration, leaderChanges []time.Duration, e ElectionEvent) (time.Duration, string) {
	bound, from := e.At+d, fmt.Sprintf("%s at %v", e.What, e.At)
	for moved := true; moved; {
		moved = false
		for _, lc := range leaderChanges {
			if lc > e.At && lc <= bound && lc+d > bound {
				bound, from, moved = lc+d, fmt.Sprintf("the Paddock leader change at %v after %s at %v", lc, e.What, e.At), true
			}
		}
		for _, f := range h.Faults {
			if f.Start <= bound && f.End > e.At && f.End+d > bound {
				bound, from, moved = f.End+d, fmt.Sprintf("the end of %s at %v after %s at %v", f.What, f.End, e.What, e.At), true
			}
		}
	}
	return bound, from
}

// electionEvents are h's events and the ends of its faults, in order.
func electionEvents(h ElectionHistory) []ElectionEvent {
	events := slices.Clone(h.Events)
	for _, f := range h.Faults {
		events = append(events, ElectionEvent{At: f.End, What: "the end of " + f.What})
	}
	slices.SortStableFunc(events, func(a, b ElectionEvent) int { return cmp.Compare(a.At, b.At) })
	return events
}

// ElectionRegains is the "leadership regained" rule of Election applied
// to every event and fault end, for a report.
func ElectionRegains(h ElectionHistory, electionTimeout time.Duration, leaderChanges []time.Duration) []Regain {
	return electionRegained(&report{check: "election"}, h, electionTimeout, leaderChanges)
}
