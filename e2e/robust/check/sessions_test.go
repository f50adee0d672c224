package check

import (
	"testing"
	"time"
)

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func TestSessions(t *testing.T) {
	const election = time.Second
	eph := func(path string, call float64) []Ephemeral { return []Ephemeral{{Path: path, Call: secs(call)}} }
	kept := Session{ID: "s1", Timeout: secs(3), Opened: secs(0), KeepAlives: []time.Duration{secs(1), secs(2)}, Ephemerals: eph("/e/s1", 0.5), Fate: KeptAlive}
	// Abandoned at 10 s with a 2 s timeout: gone by 10+4+1+1 = 16 s.
	abandoned := Session{ID: "s2", Timeout: secs(2), Opened: secs(0), KeepAlives: []time.Duration{secs(8), secs(9.5)}, Ephemerals: eph("/e/s2", 0.5), Fate: Abandoned, AbandonedAt: secs(10)}
	closed := Session{ID: "s3", Timeout: secs(30), Opened: secs(0), KeepAlives: []time.Duration{secs(1)}, Ephemerals: eph("/e/s3", 0.5), Fate: Closed, ClosedAt: secs(5)}

	tests := []struct {
		name     string
		sessions []Session
		deleted  map[string]time.Duration
		present  map[string]bool
		end      time.Duration
		want     []string // each must be in some violation; none: must pass
		leaders  []time.Duration
	}{
		{"kept alive and present", []Session{kept}, nil, map[string]bool{"/e/s1": true}, secs(20), nil, nil},
		{"kept alive, expired after its last keepalive's timeout", []Session{kept}, map[string]time.Duration{"/e/s1": secs(5.5)}, nil, secs(20), nil, nil},
		{"keepalives sent after the deletion was seen do not count", []Session{{
			ID: "s1", Timeout: secs(3), KeepAlives: []time.Duration{secs(1), secs(7)}, Ephemerals: eph("/e/s1", 0.5), Fate: KeptAlive,
		}}, map[string]time.Duration{"/e/s1": secs(4)}, nil, secs(20), nil, nil},
		{"keepalives out of order", []Session{{
			ID: "s1", Timeout: secs(3), KeepAlives: []time.Duration{secs(7), secs(1)}, Ephemerals: eph("/e/s1", 0.5), Fate: KeptAlive,
		}}, map[string]time.Duration{"/e/s1": secs(4)}, nil, secs(20), nil, nil},
		{"abandoned and expired in time", []Session{abandoned}, map[string]time.Duration{"/e/s2": secs(13)}, nil, secs(20), nil, nil},
		{"abandoned, gone at the end but the deletion unseen", []Session{abandoned}, nil, map[string]bool{}, secs(20), nil, nil},
		{"abandoned, still there before the bound", []Session{abandoned}, nil, map[string]bool{"/e/s2": true}, secs(16), nil, nil},
		{"closed, deleted at once", []Session{closed}, map[string]time.Duration{"/e/s3": secs(5.01)}, nil, secs(20), nil, nil},
		{"a close with an unknown outcome that took effect", []Session{{
			ID: "s5", Timeout: secs(2), Opened: secs(1), Ephemerals: eph("/e/s5", 1.5), Fate: Abandoned, AbandonedAt: secs(1.6), ClosedAt: secs(1.6),
		}}, map[string]time.Duration{"/e/s5": secs(1.7)}, nil, secs(20), nil, nil},
		{"abandoned, a new leader at 12 s gives it a fresh window", []Session{abandoned}, map[string]time.Duration{"/e/s2": secs(17.5)}, nil, secs(20), nil,
			[]time.Duration{secs(1), secs(12)}},
		{"abandoned, still there at the end within a new leader's window", []Session{abandoned}, nil, map[string]bool{"/e/s2": true}, secs(17.5), nil,
			[]time.Duration{secs(12)}},
		{"no keepalives: timed from the open", []Session{{
			ID: "s4", Timeout: secs(2), Opened: secs(1), Ephemerals: eph("/e/s4", 1.5), Fate: Abandoned, AbandonedAt: secs(1.5),
		}}, map[string]time.Duration{"/e/s4": secs(3.5)}, nil, secs(20), nil, nil},

		{"early deletion", []Session{kept}, map[string]time.Duration{"/e/s1": secs(4.5)}, nil, secs(20),
			[]string{"ephemeral /e/s1 of session s1 was deleted (seen at 4.5s) before 5s, 3s after its last acknowledged keepalive before that at 2s"}, nil},
		{"early deletion with no keepalive", []Session{{
			ID: "s4", Timeout: secs(2), Opened: secs(1), Ephemerals: eph("/e/s4", 1.5), Fate: KeptAlive,
		}}, map[string]time.Duration{"/e/s4": secs(2.9)}, nil, secs(20),
			[]string{"ephemeral /e/s4 of session s4 was deleted (seen at 2.9s) before 3s, 2s after the session's open call at 1s"}, nil},
		{"abandoned, deleted before its timeout", []Session{abandoned}, map[string]time.Duration{"/e/s2": secs(11)}, nil, secs(20),
			[]string{"ephemeral /e/s2 of session s2 was deleted (seen at 11s) before 11.5s"}, nil},
		{"closed session's ephemeral deleted early, before the close", []Session{closed}, map[string]time.Duration{"/e/s3": secs(4)}, nil, secs(20),
			[]string{"ephemeral /e/s3 of session s3 was deleted (seen at 4s) before 31s"}, nil},
		{"abandoned ephemeral never deleted", []Session{abandoned}, nil, map[string]bool{"/e/s2": true}, secs(16.5),
			[]string{"ephemeral /e/s2 of session s2, abandoned at 10s with timeout 2s, still exists at the end (16.5s), past 16s"}, nil},
		{"abandoned ephemeral deleted too late", []Session{abandoned}, map[string]time.Duration{"/e/s2": secs(16.2)}, nil, secs(20),
			[]string{"ephemeral /e/s2 of session s2, abandoned at 10s with timeout 2s, was deleted (seen at 16.2s) after 16s"}, nil},
		{"abandoned ephemeral deleted too late for its last leader", []Session{abandoned}, map[string]time.Duration{"/e/s2": secs(18.5)}, nil, secs(20),
			[]string{"was deleted (seen at 18.5s) after 18s"}, []time.Duration{secs(5), secs(12), secs(19)}},
		{"closed session's ephemeral left behind", []Session{closed}, nil, map[string]bool{"/e/s3": true}, secs(20),
			[]string{"ephemeral /e/s3 of session s3, closed at 5s, still exists at the end (20s)"}, nil},
		{"only the broken session is reported", []Session{kept, abandoned, closed},
			map[string]time.Duration{"/e/s1": secs(4), "/e/s2": secs(13), "/e/s3": secs(6)}, nil, secs(20),
			[]string{"ephemeral /e/s1 of session s1 was deleted"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vs := Sessions(tc.sessions, tc.deleted, tc.present, tc.end, election, tc.leaders, nil)
			if len(tc.want) == 0 && len(vs) > 0 {
				t.Errorf("Sessions() = %v, want none", vs)
			}
			if len(tc.want) > 0 && len(vs) != len(tc.want) {
				t.Errorf("Sessions() = %v, want %d violations", vs, len(tc.want))
			}
			for _, want := range tc.want {
				if !hasViolation(vs, "sessions", want) {
					t.Errorf("Sessions() = %v, want a violation with %q", vs, want)
				}
			}
		})
	}
}

