package check

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// WebOutcome is what a page view's client learned of one call.
type WebOutcome uint8

// The outcomes of a web session call.
const (
	// WebOK: the cluster answered with success.
	WebOK WebOutcome = iota + 1
	// WebRefused: the cluster refused and changed nothing: a read whose
	// wait for the lock ran out (ABORTED), a write that found the session
	// at another version or its lock held by another token
	// (FAILED_PRECONDITION).
	WebRefused
	// WebUnknown: the client gave up (timeouts, no node answering, on
	// every retry of the same request id): a write may apply at any time.
	WebUnknown
)

func (o WebOutcome) String() string {
	switch o {
	case WebOK:
		return "ok"
	case WebRefused:
		return "refused"
	case WebUnknown:
		return "unknown"
	case 0:
		return "not made"
	}
	return fmt.Sprintf("WebOutcome(%d)", int(o))
}

// PageView is one page view on a web session whose data is a decimal
// counter: a read with the lock, then, when the read succeeded, a write
// of the counter plus one with the version and the lock's token read.
type PageView struct {
	Session string
	Worker  int
	// ReadNodes are the nodes the read was sent to, in order: the next
	// one after an attempt that could not be served or was not answered
	// in time, with the same request id (an attempt of the read the lock
	// was granted to gets the same lock back); the last one answered an
	// OK or refused read. ReadCall is when the read was first sent,
	// ReadSent when its last attempt was, ReadReturn when the last answer
	// arrived or the client gave up. ReadTimeouts counts the attempts not
	// answered in time (their outcome unknown: they may have been granted
	// the lock).
	ReadNodes                      []string
	ReadCall, ReadSent, ReadReturn time.Duration
	ReadTimeouts                   int `json:",omitempty"`
	Read                           WebOutcome
	// ReadVersion and ReadData are what an OK read returned.
	ReadVersion uint64
	ReadData    string
	// Write is 0 when no write was made (the read did not succeed).
	// WriteData is the data written with ReadVersion; WriteNodes the
	// nodes the write was sent to, in order (retries carried the same
	// request id); WriteCall is when it was first sent, WriteReturn when
	// the last answer arrived or the client gave up.
	Write                  WebOutcome
	WriteData              string
	WriteNodes             []string
	WriteCall, WriteReturn time.Duration
	// WriteVersion is the new version an OK write returned.
	WriteVersion uint64
	// Delayed says the write was made in the delayed mode (answered from
	// the leader's and its backups' memory, committed after); the rules
	// are the same.
	Delayed bool `json:",omitempty"`
	// ReadErr and WriteErr are the errors of a read's and of a write's
	// last attempt that did not succeed (of a read or write that did in
	// the end too), for a look at a run.
	ReadErr, WriteErr string `json:",omitempty"`
}

// WebSessionFinal is a session as read, without the lock, once the
// workload had stopped and the cluster had healed.
type WebSessionFinal struct {
	Session string
	// Found is false when the cluster said the session did not exist.
	Found   bool
	Version uint64
	Data    string
	At      time.Duration
}

// WebSessionHistory is what a web session workload recorded.
type WebSessionHistory struct {
	// Sessions were created (version 1, empty data) before any page view
	// and never destroyed, and nothing but the page views wrote them.
	Sessions []string
	Views    []PageView
	Final    []WebSessionFinal
}

// counter is data as the workload's counter: "" is 0.
func counter(data string) (uint64, bool) {
	if data == "" {
		return 0, true
	}
	n, err := strconv.ParseUint(data, 10, 64)
	return n, err == nil && strconv.FormatUint(n, 10) == data
}

