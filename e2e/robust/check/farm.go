package check

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
)

// farmGrace is the slack Farm gives the exporter beyond a leave's bound:
// the "1 s of slack".
const farmGrace = time.Second

// FarmConf is a host's configuration flattened: dotted field path to the
// value as ZkFarmer prints it.
type FarmConf map[string]string

// FarmHosts is a farm as exported: host name to configuration.
type FarmHosts map[string]FarmConf

// FarmLeave is how a joiner ended.
type FarmLeave uint8

// The ways a joiner ends.
const (
	// Stayed: still joined at the end of the run.
	Stayed FarmLeave = iota + 1
	// LeftClean: its Join was stopped and its session closed, the close
	// acknowledged at LeftAt. The host znode was gone by then.
	LeftClean
	// Killed: its Join was stopped at LeftAt with its session's
	// keepalives and no close (as kill -9 does), or with a close whose
	// outcome is unknown. The session must expire.
	Killed
)

// FarmJoiner is one run of a joiner under one host name, from its start
// to its end. A name may be joined again after a joiner of it ended.
type FarmJoiner struct {
	Name string
	// Timeout is its sessions' timeout.
	Timeout time.Duration
	// Start is when Join was started: the host may be in the farm from
	// then on.
	Start time.Duration
	Leave FarmLeave
	// LeftAt dates the end (see FarmLeave).
	LeftAt time.Duration
	// Local is the joiner's local configuration at the end (Stayed).
	Local FarmConf
}

// FarmWrite is a value given to a host's field: written to its joiner's
// local file, or set remotely (a SetField call), whatever the outcome.
// Call is when the file was written or the call sent.
type FarmWrite struct {
	Host, Field, Value string
	Call               time.Duration
}

// FarmFile is one write of the exporter's file, changed or not.
type FarmFile struct {
	// Call is when the exporter asked for the write, Return when the
	// write had returned (the file was renamed in between).
	Call, Return time.Duration
	Hosts        FarmHosts
}

// FarmSeen is what the exporter learned of a host from one answer of the
// cluster: present (a poll's created or changed event, a read of the
// host or of the farm that found it) or gone (a poll's deleted event, a
// read that did not find it).
type FarmSeen struct {
	// At is when the answer reached the exporter.
	At      time.Duration
	Host    string
	Present bool
}

// FarmHistory is what a farm workload recorded.
type FarmHistory struct {
	Joiners []FarmJoiner
	Writes  []FarmWrite
	// Files are the exporter's writes, in order.
	Files []FarmFile
	// Seen is what the exporter learned of the hosts, in the order it
	// was received.
	Seen []FarmSeen
	// FinalFile is the exporter's file at the end, FinalFarm the farm read
	// linearizably then (at End), once both had settled.
	FinalFile, FinalFarm FarmHosts
	End                  time.Duration
	// ExporterLag is how long the exporter may go on trusting a node
	// that has stopped answering or has been cut off from the leader
	// before it moves to another: its poll timeout plus the Go client's
	// grace (a cut-off node ends its polls sooner, within a heartbeat
	// timeout). It is part of every leave's bound.
	ExporterLag time.Duration
}

// learned says when the exporter first learned that host was gone after
// from, for the report.
func learned(seen []FarmSeen, host string, from time.Duration) string {
	for _, o := range seen {
		if o.Host == host && !o.Present && o.At >= from {
			return o.At.String()
		}
	}
	return "no time (never)"
}

