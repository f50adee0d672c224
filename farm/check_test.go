package farm

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// farmOf is a snapshot of a farm with props and hosts named h0, h1...,
// each with conf; common, when given, is the farm's common child.
func farmOf(props Conf, common Conf, hosts ...Conf) *Snapshot {
	s := &Snapshot{Path: "/services/db", Exists: true, Props: props, Hosts: map[string]Host{}}
	for i, c := range hosts {
		s.Hosts[fmt.Sprintf("h%d", i)] = Host{Conf: c, Ephemeral: true}
	}
	if common != nil {
		s.Hosts[CommonName] = Host{Conf: common}
	}
	return s
}

func enabled(n, of int) []Conf {
	out := make([]Conf, of)
	for i := range out {
		v := "0"
		if i < n {
			v = "1"
		}
		out[i] = Conf{"enabled": v}
	}
	return out
}

func TestCheck(t *testing.T) {
	size := func(v any) Conf { return Conf{PropSize: v} }
	filtered := func(v any, f string) Conf { return Conf{PropSize: v, PropRunningFilter: f} }
	tests := []struct {
		name      string
		s         *Snapshot
		max, warn string
		want      CheckResult
	}{
		{"no size", farmOf(Conf{}, nil, enabled(3, 3)...), "1", "",
			CheckResult{Status: StatusUnknown, Message: "No `size' property found for `/services/db' farm"}},
		{"size not a number", farmOf(size("many"), nil, enabled(3, 3)...), "1", "",
			CheckResult{Status: StatusUnknown, Message: "No `size' property found for `/services/db' farm"}},
		{"all running, size as a string", farmOf(size("3"), nil, enabled(3, 3)...), "1", "",
			CheckResult{Status: StatusOK, Size: 3, Running: 3, Message: "3/3 nodes running, 0 nodes failing, max allowed 1"}},
		{"all running, size as a number", farmOf(size(json.Number("3")), nil, enabled(3, 3)...), "1", "",
			CheckResult{Status: StatusOK, Size: 3, Running: 3, Message: "3/3 nodes running, 0 nodes failing, max allowed 1"}},
		{"one gone, max 1", farmOf(size("3"), nil, enabled(2, 2)...), "1", "",
			CheckResult{Status: StatusCritical, Size: 3, Running: 2, Failing: 1, Message: "2/3 nodes running, 1 nodes failing, max allowed 1"}},
		{"one gone, max 2", farmOf(size("3"), nil, enabled(2, 2)...), "2", "",
			CheckResult{Status: StatusOK, Size: 3, Running: 2, Failing: 1, Message: "2/3 nodes running, 1 nodes failing, max allowed 2"}},
		{"one gone, max 2, warn 1", farmOf(size("3"), nil, enabled(2, 2)...), "2", "1",
			CheckResult{Status: StatusWarning, Size: 3, Running: 2, Failing: 1, Message: "2/3 nodes running, 1 nodes failing, max allowed 2"}},
		{"two gone, max 2, warn 1", farmOf(size("3"), nil, enabled(1, 1)...), "2", "1",
			CheckResult{Status: StatusCritical, Size: 3, Running: 1, Failing: 2, Message: "1/3 nodes running, 2 nodes failing, max allowed 2"}},
		{"10% of 10 is 1", farmOf(size("10"), nil, enabled(9, 9)...), "10%", "",
			CheckResult{Status: StatusCritical, Size: 10, Running: 9, Failing: 1, Message: "9/10 nodes running, 1 nodes failing, max allowed 10%"}},
		{"20% of 10 is 2", farmOf(size("10"), nil, enabled(9, 9)...), "20%", "",
			CheckResult{Status: StatusOK, Size: 10, Running: 9, Failing: 1, Message: "9/10 nodes running, 1 nodes failing, max allowed 20%"}},
		{"10% of 5 is 0.5", farmOf(size("5"), nil, enabled(4, 4)...), "10%", "",
			CheckResult{Status: StatusCritical, Size: 5, Running: 4, Failing: 1, Message: "4/5 nodes running, 1 nodes failing, max allowed 10%"}},
		{"warn by percentage", farmOf(size("10"), nil, enabled(8, 8)...), "50%", "15.5 %",
			CheckResult{Status: StatusWarning, Size: 10, Running: 8, Failing: 2, Message: "8/10 nodes running, 2 nodes failing, max allowed 50%"}},
		{"nothing failing with max 0 is OK", farmOf(size("2"), nil, enabled(2, 2)...), "0", "0",
			CheckResult{Status: StatusOK, Size: 2, Running: 2, Message: "2/2 nodes running, 0 nodes failing, max allowed 0"}},
		{"nothing failing with 10% of 3 is OK", farmOf(size("3"), nil, enabled(3, 3)...), "10%", "",
			CheckResult{Status: StatusOK, Size: 3, Running: 3, Message: "3/3 nodes running, 0 nodes failing, max allowed 10%"}},
		{"more running than size", farmOf(size("1"), nil, enabled(2, 2)...), "0", "",
			CheckResult{Status: StatusOK, Size: 1, Running: 2, Failing: -1, Message: "2/1 nodes running, -1 nodes failing, max allowed 0"}},
		{"running_filter", farmOf(filtered("4", "enabled=1"), nil, enabled(2, 4)...), "3", "2",
			CheckResult{Status: StatusWarning, Size: 4, Running: 2, Failing: 2, Message: "2/4 nodes running, 2 nodes failing, max allowed 3"}},
		{"common excluded", farmOf(size("3"), Conf{"enabled": "1"}, enabled(2, 2)...), "1", "",
			CheckResult{Status: StatusCritical, Size: 3, Running: 2, Failing: 1, Message: "2/3 nodes running, 1 nodes failing, max allowed 1"}},
		{"common excluded from running_filter", farmOf(filtered("3", "enabled=1"), Conf{"enabled": "1"}, enabled(2, 3)...), "2", "",
			CheckResult{Status: StatusOK, Size: 3, Running: 2, Failing: 1, Message: "2/3 nodes running, 1 nodes failing, max allowed 2"}},
		{"missing farm", &Snapshot{Path: "/services/db", Props: Conf{}, Hosts: map[string]Host{}}, "1", "",
			CheckResult{Status: StatusUnknown, Message: "No `size' property found for `/services/db' farm"}},
		{"bad max", farmOf(size("3"), nil), "x", "",
			CheckResult{Status: StatusUnknown, Message: "Invalid `max_failed_node' argument format: x"}},
		{"bad max percentage", farmOf(size("3"), nil), "-1%", "",
			CheckResult{Status: StatusUnknown, Message: "Invalid `max_failed_node' argument format: -1%"}},
		{"bad warn", farmOf(size("3"), nil), "1", "1.5",
			CheckResult{Status: StatusUnknown, Message: "Invalid `warn_failed_node' argument format: 1.5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.s.Check(tt.max, tt.warn); got != tt.want {
				t.Errorf("Check(%q, %q) = %+v, want %+v", tt.max, tt.warn, got, tt.want)
			}
		})
	}
}

