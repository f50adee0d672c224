package check

import (
	"reflect"
	"testing"
	"time"
)

func TestElection(t *testing.T) {
	const election = time.Second
	const dir = "/paddock/elections/e"
	keyA, keyB, keyC := dir+"/0000000000-1", dir+"/0000000001-2", dir+"/0000000002-3"
	w := func(who string, token uint64, call, ret float64, o FenceOutcome, zxid uint64) FencedWrite {
		return FencedWrite{Contender: who, Token: token, Path: "/elect/" + who + "-" + itoa(zxid), Call: secs(call), Return: secs(ret), Outcome: o, Zxid: zxid}
	}
	// A (token 10) leads from zxid 10; it is killed at 3 s and its
	// session expires at zxid 30. B (token 12, in line since 0.15 s) leads
	// from then, is told at 5.1 s, resigns at 8 s (zxid 50). C (token 40)
	// leads from zxid 50. n1 is isolated from 9.5 s to 11 s. Session
	// timeout 2 s: a new leader is due 2+1+1 = 4 s after each event.
	good := func() ElectionHistory {
		h := ElectionHistory{
			Name: "e",
			Campaigns: []Campaign{
				{Contender: "a", Session: 1, Call: secs(0.1), Return: secs(0.2), Answered: true, Elected: true, Key: keyA, Token: 10, Zxid: 10},
				{Contender: "b", Session: 2, Call: secs(0.15), Return: secs(1.2), Answered: true, Key: keyB, Token: 12, Zxid: 20},
				{Contender: "b", Session: 2, Call: secs(1.2), Return: secs(5.1), Answered: true, Elected: true, Key: keyB, Token: 12, Zxid: 30},
				{Contender: "c", Session: 3, Call: secs(6), Return: secs(7), Answered: true, Key: keyC, Token: 40, Zxid: 46},
				{Contender: "c", Session: 3, Call: secs(7), Return: secs(8.05), Answered: true, Elected: true, Key: keyC, Token: 40, Zxid: 50},
				{Contender: "c", Session: 3, Call: secs(7), Return: secs(7.2)}, // an error
			},
			Writes: []FencedWrite{
				w("a", 10, 0.3, 0.35, FenceOK, 15),
				w("a", 10, 1.5, 1.55, FenceOK, 20),
				w("a", 10, 2.5, 2.55, FenceOK, 25),
				w("a", 10, 2.9, 3.0, FenceUnknown, 0),
				w("b", 12, 5.2, 5.25, FenceOK, 33),
				w("b", 12, 6, 6.1, FenceOK, 45),
				w("b", 12, 8.2, 8.25, FenceLost, 0),
				w("c", 40, 8.1, 8.15, FenceOK, 55),
				w("c", 40, 9, 9.05, FenceOK, 60),
				w("c", 40, 11.2, 11.3, FenceOK, 62),
			},
			Candidates: []Candidate{
				{Key: keyA, Token: 10, Deleted: 30},
				{Key: keyB, Token: 12, Deleted: 50},
				{Key: keyC, Token: 40, Present: true},
			},
			Reads: []LeaderRead{
				{Call: secs(1), Return: secs(1.05), Zxid: 20, Token: 10},
				{Call: secs(4), Return: secs(4.05), Zxid: 28, Token: 10},
				{Call: secs(5.5), Return: secs(5.55), Zxid: 33, Token: 12},
				{Call: secs(12), Return: secs(12.05), Zxid: 62, Token: 40},
			},
			Events: []ElectionEvent{
				{At: secs(3), What: "a killed"},
				{At: secs(8), What: "b resigned"},
			},
			Faults:         []Span{{What: "isolate-leader n1", Start: secs(9.5), End: secs(11)}},
			SessionTimeout: secs(2),
			End:            secs(20),
		}
		for _, x := range h.Writes {
			if x.Outcome == FenceOK {
				h.Applied = append(h.Applied, AppliedWrite{Path: x.Path, Token: x.Token, Zxid: x.Zxid})
			}
		}
		return h
	}
	tests := []struct {
		name    string
		edit    func(h *ElectionHistory)
		leaders []time.Duration
		want    []string // each must be in some violation; none: must pass
	}{
		{name: "every write by its leader, leaders on time", edit: func(*ElectionHistory) {}},
		{name: "an unknown write applied while its token led", edit: func(h *ElectionHistory) {
			h.Applied = append(h.Applied, AppliedWrite{Path: "/elect/a-late", Token: 10, Zxid: 28})
		}},
		{name: "a candidate whose end no stream saw proves nothing", edit: func(h *ElectionHistory) {
			h.Candidates[0].Deleted = 0
		}},
		{name: "a Paddock leader change moves the bound", leaders: []time.Duration{secs(4)}, edit: func(h *ElectionHistory) {
			h.Campaigns[2].Return = secs(7.5)
			h.Writes[4].Call, h.Writes[4].Return = secs(7.6), secs(7.7)
			h.Writes[5].Call, h.Writes[5].Return = secs(7.8), secs(7.85)
		}},
		{name: "a fault during the wait moves the bound", edit: func(h *ElectionHistory) {
			h.Faults = append(h.Faults, Span{What: "pause-leader n2", Start: secs(3.5), End: secs(5)})
			h.Campaigns[2].Return = secs(8.5)
			h.Writes[4].Call, h.Writes[4].Return = secs(8.6), secs(8.7)
			h.Writes[5].Call, h.Writes[5].Return = secs(8.8), secs(8.85)
		}},
		{name: "a bound past the end is not judged", edit: func(h *ElectionHistory) {
			h.Writes = h.Writes[:len(h.Writes)-1]
			h.Applied = h.Applied[:len(h.Applied)-1]
			h.Reads = h.Reads[:len(h.Reads)-1]
			h.End = secs(14)
		}},

		{name: "a deposed leader's late write applied", edit: func(h *ElectionHistory) {
			h.Applied = append(h.Applied, AppliedWrite{Path: "/elect/a-late", Token: 10, Zxid: 35})
		}, want: []string{
			"fenced write /elect/a-late at zxid 35 with token 10 was applied though its token did not lead before it: token 10's candidate /paddock/elections/e/0000000000-1 was deleted at zxid 30",
			"fenced write /elect/a-late at zxid 35 has token 10, smaller than token 12 of the fenced write /elect/b-33 at zxid 33 before it",
		}},
		{name: "a write while a smaller token was in line", edit: func(h *ElectionHistory) {
			h.Applied = append(h.Applied, AppliedWrite{Path: "/elect/b-early", Token: 12, Zxid: 26})
		}, want: []string{
			"fenced write /elect/b-early at zxid 26 with token 12 was applied though its token did not lead before it: candidate /paddock/elections/e/0000000000-1 with the smaller token 10 was ahead in line (created at zxid 10, deleted only at zxid 30)",
		}},
		{name: "a write while a smaller token was in line to the end", edit: func(h *ElectionHistory) {
			h.Candidates = append(h.Candidates, Candidate{Key: dir + "/0000000003-4", Token: 52, Present: true})
			h.Applied = append(h.Applied, AppliedWrite{Path: "/elect/d", Token: 58, Zxid: 63})
		}, want: []string{
			"fenced write /elect/d at zxid 63 with token 58 was applied though its token did not lead before it: candidate /paddock/elections/e/0000000002-3 with the smaller token 40 was ahead in line (created at zxid 40, still in line at the end)",
		}},
		{name: "a write fenced with a token not yet created", edit: func(h *ElectionHistory) {
			h.Applied = append(h.Applied, AppliedWrite{Path: "/elect/x", Token: 70, Zxid: 65})
		}, want: []string{"fenced write /elect/x at zxid 65 with token 70 was applied though its token did not lead before it: token 70 was created after zxid 64"}},
		{name: "tokens go back, without any candidate known", edit: func(h *ElectionHistory) {
			h.Candidates = nil
			h.Applied = append(h.Applied, AppliedWrite{Path: "/elect/a-late", Token: 10, Zxid: 34})
		}, want: []string{"fenced write /elect/a-late at zxid 34 has token 10, smaller than token 12 of the fenced write /elect/b-33 at zxid 33 before it"}},
		{name: "an acknowledged write lost", edit: func(h *ElectionHistory) {
			h.Applied = h.Applied[1:]
		}, want: []string{"fenced write /elect/a-15 by a with token 10, acknowledged at zxid 15 (sent at 300ms), is not in the tree at the end"}},
		{name: "an acknowledged write at another zxid", edit: func(h *ElectionHistory) {
			h.Applied[0].Zxid = 16
		}, want: []string{"fenced write /elect/a-15 by a with token 10 was acknowledged at zxid 15 but is in the tree with zxid 16"}},
		{name: "elected while another led", edit: func(h *ElectionHistory) {
			h.Campaigns[4].Zxid = 45
		}, want: []string{"campaign of c (session 3) sent at 7s was answered elected with token 40 at zxid 45, but candidate /paddock/elections/e/0000000001-2 with the smaller token 12 was ahead in line"}},
		{name: "a Leader read names a deposed leader", edit: func(h *ElectionHistory) {
			h.Reads[2].Token = 10
		}, want: []string{"Leader read sent at 5.5s answered token 10 at zxid 33, but token 10's candidate /paddock/elections/e/0000000000-1 was deleted at zxid 30"}},
		{name: "a Leader read answers no leader", edit: func(h *ElectionHistory) {
			h.Reads[2].Token = 0
		}, want: []string{"Leader read sent at 5.5s answered no leader at zxid 33, but candidate /paddock/elections/e/0000000001-2 (token 12) was in line (deleted only at zxid 50)"}},
		{name: "a stale Leader read", edit: func(h *ElectionHistory) {
			h.Reads = append(h.Reads, LeaderRead{Call: secs(7), Return: secs(7.1), Zxid: 28, Token: 10})
		}, want: []string{"Leader read sent at 7s answered the state at zxid 28 (leader token 10), older than the fenced write /elect/b-45 at zxid 45 acknowledged at 6.1s: a stale read"}},
		{name: "no new leader in time after a kill", edit: func(h *ElectionHistory) {
			h.Campaigns[2].Return = secs(7.5)
			h.Writes[4].Call, h.Writes[4].Return = secs(7.6), secs(7.7)
			h.Writes[5].Call, h.Writes[5].Return = secs(7.8), secs(7.85)
		}, want: []string{"no contender led again within 4s after a killed: the bound 7s counts from a killed at 3s; the first proof of leadership since: b's fenced write with token 12, sent at 7.6s, answered at 7.7s"}},
		{name: "a campaign sent before the event proves nothing after it", edit: func(h *ElectionHistory) {
			// b was told at 5.1 s, but its campaign was sent at 1.2 s.
			h.Writes[4].Call, h.Writes[4].Return = secs(7.6), secs(7.7)
			h.Writes[5].Call, h.Writes[5].Return = secs(7.8), secs(7.85)
		}, want: []string{"no contender led again within 4s after a killed: the bound 7s counts from a killed at 3s; the first proof of leadership since: b's fenced write with token 12, sent at 7.6s, answered at 7.7s"}},
		{name: "no leader after a fault", edit: func(h *ElectionHistory) {
			h.Writes = h.Writes[:len(h.Writes)-1]
			h.Applied = h.Applied[:len(h.Applied)-1]
			h.Reads = h.Reads[:len(h.Reads)-1]
		}, want: []string{"no contender led again within 4s after the end of isolate-leader n1: the bound 15s counts from the end of isolate-leader n1 at 11s; the first proof of leadership since: none"}},
		{name: "a leader change does not excuse a late leader for ever", leaders: []time.Duration{secs(4)}, edit: func(h *ElectionHistory) {
			h.Campaigns[2].Return = secs(8.5)
			h.Writes[4].Call, h.Writes[4].Return = secs(8.6), secs(8.7)
			h.Writes[5].Call, h.Writes[5].Return = secs(8.8), secs(8.85)
		}, want: []string{"no contender led again within 4s after a killed: the bound 8s counts from the Paddock leader change at 4s after a killed at 3s"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := good()
			tc.edit(&h)
			vs := Election(h, election, tc.leaders)
			if len(tc.want) == 0 && len(vs) > 0 {
				t.Errorf("Election() = %v, want none", vs)
			}
			if len(tc.want) > 0 && len(vs) != len(tc.want) {
				t.Errorf("Election() = %v, want %d violations", vs, len(tc.want))
			}
			for _, want := range tc.want {
				if !hasViolation(vs, "election", want) {
					t.Errorf("Election() = %v, want a violation with %q", vs, want)
				}
			}
		})
	}
}

