package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paddock/paddock/bench"
	"go.uber.org/goleak"
)

// TestMain runs the hold or contend subcommand when the test binary is
// started as a HoldCommand or ContenderCommand child, and otherwise the
// tests with a goroutine leak check.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "hold" {
		os.Exit(holdMain(os.Args[2:], os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "contend" {
		os.Exit(contendMain(os.Args[2:], os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m)
}

// peerSystems are the clusters under test, each skipped when its server is
// not installed.
var peerSystems = []struct {
	name  string
	need  string // a file or command the system needs
	start func(ctx context.Context, base string) (bench.Cluster, error)
}{
	{"etcd", etcdBinary, func(ctx context.Context, base string) (bench.Cluster, error) {
		return newEtcdCluster(ctx, base)
	}},
	{"zookeeper", zkJar, func(ctx context.Context, base string) (bench.Cluster, error) {
		return newZKCluster(ctx, base)
	}},
}

// TestPeerClusters starts each peer's three-node cluster, exercises every
// Cluster, Client and Session method once, and checks that Close leaves no
// server process behind.
func TestPeerClusters(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real etcd and ZooKeeper clusters")
	}
	for _, sys := range peerSystems {
		t.Run(sys.name, func(t *testing.T) {
			if _, err := exec.LookPath(sys.need); err != nil {
				if _, err := os.Stat(sys.need); err != nil {
					t.Skipf("%s not installed (%s)", sys.name, sys.need)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			c, err := sys.start(ctx, t.TempDir())
			if err != nil {
				t.Fatalf("start %s: %v", sys.name, err)
			}
			pids := c.PIDs()
			defer func() {
				if err := c.Close(); err != nil {
					t.Errorf("Close() = %v", err)
				}
				for _, pid := range pids {
					if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
						t.Errorf("server pid %d still exists after Close (kill 0: %v)", pid, err)
					}
				}
				if got := c.PIDs(); len(got) != 0 {
					t.Errorf("PIDs() after Close = %v, want none", got)
				}
			}()
			exercise(ctx, t, c)
			pids = append(pids, c.PIDs()...) // the restarted node's new PID
		})
	}
}

// exercise calls every method of c, its clients and sessions.
func exercise(ctx context.Context, t *testing.T, c bench.Cluster) {
	if got := c.Nodes(); got != 3 {
		t.Errorf("Nodes() = %d, want 3", got)
	}
	if got := c.PIDs(); len(got) != 3 {
		t.Errorf("PIDs() = %v, want 3 pids", got)
	}
	dirs := c.DataDirs()
	if len(dirs) != 3 {
		t.Errorf("DataDirs() = %v, want 3 directories", dirs)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("data dir %s: %v", d, err)
		}
	}
	if err := c.Prepare(ctx); err != nil {
		t.Fatalf("Prepare() = %v", err)
	}
	if _, err := c.NewClient(ctx, 3); !errors.Is(err, errNodeIndex) {
		t.Errorf("NewClient(3) error = %v, want %v", err, errNodeIndex)
	}
	cli, err := c.NewClient(ctx, -1)
	if err != nil {
		t.Fatalf("NewClient(-1) = %v", err)
	}
	defer cli.Close()

	const key = "/bench/k0000001"
	if err := cli.Create(ctx, key, []byte("v1")); err != nil {
		t.Fatalf("Create(%s) = %v", key, err)
	}
	if err := cli.Create(ctx, key, []byte("again")); err == nil {
		t.Errorf("Create(%s) twice = nil, want an error", key)
	}
	if got := rawValue(t, cli, key); got != "v1" {
		t.Errorf("value of %s after Create = %q, want v1", key, got)
	}
	if err := cli.Put(ctx, key, []byte("v2")); err != nil {
		t.Fatalf("Put(%s) = %v", key, err)
	}
	if got := rawValue(t, cli, key); got != "v2" {
		t.Errorf("value of %s after Put = %q, want v2", key, got)
	}
	for _, cons := range []bench.Consistency{bench.Linearizable, bench.Serializable} {
		if err := cli.Get(ctx, key, cons); err != nil {
			t.Errorf("Get(%s, %v) = %v", key, cons, err)
		}
	}
	for k, want := range map[string]bool{key: true, "/bench/missing": false} {
		if got, err := cli.Exists(ctx, k); err != nil || got != want {
			t.Errorf("Exists(%s) = %v, %v; want %v, nil", k, got, err, want)
		}
	}

	t.Run("watch", func(t *testing.T) {
		wctx, wcancel := context.WithCancel(ctx)
		defer wcancel()
		events, err := cli.Watch(wctx, key)
		if err != nil {
			t.Fatalf("Watch(%s) = %v", key, err)
		}
		before := time.Now()
		if err := cli.Put(ctx, key, []byte("v3")); err != nil {
			t.Fatalf("Put(%s) = %v", key, err)
		}
		select {
		case at, ok := <-events:
			if !ok {
				t.Fatalf("watch channel closed before the put's event")
			}
			if at.Before(before) {
				t.Errorf("event time %v is before the put %v", at, before)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no watch event within 10s of Put(%s)", key)
		}
		wcancel()
		// The channel closes once the watch ends.
		deadline := time.After(10 * time.Second)
		for open := true; open; {
			select {
			case _, open = <-events:
			case <-deadline:
				t.Fatalf("watch channel still open 10s after its context ended")
			}
		}
	})

	t.Run("session", func(t *testing.T) {
		s, err := cli.OpenSession(ctx, 2*time.Second)
		if err != nil {
			t.Fatalf("OpenSession(2s) = %v", err)
		}
		const eph = "/bench/e0000001"
		if err := s.CreateEphemeral(ctx, eph, []byte("e")); err != nil {
			t.Fatalf("CreateEphemeral(%s) = %v", eph, err)
		}
		waitExists(ctx, t, cli, eph, true, 10*time.Second)
		if err := s.Close(ctx); err != nil {
			t.Fatalf("session Close() = %v", err)
		}
		waitExists(ctx, t, cli, eph, false, 5*time.Second)
	})

	t.Run("hold", func(t *testing.T) {
		const held, ttl = "/bench/h0000001", 2 * time.Second
		argv := c.HoldCommand(held, ttl)
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %v: %v", argv, err)
		}
		killed := false
		defer func() {
			if !killed {
				_ = cmd.Process.Kill()
			}
			_ = cmd.Wait()
		}()
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || line != "ready\n" {
			t.Fatalf("hold child printed %q, %v; want ready", line, err)
		}
		waitExists(ctx, t, cli, held, true, 10*time.Second)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		killed = true
		start := time.Now()
		// The session ends ttl after the last keep-alive at most, and the
		// servers check expiry on a tick (etcd 500ms, ZooKeeper here 500ms).
		waitExists(ctx, t, cli, held, false, ttl+2*time.Second)
		t.Logf("ephemeral gone %v after SIGKILL of the holder", time.Since(start).Round(time.Millisecond))
	})

	t.Run("pinned", func(t *testing.T) {
		// A client of one node sends its requests there and nowhere else,
		// by the servers' own request counters.
		const gets = 50
		for node := range c.Nodes() {
			before := servedAll(t, c)
			pc, err := c.NewClient(ctx, node)
			if err != nil {
				t.Fatalf("NewClient(%d) = %v", node, err)
			}
			for range gets {
				if err := pc.Get(ctx, key, bench.Serializable); err != nil {
					t.Fatalf("Get(%s) through node %d = %v", key, node, err)
				}
			}
			pc.Close()
			after := servedAll(t, c)
			for i := range after {
				d := after[i] - before[i]
				if (i == node && d < gets) || (i != node && d >= gets/2) {
					t.Errorf("%d gets through a client of node %d: node %d served %d requests", gets, node, i, d)
				}
			}
		}
	})

	leader := -1
	t.Run("leader", func(t *testing.T) {
		var err error
		if leader, err = c.Leader(ctx); err != nil {
			t.Fatalf("Leader() = %v", err)
		}
		for i := range c.Nodes() {
			if got := leads(t, c, i); got != (i == leader) {
				t.Errorf("Leader() = %d, but node %d says it leads: %t", leader, i, got)
			}
		}
	})

	t.Run("restart", func(t *testing.T) {
		// The leader, so that Leader must see the next one.
		node := max(leader, 0)
		if err := c.Stop(node); err != nil {
			t.Fatalf("Stop(%d) = %v", node, err)
		}
		if got := c.PIDs(); len(got) != 2 {
			t.Errorf("PIDs() with node %d stopped = %v, want 2", node, got)
		}
		// Two of three still form a quorum, once they have elected a
		// leader if the stopped node led (ZooKeeper's clients fail
		// requests meanwhile).
		err := pollUntil(ctx, 30*time.Second, "put with a node stopped", func(ctx context.Context) error {
			return cli.Put(ctx, key, []byte("v4"))
		})
		if err != nil {
			t.Errorf("Put(%s) with node %d stopped: %v", key, node, err)
		}
		// Leader asks the stopped node too, which costs it up to
		// its per-node timeout: no pollUntil, whose attempts are shorter.
		for deadline := time.Now().Add(30 * time.Second); ; {
			l, err := c.Leader(ctx)
			if err == nil && l != node {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("Leader() with leader %d stopped = %d, %v; want another node", node, l, err)
				break
			}
			time.Sleep(50 * time.Millisecond) // the next attempt
		}
		if err := c.Start(node); err != nil {
			t.Fatalf("Start(%d) = %v", node, err)
		}
		if err := c.Start(node); err == nil {
			t.Errorf("Start(%d) of a running node = nil, want an error", node)
		}
		start := time.Now()
		err = pollUntil(ctx, 90*time.Second, "restarted node serving", func(ctx context.Context) error {
			nc, err := c.NewClient(ctx, node)
			if err != nil {
				return err
			}
			defer nc.Close()
			return nc.Get(ctx, key, bench.Linearizable)
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("node %d serving %v after Start", node, time.Since(start).Round(time.Millisecond))
		nc, err := c.NewClient(ctx, node)
		if err != nil {
			t.Fatalf("NewClient(%d) = %v", node, err)
		}
		defer nc.Close()
		if got := rawValue(t, nc, key); got != "v4" {
			t.Errorf("value of %s on restarted node %d = %q, want v4", key, node, got)
		}
	})
}

// servedAll is the count of client requests each node has served so far:
// etcd's Range calls from its /metrics, ZooKeeper's packets received from
// srvr.
func servedAll(t *testing.T, c bench.Cluster) []int64 {
	t.Helper()
	out := make([]int64, c.Nodes())
	for i := range out {
		text := nodeReport(t, c, i, "srvr")
		prefix := "Received: "
		if _, ok := c.(*etcdCluster); ok {
			prefix = `grpc_server_handled_total{grpc_code="OK",grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"} `
		}
		out[i] = counter(t, text, prefix)
	}
	return out
}

// leads asks node i whether it leads by another route than Leader:
// etcd's etcd_server_is_leader metric, ZooKeeper's mntr zk_server_state.
func leads(t *testing.T, c bench.Cluster, i int) bool {
	t.Helper()
	text := nodeReport(t, c, i, "mntr")
	if _, ok := c.(*etcdCluster); ok {
		return counter(t, text, "etcd_server_is_leader ") == 1
	}
	return strings.Contains(text, "zk_server_state\tleader\n")
}

// nodeReport is node i's own report of itself: etcd's /metrics, or the
// answer to the ZooKeeper four-letter command zkCmd.
func nodeReport(t *testing.T, c bench.Cluster, i int, zkCmd string) string {
	t.Helper()
	var (
		text string
		err  error
	)
	switch c := c.(type) {
	case *etcdCluster:
		text, err = httpGet(c.clientURL(i) + "/metrics")
	case *zkCluster:
		text, err = fourLetter(c.servers(i)[0], zkCmd)
	default:
		t.Fatalf("nodeReport: unknown cluster %T", c)
	}
	if err != nil {
		t.Fatalf("node %d's report: %v", i, err)
	}
	return text
}

// counter is the integer after prefix on a line of text.
func counter(t *testing.T, text, prefix string) int64 {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			return int64(f)
		}
	}
	t.Fatalf("no line %q in:\n%s", prefix, text)
	return 0
}

func httpGet(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// fourLetter is zkFourLetter within 5 seconds.
func fourLetter(addr, cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return zkFourLetter(ctx, addr, cmd)
}

// waitExists polls Exists(key) until it reports want, failing the test
// after timeout.
func waitExists(ctx context.Context, t *testing.T, cli bench.Client, key string, want bool, timeout time.Duration) {
	t.Helper()
	err := pollUntil(ctx, timeout, "exists", func(ctx context.Context) error {
		got, err := cli.Exists(ctx, key)
		if err != nil {
			return err
		}
		if got != want {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Exists(%s) never became %v: %v", key, want, err)
	}
}

// rawValue reads key's value with the system's own client (bench.Client's
// Get returns no value), after a sync for ZooKeeper.
func rawValue(t *testing.T, cli bench.Client, key string) string {
	t.Helper()
	switch c := cli.(type) {
	case *etcdClient:
		resp, err := c.cli.Get(context.Background(), key)
		if err != nil {
			t.Fatalf("etcd get %s: %v", key, err)
		}
		if len(resp.Kvs) == 0 {
			return ""
		}
		return string(resp.Kvs[0].Value)
	case *zkClient:
		if _, err := c.conn.Sync(key); err != nil {
			t.Fatalf("zookeeper sync %s: %v", key, err)
		}
		v, _, err := c.conn.Get(key)
		if err != nil {
			t.Fatalf("zookeeper get %s: %v", key, err)
		}
		return string(v)
	}
	t.Fatalf("rawValue: unknown client %T", cli)
	return ""
}

// TestHoldBadInput checks hold's argument errors.
func TestHoldBadInput(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"no key", []string{"--system", "etcd", "--endpoints", "127.0.0.1:1"}, 2},
		{"no endpoints", []string{"--system", "etcd", "--key", "/bench/x"}, 2},
		{"unknown system", []string{"--system", "consul", "--endpoints", "127.0.0.1:1", "--key", "/bench/x"}, 1},
		{"bad flag", []string{"--nope"}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut strings.Builder
			if got := holdMain(tc.args, &out, &errOut); got != tc.want {
				t.Errorf("holdMain(%v) = %d, want %d (stderr %q)", tc.args, got, tc.want, errOut.String())
			}
			if out.Len() != 0 {
				t.Errorf("holdMain(%v) printed %q, want nothing", tc.args, out.String())
			}
		})
	}
}