// WebSessions checks a web session workload's history: page views that
// increment a counter under the session's lock, under faults.
//
// The rules follow from the store's contract: CreateWebSession makes
// version 1 with empty data (the counter 0), and a write applies only at
// the version it carries, making that version + 1. The workload writes
// the counter it read plus one, so every state of a session is a version
// v with the counter v - 1, and the writes applied to it form a chain
// from version 1, one applied write per version.
//
//   - Writes: every write's data is the counter it read plus one; an OK
//     write returned the version it read plus one; no two OK writes of a
//     session returned the same version (a doubled increment: two page
//     views both applied on the same state).
//   - Reads: every OK read (and the final read) holds a counter equal to
//     its version - 1, a state some write that was not refused made (or
//     the creation); a read whose answering attempt was sent after an OK
//     write returned is not at an older version than that write's (a
//     stale read under the lock). An attempt reads what it returns after
//     it arrives, so the window starts at the last attempt (ReadSent),
//     not the first: a write acknowledged while an earlier attempt of
//     the read waited in vain is in it.
//   - Final: the session exists, its counter is its version - 1, that is
//     the number of writes applied; it is at least the number of OK
//     writes and no OK write's version is beyond it (no lost increment),
//     and each version from 2 up to it was made by a write that was OK or
//     of unknown outcome (nothing applied that was refused or never
//     attempted), so it is at most OK + unknown.
//
// What it does not check: how long locks were held or waited for, and
// whether a refused write was refused rightly (a refusal changes nothing,
// which the chain checks).
func WebSessions(h WebSessionHistory) []Violation {
	r := report{check: "websession"}
	views := make(map[string][]PageView)
	for _, v := range h.Views {
		views[v.Session] = append(views[v.Session], v)
	}
	final := make(map[string]WebSessionFinal)
	for _, f := range h.Final {
		final[f.Session] = f
	}
	for _, s := range h.Sessions {
		f, ok := final[s]
		if !ok {
			r.addf("session %s: no final read", s)
			continue
		}
		webSession(&r, s, views[s], f)
	}
	return r.violations()
}

