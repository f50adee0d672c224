package robust

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock/paddock/e2e/child"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// faultTimeout bounds each step of a fault test: an election, a rejoin.
const faultTimeout = 30 * time.Second

// startCluster starts a cluster for t, closed in t.Cleanup (which fails
// t if Close fails and prints the agents' logs if t failed).
func startCluster(t *testing.T, opts Options) *Cluster {
	t.Helper()
	needHarness(t)
	opts.Bin, opts.Dir, opts.Logf = paddockBin, t.TempDir(), t.Logf
	ctx, cancel := context.WithTimeout(context.Background(), faultTimeout)
	defer cancel()
	c, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if t.Failed() {
			for i := range c.N() {
				t.Logf("--- log of %s (%s) ---\n%s", c.NodeID(i), c.LogPath(i), child.Tail(c.LogPath(i), 32<<10))
			}
		}
	})
	return c
}

// stepCtx is a context for one step of a fault test.
func stepCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), faultTimeout)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it returns "" (done) or faultTimeout passes,
// then fails t with cond's last answer.
func waitFor(t *testing.T, what string, cond func(ctx context.Context) string) {
	t.Helper()
	ctx := stepCtx(t)
	for {
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		last := cond(pctx)
		cancel()
		if last == "" {
			return
		}
		if !sleep(ctx, pollInterval) {
			t.Fatalf("%s: not after %v: %s", what, faultTimeout, last)
		}
	}
}

// statusIs returns a waitFor condition: node i answers Status and ok
// accepts the answer.
func statusIs(c *Cluster, i int, ok func(*paddockv1.StatusResponse) bool) func(context.Context) string {
	return func(ctx context.Context) string {
		st, err := c.Status(ctx, i)
		if err != nil {
			return err.Error()
		}
		if !ok(st) {
			return fmt.Sprintf("%s: %s term %d leader %q ready %t commit %d", c.NodeID(i), st.GetRole(), st.GetTerm(), st.GetLeaderId(), st.GetReady(), st.GetCommitIndex())
		}
		return ""
	}
}

// healthy waits until every node runs, answers, is ready and names the
// same leader, and returns the leader.
func healthy(t *testing.T, c *Cluster) int {
	t.Helper()
	leader, err := c.Leader(stepCtx(t))
	if err != nil {
		t.Fatalf("Leader: %v", err)
	}
	for i := range c.N() {
		waitFor(t, c.NodeID(i)+" follows "+c.NodeID(leader), statusIs(c, i, func(st *paddockv1.StatusResponse) bool {
			return st.GetReady() && st.GetLeaderId() == c.NodeID(leader)
		}))
	}
	return leader
}

// newLeader waits until the nodes Leader asks agree on a leader other
// than old, and returns it.
func newLeader(t *testing.T, c *Cluster, old int) int {
	t.Helper()
	ctx := stepCtx(t)
	for {
		l, err := c.Leader(ctx)
		if err != nil {
			t.Fatalf("no leader other than %s: %v", c.NodeID(old), err)
		}
		if l != old {
			return l
		}
		if !sleep(ctx, pollInterval) {
			t.Fatalf("no leader other than %s after %v", c.NodeID(old), faultTimeout)
		}
	}
}

// follower is a node other than the leader and other than not.
func follower(c *Cluster, leader int, not ...int) int {
next:
	for i := range c.N() {
		if i == leader {
			continue
		}
		for _, n := range not {
			if i == n {
				continue next
			}
		}
		return i
	}
	return -1
}

// create creates path with data through node i only, with the given
// deadline.
func create(c *Cluster, i int, path string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	_, err := paddockv1.NewTreeServiceClient(c.Conn(i)).Create(ctx, &paddockv1.CreateRequest{Path: path, Data: []byte("robust")})
	return err
}

// TestFaults drives one cluster through every fault primitive in turn;
// each subtest starts from a healthy cluster and leaves one behind. The
// last subtest closes the cluster and checks that nothing is left.
func TestFaults(t *testing.T) {
	c := startCluster(t, Options{})
	steps := []struct {
		name string
		fn   func(t *testing.T, c *Cluster)
	}{
		{"KillRestart", testKillRestart},
		{"PauseResume", testPauseResume},
		{"Isolate", testIsolate},
		{"CutOneWay", testCutOneWay},
		{"DropResponses", testDropResponses},
		{"Close", testClose},
	}
	for _, s := range steps {
		if !t.Run(s.name, func(t *testing.T) { s.fn(t, c) }) {
			return // the cluster's state is unknown: later steps would only fail too
		}
	}
}

