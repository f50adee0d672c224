package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paddock/paddock/bench"
)

// TestElectionAndLockWorkloads runs the lock, election and
// election-server-kill workloads briefly against a three-node cluster of
// each system (Paddock built from this tree), after checking that two
// mutexes on one lock exclude each other.
func TestElectionAndLockWorkloads(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real Paddock, etcd and ZooKeeper clusters")
	}
	systems := append([]struct {
		name  string
		need  string
		start func(ctx context.Context, base string) (bench.Cluster, error)
	}{{"paddock", "go", func(ctx context.Context, base string) (bench.Cluster, error) {
		// The paddock module is two levels up (this module replaces it
		// with ../..).
		bin := filepath.Join(base, "paddock")
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/paddock")
		build.Dir = filepath.Join("..", "..")
		if out, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build ./cmd/paddock: %v\n%s", err, out)
		}
		return bench.NewPaddockCluster(ctx, bin, base)
	}}}, peerSystems...)
	const ttl = 2 * time.Second
	for _, sys := range systems {
		t.Run(sys.name, func(t *testing.T) {
			if _, err := exec.LookPath(sys.need); err != nil {
				if _, err := os.Stat(sys.need); err != nil {
					t.Skipf("%s not installed (%s)", sys.name, sys.need)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			c, err := sys.start(ctx, t.TempDir())
			if err != nil {
				t.Fatalf("start %s: %v", sys.name, err)
			}
			defer func() {
				if err := c.Close(); err != nil {
					t.Errorf("Close() = %v", err)
				}
			}()
			if err := c.Prepare(ctx); err != nil {
				t.Fatalf("Prepare() = %v", err)
			}
			t.Run("mutex", func(t *testing.T) { mutualExclusion(ctx, t, c) })

			res, err := bench.Run(ctx, c, bench.Options{
				Workloads:   []string{bench.WorkloadLock, bench.WorkloadElection, bench.WorkloadElectionServerKill},
				LockClients: []int{1, 4}, Duration: time.Second, Warmup: 200 * time.Millisecond,
				ElectionRounds: 2, ServerKills: 1, SessionTTL: ttl, Log: tlog{t},
			})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			rows := map[string][]bench.Row{}
			for _, r := range res.Rows {
				rows[r.Workload] = append(rows[r.Workload], r)
			}
			for _, r := range rows[bench.WorkloadLock] {
				if r.Ops <= 0 || r.P99 < r.P50 {
					t.Errorf("lock row = %+v, want operations and p99 >= p50", r)
				}
			}
			if n := len(rows[bench.WorkloadLock]); n != 2 {
				t.Errorf("%d lock rows, want 2", n)
			}
			// A killed leader's session ends one session timeout after
			// its last keepalive (sent every third of it) at most, plus
			// the server's expiry tick and the next one's wake-up.
			if e := rows[bench.WorkloadElection]; len(e) != 1 || e[0].Ops != 2 || e[0].P50 < ttl/3 || e[0].P99 > 2*ttl+2*time.Second {
				t.Errorf("election rows = %+v, want 2 rounds failing over in [%v, %v]", e, ttl/3, 2*ttl+2*time.Second)
			}
			if k := rows[bench.WorkloadElectionServerKill]; len(k) != 1 || k[0].Ops != 1 || k[0].Stops > 1 {
				t.Errorf("election-server-kill rows = %+v, want 1 kill and at most the one leader stopped", k)
			}
		})
	}
}

// tlog writes the run's progress to the test log.
type tlog struct{ t *testing.T }

func (l tlog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// mutualExclusion checks that a second mutex on a held lock waits until
// the first is unlocked.
func mutualExclusion(ctx context.Context, t *testing.T, c bench.Cluster) {
	cl, err := c.NewClient(ctx, -1)
	if err != nil {
		t.Fatalf("NewClient(-1) = %v", err)
	}
	defer cl.Close()
	lk, ok := cl.(bench.Locker)
	if !ok {
		t.Fatalf("%s client is not a bench.Locker", c.Name())
	}
	var ms [2]bench.Mutex
	for i := range ms {
		if ms[i], err = lk.NewMutex(ctx, "mutex-test", 10*time.Second); err != nil {
			t.Fatalf("NewMutex = %v", err)
		}
		defer ms[i].Close(context.WithoutCancel(ctx))
	}
	if err := ms[0].Lock(ctx); err != nil {
		t.Fatalf("first Lock = %v", err)
	}
	second := make(chan error, 1)
	go func() { second <- ms[1].Lock(ctx) }()
	// The second Lock must still wait a while later: a negative check,
	// so it waits a fixed time.
	select {
	case err := <-second:
		t.Fatalf("second Lock returned %v while the first mutex held the lock", err)
	case <-time.After(500 * time.Millisecond):
	}
	if err := ms[0].Unlock(ctx); err != nil {
		t.Fatalf("first Unlock = %v", err)
	}
	select {
	case err := <-second:
		if err != nil {
			t.Fatalf("second Lock = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("second Lock still waiting 10s after the first Unlock")
	}
	if err := ms[1].Unlock(ctx); err != nil {
		t.Errorf("second Unlock = %v", err)
	}
}
