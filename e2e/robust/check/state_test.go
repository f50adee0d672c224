package check

import "testing"

func TestSameState(t *testing.T) {
	h1, h2 := []byte{0xab, 0xcd}, []byte{0xab, 0xce}
	tests := []struct {
		name  string
		nodes []NodeState
		want  string // the one violation's Detail; empty: none
	}{
		{"none", nil, ""},
		{"one", []NodeState{{"n1", 7, h1}}, ""},
		{"all equal", []NodeState{{"n1", 7, h1}, {"n2", 7, h1}, {"n3", 7, []byte{0xab, 0xcd}}}, ""},
		{"diverged hash", []NodeState{{"n1", 7, h1}, {"n2", 7, h1}, {"n3", 7, h2}},
			"the replicas' states diverged: n1 at index 7 hash abcd, n2 at index 7 hash abcd, n3 at index 7 hash abce"},
		{"lagging replica", []NodeState{{"n1", 7, h1}, {"n2", 6, h2}, {"n3", 7, h1}},
			"the replicas ended at different applied indexes: n1 at index 7 hash abcd, n2 at index 6 hash abce, n3 at index 7 hash abcd"},
		{"same hash at another index", []NodeState{{"n1", 7, h1}, {"n2", 8, h1}},
			"the replicas ended at different applied indexes: n1 at index 7 hash abcd, n2 at index 8 hash abcd"},
		{"missing hash", []NodeState{{"n1", 7, h1}, {"n2", 7, nil}},
			"the replicas' states diverged: n1 at index 7 hash abcd, n2 at index 7 hash "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vs := SameState(tc.nodes)
			switch {
			case tc.want == "" && len(vs) > 0:
				t.Errorf("SameState() = %v, want none", vs)
			case tc.want != "" && (len(vs) != 1 || vs[0] != Violation{Check: "state", Detail: tc.want}):
				t.Errorf("SameState() = %v, want state: %s", vs, tc.want)
			}
		})
	}
}