// testKillRestart: SIGKILL of the leader leaves the two others to elect
// one of them; the killed node, restarted on its data dir, rejoins as a
// follower of the new leader.
func testKillRestart(t *testing.T, c *Cluster) {
	old := healthy(t, c)
	if err := c.Kill(old); err != nil {
		t.Fatal(err)
	}
	if c.Running(old) {
		t.Fatalf("Running(%d) = true after Kill", old)
	}
	if err := c.Kill(old); err == nil {
		t.Errorf("Kill of a killed node = nil, want an error")
	}
	l := newLeader(t, c, old)
	if err := c.Restart(stepCtx(t), old); err != nil {
		t.Fatal(err)
	}
	if !c.Running(old) {
		t.Fatalf("Running(%d) = false after Restart", old)
	}
	waitFor(t, "restarted "+c.NodeID(old)+" follows "+c.NodeID(l), statusIs(c, old, func(st *paddockv1.StatusResponse) bool {
		return st.GetReady() && st.GetRole() == paddockv1.Role_ROLE_FOLLOWER && st.GetLeaderId() == c.NodeID(l)
	}))
	healthy(t, c)
}

// testPauseResume: SIGSTOP of the leader leaves the two others to elect
// one of them; after SIGCONT the old leader learns the new term and
// follows.
func testPauseResume(t *testing.T, c *Cluster) {
	old := healthy(t, c)
	if err := c.Pause(old); err != nil {
		t.Fatal(err)
	}
	if !c.Paused(old) || !c.Running(old) {
		t.Fatalf("after Pause: Paused = %t, Running = %t, want both true", c.Paused(old), c.Running(old))
	}
	// A paused process does not answer at all.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	_, err := c.Status(ctx, old)
	cancel()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("Status of paused %s: %v, want DeadlineExceeded", c.NodeID(old), err)
	}
	l := newLeader(t, c, old)
	if err := c.Resume(old); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "resumed "+c.NodeID(old)+" steps down to follow "+c.NodeID(l), statusIs(c, old, func(st *paddockv1.StatusResponse) bool {
		return st.GetRole() == paddockv1.Role_ROLE_FOLLOWER && st.GetLeaderId() == c.NodeID(l)
	}))
	healthy(t, c)
}

// testIsolate: the leader cut off from both others loses its leadership
// and cannot win it back, the majority elects a new leader and commits
// without it; Heal brings it back as a follower with the writes it missed.
func testIsolate(t *testing.T, c *Cluster) {
	old := healthy(t, c)
	if err := c.Isolate(old); err != nil {
		t.Fatal(err)
	}
	l := newLeader(t, c, old)
	waitFor(t, "isolated "+c.NodeID(old)+" knows no leader", statusIs(c, old, func(st *paddockv1.StatusResponse) bool {
		return st.GetRole() != paddockv1.Role_ROLE_LEADER && st.GetLeaderId() == "" && !st.GetReady()
	}))
	// The majority commits; the isolated node, still reachable from the
	// host, does not see the write.
	if err := create(c, l, "/isolate", 5*time.Second); err != nil {
		t.Fatalf("Create through leader %s: %v", c.NodeID(l), err)
	}
	stl, err := c.Status(stepCtx(t), l)
	if err != nil {
		t.Fatal(err)
	}
	sto, err := c.Status(stepCtx(t), old)
	if err != nil {
		t.Fatalf("Status of isolated %s from the host: %v", c.NodeID(old), err)
	}
	if sto.GetCommitIndex() >= stl.GetCommitIndex() || sto.GetRole() == paddockv1.Role_ROLE_LEADER {
		t.Errorf("isolated %s: %s commit %d, leader %s commit %d: want a non-leader behind", c.NodeID(old), sto.GetRole(), sto.GetCommitIndex(), c.NodeID(l), stl.GetCommitIndex())
	}
	if n, err := c.Dropped(old); err != nil || n == 0 {
		t.Errorf("Dropped(%d) = %d, %v; want > 0", old, n, err)
	}
	if err := c.Heal(); err != nil {
		t.Fatal(err)
	}
	for i := range c.N() {
		rules, err := c.ruleCounters(i)
		if err != nil || len(rules) != 0 {
			t.Errorf("%s's rules after Heal = %v, %v; want none", c.NodeID(i), rules, err)
		}
	}
	waitFor(t, "healed "+c.NodeID(old)+" catches up", statusIs(c, old, func(st *paddockv1.StatusResponse) bool {
		return st.GetReady() && st.GetLeaderId() == c.NodeID(l) && st.GetCommitIndex() >= stl.GetCommitIndex()
	}))
	healthy(t, c)
}

