package bench

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRatioDirection(t *testing.T) {
	tests := []struct {
		name    string
		m       metric
		paddock float64
		peers   []float64
		want    float64
		ok      bool
	}{
		{"ops/s against the fastest peer", mOpsPerSec, 300, []float64{100, 200}, 1.5, true},
		{"ops/s order of peers does not matter", mOpsPerSec, 300, []float64{200, 100}, 1.5, true},
		{"p99 against the lowest peer", mP99, 2, []float64{8, 4}, 0.5, true},
		{"p99 order of peers does not matter", mP99, 2, []float64{4, 8}, 0.5, true},
		{"RSS against the leanest peer", mRSS, 50, []float64{100, 400}, 0.5, true},
		{"no peers", mOpsPerSec, 300, nil, 0, false},
		{"best peer zero", mP99, 2, []float64{0, 4}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ratio(tt.m, tt.paddock, tt.peers)
			if ok != tt.ok || got != tt.want {
				t.Errorf("ratio(%s, %v, %v) = %v, %t, want %v, %t", tt.m.name, tt.paddock, tt.peers, got, ok, tt.want, tt.ok)
			}
		})
	}
}

// sampleResults are a paddock run and a peer's with the rows of every
// kind, the peer missing one.
func sampleResults() []*Results {
	return []*Results{
		{System: "paddock", Nodes: 3, Rows: []Row{
			{Workload: WorkloadWrite, Clients: 16, Ops: 3000, OpsPerSec: 3000, P50: time.Millisecond, P99: 2 * time.Millisecond, CPUPer1kOps: 0.5, ClientCPUPer1kOps: 0.25, RSSBytes: -1, DiskBytes: -1, Leader: 1},
			{Workload: WorkloadWrite, Clients: 1, Ops: 1000, OpsPerSec: 1000, P50: time.Millisecond, P99: 3 * time.Millisecond, CPUPer1kOps: -1, ClientCPUPer1kOps: -1, RSSBytes: -1, DiskBytes: -1, Leader: 1},
			{Workload: WorkloadMemory, Ops: 100, CPUPer1kOps: -1, ClientCPUPer1kOps: -1, RSSBytes: 50 << 20, DiskBytes: 10 << 20, Leader: 1},
			{Workload: WorkloadWatch, Clients: 1000, Ops: 5000, OpsPerSec: 9000, P50: 100 * time.Microsecond, P99: 900 * time.Microsecond, CPUPer1kOps: 0.1, ClientCPUPer1kOps: 0.05, RSSBytes: -1, DiskBytes: -1, Leader: 2},
			{Workload: WorkloadRestart, Ops: 0, P50: -1, P99: -1, CPUPer1kOps: -1, ClientCPUPer1kOps: -1, RSSBytes: -1, DiskBytes: -1, Leader: 2},
		}},
		{System: "etcd", Nodes: 3, Rows: []Row{
			{Workload: WorkloadWrite, Clients: 1, Ops: 500, OpsPerSec: 500, P50: 2 * time.Millisecond, P99: 6 * time.Millisecond, CPUPer1kOps: 1, ClientCPUPer1kOps: 0.75, RSSBytes: -1, DiskBytes: -1},
			{Workload: WorkloadWrite, Clients: 16, Ops: 2000, OpsPerSec: 2000, P50: time.Millisecond, P99: 4 * time.Millisecond, CPUPer1kOps: 1, ClientCPUPer1kOps: 0.5, RSSBytes: -1, DiskBytes: -1},
			{Workload: WorkloadMemory, Ops: 100, CPUPer1kOps: -1, ClientCPUPer1kOps: -1, RSSBytes: 200 << 20, DiskBytes: 40 << 20},
		}},
	}
}