func TestCheckBadRunningFilter(t *testing.T) {
	s := farmOf(Conf{PropSize: "2", PropRunningFilter: "a=1,,b"}, nil, enabled(2, 2)...)
	got := s.Check("1", "")
	if got.Status != StatusUnknown || !strings.Contains(got.Message, "running_filter of /services/db") {
		t.Errorf("Check with a bad running_filter = %+v, want UNKNOWN naming it", got)
	}
}

func TestThreshold(t *testing.T) {
	tests := []struct {
		in   string
		size int
		want float64
		ok   bool
	}{
		{"0", 10, 0, true},
		{"3", 10, 3, true},
		{" 3 ", 10, 3, true},
		{"10%", 10, 1, true},
		{"10%", 5, 0.5, true},
		{"100%", 7, 7, true},
		{"12.5%", 8, 1, true},
		{"10 %", 10, 1, true},
		{"", 10, 0, false},
		{"%", 10, 0, false},
		{"-1", 10, 0, false},
		{"-10%", 10, 0, false},
		{"1.5", 10, 0, false},
		{"NaN%", 10, 0, false},
		{"Inf%", 10, 0, false},
		{"ten", 10, 0, false},
	}
	for _, tt := range tests {
		got, err := threshold(tt.in, tt.size)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("threshold(%q, %d) = %v, %v, want %v (ok %v)", tt.in, tt.size, got, err, tt.want, tt.ok)
		}
	}
}

func TestSnapshotExport(t *testing.T) {
	s := farmOf(Conf{}, Conf{"enabled": "1"}, enabled(1, 2)...)
	f, err := ParseFilter("enabled=1")
	if err != nil {
		t.Fatal(err)
	}
	got := s.Export(f)
	if len(got) != 1 || got["h0"] == nil {
		t.Errorf("Export(enabled=1) = %v, want h0 alone (common is not a host)", got)
	}
	if n := s.HostCount(); n != 2 {
		t.Errorf("HostCount() = %d, want 2 (common is not a host)", n)
	}
	if got := len(s.Export(Filter{})); got != 2 {
		t.Errorf("Export(no filter) has %d entries, want 2", got)
	}
}