func TestElectionRegains(t *testing.T) {
	h := ElectionHistory{
		Events:         []ElectionEvent{{At: secs(3), What: "a killed"}, {At: secs(12), What: "b resigned"}},
		Faults:         []Span{{What: "kill-leader n1", Start: secs(5), End: secs(6)}},
		SessionTimeout: secs(2), End: secs(14),
		Writes: []FencedWrite{{Contender: "c", Token: 9, Call: secs(12.5), Return: secs(12.6), Outcome: FenceOK}},
	}
	// Bounds: 3 s -> 6+4 = 10 s (the fault overlaps), 6 s -> 10 s, 12 s
	// -> 16 s, past the end but a contender led at 12.6 s.
	want := []Regain{
		{What: "a killed", At: secs(3), Bound: secs(10), Led: secs(12.6), Judged: true},
		{What: "the end of kill-leader n1", At: secs(6), Bound: secs(10), Led: secs(12.6), Judged: true},
		{What: "b resigned", At: secs(12), Bound: secs(16), Led: secs(12.6), Judged: true},
	}
	if got := ElectionRegains(h, time.Second, nil); !reflect.DeepEqual(got, want) {
		t.Errorf("ElectionRegains() =\n%+v\nwant\n%+v", got, want)
	}
	h.Writes = nil
	want[2].Judged, want[0].Led, want[1].Led, want[2].Led = false, -1, -1, -1
	if got := ElectionRegains(h, time.Second, nil); !reflect.DeepEqual(got, want) {
		t.Errorf("ElectionRegains() =\n%+v\nwant\n%+v", got, want)
	}
}

