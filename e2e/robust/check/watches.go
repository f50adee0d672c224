package check

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Watches checks the watch streams against each other and against final,
// the path -> data of every znode under the watched prefixes at the end of
// the run, read after the writes stopped.
//
// Per stream it reports an event outside the stream's Prefix, an event
// below Start, a zxid lower than the one before it (events sharing a zxid
// are fine: one entry can change several znodes), and an event received
// twice (same zxid, path and type). A stream's End is taken as at least
// its last event's zxid.
//
// Across streams, any two streams whose prefixes nest are compared over
// the zxids both cover, from the larger Start to the smaller End, under
// the narrower prefix: their events (zxid, type, path, data; events of one
// zxid in a canonical order) must be the same. A lost, extra or wrong
// event in one of them shows as the first difference (events out of zxid
// order are the per-stream check's).
//
// Then every complete stream (not Compacted, Start <= 1 or its first event
// at the run's first zxid, End at least the last zxid any stream
// received) is replayed from an empty tree: Created sets path -> data,
// Changed sets the data, Deleted removes the path; other types and events
// outside the prefix are skipped. A Created of an existing path or a
// Changed or Deleted of a missing one is reported, and the result must
// equal final restricted to the stream's strict subtree (the prefix znode
// itself and the root "/" are left out, so final may hold them or not).
//
// What this cannot see: a gap shared by all streams over a range no
// complete stream covers (the comparison needs two streams that differ,
// the replay one complete stream); a stream's missing tail after its End
// (End is the recorder's word for how far the stream is complete, and a
// Compacted stream owes nothing after it); the order of events inside one
// zxid; and Seen times (delivery latency is not judged). The replay
// assumes nothing existed under the prefix before the run's first zxid
// and that final was read after every write the streams reach; a stream
// stopped before the last write is not complete in that sense but cannot
// be told apart, so the caller must stop its watchers after the final
// read's zxid.
func Watches(streams []WatchStream, final map[string]string) []Violation {
	r := report{check: "watches"}
	ends := make([]uint64, len(streams))
	var runFirst, runLast uint64
	haveFirst := false
	for i, s := range streams {
		ends[i] = s.End
		if n := len(s.Events); n > 0 {
			ends[i] = max(ends[i], s.Events[n-1].Zxid)
			if !haveFirst || s.Events[0].Zxid < runFirst {
				runFirst, haveFirst = s.Events[0].Zxid, true
			}
			for _, e := range s.Events {
				runLast = max(runLast, e.Zxid)
			}
		}
		checkStream(&r, s)
	}

	for i := range streams {
		for j := i + 1; j < len(streams); j++ {
			compareStreams(&r, streams[i], ends[i], streams[j], ends[j])
		}
	}

	for i, s := range streams {
		complete := !s.Compacted && ends[i] >= runLast &&
			(s.Start <= 1 || len(s.Events) > 0 && s.Events[0].Zxid == runFirst)
		if complete {
			replayStream(&r, s, final)
		}
	}
	return r.violations()
}

