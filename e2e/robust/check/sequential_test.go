package check

import (
	"fmt"
	"strings"
	"testing"
)

func seqName(prefix string, n int) string { return fmt.Sprintf("%s%010d", prefix, n) }

func seqOK(client int, name string, zxid uint64, call, ret int) SeqCreate {
	return SeqCreate{Client: client, Path: "/q/" + name, Outcome: OK, Zxid: zxid, Call: ms(call), Return: ms(ret)}
}

func seqUnknown(client int, call int) SeqCreate {
	return SeqCreate{Client: client, Outcome: Unknown, Call: ms(call), Return: ms(call + 1)}
}

func TestSequentialValid(t *testing.T) {
	tests := []struct {
		name    string
		parent  string
		creates []SeqCreate
		final   []Child
	}{
		{"empty", "/q", nil, nil},
		{"one client", "/q", []SeqCreate{
			seqOK(1, seqName("n-", 0), 10, 0, 1),
			seqOK(1, seqName("n-", 1), 12, 2, 3),
			seqOK(1, seqName("n-", 2), 15, 4, 5),
		}, []Child{{seqName("n-", 2), 15}, {seqName("n-", 0), 10}, {seqName("n-", 1), 12}}},
		{"concurrent creates answered out of call order", "/q", []SeqCreate{
			seqOK(1, seqName("n-", 1), 12, 0, 10),
			seqOK(2, seqName("n-", 0), 11, 5, 8),
			seqOK(3, seqName("n-", 2), 13, 9, 20),
		}, []Child{{seqName("n-", 0), 11}, {seqName("n-", 1), 12}, {seqName("n-", 2), 13}}},
		{"prefixes share the counter", "/q", []SeqCreate{
			seqOK(1, seqName("a-", 0), 10, 0, 1),
			seqOK(2, seqName("b-", 1), 11, 2, 3),
			seqOK(1, seqName("", 2), 12, 4, 5),
		}, []Child{{seqName("a-", 0), 10}, {seqName("b-", 1), 11}, {seqName("", 2), 12}}},
		{"unknown creates: one happened, one did not, leaving a gap", "/q", []SeqCreate{
			seqOK(1, seqName("n-", 0), 10, 0, 1),
			seqUnknown(2, 2),
			seqUnknown(3, 2),
			seqOK(1, seqName("n-", 3), 14, 6, 7),
		}, []Child{{seqName("n-", 0), 10}, {seqName("n-", 2), 12}, {seqName("n-", 3), 14}}},
		{"failed creates are ignored", "/q", []SeqCreate{
			seqOK(1, seqName("n-", 0), 10, 0, 1),
			{Client: 2, Outcome: NotFound, Call: ms(2), Return: ms(3)},
		}, []Child{{seqName("n-", 0), 10}}},
		{"under the root", "/", []SeqCreate{
			{Client: 1, Path: "/" + seqName("n-", 0), Outcome: OK, Zxid: 5, Call: 0, Return: 1},
		}, []Child{{seqName("n-", 0), 5}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if vs := Sequential(tc.parent, tc.creates, tc.final); len(vs) > 0 {
				t.Errorf("Sequential() = %v, want none", vs)
			}
		})
	}
}