func TestElectionCandidates(t *testing.T) {
	const dir = "/paddock/elections/e"
	ev := func(z uint64, typ EventType, path string) WatchEvent {
		return WatchEvent{Zxid: z, Type: typ, Path: path}
	}
	a, b, c, d := dir+"/0000000000-1", dir+"/0000000001-2", dir+"/0000000002-3", dir+"/0000000003-4"
	streams := []WatchStream{
		{Name: "w1", Events: []WatchEvent{
			ev(5, Created, dir), ev(5, Created, a), ev(7, Created, b), ev(8, Changed, a),
			ev(9, Created, "/elect/x"), ev(11, Deleted, a),
		}},
		// w2 restarted after a compaction: it missed 12-19.
		{Name: "w2", Events: []WatchEvent{ev(11, Deleted, a), ev(20, Deleted, b), ev(21, Deleted, c)}},
		{Name: "w3", Events: []WatchEvent{
			ev(7, Created, b), ev(11, Deleted, a),
			// The line emptied, its container went, a came back.
			ev(30, Created, a), ev(31, Created, dir+"/other/x"),
		}},
	}
	campaigns := []Campaign{
		{Answered: true, Key: c, Token: 15},                    // no stream saw its creation
		{Answered: true, Key: d, Token: 25},                    // nor this one, nor its end
		{Answered: true, Key: a, Token: 5, Elected: true},      // known
		{Key: b, Token: 99},                                    // unanswered: ignored
		{Answered: true, Key: dir + "/0000000004-5", Token: 0}, // no token
	}
	final := map[string]string{a: "", dir: ""}
	got := ElectionCandidates(streams, dir, campaigns, final)
	want := []Candidate{
		{Key: a, Token: 5, Deleted: 11},
		{Key: b, Token: 7, Deleted: 20},
		{Key: c, Token: 15, Deleted: 21},
		{Key: d, Token: 25},
		{Key: a, Token: 30, Present: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ElectionCandidates() =\n%+v\nwant\n%+v", got, want)
	}
}

func itoa(z uint64) string {
	const digits = "0123456789"
	if z == 0 {
		return "0"
	}
	var b []byte
	for ; z > 0; z /= 10 {
		b = append([]byte{digits[z%10]}, b...)
	}
	return string(b)
}