// Farm checks a farm workload's history: joiners, an exporter and remote
// field changes under faults. electionTimeout is the cluster's;
// leaderChanges are the times, in order, at which a leader of a new term
// was first seen; pauses are when a leader was stopped (SIGSTOP to
// SIGCONT); writes are the run's other writes, for commit stalls (see
// IdleNodes).
//
// The rules:
//
//   - Final: the exporter's final file equals the farm read at the end;
//     every joiner that stayed is in the farm, with its local
//     configuration; no host that left (and did not join again) is in
//     the farm once its bound (below) has passed.
//   - Leave bound: no host is in the exporter's file past its bound after
//     it left, unless it joined again meanwhile. A file is surely the one
//     on disk from its write's return to the next write's call, so a host
//     is exported past its bound when a file holding it was surely on
//     disk at some time t past the bound. The bound counts from start, the
//     later of the leave and the last leader change before t: a leave
//     acknowledged at start must be exported by start + 1 s; a killed
//     joiner's session expires by start + 2 x timeout + election
//     timeout, as Sessions bounds abandoned sessions, and its host must
//     be exported 1 s after that. An expiry is a write, so it is late
//     when the cluster commits nothing: a killed joiner's bound is also
//     at least 1 s after the first acknowledged write (writes) sent once
//     its session was due to expire. A pause that overlaps the time
//     from start to the bound pushes the bound to the pause's end +
//     election timeout + 1 s: a stopped leader that resumes still leading
//     expires sessions and tells the followers what committed only after
//     it resumes (see IdleNodes). And the exporter must have learned
//     that the host was gone 1 s before t (Seen): it follows the farm
//     through one node, which by design may be a replica cut off from the
//     leader (an isolated follower, one behind a one-way cut, one waiting
//     for a snapshot). Such a node serves its last state without any
//     leader change until it catches up, and the leader's retries to a
//     follower that was cut off back off for seconds, so no bound counted
//     from the leader history holds for it.
//   - No phantom: every host in a file (and in the final farm) was joined
//     by a joiner started before the write returned, and every field
//     value was given to that host's field by a write sent before then.
//
// What it does not check: how soon a field change reaches the file. A
// local change reaches the farm only when its joiner's client reaches
// the leader, and the exporter sees it only when its node has caught up;
// neither wait shows in the leader history. An exporter that stops
// learning (a poll that never resumes) escapes the leave bound, which
// needs it to have learned; the final rule catches it once the run has
// settled.
//
// The recorder must give every value it writes to a host's field a value
// no other write uses for that host and field, and record every write
// whatever its outcome; stop the joiners' and the remote writers'
// changes, and let every killed joiner's bound pass, before it reads the
// final file and farm.
func Farm(h FarmHistory, electionTimeout time.Duration, leaderChanges []time.Duration, pauses []Span, writes []Call) []Violation {
	r := report{check: "farm"}
	writes = slices.Clone(writes)
	slices.SortFunc(writes, func(a, b Call) int { return cmp.Compare(a.Call, b.Call) })
	files := slices.Clone(h.Files)
	slices.SortStableFunc(files, func(a, b FarmFile) int { return cmp.Compare(a.Call, b.Call) })
	joiners := slices.Clone(h.Joiners)
	slices.SortStableFunc(joiners, func(a, b FarmJoiner) int { return cmp.Compare(a.Start, b.Start) })

	// bound is when joiner j's host must be out of the file, judged at
	// time at, and what it counted from.
	bound := func(j FarmJoiner, at time.Duration) (time.Duration, string) {
		start := j.LeftAt
		from := fmt.Sprintf("its leave at %v", j.LeftAt)
		if i, _ := slices.BinarySearch(leaderChanges, at); i > 0 && leaderChanges[i-1] > start {
			start = leaderChanges[i-1]
			from = fmt.Sprintf("the leader change at %v after its leave at %v", start, j.LeftAt)
		}
		// A paused leader that resumes still leading acts (expires the
		// session, tells the followers what committed) only after SIGCONT.
		paused := func(b time.Duration) (time.Duration, string) {
			if pb := pastPauses(start, b, pauses, electionTimeout+h.ExporterLag+farmGrace); pb > b {
				return pb, from + ", and a pause of the leader"
			}
			return b, from
		}
		if j.Leave == LeftClean {
			return paused(start + h.ExporterLag + farmGrace)
		}
		due := start + 2*j.Timeout
		b := due + electionTimeout + h.ExporterLag + farmGrace
		if c, ok := firstCommit(writes, due); ok && c+h.ExporterLag+farmGrace > b {
			b = c + h.ExporterLag + farmGrace
			from += fmt.Sprintf(", and the first write acknowledged after its expiry was due (%v) at %v", due, c)
		}
		return paused(b)
	}
	history := func(at time.Duration) string {
		i, _ := slices.BinarySearch(leaderChanges, at)
		return fmt.Sprintf("leaders seen at %v", leaderChanges[:i])
	}

	farmFinal(&r, h, joiners, bound, history)

	for k, j := range joiners {
		if j.Leave != LeftClean && j.Leave != Killed {
			continue
		}
		rejoin := time.Duration(-1) // none
		for _, o := range joiners[k+1:] {
			if o.Name == j.Name && o.Start >= j.LeftAt {
				rejoin = o.Start
				break
			}
		}
		for i, f := range files {
			if _, ok := f.Hosts[j.Name]; !ok {
				continue
			}
			// The file was surely on disk from f.Return to until.
			until, what := h.End, "the end"
			if i+1 < len(files) {
				until, what = files[i+1].Call, fmt.Sprintf("the next write at %v", files[i+1].Call)
			}
			if rejoin >= 0 && rejoin < until {
				until, what = rejoin, fmt.Sprintf("its join again at %v", rejoin)
			}
			if until <= f.Return {
				continue
			}
			// The bound only moves at leader changes: the file held the
			// host past it if it did at until or just before a leader
			// change while the file was on disk.
			ts := []time.Duration{until}
			for _, lc := range leaderChanges {
				if lc > f.Return && lc < until {
					ts = append(ts, lc)
				}
			}
			for _, t := range ts {
				if b, from := bound(j, t); t > b {
					r.addf("host %s (%s) was in the exported file past its bound %v, counted from %s: the file written at %v (returned %v) held it until %s; %s; the exporter learned it was gone at %s",
						j.Name, leaveWord(j), b, from, f.Call, f.Return, what, history(t), learned(h.Seen, j.Name, j.LeftAt))
					break
				}
			}
		}
	}

	farmPhantoms(&r, h, joiners, files)
	return r.violations()
}