func TestSequentialBroken(t *testing.T) {
	tests := []struct {
		name    string
		creates []SeqCreate
		final   []Child
		want    []string // each must be in some violation
	}{
		{"duplicated suffix among children", []SeqCreate{
			seqOK(1, seqName("a-", 1), 10, 0, 1),
			seqOK(2, seqName("b-", 1), 11, 2, 3),
		}, []Child{{seqName("a-", 1), 10}, {seqName("b-", 1), 11}},
			[]string{"share the sequence suffix 1", "got the same sequence suffix", "not above"}},
		{"two creates answered the same path", []SeqCreate{
			seqOK(1, seqName("n-", 0), 10, 0, 1),
			seqOK(2, seqName("n-", 0), 11, 2, 3),
		}, []Child{{seqName("n-", 0), 10}},
			[]string{"creates #0 (client 1) and #1 (client 2) were both answered /q/n-0000000000", "was answered zxid 11 but /q/n-0000000000 has czxid 10"}},
		{"suffixes out of czxid order", []SeqCreate{
			seqOK(1, seqName("n-", 1), 10, 0, 1),
			seqOK(2, seqName("n-", 0), 11, 0, 1),
		}, []Child{{seqName("n-", 1), 10}, {seqName("n-", 0), 11}},
			[]string{"child /q/n-0000000000 (czxid 11) has suffix 0, not above /q/n-0000000001's 1 (czxid 10)", "create #1 (/q/n-0000000000, zxid 11) has a suffix not above create #0's"}},
		{"lost acknowledged create", []SeqCreate{
			seqOK(1, seqName("n-", 0), 10, 0, 1),
			seqOK(1, seqName("n-", 1), 11, 2, 3),
		}, []Child{{seqName("n-", 0), 10}},
			[]string{"create #1 (client 1, zxid 11) was acknowledged but /q/n-0000000001 is not among the children"}},
		{"answered zxid is not the czxid", []SeqCreate{
			seqOK(1, seqName("n-", 0), 10, 0, 1),
		}, []Child{{seqName("n-", 0), 9}},
			[]string{"was answered zxid 10 but /q/n-0000000000 has czxid 9"}},
		{"real-time order broken", []SeqCreate{
			seqOK(1, seqName("n-", 1), 20, 0, 10),
			seqOK(2, seqName("n-", 0), 15, 15, 20),
		}, []Child{{seqName("n-", 0), 15}, {seqName("n-", 1), 20}},
			[]string{"create #1 (/q/n-0000000000, called 15ms) got a suffix not above create #0's (/q/n-0000000001), which returned before it at 10ms",
				"create #1 (/q/n-0000000000, called 15ms) got zxid 15, not above create #0's 20"}},
		{"phantom child", []SeqCreate{
			seqOK(1, seqName("n-", 0), 10, 0, 1),
			seqUnknown(1, 2),
		}, []Child{{seqName("n-", 0), 10}, {seqName("n-", 1), 11}, {seqName("n-", 2), 12}},
			[]string{"/q has 3 children but only 1 creates were acknowledged and 1 unknown"}},
		{"child without a suffix", nil, []Child{{"plain", 10}, {"n-12345", 11}},
			[]string{"child /q/plain has no 10-digit sequence suffix", "child /q/n-12345 has no"}},
		{"answer outside the parent", []SeqCreate{
			{Client: 1, Path: "/r/" + seqName("n-", 0), Outcome: OK, Zxid: 10},
			{Client: 1, Path: "/q/x/" + seqName("n-", 0), Outcome: OK, Zxid: 11},
			{Client: 1, Path: "/q/n-x", Outcome: OK, Zxid: 12},
		}, nil,
			[]string{"answered /r/n-0000000000, not a child of /q", "answered /q/x/n-0000000000, not a child of /q", "answered /q/n-x, without a 10-digit sequence suffix"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vs := Sequential("/q", tc.creates, tc.final)
			for _, want := range tc.want {
				if !hasViolation(vs, "sequential", want) {
					t.Errorf("Sequential() = %v, want a violation with %q", vs, want)
				}
			}
			if len(vs) == 0 {
				t.Errorf("Sequential() found nothing")
			}
		})
	}
}

func TestSequentialCapsViolations(t *testing.T) {
	var creates []SeqCreate
	for i := range 100 {
		creates = append(creates, seqOK(1, seqName("n-", i), uint64(10+i), 2*i, 2*i+1))
	}
	vs := Sequential("/q", creates, nil)
	if len(vs) != maxViolations+1 || vs[maxViolations].Detail != "and 75 more violations" {
		t.Errorf("Sequential() = %d violations ending %v, want %d and a count of the rest", len(vs), vs[len(vs)-1], maxViolations+1)
	}
}

// hasViolation reports whether some violation of check holds detail.
func hasViolation(vs []Violation, check, detail string) bool {
	for _, v := range vs {
		if v.Check == check && strings.Contains(v.Detail, detail) {
			return true
		}
	}
	return false
}
