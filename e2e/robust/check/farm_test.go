package check

import (
	"testing"
	"time"
)

func TestFarm(t *testing.T) {
	const election = time.Second
	conf := func(kv ...string) FarmConf {
		c := FarmConf{}
		for i := 0; i+1 < len(kv); i += 2 {
			c[kv[i]] = kv[i+1]
		}
		return c
	}
	file := func(call, ret float64, hosts FarmHosts) FarmFile {
		return FarmFile{Call: secs(call), Return: secs(ret), Hosts: hosts}
	}
	// Two hosts: a stays, b is joined at 0.5 s and leaves cleanly at 4 s
	// (close acknowledged): out of the file by 5 s. c is killed at 6 s with
	// a 2 s timeout: out of the file by 6+4+1+1 = 12 s.
	a := FarmJoiner{Name: "a", Timeout: secs(2), Start: 0, Leave: Stayed, Local: conf("n", "a1", "r", "r2")}
	b := FarmJoiner{Name: "b", Timeout: secs(2), Start: secs(0.5), Leave: LeftClean, LeftAt: secs(4)}
	c := FarmJoiner{Name: "c", Timeout: secs(2), Start: secs(1), Leave: Killed, LeftAt: secs(6)}
	writes := []FarmWrite{
		{Host: "a", Field: "n", Value: "a0", Call: 0},
		{Host: "a", Field: "n", Value: "a1", Call: secs(3)},
		{Host: "a", Field: "r", Value: "r2", Call: secs(7)},
		{Host: "b", Field: "n", Value: "b0", Call: secs(0.5)},
		{Host: "c", Field: "n", Value: "c0", Call: secs(1)},
	}
	final := func() FarmHosts { return FarmHosts{"a": conf("n", "a1", "r", "r2")} }
	good := func() FarmHistory {
		return FarmHistory{
			Joiners: []FarmJoiner{a, b, c},
			Writes:  writes,
			Files: []FarmFile{
				file(0.2, 0.3, FarmHosts{"a": conf("n", "a0")}),
				file(0.7, 0.8, FarmHosts{"a": conf("n", "a0"), "b": conf("n", "b0")}),
				file(1.2, 1.3, FarmHosts{"a": conf("n", "a0"), "b": conf("n", "b0"), "c": conf("n", "c0")}),
				file(3.5, 3.6, FarmHosts{"a": conf("n", "a1"), "b": conf("n", "b0"), "c": conf("n", "c0")}),
				file(4.8, 4.9, FarmHosts{"a": conf("n", "a1"), "c": conf("n", "c0")}),
				file(7.5, 7.6, FarmHosts{"a": conf("n", "a1", "r", "r2"), "c": conf("n", "c0")}),
				file(11.5, 11.6, final()),
			},
			// The exporter learns of a host's leave 0.05 s after it, of a
			// killed host's expiry at 10.5 s.
			Seen: []FarmSeen{
				{At: secs(0.1), Host: "a", Present: true},
				{At: secs(0.6), Host: "b", Present: true},
				{At: secs(1.1), Host: "c", Present: true},
				{At: secs(4.05), Host: "b"},
				{At: secs(10.5), Host: "c"},
			},
			FinalFile: final(), FinalFarm: final(), End: secs(20),
		}
	}
	tests := []struct {
		name    string
		edit    func(h *FarmHistory)
		leaders []time.Duration
		pauses  []Span
		lag     time.Duration // ExporterLag
		writes  []Call
		want    []string // each must be in some violation; none: must pass
	}{
		{name: "every host and value on time", edit: func(*FarmHistory) {}},
		{name: "a rejoin under the same name may keep the host", edit: func(h *FarmHistory) {
			h.Joiners = append(h.Joiners, FarmJoiner{Name: "b", Timeout: secs(2), Start: secs(4.5), Leave: Killed, LeftAt: secs(9)})
			h.Files[4].Hosts["b"] = conf("n", "b0")
			h.Files[5].Hosts["b"] = conf("n", "b0")
		}},
		{name: "a leader change restarts a leave's bound", leaders: []time.Duration{secs(0.1), secs(4.5)}, edit: func(h *FarmHistory) {
			h.Files[4] = file(5.4, 5.5, FarmHosts{"a": conf("n", "a1"), "c": conf("n", "c0")})
		}},
		{name: "a commit stall delays a killed host's bound", writes: []Call{
			{Path: "/w", Outcome: OK, Call: secs(9.5), Return: secs(9.6)},
			{Path: "/w", Outcome: Unknown, Call: secs(10)},
			{Path: "/w", Outcome: OK, Call: secs(10.2), Return: secs(12.8)},
		}, edit: func(h *FarmHistory) {
			h.Files[6] = file(13.5, 13.6, final())
		}},
		{name: "an exporter that learned late, within its lag", lag: secs(3), edit: func(h *FarmHistory) {
			h.Seen[3].At = secs(6.5)
			h.Files[4] = file(7.2, 7.3, FarmHosts{"a": conf("n", "a1"), "c": conf("n", "c0")})
			h.Files[5].Call = secs(7.6)
		}},
		{name: "an exporter that learned late, its node cut off", edit: func(h *FarmHistory) {
			h.Seen[3].At = secs(6.5)
			h.Files[4] = file(7.2, 7.3, FarmHosts{"a": conf("n", "a1"), "c": conf("n", "c0")})
			h.Files[5].Call = secs(7.6)
		}, want: []string{"host b (left at 4s) was in the exported file past its bound 5s, counted from its leave at 4s: the file written at 3.5s (returned 3.6s) held it until the next write at 7.2s; leaders seen at []; the exporter learned it was gone at 6.5s"}},
		{name: "an exporter lag past its allowance", lag: secs(3), edit: func(h *FarmHistory) {
			h.Seen[3].At = secs(7.5)
			h.Files[4] = file(8.2, 8.3, FarmHosts{"a": conf("n", "a1"), "c": conf("n", "c0")})
			h.Files[5].Call = secs(8.6)
		}, want: []string{"host b (left at 4s) was in the exported file past its bound 8s"}},
		{name: "a killed host left in the farm before its bound", edit: func(h *FarmHistory) {
			h.End = secs(11)
			h.FinalFarm = FarmHosts{"a": final()["a"], "c": conf("n", "c0")}
			h.FinalFile = h.FinalFarm
			h.Files = h.Files[:6]
		}},

		{name: "a cleanly left host kept past its bound", edit: func(h *FarmHistory) {
			h.Files[4] = file(5.4, 5.5, FarmHosts{"a": conf("n", "a1"), "c": conf("n", "c0")})
		}, want: []string{"host b (left at 4s) was in the exported file past its bound 5s, counted from its leave at 4s: the file written at 3.5s (returned 3.6s) held it until the next write at 5.4s; leaders seen at []; the exporter learned it was gone at 4.05s"}},
		{name: "a killed host kept past its bound", leaders: []time.Duration{secs(0.1)}, edit: func(h *FarmHistory) {
			h.Files[6] = file(12.5, 12.6, final())
		}, want: []string{"host c (killed at 6s, session timeout 2s) was in the exported file past its bound 12s, counted from its leave at 6s: the file written at 7.5s (returned 7.6s) held it until the next write at 12.5s; leaders seen at [100ms]; the exporter learned it was gone at 10.5s"}},
		{name: "a rejoin does not excuse the time before it", edit: func(h *FarmHistory) {
			h.Joiners = append(h.Joiners, FarmJoiner{Name: "b", Timeout: secs(2), Start: secs(7), Leave: Killed, LeftAt: secs(9)})
			h.Files[4].Hosts["b"] = conf("n", "b0")
			h.Files[5].Hosts["b"] = conf("n", "b0")
		}, want: []string{"host b (left at 4s) was in the exported file past its bound 5s, counted from its leave at 4s: the file written at 4.8s (returned 4.9s) held it until its join again at 7s"}},
		{name: "an exporter that learned late and kept the host", edit: func(h *FarmHistory) {
			h.Seen[3].At = secs(6)
			h.Files[4] = file(7.45, 7.46, FarmHosts{"a": conf("n", "a1"), "c": conf("n", "c0")})
		}, want: []string{"host b (left at 4s) was in the exported file past its bound 5s, counted from its leave at 4s: the file written at 3.5s (returned 3.6s) held it until the next write at 7.45s; leaders seen at []; the exporter learned it was gone at 6s"}},
		{name: "a rejoin seen by the exporter ends the wait", edit: func(h *FarmHistory) {
			h.Joiners = append(h.Joiners, FarmJoiner{Name: "b", Timeout: secs(2), Start: secs(4.5), Leave: Killed, LeftAt: secs(9)})
			h.Seen = append(h.Seen, FarmSeen{At: secs(4.7), Host: "b", Present: true}, FarmSeen{At: secs(9.5), Host: "b"})
			h.Files[4] = file(6.5, 6.6, FarmHosts{"a": conf("n", "a1"), "b": conf("n", "b0"), "c": conf("n", "c0")})
			h.Files[5].Hosts["b"] = conf("n", "b0")
		}},
		{name: "a stale file written after the bound", edit: func(h *FarmHistory) {
			h.Files = append(h.Files, file(12.5, 12.6, FarmHosts{"a": conf("n", "a1"), "c": conf("n", "c0")}), file(13, 13.1, final()))
		}, want: []string{"host c (killed at 6s, session timeout 2s) was in the exported file past its bound 12s, counted from its leave at 6s: the file written at 12.5s (returned 12.6s) held it until the next write at 13s"}},
		{name: "a stall does not excuse a cleanly left host", writes: []Call{{Path: "/w", Outcome: OK, Call: secs(4.5), Return: secs(9)}}, edit: func(h *FarmHistory) {
			h.Files[4] = file(6, 6.1, FarmHosts{"a": conf("n", "a1"), "c": conf("n", "c0")})
		}, want: []string{"host b (left at 4s) was in the exported file past its bound 5s"}},
		{name: "the final file keeps a host that left", edit: func(h *FarmHistory) {
			h.Files[6].Hosts["b"] = conf("n", "b0")
			h.FinalFile = FarmHosts{"a": final()["a"], "b": conf("n", "b0")}
		}, want: []string{
			"host b is in the exporter's final file but not in the farm at the end (20s)",
			"host b (left at 4s) was in the exported file past its bound 5s",
		}},
		{name: "the final file misses a field change", edit: func(h *FarmHistory) {
			h.FinalFile = FarmHosts{"a": conf("n", "a1")}
		}, want: []string{`host a in the exporter's final file differs from the farm at the end (20s): r missing, want "r2"`}},
		{name: "the final file misses a host", edit: func(h *FarmHistory) {
			h.FinalFile = FarmHosts{}
		}, want: []string{"host a is in the farm at the end (20s) but not in the exporter's final file"}},
		{name: "a joiner that stayed is not in the farm", edit: func(h *FarmHistory) {
			h.FinalFarm, h.FinalFile = FarmHosts{}, FarmHosts{}
			h.Files[6].Hosts = FarmHosts{}
		}, want: []string{"host a, joined at 0s and never stopped, is not in the farm at the end (20s)"}},
		{name: "a joiner's local file differs from its znode", edit: func(h *FarmHistory) {
			h.Joiners[0].Local = conf("n", "a1")
		}, want: []string{`host a's local configuration differs from its znode at the end (20s): r missing, want "r2"`}},
		{name: "a killed host still in the farm past its bound", edit: func(h *FarmHistory) {
			h.FinalFarm = FarmHosts{"a": final()["a"], "c": conf("n", "c0")}
			h.FinalFile = h.FinalFarm
			h.Files[5].Call = secs(13)
			h.Files = h.Files[:6]
			h.Seen = h.Seen[:4]
		}, want: []string{
			"host c (killed at 6s, session timeout 2s) is still in the farm at the end (20s), past its bound 12s",
			// The farm kept it, so the files did too.
			"host c (killed at 6s, session timeout 2s) was in the exported file past its bound 12s, counted from its leave at 6s: the file written at 4.8s",
			"host c (killed at 6s, session timeout 2s) was in the exported file past its bound 12s, counted from its leave at 6s: the file written at 13s",
		}},
		{name: "a pause of the leader delays a killed host's bound", pauses: []Span{{Start: secs(9), End: secs(11.5)}}, edit: func(h *FarmHistory) {
			h.Files[6] = file(13.4, 13.5, final())
			h.Seen[4].At = secs(13.3)
		}},
		{name: "the same without the pause", edit: func(h *FarmHistory) {
			h.Files[6] = file(13.4, 13.5, final())
			h.Seen[4].At = secs(13.3)
		}, want: []string{"host c (killed at 6s, session timeout 2s) was in the exported file past its bound 12s, counted from its leave at 6s: the file written at 7.5s"}},
		{name: "a killed host kept past even the pause's bound", pauses: []Span{{Start: secs(9), End: secs(11.5)}}, edit: func(h *FarmHistory) {
			h.Files[6] = file(14, 14.1, final())
			h.Seen[4].At = secs(13.9)
		}, want: []string{"host c (killed at 6s, session timeout 2s) was in the exported file past its bound 13.5s, counted from its leave at 6s, and a pause of the leader: the file written at 7.5s"}},
		{name: "a phantom value", edit: func(h *FarmHistory) {
			h.Files[3].Hosts["a"] = conf("n", "a9")
		}, want: []string{`host a's field n is "a9" in the file written at 3.5s (3.6s) but no write had given it that value by then`}},
		{name: "a value exported before it was written", edit: func(h *FarmHistory) {
			h.Files[4].Hosts["a"] = conf("n", "a1", "r", "r2")
		}, want: []string{`host a's field r is "r2" in the file written at 4.8s (4.9s) but no write had given it that value by then`}},
		{name: "another host's value", edit: func(h *FarmHistory) {
			h.Files[2].Hosts["c"] = conf("n", "b0")
		}, want: []string{`host c's field n is "b0" in the file written at 1.2s (1.3s)`}},
		{name: "a phantom host", edit: func(h *FarmHistory) {
			h.Files[1].Hosts["z"] = conf()
			h.Files[2].Hosts["z"] = conf()
		}, want: []string{"host z is in the file written at 700ms (800ms) but no joiner of it had started by then"}},
		{name: "a phantom value in the farm", edit: func(h *FarmHistory) {
			h.FinalFarm = FarmHosts{"a": conf("n", "a1", "r", "r3")}
			h.FinalFile = h.FinalFarm
			h.Files[6].Hosts = h.FinalFarm
			h.Joiners[0].Local = h.FinalFarm["a"]
		}, want: []string{`host a's field r is "r3" in the file written at 11.5s (11.6s)`}},
		{name: "a phantom value in the farm only", edit: func(h *FarmHistory) {
			h.FinalFarm = FarmHosts{"a": conf("n", "a1", "r", "r3")}
			h.FinalFile = h.FinalFarm
			h.Joiners[0].Local = h.FinalFarm["a"]
		}, want: []string{`host a's field r is "r3" in the farm at the end (20s)`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := good()
			h.ExporterLag = tc.lag
			tc.edit(&h)
			vs := Farm(h, election, tc.leaders, tc.pauses, tc.writes)
			if len(tc.want) == 0 && len(vs) > 0 {
				t.Errorf("Farm() = %v, want none", vs)
			}
			if len(tc.want) > 0 && len(vs) != len(tc.want) {
				t.Errorf("Farm() = %v, want %d violations", vs, len(tc.want))
			}
			for _, want := range tc.want {
				if !hasViolation(vs, "farm", want) {
					t.Errorf("Farm() = %v, want a violation with %q", vs, want)
				}
			}
		})
	}
}