// farmFinal checks the end of the run: the final file against the final
// farm, the joiners that stayed and those that left against the farm.
func farmFinal(r *report, h FarmHistory, joiners []FarmJoiner, bound func(FarmJoiner, time.Duration) (time.Duration, string), history func(time.Duration) string) {
	for _, name := range slices.Sorted(maps.Keys(h.FinalFarm)) {
		got, ok := h.FinalFile[name]
		switch {
		case !ok:
			r.addf("host %s is in the farm at the end (%v) but not in the exporter's final file", name, h.End)
		default:
			if d := confDiff(got, h.FinalFarm[name]); d != "" {
				r.addf("host %s in the exporter's final file differs from the farm at the end (%v): %s", name, h.End, d)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(h.FinalFile)) {
		if _, ok := h.FinalFarm[name]; !ok {
			r.addf("host %s is in the exporter's final file but not in the farm at the end (%v)", name, h.End)
		}
	}
	// The last joiner of each name decides what the farm must hold.
	last := make(map[string]FarmJoiner)
	for _, j := range joiners {
		last[j.Name] = j
	}
	for _, name := range slices.Sorted(maps.Keys(last)) {
		j := last[name]
		conf, in := h.FinalFarm[name]
		switch j.Leave {
		case Stayed:
			if !in {
				r.addf("host %s, joined at %v and never stopped, is not in the farm at the end (%v)", name, j.Start, h.End)
			} else if d := confDiff(j.Local, conf); d != "" {
				r.addf("host %s's local configuration differs from its znode at the end (%v): %s", name, h.End, d)
			}
		default:
			if b, from := bound(j, h.End); in && h.End > b {
				r.addf("host %s (%s) is still in the farm at the end (%v), past its bound %v counted from %s; %s", name, leaveWord(j), h.End, b, from, history(h.End))
			}
		}
	}
}

// farmPhantoms checks that every host and value exported was written.
func farmPhantoms(r *report, h FarmHistory, joiners []FarmJoiner, files []FarmFile) {
	firstJoin := make(map[string]time.Duration)
	for _, j := range joiners {
		if t, ok := firstJoin[j.Name]; !ok || j.Start < t {
			firstJoin[j.Name] = j.Start
		}
	}
	type key struct{ host, field, value string }
	firstWrite := make(map[key]time.Duration)
	for _, w := range h.Writes {
		k := key{w.Host, w.Field, w.Value}
		if t, ok := firstWrite[k]; !ok || w.Call < t {
			firstWrite[k] = w.Call
		}
	}
	reported := make(map[key]bool) // one violation per phantom
	judge := func(what string, at time.Duration, hosts FarmHosts) {
		for _, name := range slices.Sorted(maps.Keys(hosts)) {
			if t, ok := firstJoin[name]; !ok || t >= at {
				if k := (key{host: name}); !reported[k] {
					reported[k] = true
					r.addf("host %s is in %s (%v) but no joiner of it had started by then", name, what, at)
				}
				continue
			}
			conf := hosts[name]
			for _, field := range slices.Sorted(maps.Keys(conf)) {
				k := key{name, field, conf[field]}
				if t, ok := firstWrite[k]; (!ok || t >= at) && !reported[k] {
					reported[k] = true
					r.addf("host %s's field %s is %q in %s (%v) but no write had given it that value by then", name, field, conf[field], what, at)
				}
			}
		}
	}
	for _, f := range files {
		judge(fmt.Sprintf("the file written at %v", f.Call), f.Return, f.Hosts)
	}
	judge("the farm at the end", h.End, h.FinalFarm)
}

// sat is d, or the largest duration when adding the grace overflowed.
func sat(d time.Duration) time.Duration {
	if d < 0 {
		return math.MaxInt64
	}
	return d
}

func leaveWord(j FarmJoiner) string {
	if j.Leave == LeftClean {
		return fmt.Sprintf("left at %v", j.LeftAt)
	}
	return fmt.Sprintf("killed at %v, session timeout %v", j.LeftAt, j.Timeout)
}

// confDiff describes how got differs from want, "" when equal.
func confDiff(got, want FarmConf) string {
	var d []string
	for _, f := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[f]
		switch {
		case !ok:
			d = append(d, fmt.Sprintf("%s missing, want %q", f, want[f]))
		case g != want[f]:
			d = append(d, fmt.Sprintf("%s = %q, want %q", f, g, want[f]))
		}
	}
	for _, f := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[f]; !ok {
			d = append(d, fmt.Sprintf("%s = %q, want none", f, got[f]))
		}
	}
	return strings.Join(d, ", ")
}
