package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/paddock/paddock/e2e/child"
)

// benchTimeout bounds the smoke run of `paddock bench`: it takes about 30s
// (a cleanup round and an election round each wait out a 2s session, a
// server kill waits for a raft election and two sessions), more with
// -race.
const benchTimeout = 3 * time.Minute

// benchWorkloads are every workload of `paddock bench`.
var benchWorkloads = []string{"write", "read-linearizable", "read-serializable", "mixed", "watch",
	"session-churn", "ephemeral-cleanup", "memory", "restart", "lock", "election", "election-server-kill"}

// TestBenchSmoke runs `paddock bench` with tiny durations against the
// three agents it starts itself, and checks that every workload produced
// rows with operations, in the table and in the JSON file. It never
// checks speed.
func TestBenchSmoke(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	jsonPath := filepath.Join(dir, "bench.json")
	ctx, cancel := context.WithTimeout(context.Background(), benchTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, paddockBin, "bench",
		"--duration", "300ms", "--warmup", "100ms", "--clients", "1,2", "--keys", "200",
		"--watchers", "1,10", "--workloads", strings.Join(benchWorkloads, ","),
		"--lock-clients", "1,2", "--election-rounds", "1", "--server-kills", "1",
		"--data-dir", filepath.Join(dir, "data"), "--json", jsonPath)
	cmd.Env = child.Env()
	cmd.SysProcAttr = sysProcAttr()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	logs, _ := filepath.Glob(filepath.Join(dir, "data", "*", "n*.log"))
	for _, l := range logs {
		if b, err := os.ReadFile(l); err == nil && strings.Contains(string(b), "WARNING: DATA RACE") {
			t.Errorf("%s reports a data race:\n%s", l, child.Tail(l, logTail))
		}
	}
	if err != nil {
		t.Fatalf("paddock bench: %v (ctx %v)\nstdout:\n%s\nstderr:\n%s", err, ctx.Err(), stdout.String(), stderr.String())
	}
	out := stdout.String()

	// The table: a line per workload, level and metric, "| workload |
	// clients | metric | paddock | paddock / best peer |".
	lines := map[string][]string{}
	for _, l := range strings.Split(out, "\n") {
		cells := strings.Split(l, "|")
		if len(cells) != 7 {
			continue
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		lines[cells[1]] = append(lines[cells[1]], strings.Join(cells[2:6], " | "))
	}
	if got := lines["workload"]; len(got) != 1 || got[0] != "clients | metric | paddock | paddock / best peer" {
		t.Errorf("table header = %q, want workload, clients, metric, paddock, ratio:\n%s", got, out)
	}
	for _, w := range benchWorkloads {
		if len(lines[w]) == 0 {
			t.Errorf("table has no %s line:\n%s", w, out)
		}
		for _, l := range lines[w] {
			if strings.Contains(l, "n/a") {
				t.Errorf("table line of %s: %q has a figure not measured:\n%s", w, l, out)
			}
		}
	}
	if !strings.Contains(out, "fdatasync/s") {
		t.Errorf("output has no fdatasync rate:\n%s", out)
	}
	if !regexp.MustCompile(`(?m)^Clients placed round-robin starting at a follower.*; leader was node [0-2].* \(paddock\)\.$`).MatchString(out) {
		t.Errorf("output has no placement footnote naming the leader:\n%s", out)
	}

	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatalf("--json file: %v", err)
	}
	var res struct {
		FsyncPerSec float64 `json:"fsync_per_sec"`
		Results     []struct {
			System    string `json:"system"`
			Nodes     int    `json:"nodes"`
			Placement string `json:"placement"`
			Rows      []struct {
				Workload string   `json:"workload"`
				Clients  int      `json:"clients"`
				Ops      int64    `json:"ops"`
				P99Ms    *float64 `json:"p99_ms"`
				RSSBytes *int64   `json:"rss_bytes"`
				Leader   *int     `json:"leader"`
			} `json:"rows"`
		} `json:"results"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("--json file does not parse: %v\n%s", err, b)
	}
	if res.FsyncPerSec <= 0 || len(res.Results) != 1 || res.Results[0].System != "paddock" {
		t.Fatalf("--json file = fsync %v, %d systems, want fsync > 0 and paddock alone:\n%s", res.FsyncPerSec, len(res.Results), b)
	}
	if p := res.Results[0]; p.Nodes != 3 || !strings.HasPrefix(p.Placement, "round-robin starting at a follower") {
		t.Errorf("--json nodes %d, placement %q; want 3 and round-robin from a follower", p.Nodes, p.Placement)
	}
	rows := map[string]int{}
	for _, r := range res.Results[0].Rows {
		rows[r.Workload]++
		if r.Leader == nil || *r.Leader < 0 || *r.Leader > 2 {
			t.Errorf("--json %s row of %d clients has leader %v, want node 0, 1 or 2", r.Workload, r.Clients, r.Leader)
		}
		if r.Ops <= 0 {
			t.Errorf("--json %s row of %d clients has %d ops, want > 0", r.Workload, r.Clients, r.Ops)
		}
		if r.Workload == "memory" && (r.RSSBytes == nil || *r.RSSBytes <= 0) {
			t.Errorf("--json memory row has RSS %v, want > 0", r.RSSBytes)
		}
	}
	want := map[string]int{"write": 2, "read-linearizable": 2, "read-serializable": 2, "mixed": 2, "watch": 2,
		"session-churn": 2, "ephemeral-cleanup": 1, "memory": 1, "restart": 1,
		"lock": 2, "election": 1, "election-server-kill": 1}
	for w, n := range want {
		if rows[w] != n {
			t.Errorf("--json has %d %s rows, want %d", rows[w], w, n)
		}
	}
}

// TestBenchFarmSmoke runs `paddock bench farm` on a tiny farm, so that
// it keeps compiling and working, and checks that every figure was
// measured and that the exporter read one host per change. It never
// checks speed.
func TestBenchFarmSmoke(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), benchTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, paddockBin, "bench", "farm",
		"--hosts", "20", "--changes", "5", "--writes", "5", "--data-dir", dir)
	cmd.Env = child.Env()
	cmd.SysProcAttr = sysProcAttr()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("paddock bench farm: %v (ctx %v)\nstdout:\n%s\nstderr:\n%s", err, ctx.Err(), stdout.String(), stderr.String())
	}
	out := stdout.String()
	figures := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if cells := strings.Split(l, "|"); len(cells) == 4 {
			figures[strings.TrimSpace(cells[1])] = strings.TrimSpace(cells[2])
		}
	}
	duration := `[0-9.]+ (ms|s)`
	for _, want := range []struct{ name, re string }{
		{"hosts", `^20$`},
		{"register 20 joiners, 50 at a time: total", "^" + duration + "$"},
		{"register, per joiner: p50 / p99", "^" + duration + " / " + duration + "$"},
		{"registrations whose size raise lost (Join retries it later)", `^[0-9]+$`},
		{"real `farm join`, start to znode visible", "^" + duration + ", " + duration + ", " + duration + "$"},
		{"`farm set` start to DEST written (5 changes): p50 / p99", "^" + duration + " / " + duration + "$"},
		{"`farm set` acknowledged to DEST written: p50 / p99", "^" + duration + " / " + duration + "$"},
		{"exporter CPU per change", "^" + duration + "$"},
		{"serialising DEST (json, 20 hosts), CPU per write", "^" + duration + "$"},
		// One full read and one write at start, then one host read and
		// one write per change.
		{"exporter full reads / host reads / writes", `^1 / 5 / 6$`},
	} {
		got, ok := figures[want.name]
		if !ok || !regexp.MustCompile(want.re).MatchString(got) {
			t.Errorf("figure %q = %q, want %s:\n%s", want.name, got, want.re, out)
		}
	}
	if !strings.Contains(out, "fdatasync/s") {
		t.Errorf("output has no fdatasync rate:\n%s", out)
	}
}