// TestSessionsPauses: a leader stopped while an abandoned session runs
// out, and resumed still leading, expires it only once resumed.
func TestSessionsPauses(t *testing.T) {
	const election = time.Second
	// Abandoned at 10 s with a 2 s timeout: gone by 10+4+1+1 = 16 s
	// without a pause.
	s := Session{ID: "s2", Timeout: secs(2), Opened: secs(0), KeepAlives: []time.Duration{secs(8), secs(9.5)},
		Ephemerals: []Ephemeral{{Path: "/e/s2", Call: secs(0.5)}}, Fate: Abandoned, AbandonedAt: secs(10)}
	// The leader stopped from 13 s to 15.5 s: gone by 15.5+1+1 = 17.5 s.
	pause := Span{What: "pause-leader n2", Start: secs(13), End: secs(15.5)}
	tests := []struct {
		name    string
		deleted map[string]time.Duration
		present map[string]bool
		end     time.Duration
		pauses  []Span
		want    []string // each must be in some violation; none: must pass
	}{
		{"expired after a pause", map[string]time.Duration{"/e/s2": secs(17)}, nil, secs(20), []Span{pause}, nil},
		{"present at the end, within the pause's bound", nil, map[string]bool{"/e/s2": true}, secs(17.4), []Span{pause}, nil},

		{"expired as late with no pause", map[string]time.Duration{"/e/s2": secs(17)}, nil, secs(20), nil,
			[]string{"was deleted (seen at 17s) after 16s"}},
		{"expired too late even for the pause", map[string]time.Duration{"/e/s2": secs(17.8)}, nil, secs(20), []Span{pause},
			[]string{"was deleted (seen at 17.8s) after 17.5s"}},
		{"a pause before the abandonment excuses nothing", map[string]time.Duration{"/e/s2": secs(17)}, nil, secs(20),
			[]Span{{Start: secs(5), End: secs(9)}}, []string{"was deleted (seen at 17s) after 16s"}},
		{"present at the end past the pause's bound", nil, map[string]bool{"/e/s2": true}, secs(17.6), []Span{pause},
			[]string{"still exists at the end (17.6s), past 17.5s"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vs := Sessions([]Session{s}, tc.deleted, tc.present, tc.end, election, nil, tc.pauses)
			if len(tc.want) == 0 && len(vs) > 0 {
				t.Errorf("Sessions() = %v, want none", vs)
			}
			if len(tc.want) > 0 && len(vs) != len(tc.want) {
				t.Errorf("Sessions() = %v, want %d violations", vs, len(tc.want))
			}
			for _, want := range tc.want {
				if !hasViolation(vs, "sessions", want) {
					t.Errorf("Sessions() = %v, want a violation with %q", vs, want)
				}
			}
		})
	}
}
