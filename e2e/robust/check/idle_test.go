package check

import (
	"testing"
	"time"
)

func TestIdleNodes(t *testing.T) {
	const election = time.Second
	ok := func(path string, call, ret float64) Call {
		return Call{Path: path, Outcome: OK, Call: secs(call), Return: secs(ret)}
	}
	unknown := func(path string, call float64) Call { return Call{Path: path, Outcome: Unknown, Call: secs(call)} }
	// A 2 s TTL znode created at 1 s (acknowledged 1.1 s), set at 2 s
	// (acknowledged 2.1 s): not before 4 s, by 2.1+2+1+1 = 6.1 s.
	ttl := IdleNode{Path: "/ttl/t1", TTL: secs(2), Created: ok("/ttl/t1", 1, 1.1), Sets: []Call{ok("/ttl/t1", 2, 2.1)}}
	// A TTL znode with a child from 1.5 s to 5 s (delete acknowledged 5.1 s).
	parent := IdleNode{Path: "/ttl/t2", TTL: secs(1), Created: ok("/ttl/t2", 1, 1.1),
		ChildCreates: []Call{ok("/ttl/t2/kid", 1.5, 1.6)}, ChildDeletes: []Call{ok("/ttl/t2/kid", 5, 5.1)}}
	// A container with two children, the last deleted at 4 s (acknowledged
	// 4.25 s): gone by 4.25+1+1 = 6.25 s, not before 4 s.
	box := IdleNode{Path: "/ctr/c1", Created: ok("/ctr/c1", 1, 1.1),
		ChildCreates: []Call{ok("/ctr/c1/a", 1.2, 1.3), ok("/ctr/c1/b", 1.4, 1.5)},
		ChildDeletes: []Call{ok("/ctr/c1/a", 2, 2.1), ok("/ctr/c1/b", 4, 4.25)}}
	lonely := IdleNode{Path: "/ctr/c2", Created: ok("/ctr/c2", 1, 1.1)}

	withWrites := func(c ...Call) []Call { return c }
	tests := []struct {
		name    string
		nodes   []IdleNode
		deleted map[string]time.Duration
		present map[string]bool
		end     time.Duration
		leaders []time.Duration
		want    []string // each must be in some violation; none: must pass
		writes  []Call   // the workload's writes, for commit stalls
	}{
		{"TTL deleted in its window", []IdleNode{ttl}, map[string]time.Duration{"/ttl/t1": secs(4.5)}, nil, secs(20), nil, nil, nil},
		{"TTL present before its bound", []IdleNode{ttl}, nil, map[string]bool{"/ttl/t1": true}, secs(6), nil, nil, nil},
		{"TTL with a child deleted after the child", []IdleNode{parent}, map[string]time.Duration{"/ttl/t2": secs(6.5)}, nil, secs(20), nil, nil, nil},
		{"container deleted after its last child", []IdleNode{box}, map[string]time.Duration{"/ctr/c1": secs(4.4)}, nil, secs(20), nil, nil, nil},
		{"container never given a child stays", []IdleNode{lonely}, nil, map[string]bool{"/ctr/c2": true}, secs(20), nil, nil, nil},
		{"a new leader gives a TTL a fresh window", []IdleNode{ttl}, map[string]time.Duration{"/ttl/t1": secs(8)}, nil, secs(20), []time.Duration{secs(0.5), secs(5)}, nil, nil},
		{"unknown set: no upper bound", []IdleNode{{Path: "/ttl/t3", TTL: secs(1), Created: ok("/ttl/t3", 1, 1.1), Sets: []Call{unknown("/ttl/t3", 2)}}},
			map[string]time.Duration{"/ttl/t3": secs(30)}, nil, secs(40), nil, nil, nil},
		{"unknown create counts for the early rule", []IdleNode{{Path: "/ttl/t4", TTL: secs(1), Created: unknown("/ttl/t4", 1)}},
			map[string]time.Duration{"/ttl/t4": secs(2.5)}, nil, secs(40), nil, nil, nil},

		{"TTL deleted early", []IdleNode{ttl}, map[string]time.Duration{"/ttl/t1": secs(3.5)}, nil, secs(20), nil,
			[]string{"TTL znode /ttl/t1 was deleted (seen at 3.5s) before 4s, 2s after its last acknowledged change sent at 2s"}, nil},
		{"TTL deleted early after an unknown create", []IdleNode{{Path: "/ttl/t4", TTL: secs(1), Created: unknown("/ttl/t4", 1)}},
			map[string]time.Duration{"/ttl/t4": secs(1.5)}, nil, secs(40), nil,
			[]string{"TTL znode /ttl/t4 was deleted (seen at 1.5s) before 2s"}, nil},
		{"TTL deleted while it had a child", []IdleNode{parent}, map[string]time.Duration{"/ttl/t2": secs(3)}, nil, secs(20), nil,
			[]string{"TTL znode /ttl/t2 was deleted (seen at 3s) while its child /ttl/t2/kid existed"}, nil},
		{"TTL deleted late", []IdleNode{ttl}, map[string]time.Duration{"/ttl/t1": secs(6.5)}, nil, secs(20), nil,
			[]string{"TTL znode /ttl/t1 was deleted (seen at 6.5s) after 6.1s"}, nil},
		{"TTL deleted late for its last leader", []IdleNode{ttl}, map[string]time.Duration{"/ttl/t1": secs(9.5)}, nil, secs(20), []time.Duration{secs(5)},
			[]string{"was deleted (seen at 9.5s) after 9s"}, nil},
		{"TTL never deleted", []IdleNode{ttl}, nil, map[string]bool{"/ttl/t1": true}, secs(7), nil,
			[]string{"TTL znode /ttl/t1 still exists at the end (7s), past 6.1s"}, nil},
		{"container deleted while a child was left", []IdleNode{box}, map[string]time.Duration{"/ctr/c1": secs(3)}, nil, secs(20), nil,
			[]string{"container /ctr/c1 was deleted (seen at 3s) while its child /ctr/c1/b existed"}, nil},
		{"container never given a child deleted", []IdleNode{lonely}, map[string]time.Duration{"/ctr/c2": secs(3)}, nil, secs(20), nil,
			[]string{"container /ctr/c2 was deleted (seen at 3s) though it never had a child"}, nil},
		{"container never given a child missing", []IdleNode{lonely}, nil, map[string]bool{}, secs(20), nil,
			[]string{"container /ctr/c2, never given a child, is missing at the end"}, nil},
		{"emptied container left behind", []IdleNode{box}, nil, map[string]bool{"/ctr/c1": true}, secs(20), nil,
			[]string{"container /ctr/c1 still exists at the end (20s), past 6.25s"}, nil},
		{"only the broken znode is reported", []IdleNode{ttl, box, lonely},
			map[string]time.Duration{"/ttl/t1": secs(4.5), "/ctr/c1": secs(8)}, map[string]bool{"/ctr/c2": true}, secs(20), nil,
			[]string{"container /ctr/c1 was deleted (seen at 8s) after 6.25s"}, nil},
		{"late deletion explained by a commit stall", []IdleNode{box}, map[string]time.Duration{"/ctr/c1": secs(8)}, nil, secs(20), nil,
			nil, withWrites(ok("/w", 4.2, 4.3), ok("/w", 4.3, 7.5), ok("/w", 5, 7.6))},
		{"late deletion while writes committed", []IdleNode{box}, map[string]time.Duration{"/ctr/c1": secs(8)}, nil, secs(20), nil,
			[]string{"container /ctr/c1 was deleted (seen at 8s) after 6.25s"}, withWrites(ok("/w", 4.3, 4.4), Call{Path: "/w", Outcome: Unknown, Call: secs(4.4)})},
		{"a stall does not excuse a deletion never made", []IdleNode{box}, nil, map[string]bool{"/ctr/c1": true}, secs(20), nil,
			[]string{"container /ctr/c1 still exists at the end (20s), past 8.6s"}, withWrites(ok("/w", 4.3, 7.6))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vs := IdleNodes(tc.nodes, tc.deleted, tc.present, tc.end, election, tc.leaders, nil, tc.writes)
			if len(tc.want) == 0 && len(vs) > 0 {
				t.Errorf("IdleNodes() = %v, want none", vs)
			}
			if len(tc.want) > 0 && len(vs) != len(tc.want) {
				t.Errorf("IdleNodes() = %v, want %d violations", vs, len(tc.want))
			}
			for _, want := range tc.want {
				if !hasViolation(vs, "idle", want) {
					t.Errorf("IdleNodes() = %v, want a violation with %q", vs, want)
				}
			}
		})
	}
}