func TestMarkdown(t *testing.T) {
	var b bytes.Buffer
	if err := Markdown(&b, sampleResults()); err != nil {
		t.Fatalf("Markdown: %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	want := []string{
		"| workload | clients | metric | paddock | etcd | paddock / best peer |",
		"|---|---:|---|---:|---:|---:|",
		"| write | 1 | ops/s | 1000 | 500 | 2.00x |",
		"| write | 1 | p50 | 1.000 ms | 2.000 ms | 0.50x |",
		"| write | 1 | p99 | 3.000 ms | 6.000 ms | 0.50x |",
		"| write | 1 | CPU s / 1k ops | n/a | 1.000 | - |",
		"| write | 1 | client CPU s / 1k ops | n/a | 0.750 | - |",
		"| write | 16 | ops/s | 3000 | 2000 | 1.50x |",
		"| write | 16 | p50 | 1.000 ms | 1.000 ms | 1.00x |",
		"| write | 16 | p99 | 2.000 ms | 4.000 ms | 0.50x |",
		"| write | 16 | CPU s / 1k ops | 0.500 | 1.000 | 0.50x |",
		"| write | 16 | client CPU s / 1k ops | 0.250 | 0.500 | 0.50x |",
		"| watch | 1000 watchers | p50 | 0.100 ms | - | - |",
		"| watch | 1000 watchers | p99 | 0.900 ms | - | - |",
		"| watch | 1000 watchers | events/s | 9000 | - | - |",
		"| watch | 1000 watchers | CPU s / 1k ops | 0.100 | - | - |",
		"| watch | 1000 watchers | client CPU s / 1k ops | 0.050 | - | - |",
		"| memory | - | RSS | 50.0 MiB | 200.0 MiB | 0.25x |",
		"| memory | - | disk | 10.0 MiB | 40.0 MiB | 0.25x |",
		"| restart | - | time to serve | n/a | - | - |",
		"",
		"Clients placed " + Placement + "; leader was node 1, node 2 from watch/1000 on (paddock), node 0 (etcd).",
	}
	if len(lines) != len(want) {
		t.Fatalf("Markdown has %d lines, want %d:\n%s", len(lines), len(want), b.String())
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Errorf("Markdown line %d = %q, want %q", i, lines[i], want[i])
		}
	}
	cols := strings.Count(want[0], "|")
	for i, l := range lines[:len(lines)-2] {
		if n := strings.Count(l, "|"); n != cols {
			t.Errorf("Markdown line %d has %d bars, want %d: %q", i, n, cols, l)
		}
	}
}

func TestLeaderNote(t *testing.T) {
	tests := []struct {
		name string
		rows []Row
		want string
	}{
		{"no rows", nil, "not known (no rows)"},
		{"one leader", []Row{{Leader: 2}, {Leader: 2}}, "node 2"},
		{"leader none of the nodes", []Row{{Leader: -1}}, "none of the nodes"},
		{"moved twice", []Row{
			{Workload: WorkloadWrite, Clients: 1, Leader: 0},
			{Workload: WorkloadWrite, Clients: 16, Leader: 1},
			{Workload: WorkloadMixed, Clients: 1, Leader: 1},
			{Workload: WorkloadMixed, Clients: 16, Leader: 0},
		}, "node 0, node 1 from write/16 on, node 0 from mixed/16 on"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := leaderNote(tt.rows); got != tt.want {
				t.Errorf("leaderNote(%+v) = %q, want %q", tt.rows, got, tt.want)
			}
		})
	}
}

func TestMarkdownDuplicateRow(t *testing.T) {
	rs := []*Results{{System: "paddock", Rows: []Row{{Workload: WorkloadWrite, Clients: 1}, {Workload: WorkloadWrite, Clients: 1}}}}
	if err := Markdown(&bytes.Buffer{}, rs); err == nil {
		t.Errorf("Markdown(two write rows of 1 client) = nil, want an error")
	}
}

func TestWriteJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.json")
	if err := WriteJSON(path, sampleResults(), 1234.5); err != nil {
		t.Fatalf("WriteJSON: %v", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got jsonFile
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("WriteJSON wrote invalid JSON: %v\n%s", err, b)
	}
	if got.FsyncPerSec != 1234.5 || len(got.Results) != 2 || got.Results[0].System != "paddock" || len(got.Results[0].Rows) != 5 {
		t.Fatalf("WriteJSON = %+v, want fsync 1234.5 and paddock's 5 rows then etcd's", got)
	}
	if p := got.Results[0]; p.Nodes != 3 || p.Placement != Placement || p.Rows[0].Leader != 1 || p.Rows[3].Leader != 2 {
		t.Errorf("WriteJSON paddock nodes %d, placement %q, leaders %d and %d; want 3, %q, 1 and 2",
			p.Nodes, p.Placement, p.Rows[0].Leader, p.Rows[3].Leader, Placement)
	}
	w := got.Results[0].Rows[0]
	if w.Workload != WorkloadWrite || w.Clients != 16 || w.Ops != 3000 || w.P99Ms == nil || *w.P99Ms != 2 || w.CPUPer1kOps == nil || *w.CPUPer1kOps != 0.5 || w.ClientCPU == nil || *w.ClientCPU != 0.25 || w.RSSBytes != nil {
		t.Errorf("WriteJSON first row = %+v, want write/16 3000 ops p99 2ms cpu 0.5 client cpu 0.25 rss null", w)
	}
	if m := got.Results[0].Rows[2]; m.RSSBytes == nil || *m.RSSBytes != 50<<20 || m.CPUPer1kOps != nil || m.ClientCPU != nil {
		t.Errorf("WriteJSON memory row = %+v, want rss %d, server and client cpu null", m, 50<<20)
	}
	if r := got.Results[0].Rows[4]; r.P50Ms != nil || r.P99Ms != nil {
		t.Errorf("WriteJSON unsupported restart row = %+v, want null latencies", r)
	}
}
