package bench

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestProcOfSelf(t *testing.T) {
	pid := os.Getpid()
	before, err := cpuSeconds(pid)
	if err != nil {
		t.Fatalf("cpuSeconds(self): %v", err)
	}
	// Burn CPU until the clock ticks at least once (10ms at 100 Hz).
	deadline := time.Now().Add(5 * time.Second)
	after := before
	for after == before && time.Now().Before(deadline) {
		for i := 0; i < 1_000_000; i++ {
			_ = i * i
		}
		if after, err = cpuSeconds(pid); err != nil {
			t.Fatalf("cpuSeconds(self): %v", err)
		}
	}
	if after <= before {
		t.Errorf("cpuSeconds(self) after burning CPU = %v, want > %v", after, before)
	}
	rss, err := rssBytes(pid)
	if err != nil || rss <= 0 {
		t.Errorf("rssBytes(self) = %d, %v, want > 0", rss, err)
	}
	if _, err := cpuSeconds(-1); err == nil {
		t.Errorf("cpuSeconds(-1) = nil error, want one")
	}
	if d := cpuDelta(map[int]float64{1: 1, 2: 5}, map[int]float64{1: 3, 3: 9}); d != 2 {
		t.Errorf("cpuDelta = %v, want 2 (only processes in both snapshots)", d)
	}
}

func TestDiskBytes(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "a", "b")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(dir, "x"), filepath.Join(sub, "y")} {
		if err := os.WriteFile(p, make([]byte, 10000), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	n, err := diskBytes([]string{dir})
	if err != nil {
		t.Fatalf("diskBytes: %v", err)
	}
	if n < 20000 {
		t.Errorf("diskBytes(two files of 10000 bytes) = %d, want >= 20000", n)
	}
	if _, err := diskBytes([]string{filepath.Join(dir, "missing")}); err == nil {
		t.Errorf("diskBytes(missing dir) = nil error, want one")
	}
}

func TestFsyncRate(t *testing.T) {
	dir := t.TempDir()
	r, err := FsyncRate(dir, 50*time.Millisecond)
	if err != nil || r <= 0 {
		t.Fatalf("FsyncRate = %v, %v, want > 0", r, err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("FsyncRate left %d files in its dir, want 0", len(left))
	}
}

func TestOptionsDefaults(t *testing.T) {
	o, err := Options{}.withDefaults()
	if err != nil {
		t.Fatalf("withDefaults(zero) = %v", err)
	}
	if o.Duration != 10*time.Second || o.Warmup != 2*time.Second || len(o.Clients) != 3 || o.Keys != 100000 ||
		o.ValueSize != 128 || len(o.Watchers) != 2 || o.SessionTTL != 2*time.Second || len(o.Workloads) != len(Workloads) {
		t.Errorf("withDefaults(zero) = %+v, want the documented defaults", o)
	}
	if !slices.Equal(o.LockClients, []int{1, 16}) || o.ElectionRounds != 20 || o.ServerKills != 3 {
		t.Errorf("withDefaults(zero): lock clients %v, election rounds %d, server kills %d; want [1 16], 20, 3",
			o.LockClients, o.ElectionRounds, o.ServerKills)
	}
	bad := []struct {
		name string
		o    Options
	}{
		{"unknown workload", Options{Workloads: []string{"nope"}}},
		{"zero clients", Options{Clients: []int{0}}},
		{"negative watchers", Options{Watchers: []int{3, -1}}},
		{"repeated clients", Options{Clients: []int{1, 1}}},
		{"repeated watchers", Options{Watchers: []int{5, 5}}},
		{"negative keys", Options{Keys: -1}},
		{"negative duration", Options{Duration: -time.Second}},
		{"zero lock clients", Options{LockClients: []int{1, 0}}},
		{"repeated lock clients", Options{LockClients: []int{16, 16}}},
		{"negative election rounds", Options{ElectionRounds: -1}},
		{"negative server kills", Options{ServerKills: -2}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.o.withDefaults(); err == nil {
				t.Errorf("withDefaults(%+v) = nil error, want one", tt.o)
			}
		})
	}
}