// under reports whether path is prefix or below it.
func under(path, prefix string) bool {
	if prefix == "/" {
		return strings.HasPrefix(path, "/")
	}
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

func eventTypeName(t EventType) string {
	switch t {
	case Created:
		return "created"
	case Changed:
		return "changed"
	case Deleted:
		return "deleted"
	}
	return fmt.Sprintf("type(%d)", t)
}

func describeEvent(e WatchEvent) string {
	if e.Type == Deleted {
		return fmt.Sprintf("zxid %d %s %s", e.Zxid, eventTypeName(e.Type), e.Path)
	}
	return fmt.Sprintf("zxid %d %s %s %q", e.Zxid, eventTypeName(e.Type), e.Path, e.Data)
}

func checkStream(r *report, s WatchStream) {
	type eventID struct {
		zxid uint64
		typ  EventType
		path string
	}
	seen := map[eventID]int{}
	for i, e := range s.Events {
		if !under(e.Path, s.Prefix) {
			r.addf("%s (prefix %s) received event #%d outside its prefix: %s", s.Name, s.Prefix, i, describeEvent(e))
		}
		if e.Zxid < s.Start {
			r.addf("%s (start %d) received event #%d below its start: %s", s.Name, s.Start, i, describeEvent(e))
		}
		if i > 0 && e.Zxid < s.Events[i-1].Zxid {
			r.addf("%s received event #%d (%s) after #%d (%s): zxids went back", s.Name, i, describeEvent(e), i-1, describeEvent(s.Events[i-1]))
		}
		id := eventID{e.Zxid, e.Type, e.Path}
		if j, dup := seen[id]; dup {
			r.addf("%s received event #%d twice, first as #%d: %s", s.Name, i, j, describeEvent(e))
			continue
		}
		seen[id] = i
	}
}

// compareStreams compares a and b over the zxids and the subtree both
// cover; aEnd and bEnd are their effective ends.
func compareStreams(r *report, a WatchStream, aEnd uint64, b WatchStream, bEnd uint64) {
	prefix := b.Prefix
	switch {
	case under(b.Prefix, a.Prefix):
	case under(a.Prefix, b.Prefix):
		prefix = a.Prefix
	default:
		return
	}
	lo, hi := max(a.Start, b.Start), min(aEnd, bEnd)
	if lo > hi {
		return
	}
	pick := func(s WatchStream) []WatchEvent {
		var out []WatchEvent
		for _, e := range s.Events {
			if e.Zxid >= lo && e.Zxid <= hi && under(e.Path, prefix) {
				out = append(out, e)
			}
		}
		slices.SortStableFunc(out, func(x, y WatchEvent) int {
			return cmp.Or(cmp.Compare(x.Zxid, y.Zxid), cmp.Compare(x.Path, y.Path), cmp.Compare(x.Type, y.Type), cmp.Compare(x.Data, y.Data))
		})
		return out
	}
	ea, eb := pick(a), pick(b)
	same := func(x, y WatchEvent) bool {
		return x.Zxid == y.Zxid && x.Type == y.Type && x.Path == y.Path && x.Data == y.Data
	}
	for k := 0; k < max(len(ea), len(eb)); k++ {
		if k < len(ea) && k < len(eb) && same(ea[k], eb[k]) {
			continue
		}
		what := func(es []WatchEvent) string {
			if k < len(es) {
				return describeEvent(es[k])
			}
			return "nothing more"
		}
		r.addf("%s and %s disagree over zxids %d..%d under %s: after %d equal events %s has %s, %s has %s",
			a.Name, b.Name, lo, hi, prefix, k, a.Name, what(ea), b.Name, what(eb))
		return
	}
}

// replayStream applies a complete stream to an empty tree and compares
// the result with final under the stream's prefix.
func replayStream(r *report, s WatchStream, final map[string]string) {
	tree := map[string]string{}
	for i, e := range s.Events {
		if !under(e.Path, s.Prefix) {
			continue // reported by checkStream
		}
		_, exists := tree[e.Path]
		switch e.Type {
		case Created:
			if exists {
				r.addf("%s: replaying event #%d (%s) creates a path that exists", s.Name, i, describeEvent(e))
			}
			tree[e.Path] = e.Data
		case Changed:
			if !exists {
				r.addf("%s: replaying event #%d (%s) changes a path that does not exist", s.Name, i, describeEvent(e))
			}
			tree[e.Path] = e.Data
		case Deleted:
			if !exists {
				r.addf("%s: replaying event #%d (%s) deletes a path that does not exist", s.Name, i, describeEvent(e))
			}
			delete(tree, e.Path)
		}
	}
	compared := func(path string) bool { return path != "/" && path != s.Prefix && under(path, s.Prefix) }
	var diffs []string
	for path, data := range final {
		if !compared(path) {
			continue
		}
		got, ok := tree[path]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("%s (%q) exists but the replay lacks it", path, data))
		case got != data:
			diffs = append(diffs, fmt.Sprintf("%s holds %q but the replay gives %q", path, data, got))
		}
	}
	for path, data := range tree {
		if _, ok := final[path]; compared(path) && !ok {
			diffs = append(diffs, fmt.Sprintf("%s (%q) does not exist but the replay has it", path, data))
		}
	}
	if len(diffs) == 0 {
		return
	}
	slices.Sort(diffs)
	const most = 5
	more := ""
	if len(diffs) > most {
		more = fmt.Sprintf("; and %d more", len(diffs)-most)
	}
	r.addf("%s replayed from an empty tree differs from the final tree under %s: %s%s", s.Name, s.Prefix, strings.Join(diffs[:min(len(diffs), most)], "; "), more)
}