// testCutOneWay: with the leader's packets to one follower dropped, that
// follower loses the leader while the leader keeps the other follower;
// the follower's packets still reach the leader.
func testCutOneWay(t *testing.T, c *Cluster) {
	l := healthy(t, c)
	f := follower(c, l)
	if err := c.CutOneWay(l, f); err != nil {
		t.Fatal(err)
	}
	// Count, without dropping, what the leader receives from f.
	if _, err := c.iptables(l, "-A", "INPUT", "-s", c.nodes[f].ip); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c.NodeID(f)+" loses leader "+c.NodeID(l), statusIs(c, f, func(st *paddockv1.StatusResponse) bool {
		return st.GetLeaderId() == "" && !st.GetReady()
	}))
	if got, err := c.Leader(stepCtx(t)); err != nil || got != l {
		t.Errorf("Leader() = %d, %v; want %d: the leader keeps its majority", got, err, l)
	}
	waitFor(t, "packets both ways counted", func(context.Context) string {
		dropped, err := c.Dropped(f)
		if err != nil {
			return err.Error()
		}
		rules, err := c.ruleCounters(l)
		if err != nil {
			return err.Error()
		}
		arrived := rules["-A INPUT -s "+c.nodes[f].ip+"/32"]
		if dropped == 0 || arrived == 0 {
			return fmt.Sprintf("%s dropped %d from %s, %s received %d from %s; want both > 0", c.NodeID(f), dropped, c.NodeID(l), c.NodeID(l), arrived, c.NodeID(f))
		}
		return ""
	})
	if n, err := c.Dropped(l); err != nil || n != 0 {
		t.Errorf("Dropped(leader) = %d, %v; want 0", n, err)
	}
	if err := c.Heal(); err != nil {
		t.Fatal(err)
	}
	healthy(t, c)
}

// testDropResponses: a Create sent to a node whose answers are dropped
// ends with the client's deadline, yet it was committed: another node
// serves the znode.
func testDropResponses(t *testing.T, c *Cluster) {
	l := healthy(t, c)
	f := follower(c, l)
	other := follower(c, l, f)
	// Open the client's connection to f before the fault: new ones could
	// not be opened while f's answers are dropped.
	if _, err := c.Status(stepCtx(t), f); err != nil {
		t.Fatal(err)
	}
	if err := c.DropResponses(f); err != nil {
		t.Fatal(err)
	}
	const path = "/drop-responses"
	err := create(c, f, path, 2*time.Second)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("Create(%s) through %s = %v, want DeadlineExceeded", path, c.NodeID(f), err)
	}
	waitFor(t, path+" readable through "+c.NodeID(other), func(ctx context.Context) string {
		_, err := paddockv1.NewTreeServiceClient(c.Conn(other)).Get(ctx, &paddockv1.GetRequest{Path: path})
		if err != nil {
			return err.Error()
		}
		return ""
	})
	if n, err := c.Dropped(f); err != nil || n == 0 {
		t.Errorf("Dropped(%d) = %d, %v; want > 0", f, n, err)
	}
	if err := c.Heal(); err != nil {
		t.Fatal(err)
	}
	// The same connection works again once f's retransmissions get
	// through.
	waitFor(t, c.NodeID(f)+" answers again", statusIs(c, f, func(*paddockv1.StatusResponse) bool { return true }))
	healthy(t, c)
}