// TestIdleNodesPauses: a leader stopped around a TTL znode's due time,
// and resumed still leading, deletes it only once resumed.
func TestIdleNodesPauses(t *testing.T) {
	const election = time.Second
	// A 1.5 s TTL znode created at 3.8 s (acknowledged 3.9 s): due at 5.4
	// s, gone by 3.9+1.5+1+1 = 7.4 s without a pause.
	n := IdleNode{Path: "/ttl/t3", TTL: secs(1.5), Created: Call{Path: "/ttl/t3", Outcome: OK, Call: secs(3.8), Return: secs(3.9)}}
	// The leader stopped from 4.6 s to 6.9 s, over the due time: gone by
	// 6.9+1+1 = 8.9 s.
	pause := Span{What: "pause-leader n1", Start: secs(4.6), End: secs(6.9)}
	tests := []struct {
		name    string
		deleted map[string]time.Duration
		present map[string]bool
		end     time.Duration
		leaders []time.Duration
		pauses  []Span
		want    []string // each must be in some violation; none: must pass
	}{
		{"deleted after a pause over the due time", map[string]time.Duration{"/ttl/t3": secs(7.5)}, nil, secs(20), nil, []Span{pause}, nil},
		{"deleted after a pause within the bound", map[string]time.Duration{"/ttl/t3": secs(8.5)}, nil, secs(20), nil,
			[]Span{{Start: secs(6), End: secs(6.5)}}, nil},
		{"deleted after a pause that began before the change", map[string]time.Duration{"/ttl/t3": secs(8.5)}, nil, secs(20), nil,
			[]Span{{Start: secs(3), End: secs(6.6)}}, nil},
		{"a pause reached by another's bound", map[string]time.Duration{"/ttl/t3": secs(11.5)}, nil, secs(20), nil,
			[]Span{{Start: secs(8.5), End: secs(9.6)}, pause}, nil},
		{"present at the end, within the pause's bound", nil, map[string]bool{"/ttl/t3": true}, secs(8.8), nil, []Span{pause}, nil},

		{"deleted as late with no pause", map[string]time.Duration{"/ttl/t3": secs(7.5)}, nil, secs(20), nil, nil,
			[]string{"TTL znode /ttl/t3 was deleted (seen at 7.5s) after 7.4s, its last change acknowledged at 3.9s"}},
		{"deleted too late even for the pause", map[string]time.Duration{"/ttl/t3": secs(9.2)}, nil, secs(20), nil, []Span{pause},
			[]string{"TTL znode /ttl/t3 was deleted (seen at 9.2s) after 8.9s"}},
		{"a pause before the change excuses nothing", map[string]time.Duration{"/ttl/t3": secs(7.5)}, nil, secs(20), nil,
			[]Span{{Start: secs(1), End: secs(3.8)}}, []string{"was deleted (seen at 7.5s) after 7.4s"}},
		{"a pause after the bound excuses nothing", map[string]time.Duration{"/ttl/t3": secs(7.6)}, nil, secs(20), nil,
			[]Span{{Start: secs(7.45), End: secs(9)}}, []string{"was deleted (seen at 7.6s) after 7.4s"}},
		{"a new leader after the pause counts from its start", map[string]time.Duration{"/ttl/t3": secs(10.6)}, nil, secs(20),
			[]time.Duration{secs(1), secs(7)}, []Span{pause}, []string{"was deleted (seen at 10.6s) after 10.5s"}},
		{"present at the end past the pause's bound", nil, map[string]bool{"/ttl/t3": true}, secs(9), nil, []Span{pause},
			[]string{"TTL znode /ttl/t3 still exists at the end (9s), past 8.9s"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vs := IdleNodes([]IdleNode{n}, tc.deleted, tc.present, tc.end, election, tc.leaders, tc.pauses, nil)
			if len(tc.want) == 0 && len(vs) > 0 {
				t.Errorf("IdleNodes() = %v, want none", vs)
			}
			if len(tc.want) > 0 && len(vs) != len(tc.want) {
				t.Errorf("IdleNodes() = %v, want %d violations", vs, len(tc.want))
			}
			for _, want := range tc.want {
				if !hasViolation(vs, "idle", want) {
					t.Errorf("IdleNodes() = %v, want a violation with %q", vs, want)
				}
			}
		})
	}
}
