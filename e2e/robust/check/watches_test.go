package check

import (
	"slices"
	"testing"
)

// runEvents are the changes of a small run, in zxid order: zxid 11 is a
// session expiry that deletes two ephemerals in one entry.
var runEvents = []WatchEvent{
	{Zxid: 2, Type: Created, Path: "/s"},
	{Zxid: 3, Type: Created, Path: "/r"},
	{Zxid: 4, Type: Created, Path: "/r/e1", Data: "e"},
	{Zxid: 5, Type: Created, Path: "/r/e2", Data: "e"},
	{Zxid: 6, Type: Created, Path: "/r/a", Data: "1"},
	{Zxid: 7, Type: Created, Path: "/r/b", Data: "2"},
	{Zxid: 8, Type: Changed, Path: "/r/a", Data: "3"},
	{Zxid: 9, Type: Created, Path: "/s/x", Data: "9"},
	{Zxid: 10, Type: Deleted, Path: "/r/b"},
	{Zxid: 11, Type: Deleted, Path: "/r/e1"},
	{Zxid: 11, Type: Deleted, Path: "/r/e2"},
	{Zxid: 12, Type: Changed, Path: "/r/a", Data: "4"},
}

// runFinal is the tree at the end of the run.
var runFinal = map[string]string{"/": "", "/r": "", "/s": "", "/r/a": "4", "/s/x": "9"}

// stream is the correct stream of a watcher of prefix from start, up to
// date with end.
func stream(name, prefix string, start, end uint64) WatchStream {
	s := WatchStream{Name: name, Prefix: prefix, Start: start, End: end}
	for _, e := range runEvents {
		if e.Zxid >= start && e.Zxid <= end && under(e.Path, prefix) {
			s.Events = append(s.Events, e)
		}
	}
	return s
}

// healthy is a set of streams that must pass: two full watchers, one of a
// subtree, one resumed at zxid 7 and one compacted after zxid 8.
func healthy() []WatchStream {
	compacted := stream("compacted", "/", 1, 8)
	compacted.Compacted = true
	return []WatchStream{
		stream("n1", "/", 1, 12),
		stream("n2", "/", 0, 13), // a progress report after the last event
		stream("sub", "/r", 1, 12),
		stream("resumed", "/", 7, 12),
		compacted,
	}
}