// testClose: Close kills every agent, by pid, and leaves no namespace,
// link or marker; a second Close is a no-op.
func testClose(t *testing.T, c *Cluster) {
	healthy(t, c)
	type agentProc struct {
		pid   int
		start uint64
	}
	var procs []agentProc
	for i := range c.N() {
		pid := c.nodes[i].p.Pid()
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil || exe != paddockBin {
			t.Errorf("%s: /proc/%d/exe = %q, %v; want %s", c.NodeID(i), pid, exe, err, paddockBin)
		}
		start, err := procStart(pid)
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, agentProc{pid, start})
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, p := range procs {
		if start, err := procStart(p.pid); err == nil && start == p.start {
			t.Errorf("agent pid %d still exists after Close", p.pid)
		}
	}
	checkGone(t, c.ID())
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := c.Restart(stepCtx(t), 0); err == nil {
		t.Errorf("Restart after Close = nil, want an error")
	}
}

// checkGone fails t if anything of cluster id is left: a namespace in
// `ip netns list`, the host link, the marker.
func checkGone(t *testing.T, id string) {
	t.Helper()
	out, err := command(context.Background(), "ip", "netns", "list")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, nsPrefix(id)) {
			t.Errorf("namespace left: %s", line)
		}
	}
	out, err = command(context.Background(), "ip", "-o", "link", "show")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "pdk"+id) {
		t.Errorf("link pdk%s left:\n%s", id, out)
	}
	if _, err := os.Stat(markerPath(id)); !os.IsNotExist(err) {
		t.Errorf("marker %s: %v, want it gone", markerPath(id), err)
	}
}

// TestStartFails: when the agents cannot start, Start returns their error
// and removes the namespaces and links it made.
func TestStartFails(t *testing.T) {
	needHarness(t)
	var id string
	logf := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		if rest, ok := strings.CutPrefix(msg, "robust: cluster "); ok && id == "" {
			id, _, _ = strings.Cut(rest, " ")
		}
		t.Log(msg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), faultTimeout)
	defer cancel()
	c, err := Start(ctx, Options{Bin: paddockBin, Dir: t.TempDir(), Logf: logf, ExtraArgs: []string{"--no-such-flag"}})
	if err == nil {
		c.Close()
		t.Fatal("Start with a bad agent flag = nil error, want one")
	}
	if !strings.Contains(err.Error(), "no-such-flag") {
		t.Errorf("Start error = %v, want the agent's complaint about --no-such-flag", err)
	}
	if !idPattern.MatchString(id) {
		t.Fatalf("no cluster id in Start's log (got %q)", id)
	}
	checkGone(t, id)
}

// TestSweep: Start's sweep removes what a dead test process left, and
// leaves what a live one owns.
func TestSweep(t *testing.T) {
	needHarness(t)
	dead := deadPID(t)
	withMarker := fmt.Sprintf("%d-a01", dead)
	noMarker := fmt.Sprintf("%d-a02", dead)
	live := fmt.Sprintf("%d-a03", os.Getpid()) // this process, no marker
	for _, id := range []string{withMarker, noMarker, live} {
		t.Cleanup(func() { teardown(id); os.Remove(markerPath(id)) })
		mustRun(t, "ip", "netns", "add", nsPrefix(id)+"n1")
		mustRun(t, "ip", "link", "add", "pdk"+id, "type", "bridge")
	}
	m := fmt.Sprintf(`{"pid":%d,"start":1,"pidns":%q,"subnet":"10.1.2.0/24"}`, dead, selfPIDNS())
	if err := os.WriteFile(markerPath(withMarker), []byte(m), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := withLock(func() error { sweepLocked(t.Logf); return nil }); err != nil {
		t.Fatal(err)
	}
	checkGone(t, withMarker)
	checkGone(t, noMarker)
	if _, err := os.Stat(filepath.Join(netnsDir, nsPrefix(live)+"n1")); err != nil {
		t.Errorf("the sweep removed a live process's namespace: %v", err)
	}
}

// mustRun runs a command or fails t.
func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	if _, err := command(context.Background(), name, args...); err != nil {
		t.Fatal(err)
	}
}
