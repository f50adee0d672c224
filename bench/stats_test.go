package bench

import (
	"errors"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one p50", ms(7), 0.5, 7 * time.Millisecond},
		{"one p99", ms(7), 0.99, 7 * time.Millisecond},
		{"two p50 is the lower", ms(1, 2), 0.5, time.Millisecond},
		{"five p99 is the max", ms(1, 2, 3, 4, 5), 0.99, 5 * time.Millisecond},
		{"hundred p50", ms(hundred...), 0.5, 50 * time.Millisecond},
		{"hundred p99", ms(hundred...), 0.99, 99 * time.Millisecond},
		{"hundred p100", ms(hundred...), 1, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.q); got != tt.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tt.sorted, tt.q, got, tt.want)
			}
		})
	}
}

func TestMerge(t *testing.T) {
	a := &recorder{}
	a.record(3)
	a.record(1)
	b := &recorder{}
	b.record(2)
	errFirst := errors.New("first")
	b.fail(errFirst)
	b.fail(errors.New("second"))
	m := merge([]*recorder{a, b, {}})
	if want := []time.Duration{1, 2, 3}; len(m.lat) != 3 || m.lat[0] != want[0] || m.lat[1] != want[1] || m.lat[2] != want[2] {
		t.Errorf("merge latencies = %v, want %v", m.lat, want)
	}
	if m.failed != 2 || !errors.Is(m.err, errFirst) {
		t.Errorf("merge failures = %d (%v), want 2 (first)", m.failed, m.err)
	}
}

func TestCheckFailedShare(t *testing.T) {
	tests := []struct {
		name    string
		ok      int
		failed  int64
		wantErr bool
	}{
		{"none failed", 100, 0, false},
		{"one in two hundred", 199, 1, false},
		{"one in a hundred", 99, 1, false},
		{"two in a hundred", 98, 2, true},
		{"all failed", 0, 3, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := merged{lat: make([]time.Duration, tt.ok), failed: tt.failed, err: errors.New("boom")}
			if err := m.check("x"); (err != nil) != tt.wantErr {
				t.Errorf("check(%d ok, %d failed) = %v, want error %t", tt.ok, tt.failed, err, tt.wantErr)
			}
		})
	}
}