func TestWatches(t *testing.T) {
	tests := []struct {
		name   string
		change func(ss []WatchStream) []WatchStream
		want   []string // each must be in some violation; none: must pass
	}{
		{"healthy", func(ss []WatchStream) []WatchStream { return ss }, nil},
		{"events of one zxid in another order", func(ss []WatchStream) []WatchStream {
			ev := ss[1].Events
			i := slices.IndexFunc(ev, func(e WatchEvent) bool { return e.Zxid == 11 })
			ev[i], ev[i+1] = ev[i+1], ev[i]
			return ss
		}, nil},
		{"a compacted stream owes nothing after its end", func(ss []WatchStream) []WatchStream {
			return []WatchStream{ss[4]}
		}, nil},
		{"End below the last event is taken as the last event", func(ss []WatchStream) []WatchStream {
			ss[0].End = 3
			return ss
		}, nil},

		{"gap in one stream", func(ss []WatchStream) []WatchStream {
			ss[1].Events = slices.DeleteFunc(ss[1].Events, func(e WatchEvent) bool { return e.Zxid == 10 })
			return ss
		}, []string{
			"n1 and n2 disagree over zxids 1..12 under /: after 8 equal events n1 has zxid 10 deleted /r/b, n2 has zxid 11 deleted /r/e1",
			`n2 replayed from an empty tree differs from the final tree under /: /r/b ("2") does not exist but the replay has it`,
		}},
		{"gap at the end of a stream that claims to be up to date", func(ss []WatchStream) []WatchStream {
			ss[3].Events = ss[3].Events[:len(ss[3].Events)-1]
			return ss
		}, []string{`n1 and resumed disagree over zxids 7..12 under /: after 6 equal events n1 has zxid 12 changed /r/a "4", resumed has nothing more`}},
		{"gap in every stream", func(ss []WatchStream) []WatchStream {
			for i := range ss {
				ss[i].Events = slices.DeleteFunc(ss[i].Events, func(e WatchEvent) bool { return e.Zxid == 10 })
			}
			return ss
		}, []string{
			`n1 replayed from an empty tree differs from the final tree under /: /r/b ("2") does not exist but the replay has it`,
			`sub replayed from an empty tree differs from the final tree under /r: /r/b ("2") does not exist but the replay has it`,
		}},
		{"lost creation", func(ss []WatchStream) []WatchStream {
			ss[2].Events = slices.DeleteFunc(ss[2].Events, func(e WatchEvent) bool { return e.Zxid == 7 })
			return ss
		}, []string{"sub: replaying event #5 (zxid 10 deleted /r/b) deletes a path that does not exist"}},
		{"duplicate event", func(ss []WatchStream) []WatchStream {
			ev := ss[1].Events
			i := slices.IndexFunc(ev, func(e WatchEvent) bool { return e.Zxid == 8 })
			ss[1].Events = slices.Insert(ev, i+1, ev[i])
			return ss
		}, []string{`n2 received event #7 twice, first as #6: zxid 8 changed /r/a "3"`}},
		{"zxids going back", func(ss []WatchStream) []WatchStream {
			ev := ss[0].Events
			i := slices.IndexFunc(ev, func(e WatchEvent) bool { return e.Zxid == 8 })
			ev[i], ev[i+1] = ev[i+1], ev[i]
			return ss
		}, []string{`n1 received event #7 (zxid 8 changed /r/a "3") after #6 (zxid 9 created /s/x "9"): zxids went back`}},
		{"event below the start", func(ss []WatchStream) []WatchStream {
			ss[3].Events = append([]WatchEvent{runEvents[4]}, ss[3].Events...)
			return ss
		}, []string{`resumed (start 7) received event #0 below its start: zxid 6 created /r/a "1"`}},
		{"event outside the prefix", func(ss []WatchStream) []WatchStream {
			ss[2].Events = append(ss[2].Events, WatchEvent{Zxid: 12, Type: Changed, Path: "/s/x", Data: "0"})
			return ss
		}, []string{`sub (prefix /r) received event #10 outside its prefix: zxid 12 changed /s/x "0"`}},
		{"wrong data", func(ss []WatchStream) []WatchStream {
			i := slices.IndexFunc(ss[2].Events, func(e WatchEvent) bool { return e.Zxid == 12 })
			ss[2].Events[i].Data = "X"
			return ss
		}, []string{
			`n1 and sub disagree over zxids 1..12 under /r: after 9 equal events n1 has zxid 12 changed /r/a "4", sub has zxid 12 changed /r/a "X"`,
			`sub replayed from an empty tree differs from the final tree under /r: /r/a holds "4" but the replay gives "X"`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vs := Watches(tc.change(healthy()), runFinal)
			if len(tc.want) == 0 && len(vs) > 0 {
				t.Errorf("Watches() = %v, want none", vs)
			}
			for _, want := range tc.want {
				if !hasViolation(vs, "watches", want) {
					t.Errorf("Watches() = %v, want a violation with %q", vs, want)
				}
			}
		})
	}
}

func TestWatchesFinal(t *testing.T) {
	tests := []struct {
		name  string
		final map[string]string
		want  string
	}{
		{"znode missing at the end", map[string]string{"/r": "", "/s": "", "/s/x": "9"}, `/r/a ("4") does not exist but the replay has it`},
		{"znode never seen created", map[string]string{"/r": "", "/s": "", "/s/x": "9", "/r/a": "4", "/r/z": "z"}, `/r/z ("z") exists but the replay lacks it`},
		{"other data at the end", map[string]string{"/r": "", "/s": "", "/s/x": "9", "/r/a": "5"}, `/r/a holds "5" but the replay gives "4"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vs := Watches(healthy(), tc.final)
			if !hasViolation(vs, "watches", tc.want) {
				t.Errorf("Watches() = %v, want a violation with %q", vs, tc.want)
			}
		})
	}
}