func webSession(r *report, s string, views []PageView, f WebSessionFinal) {
	// made[v] counts the writes that may have made version v: OK or
	// unknown, each writing the data it read plus one.
	type state struct {
		version uint64
		data    string
	}
	made := make(map[state]bool)
	var oks []PageView
	unknown := 0
	for _, v := range views {
		if v.Write == 0 {
			continue
		}
		n, ok := counter(v.ReadData)
		if want := strconv.FormatUint(n+1, 10); !ok || v.WriteData != want {
			r.addf("session %s: worker %d wrote %q at %v after reading %q at version %d: not the counter read plus one", s, v.Worker, v.WriteData, v.WriteCall, v.ReadData, v.ReadVersion)
		}
		switch v.Write {
		case WebOK:
			if v.WriteVersion != v.ReadVersion+1 {
				r.addf("session %s: worker %d's write at %v, of version %d, returned version %d, want %d", s, v.Worker, v.WriteCall, v.ReadVersion, v.WriteVersion, v.ReadVersion+1)
			}
			oks = append(oks, v)
			made[state{v.ReadVersion + 1, v.WriteData}] = true
		case WebUnknown:
			unknown++
			made[state{v.ReadVersion + 1, v.WriteData}] = true
		}
	}
	// A doubled increment: two OK writes returned the same version.
	slices.SortStableFunc(oks, func(a, b PageView) int { return cmp.Compare(a.WriteVersion, b.WriteVersion) })
	for i := 1; i < len(oks); i++ {
		if a, b := oks[i-1], oks[i]; a.WriteVersion == b.WriteVersion {
			r.addf("session %s: doubled increment: the writes of worker %d at %v (via %v) and worker %d at %v (via %v) both returned version %d",
				s, a.Worker, a.WriteCall, a.WriteNodes, b.Worker, b.WriteCall, b.WriteNodes, a.WriteVersion)
		}
	}

	// reachable says whether a state could have been made, and why not.
	reachable := func(version uint64, data string) string {
		n, ok := counter(data)
		switch {
		case !ok:
			return fmt.Sprintf("data %q is not a counter", data)
		case version == 0:
			return "the session does not exist"
		case n != version-1:
			return fmt.Sprintf("counter %d at version %d, want %d", n, version, version-1)
		case version == 1 && data != "":
			return fmt.Sprintf("data %q at version 1, the creation's is empty", data)
		case version > 1 && !made[state{version, data}]:
			return fmt.Sprintf("no write that was OK or of unknown outcome made version %d with %q", version, data)
		}
		return ""
	}

	// The stale reads: acks are the OK writes in the order they returned,
	// with the highest version returned so far.
	acks := slices.Clone(oks)
	slices.SortFunc(acks, func(a, b PageView) int { return cmp.Compare(a.WriteReturn, b.WriteReturn) })
	upTo := make([]uint64, len(acks))
	for i, a := range acks {
		upTo[i] = a.WriteVersion
		if i > 0 {
			upTo[i] = max(upTo[i], upTo[i-1])
		}
	}
	acked := func(at time.Duration) (uint64, time.Duration) {
		i, _ := slices.BinarySearchFunc(acks, at, func(a PageView, t time.Duration) int { return cmp.Compare(a.WriteReturn, t) })
		if i == 0 {
			return 0, 0
		}
		return upTo[i-1], acks[i-1].WriteReturn
	}
	for _, v := range views {
		if v.Read != WebOK {
			continue
		}
		if why := reachable(v.ReadVersion, v.ReadData); why != "" {
			r.addf("session %s: worker %d's read at %v via %v returned version %d with %q: %s", s, v.Worker, v.ReadCall, v.ReadNodes, v.ReadVersion, v.ReadData, why)
		}
		// ReadSent is 0 in a history that did not record it: the one
		// attempt was sent at ReadCall.
		sent := max(v.ReadCall, v.ReadSent)
		if w, at := acked(sent); v.ReadVersion < w {
			retried := ""
			if sent != v.ReadCall {
				retried = fmt.Sprintf(" (its last attempt sent at %v)", sent)
			}
			r.addf("session %s: stale read: worker %d's read at %v%s via %v returned version %d, but a write of version %d had returned at %v", s, v.Worker, v.ReadCall, retried, v.ReadNodes, v.ReadVersion, w, at)
		}
	}

	if !f.Found {
		r.addf("session %s: lost: not found at the end (%v), %d writes acknowledged", s, f.At, len(oks))
		return
	}
	if why := reachable(f.Version, f.Data); why != "" {
		r.addf("session %s: the final read at %v returned version %d with %q: %s", s, f.At, f.Version, f.Data, why)
	}
	applied := f.Version - 1 // the creation made version 1
	if n := uint64(len(oks)); applied < n {
		r.addf("session %s: lost increment: %d writes applied at the end (%v, version %d), %d acknowledged", s, applied, f.At, f.Version, n)
	}
	if n := uint64(len(oks) + unknown); applied > n {
		r.addf("session %s: %d writes applied at the end (%v, version %d), more than the %d acknowledged and %d of unknown outcome", s, applied, f.At, f.Version, len(oks), unknown)
	}
	var missing []uint64
	for k := uint64(2); k < f.Version; k++ { // f.Version itself: reachable
		if !made[state{k, strconv.FormatUint(k-1, 10)}] {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		more := ""
		if len(missing) > 10 {
			more, missing = fmt.Sprintf(" and %d more", len(missing)-10), missing[:10]
		}
		r.addf("session %s: versions %v%s were applied (the final version is %d) but no write that was OK or of unknown outcome made them", s, missing, more, f.Version)
	}
	for _, w := range oks {
		if w.WriteVersion > f.Version {
			r.addf("session %s: lost increment: worker %d's write of version %d, acknowledged at %v, is beyond the final version %d", s, w.Worker, w.WriteVersion, w.WriteReturn, f.Version)
		}
	}
}
