package check

import (
	"strconv"
	"testing"
	"time"
)

func TestWebSessions(t *testing.T) {
	// view is a page view on session s at second at: a read of version v
	// (the counter v-1) and a write of the counter v with outcome w (0:
	// none), returning version v+1 when OK.
	view := func(s string, worker int, at float64, v uint64, w WebOutcome) PageView {
		pv := PageView{
			Session: s, Worker: worker, ReadNodes: []string{"n1"},
			ReadCall: secs(at), ReadSent: secs(at), ReadReturn: secs(at) + 10*time.Millisecond, Read: WebOK,
			ReadVersion: v, ReadData: strconv.FormatUint(v-1, 10),
		}
		if v == 1 {
			pv.ReadData = ""
		}
		if w != 0 {
			pv.Write, pv.WriteData, pv.WriteNodes = w, strconv.FormatUint(v, 10), []string{"n2"}
			pv.WriteCall, pv.WriteReturn = secs(at)+20*time.Millisecond, secs(at)+30*time.Millisecond
			if w == WebOK {
				pv.WriteVersion = v + 1
			}
		}
		return pv
	}
	fin := func(s string, version uint64) WebSessionFinal {
		return WebSessionFinal{Session: s, Found: true, Version: version, Data: strconv.FormatUint(version-1, 10), At: secs(30)}
	}
	// Session a: five page views, one refused read, one refused write
	// (another view wrote first), one write of unknown outcome that
	// applied, ending at version 5 (4 increments). Session b: one OK
	// write and one unknown that did not apply: version 2.
	good := func() WebSessionHistory {
		locked := PageView{Session: "a", Worker: 3, ReadNodes: []string{"n3"}, ReadCall: secs(0.5), ReadSent: secs(0.5), ReadReturn: secs(2.5), Read: WebRefused}
		return WebSessionHistory{
			Sessions: []string{"a", "b"},
			Views: []PageView{
				view("a", 1, 0, 1, WebOK),
				locked,
				view("a", 2, 1, 2, WebOK),
				view("a", 1, 2, 3, WebRefused),
				view("a", 1, 3, 3, WebUnknown),
				view("a", 2, 4, 4, WebOK),
				view("b", 1, 0, 1, WebOK),
				view("b", 2, 1, 2, WebUnknown),
				view("b", 3, 2, 2, 0), // its read's lock lost, say: no write
			},
			Final: []WebSessionFinal{fin("a", 5), fin("b", 2)},
		}
	}
	// retried is worker 3's page view on session a whose read's first
	// attempt (at 3.9 s, on n2) was not answered, and whose second (at
	// 4.5 s, on n3) read version v, then wrote with outcome w.
	retried := func(v uint64, w WebOutcome) PageView {
		pv := view("a", 3, 3.9, v, w)
		pv.ReadNodes, pv.ReadSent, pv.ReadReturn, pv.ReadTimeouts = []string{"n2", "n3"}, secs(4.5), secs(4.51), 1
		pv.WriteCall, pv.WriteReturn = secs(4.52), secs(4.53)
		return pv
	}
	tests := []struct {
		name string
		edit func(h *WebSessionHistory)
		want []string // each must be in some violation; none: must pass
	}{
		{name: "every increment accounted for", edit: func(*WebSessionHistory) {}},
		{name: "an unknown write that applied last", edit: func(h *WebSessionHistory) {
			h.Final[1] = fin("b", 3)
		}},
		{name: "lost increment", edit: func(h *WebSessionHistory) {
			h.Final[0] = fin("a", 4)
		}, want: []string{"session a: lost increment: worker 2's write of version 5, acknowledged at 4.03s, is beyond the final version 4"}},
		{name: "lost increment: the last write acknowledged, not applied", edit: func(h *WebSessionHistory) {
			h.Views[7].Write, h.Views[7].WriteVersion = WebOK, 3 // b's second write
		}, want: []string{
			"session b: lost increment: 1 writes applied at the end (30s, version 2), 2 acknowledged",
			"session b: lost increment: worker 2's write of version 3, acknowledged at 1.03s, is beyond the final version 2",
			// Worker 3's read, sent after it returned, is stale.
			"session b: stale read: worker 3's read at 2s via [n1] returned version 2, but a write of version 3 had returned at 1.03s",
		}},
		{name: "doubled increment", edit: func(h *WebSessionHistory) {
			// Worker 3 read version 4 along with worker 2: both writes
			// acknowledged.
			h.Views = append(h.Views, view("a", 3, 4, 4, WebOK))
		}, want: []string{"session a: doubled increment: the writes of worker 2 at 4.02s (via [n2]) and worker 3 at 4.02s (via [n2]) both returned version 5"}},
		{name: "doubled increment counted", edit: func(h *WebSessionHistory) {
			h.Views[4].Write, h.Views[4].WriteVersion = WebOK, 4 // a's unknown write, from version 3
			h.Views = append(h.Views, view("a", 3, 4, 4, WebOK))
		}, want: []string{
			"session a: doubled increment: the writes of worker 2 at 4.02s (via [n2]) and worker 3 at 4.02s (via [n2]) both returned version 5",
			"session a: lost increment: 4 writes applied at the end (30s, version 5), 5 acknowledged",
		}},
		{name: "a value not the read plus one", edit: func(h *WebSessionHistory) {
			h.Views[6].WriteData = "2" // b's first, read ""
		}, want: []string{
			`session b: worker 1 wrote "2" at 20ms after reading "" at version 1: not the counter read plus one`,
			`session b: worker 2's read at 1s via [n1] returned version 2 with "1": no write that was OK or of unknown outcome made version 2 with "1"`,
			`session b: worker 3's read at 2s via [n1] returned version 2 with "1": no write that was OK or of unknown outcome made version 2 with "1"`,
			`session b: the final read at 30s returned version 2 with "1": no write that was OK or of unknown outcome made version 2 with "1"`,
		}},
		{name: "an OK write returning another version", edit: func(h *WebSessionHistory) {
			h.Views[5].WriteVersion = 7 // a's last
		}, want: []string{
			"session a: worker 2's write at 4.02s, of version 4, returned version 7, want 5",
			"session a: lost increment: worker 2's write of version 7, acknowledged at 4.03s, is beyond the final version 5",
		}},
		{name: "a final value beyond OK + unknown", edit: func(h *WebSessionHistory) {
			h.Final[1] = fin("b", 4)
		}, want: []string{
			"session b: 3 writes applied at the end (30s, version 4), more than the 1 acknowledged and 1 of unknown outcome",
			`session b: the final read at 30s returned version 4 with "3": no write that was OK or of unknown outcome made version 4 with "3"`,
		}},
		{name: "a refused write applied", edit: func(h *WebSessionHistory) {
			h.Views[4].Write = WebRefused // a's unknown write, from version 3
		}, want: []string{
			"session a: 4 writes applied at the end (30s, version 5), more than the 3 acknowledged and 0 of unknown outcome",
			"session a: versions [4] were applied (the final version is 5) but no write that was OK or of unknown outcome made them",
			`session a: worker 2's read at 4s via [n1] returned version 4 with "3": no write that was OK or of unknown outcome made version 4 with "3"`,
		}},
		{name: "a final counter that is not its version - 1", edit: func(h *WebSessionHistory) {
			h.Final[0].Data = "5"
		}, want: []string{`session a: the final read at 30s returned version 5 with "5": counter 5 at version 5, want 4`}},
		{name: "data that is not a counter", edit: func(h *WebSessionHistory) {
			h.Views[2].ReadData = "x" // a's read of version 2
		}, want: []string{
			`session a: worker 2 wrote "2" at 1.02s after reading "x" at version 2: not the counter read plus one`,
			`session a: worker 2's read at 1s via [n1] returned version 2 with "x": data "x" is not a counter`,
		}},
		{name: "a stale read", edit: func(h *WebSessionHistory) {
			h.Views = append(h.Views, view("a", 3, 5, 3, 0)) // after version 5 returned at 4.03s
		}, want: []string{"session a: stale read: worker 3's read at 5s via [n1] returned version 3, but a write of version 5 had returned at 4.03s"}},
		{name: "a retried read", edit: func(h *WebSessionHistory) {
			// Worker 3's first attempt, sent before worker 2's write of
			// version 5 returned, got no answer; the second, sent after,
			// read that version.
			h.Views = append(h.Views, retried(5, WebRefused))
		}},
		{name: "a stale retried read", edit: func(h *WebSessionHistory) {
			// The same read returned version 4, from before the write
			// its last attempt was sent after: stale, though its first
			// attempt was sent before the write returned.
			h.Views = append(h.Views, retried(4, 0))
		}, want: []string{"session a: stale read: worker 3's read at 3.9s (its last attempt sent at 4.5s) via [n2 n3] returned version 4, but a write of version 5 had returned at 4.03s"}},
		{name: "a session lost", edit: func(h *WebSessionHistory) {
			h.Final[1] = WebSessionFinal{Session: "b", At: secs(30)}
		}, want: []string{"session b: lost: not found at the end (30s), 1 writes acknowledged"}},
		{name: "no final read", edit: func(h *WebSessionHistory) {
			h.Final = h.Final[:1]
		}, want: []string{"session b: no final read"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := good()
			tc.edit(&h)
			vs := WebSessions(h)
			if len(tc.want) == 0 && len(vs) > 0 {
				t.Errorf("WebSessions() = %v, want none", vs)
			}
			if len(tc.want) > 0 && len(vs) != len(tc.want) {
				t.Errorf("WebSessions() = %v, want %d violations", vs, len(tc.want))
			}
			for _, want := range tc.want {
				if !hasViolation(vs, "websession", want) {
					t.Errorf("WebSessions() = %v, want a violation with %q", vs, want)
				}
			}
		})
	}
}
