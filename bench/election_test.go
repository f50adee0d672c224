package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// flockContenderArg makes the test binary a contender of a file-lock
// election (see TestMain): the holder of an exclusive flock on the file
// named after it leads, and the kernel releases it the moment the holder
// is killed.
const flockContenderArg = "bench-test-flock-contender"

func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == flockContenderArg {
		os.Exit(flockContender(os.Args[2]))
	}
	os.Exit(m.Run())
}

// flockContender speaks the contender protocol for the election of the
// lock file at path: in line once the file is open, elected once it holds
// the flock, which it keeps until it is killed.
func flockContender(path string) int {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := WriteContenderLine(os.Stdout, ContenderCandidate, time.Now(), "session=0s"); err != nil {
		return 1
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := WriteContenderLine(os.Stdout, ContenderElected, time.Now(), ""); err != nil {
		return 1
	}
	select {}
}

// flockCluster is a fakeCluster whose contenders are flockContender
// processes of this test binary.
type flockCluster struct {
	*fakeCluster
	dir string
}

func (c *flockCluster) ContenderCommand(name string, _ time.Duration, _ int) []string {
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	return []string{exe, flockContenderArg, filepath.Join(c.dir, name+".lock")}
}

func TestContenderLine(t *testing.T) {
	at := time.Unix(1700000000, 123456789)
	var b bytes.Buffer
	if err := WriteContenderLine(&b, ContenderStopped, at, "session\nunconfirmed for 2s"); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "stopped 1700000000123456789 session unconfirmed for 2s\n"; got != want {
		t.Fatalf("WriteContenderLine wrote %q, want %q", got, want)
	}
	kind, got, detail, err := parseContenderLine(b.String())
	if err != nil || kind != ContenderStopped || !got.Equal(at) || detail != "session unconfirmed for 2s" {
		t.Errorf("parseContenderLine(%q) = %q, %v, %q, %v", b.String(), kind, got, detail, err)
	}
	if kind, _, detail, err := parseContenderLine("elected 5"); err != nil || kind != ContenderElected || detail != "" {
		t.Errorf("parseContenderLine(elected 5) = %q, %q, %v", kind, detail, err)
	}
	for _, bad := range []string{"", "elected", "leading 5", "elected soon"} {
		if _, _, _, err := parseContenderLine(bad); err == nil {
			t.Errorf("parseContenderLine(%q) = nil error, want one", bad)
		}
	}
}

// TestElectionFlock runs the election workload on flock contenders: every
// round kills the leading process, another takes the lock within
// milliseconds, and a replacement joins the line.
func TestElectionFlock(t *testing.T) {
	c := &flockCluster{fakeCluster: &fakeCluster{s: newFakeStore(), dir: t.TempDir()}, dir: t.TempDir()}
	var log strings.Builder
	res, err := Run(context.Background(), c, Options{Workloads: []string{WorkloadElection, WorkloadElectionServerKill}, ElectionRounds: 4, Log: &log})
	if err != nil {
		t.Fatalf("Run: %v\nlog:\n%s", err, log.String())
	}
	if len(res.Rows) != 2 {
		t.Fatalf("Run returned %d rows, want 2: %+v", len(res.Rows), res.Rows)
	}
	e := res.Rows[0]
	if e.Workload != WorkloadElection || e.Clients != electionContenders || e.Ops != 4 || e.Stops != 0 {
		t.Errorf("election row = %+v, want 4 rounds of %d contenders, no stops", e, electionContenders)
	}
	// Killing the holder frees the lock at once: failover is the time a
	// waiting process takes to be scheduled, far below a second even on
	// a loaded machine.
	if e.P50 <= 0 || e.P99 < e.P50 || e.P99 > 5*time.Second {
		t.Errorf("election failover p50 %v p99 %v, want 0 < p50 <= p99 < 5s", e.P50, e.P99)
	}
	for i := range 4 {
		if !strings.Contains(log.String(), fmt.Sprintf("election: round %d: contender", i)) {
			t.Errorf("log has no round %d:\n%s", i, log.String())
		}
	}
	// The fake cannot kill a server: the row is there, not measured.
	if k := res.Rows[1]; k.Workload != WorkloadElectionServerKill || k.Ops != 0 {
		t.Errorf("election-server-kill row of a cluster without Kill = %+v, want no rounds", k)
	}
}

func TestMarkdownElection(t *testing.T) {
	rs := []*Results{
		{System: "paddock", Nodes: 3, Rows: []Row{
			{Workload: WorkloadElection, Clients: 3, Ops: 20, P50: 1970 * time.Millisecond, P99: 2100 * time.Millisecond, CPUPer1kOps: -1, ClientCPUPer1kOps: -1, RSSBytes: -1, DiskBytes: -1},
			{Workload: WorkloadElectionServerKill, Clients: 3, Ops: 3, Stops: 1, P50: time.Second, P99: 2 * time.Second, CPUPer1kOps: -1, ClientCPUPer1kOps: -1, RSSBytes: -1, DiskBytes: -1},
		}},
		{System: "etcd", Nodes: 3, Rows: []Row{
			{Workload: WorkloadElection, Clients: 3, Ops: 20, P50: 2 * time.Second, P99: 2300 * time.Millisecond, CPUPer1kOps: -1, ClientCPUPer1kOps: -1, RSSBytes: -1, DiskBytes: -1},
			{Workload: WorkloadElectionServerKill, Clients: 3, Ops: 3, Stops: 0, P50: time.Second, P99: time.Second, CPUPer1kOps: -1, ClientCPUPer1kOps: -1, RSSBytes: -1, DiskBytes: -1},
		}},
	}
	var b bytes.Buffer
	if err := Markdown(&b, rs); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| election | 3 contenders | failover p50 | 1.97 s | 2.00 s | 0.98x |",
		"| election | 3 contenders | failover p99 | 2.10 s | 2.30 s | 0.91x |",
		"| election-server-kill | 3 contenders | leaders stopped | 1 in 3 kills | 0 in 3 kills | - |",
		"| election-server-kill | 3 contenders | cluster serves again p99 | 2.00 s | 1.00 s | 2.00x |",
	} {
		if !strings.Contains(b.String(), want+"\n") {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}
