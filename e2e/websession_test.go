package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/paddock/paddock/client"
	"github.com/paddock/paddock/e2e/child"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// PHP web sessions end to end: real `php -S` web servers with
// php/paddock-session.php prepended, in front of a real cluster.

const (
	// wsBurst is the concurrent page views of a burst on one session.
	wsBurst = 200
	// wsPHPWorkers is each web server's PHP_CLI_SERVER_WORKERS.
	wsPHPWorkers = 4
	// wsHoldTTL is the lock lease of the web server whose request is
	// killed while it holds the lock.
	wsHoldTTL = 3 * time.Second
	// wsMaxLifetime is session.gc_maxlifetime of the expiry check.
	wsMaxLifetime = 2 * time.Second
	// wsElectionTimeout bounds an election of the e2e agents (their
	// default timeouts), for the expiry bound.
	wsElectionTimeout = 2 * time.Second
)

// wsPage is the site's page: op=inc (the default) counts page views in
// $_SESSION['n'], create starts a session, peek reads it with
// read_and_close, regenerate calls session_regenerate_id(true), hold
// takes the lock and sleeps (printing its pid), maxlife sets
// session.gc_maxlifetime, view starts the session and changes nothing.
// A failed session_start is a 503.
const wsPage = `<?php
$op = $_GET['op'] ?? 'inc';
if ($op === 'ping') {
    echo "pong\n";
    return;
}
if (isset($_GET['maxlife'])) {
    ini_set('session.gc_maxlifetime', (string) (int) $_GET['maxlife']);
}
if (!session_start($op === 'peek' ? ['read_and_close' => true] : [])) {
    http_response_code(503);
    echo "session_start failed\n";
    return;
}
$out = '';
switch ($op) {
    case 'inc':
        $_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
        break;
    case 'regenerate':
        $out .= 'old=' . session_id() . "\n";
        if (!session_regenerate_id(true)) {
            http_response_code(500);
            echo "session_regenerate_id failed\n";
            return;
        }
        break;
    case 'hold':
        echo 'pid=', getmypid(), "\n";
        flush();
        sleep(60);
        return;
}
$out .= 'id=' . session_id() . "\nn=" . ($_SESSION['n'] ?? 0) . "\n";
if ($op !== 'peek' && !session_write_close()) {
    http_response_code(500);
    echo "session_write_close failed\n";
    return;
}
echo $out;
`

// phpServer is one `php -S` web server (its own process group: the
// workers it forks are killed with it).
type phpServer struct {
	name, addr string
	p          *child.Proc
	out        *syncBuffer
}

// startPHPServer starts php -S on a free port serving docroot, with the
// session handler prepended and env added to the environment.
func startPHPServer(t *testing.T, php, docroot, name string, env ...string) *phpServer {
	t.Helper()
	prepend, err := filepath.Abs("../php/paddock-session.php")
	if err != nil {
		t.Fatal(err)
	}
	ports, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	s := &phpServer{name: name, addr: fmt.Sprintf("127.0.0.1:%d", ports[0]), out: &syncBuffer{}}
	// sys_temp_dir: where the handler keeps the leader's address
	// (SessionHandler::leaderFile), the test's own directory.
	cmd := exec.Command(php, "-d", "auto_prepend_file="+prepend, "-d", "session.use_strict_mode=1", "-d", "sys_temp_dir="+t.TempDir(),
		"-d", "output_buffering=0", "-d", "display_errors=0", "-d", "log_errors=1", "-d", "error_log=",
		"-S", s.addr, "-t", docroot)
	cmd.Env = append(child.Env(), append([]string{"PHP_CLI_SERVER_WORKERS=" + strconv.Itoa(wsPHPWorkers)}, env...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	s.p = child.Watch(cmd)
	pgid := cmd.Process.Pid
	t.Cleanup(func() {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		s.p.Kill()
		if t.Failed() {
			t.Logf("--- output of %s ---\n%s", name, lastLines(s.out.String(), 60))
		}
	})
	hc := http.Client{Timeout: time.Second}
	ok, last := poll(startTimeout, func() (bool, string) {
		resp, err := hc.Get("http://" + s.addr + "/?op=ping")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == 200, fmt.Sprintf("HTTP %d", resp.StatusCode)
	})
	if !ok {
		t.Fatalf("%s does not serve after %v: %s\n%s", name, startTimeout, last, s.out.String())
	}
	return s
}

// pageView is the answer to one request of the page.
type pageView struct {
	status int
	body   string
	newID  string // the PHPSESSID the answer set, if any
	err    error
}

var pageN = regexp.MustCompile(`(?m)^n=(\d+)$`)

// n is the count the page printed, -1 if none.
func (v pageView) n() int {
	m := pageN.FindStringSubmatch(v.body)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func (v pageView) String() string {
	if v.err != nil {
		return v.err.Error()
	}
	return fmt.Sprintf("HTTP %d %q", v.status, v.body)
}

// view requests the page on s with the session id sid ("" for none).
func view(hc *http.Client, s *phpServer, query, sid string) pageView {
	req, err := http.NewRequest("GET", "http://"+s.addr+"/?"+query, nil)
	if err != nil {
		return pageView{err: err}
	}
	if sid != "" {
		req.AddCookie(&http.Cookie{Name: "PHPSESSID", Value: sid})
	}
	resp, err := hc.Do(req)
	if err != nil {
		return pageView{err: fmt.Errorf("%s: %w", s.name, err)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	v := pageView{status: resp.StatusCode, body: string(b), err: err}
	for _, c := range resp.Cookies() {
		if c.Name == "PHPSESSID" {
			v.newID = c.Value
		}
	}
	return v
}

// appliedCommands reads paddock_applied_commands_total of the agent at
// addr: by op, and their sum as "all".
func appliedCommands(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, m := range appliedLine.FindAllStringSubmatch(metricsText(t, addr), -1) {
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", m[0], err)
		}
		out[m[1]] = v
		out["all"] += v
	}
	if len(out) == 0 {
		t.Fatalf("no paddock_applied_commands_total in the metrics of %s", addr)
	}
	return out
}

// metricValue is the value of the series named exactly series (name and
// labels as /metrics prints them) on the node at addr, 0 when absent.
func metricValue(t *testing.T, addr, series string) float64 {
	t.Helper()
	for line := range strings.SplitSeq(metricsText(t, addr), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metrics line %q: %v", line, err)
			}
			return f
		}
	}
	return 0
}

// metricsText is the node at addr's /metrics page.
func metricsText(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// histogram is a Prometheus histogram as /metrics shows it: cumulative
// counts by upper bound (ascending), the sum and the count.
type histogram struct {
	le    []float64
	cum   []uint64
	sum   float64
	count uint64
}

// minus is h's observations since before (same buckets).
func (h histogram) minus(before histogram) histogram {
	out := histogram{le: h.le, sum: h.sum - before.sum, count: h.count - before.count}
	for i := range h.cum {
		c := h.cum[i]
		if i < len(before.cum) {
			c -= before.cum[i]
		}
		out.cum = append(out.cum, c)
	}
	return out
}

// quantile is the upper bound of the bucket holding quantile q.
func (h histogram) quantile(q float64) float64 {
	for i, c := range h.cum {
		if float64(c) >= q*float64(h.count) {
			return h.le[i]
		}
	}
	return math.Inf(1)
}

var windowLine = regexp.MustCompile(`(?m)^paddock_web_session_delayed_window_seconds(_bucket\{le="([^"]+)"\}|_sum|_count) (\S+)$`)

// delayedWindow reads paddock_web_session_delayed_window_seconds of the
// agent at addr.
func delayedWindow(t *testing.T, addr string) histogram {
	t.Helper()
	var h histogram
	for _, m := range windowLine.FindAllStringSubmatch(metricsText(t, addr), -1) {
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", m[0], err)
		}
		switch m[1] {
		case "_sum":
			h.sum = v
		case "_count":
			h.count = uint64(v)
		default:
			le, err := strconv.ParseFloat(m[2], 64)
			if err != nil {
				t.Fatalf("metrics line %q: %v", m[0], err)
			}
			h.le, h.cum = append(h.le, le), append(h.cum, uint64(v))
		}
	}
	if len(h.le) == 0 {
		t.Fatalf("no paddock_web_session_delayed_window_seconds in the metrics of %s", addr)
	}
	return h
}

var appliedLine = regexp.MustCompile(`(?m)^paddock_applied_commands_total\{op="([a-z_]+)"\} (\S+)$`)

// TestWebSessionPHPServers: three php -S servers, each with a different
// node first in its endpoints, share their sessions through the cluster:
// 200 concurrent increments of one session spread over them count
// exactly 200 (through a kill -9 of the leader too), a page view costs
// one raft write if it changes the session and none if not, strict mode refuses
// an id never issued, session_regenerate_id(true) leaves no old session,
// an idle session expires, and a request killed holding the lock frees
// it within its lease + 1 s.
func TestWebSessionPHPServers(t *testing.T) {
	t.Parallel()
	php, _ := findPHPLibTools(t, false)
	c := startCluster(t)
	docroot := t.TempDir()
	if err := os.WriteFile(filepath.Join(docroot, "index.php"), []byte(wsPage), 0o644); err != nil {
		t.Fatal(err)
	}
	var servers []*phpServer
	for i := range 3 {
		var eps []string
		for j := range 3 {
			eps = append(eps, c.agents[(i+j)%3].httpAddr)
		}
		servers = append(servers, startPHPServer(t, php, docroot, fmt.Sprintf("web%d", i+1),
			"PADDOCK_HTTP_ENDPOINTS="+strings.Join(eps, ",")))
	}
	holdServer := startPHPServer(t, php, docroot, "web-ttl", "PADDOCK_HTTP_ENDPOINTS="+c.httpEndpoints(),
		fmt.Sprintf("PADDOCK_SESSION_LOCK_TTL=%g", wsHoldTTL.Seconds()))
	t.Cleanup(func() {
		// The handler's warnings go to the servers' logs: none is expected.
		for _, s := range servers {
			if out := s.out.String(); strings.Contains(out, "paddock session:") {
				t.Errorf("%s logged handler warnings:\n%s", s.name, lastLines(out, 30))
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := client.New(ctx, client.Config{Endpoints: strings.Split(c.endpoints(), ",")})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	valid := func(id string) bool {
		t.Helper()
		r, err := cl.ValidateWebSession(ctx, &paddockv1.ValidateWebSessionRequest{Id: id})
		if err != nil {
			t.Fatalf("ValidateWebSession: %v", err)
		}
		return r.GetValid()
	}
	hc := &http.Client{Timeout: time.Minute}
	// create starts a session on server s and returns its id.
	create := func(s *phpServer, query string) string {
		t.Helper()
		v := view(hc, s, "op=create&"+query, "")
		if v.err != nil || v.status != 200 || v.newID == "" {
			t.Fatalf("new session on %s: %v, cookie %q", s.name, v, v.newID)
		}
		return v.newID
	}
	// burst sends wsBurst concurrent increments of session id spread
	// over the servers, calling during once `at` of them have answered,
	// and checks that each answered with a distinct count from 1 to
	// wsBurst and that the session ends at wsBurst.
	burst := func(farm []*phpServer, id string, at int, during func()) {
		t.Helper()
		views := make([]pageView, wsBurst)
		var answered atomic.Int32
		reached := make(chan struct{})
		var wg sync.WaitGroup
		start := time.Now()
		for i := range wsBurst {
			wg.Go(func() {
				views[i] = view(hc, farm[i%len(farm)], "op=inc", id)
				if answered.Add(1) == int32(at) {
					close(reached)
				}
			})
		}
		if during != nil {
			select {
			case <-reached:
				during()
			case <-time.After(time.Minute):
				t.Errorf("%d page views not answered after a minute", at)
			}
		}
		wg.Wait()
		took := time.Since(start)
		var counts []int
		failed := 0
		for i, v := range views {
			if v.err != nil || v.status != 200 {
				failed++
				if failed <= 5 {
					t.Errorf("page view %d on %s: %v", i, farm[i%len(farm)].name, v)
				}
				continue
			}
			counts = append(counts, v.n())
		}
		slices.Sort(counts)
		for i, n := range counts {
			if n != i+1 {
				t.Errorf("counts seen: %v; want each of 1..%d once", counts, wsBurst)
				break
			}
		}
		if failed > 0 {
			t.Errorf("%d of %d page views failed", failed, wsBurst)
		}
		if v := view(hc, farm[0], "op=peek", id); v.n() != wsBurst {
			t.Errorf("session after %d concurrent increments: %v; want n=%d", wsBurst, v, wsBurst)
		}
		t.Logf("%d concurrent page views on one session over %d servers: %v (%.0f/s)", wsBurst, len(farm), took.Round(time.Millisecond), wsBurst/took.Seconds())
	}

	t.Run("ConcurrentIncrements", func(t *testing.T) {
		burst(servers, create(servers[0], ""), 0, nil)
	})

	t.Run("DelayedConcurrentIncrements", func(t *testing.T) {
		// The same burst on three servers with the delayed write
		// (PADDOCK_SESSION_MODE=delayed): exact without faults. The
		// leader's paddock_web_session_delayed_window_seconds says how
		// long its writes were acknowledged but not committed.
		var farm []*phpServer
		for i := range 3 {
			var eps []string
			for j := range 3 {
				eps = append(eps, c.agents[(i+j)%3].httpAddr)
			}
			farm = append(farm, startPHPServer(t, php, docroot, fmt.Sprintf("delayed%d", i+1),
				"PADDOCK_HTTP_ENDPOINTS="+strings.Join(eps, ","), "PADDOCK_SESSION_MODE=delayed"))
		}
		addr := c.agents[c.leader()].httpAddr
		before := delayedWindow(t, addr)
		burst(farm, create(farm[0], ""), 0, nil)
		w := delayedWindow(t, addr).minus(before)
		if w.count == 0 {
			t.Fatalf("no delayed write committed on the leader %s", addr)
		}
		t.Logf("delayed write window (answer to commit) on the leader: %d commits, mean %.2f ms, p50 <= %.2f ms, p99 <= %.2f ms, max <= %.2f ms",
			w.count, w.sum/float64(w.count)*1000, w.quantile(0.5)*1000, w.quantile(0.99)*1000, w.quantile(1)*1000)
		for _, s := range farm {
			if out := s.out.String(); strings.Contains(out, "paddock session:") {
				t.Errorf("%s logged handler warnings:\n%s", s.name, lastLines(out, 30))
			}
		}
	})

	t.Run("RaftWritesPerPageView", func(t *testing.T) {
		// Every node applies every command: the leader's counters say what
		// the page views cost in log entries (the leader has applied a
		// write when it answers it; a follower may not have yet).
		id := create(servers[0], "")
		const views = 20
		addr := c.agents[c.leader()].httpAddr
		before := appliedCommands(t, addr)
		for i := range views {
			if v := view(hc, servers[i%len(servers)], "op=inc", id); v.n() != i+1 {
				t.Fatalf("increment %d: %v", i+1, v)
			}
		}
		changed := appliedCommands(t, addr)
		for i := range views {
			op := []string{"op=view", "op=peek"}[i%2]
			if v := view(hc, servers[i%len(servers)], op, id); v.n() != views {
				t.Fatalf("%s: %v", op, v)
			}
		}
		unchanged := appliedCommands(t, addr)
		const write = "web_session_write"
		if d := changed[write] - before[write]; d != views {
			t.Errorf("%d page views that change the session applied %v %s commands, want %d", views, d, write, views)
		}
		if d := unchanged[write] - changed[write]; d != 0 {
			t.Errorf("%d page views that change nothing applied %v %s commands, want 0", views, d, write)
		}
		t.Logf("applied commands (all ops) per page view: %.2f changing the session, %.2f not",
			(changed["all"]-before["all"])/views, (unchanged["all"]-changed["all"])/views)
	})

	t.Run("PageViewsCallTheLeader", func(t *testing.T) {
		// Each server lists a different node first; the handler follows
		// the Paddock-Leader header (and keeps it in its leader file), so
		// the followers forward (almost) none of the page views' calls:
		// at most a server's first call after a leader change.
		id := create(servers[0], "")
		forwarded := func() float64 {
			sum := 0.0 // the leader's own count stays 0: it forwards nothing
			for _, a := range c.agents {
				sum += metricValue(t, a.httpAddr, `paddock_forwarded_requests_total{kind="web_session"}`)
			}
			return sum
		}
		const views = 30
		before := forwarded()
		for i := range views {
			if v := view(hc, servers[i%len(servers)], "op=inc", id); v.n() != i+1 {
				t.Fatalf("increment %d: %v", i+1, v)
			}
		}
		if d := forwarded() - before; d > float64(len(servers)) {
			t.Errorf("%d page views (%d web-session calls) had %v calls forwarded by a follower; want at most %d", views, 2*views, d, len(servers))
		}
	})

	t.Run("PageViewsKeepConnections", func(t *testing.T) {
		// The handler keeps its connections from one PHP request to the
		// next (option persistent): each PHP worker opens at most one
		// per node, however many page views it serves.
		id := create(servers[0], "")
		opened := func() float64 {
			sum := 0.0
			for _, a := range c.agents {
				sum += metricValue(t, a.httpAddr, "paddock_http_connections_opened_total")
			}
			return sum
		}
		bound := float64(len(servers) * wsPHPWorkers * len(c.agents))
		views := 2 * int(bound)
		before := opened()
		for i := range views {
			if v := view(hc, servers[i%len(servers)], "op=inc", id); v.n() != i+1 {
				t.Fatalf("increment %d: %v", i+1, v)
			}
		}
		// The test's own /metrics reads open one connection per node.
		if d := opened() - before - float64(len(c.agents)); d > bound {
			t.Errorf("%d page views opened %v connections to the nodes; want at most %v (%d servers x %d workers x %d nodes)",
				views, d, bound, len(servers), wsPHPWorkers, len(c.agents))
		}
	})

	t.Run("StrictModeRefusesUnknownID", func(t *testing.T) {
		const unknown = "neverissued0123456789abcdef"
		v := view(hc, servers[1], "op=inc", unknown)
		if v.err != nil || v.status != 200 || v.n() != 1 || v.newID == "" || v.newID == unknown {
			t.Errorf("page view with an id never issued: %v, new cookie %q; want a new session with n=1", v, v.newID)
		}
		if valid(unknown) {
			t.Errorf("the id never issued became a session")
		}
	})

	t.Run("RegenerateIDLeavesNoOldSession", func(t *testing.T) {
		old := create(servers[0], "")
		if v := view(hc, servers[1], "op=inc", old); v.n() != 1 {
			t.Fatalf("increment: %v", v)
		}
		v := view(hc, servers[2], "op=regenerate", old)
		if v.err != nil || v.status != 200 || v.newID == "" || v.newID == old || !strings.Contains(v.body, "old="+old+"\n") {
			t.Fatalf("regenerate: %v, new cookie %q", v, v.newID)
		}
		if valid(old) {
			t.Errorf("the old session is still there after session_regenerate_id(true)")
		}
		if !valid(v.newID) {
			t.Errorf("the new session does not exist")
		}
		if v := view(hc, servers[0], "op=inc", v.newID); v.n() != 2 {
			t.Errorf("increment of the regenerated session: %v; want n=2", v)
		}
	})

	t.Run("IdleSessionExpires", func(t *testing.T) {
		sent := time.Now()
		id := create(servers[1], fmt.Sprintf("maxlife=%d", int(wsMaxLifetime.Seconds())))
		answered := time.Now()
		bound := 2*wsMaxLifetime + wsElectionTimeout
		ok, _ := poll(bound+farmSlack, func() (bool, string) { return !valid(id), "" })
		gone := time.Now()
		switch {
		case !ok:
			t.Errorf("session idle for %v with gc_maxlifetime %v still exists", time.Since(answered).Round(time.Millisecond), wsMaxLifetime)
		case gone.Sub(sent) < wsMaxLifetime:
			t.Errorf("session gone %v after the request that created it, before gc_maxlifetime %v", gone.Sub(sent).Round(time.Millisecond), wsMaxLifetime)
		default:
			t.Logf("idle session gone %v after its last access (gc_maxlifetime %v)", gone.Sub(answered).Round(time.Millisecond), wsMaxLifetime)
		}
	})

	t.Run("KilledRequestFreesLockAfterLease", func(t *testing.T) {
		id := create(servers[0], "")
		req, err := http.NewRequest("GET", "http://"+holdServer.addr+"/?op=hold", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.AddCookie(&http.Cookie{Name: "PHPSESSID", Value: id})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		locked := time.Now() // the lock was taken before this line
		pid, perr := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(line), "pid="))
		if err != nil || perr != nil || pid <= 0 {
			t.Fatalf("hold page: %q, %v", line, err)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill -9 the php worker %d: %v", pid, err)
		}
		v := view(hc, servers[1], "op=inc", id)
		took := time.Since(locked)
		if v.err != nil || v.status != 200 || v.n() != 1 {
			t.Errorf("page view after the lock holder was killed: %v; want n=1", v)
		}
		if took > wsHoldTTL+time.Second {
			t.Errorf("the next request got the lock %v after the killed one took it; want within lock_ttl %v + 1 s", took.Round(time.Millisecond), wsHoldTTL)
		}
		t.Logf("lock of a killed request taken again %v after it was taken (lock_ttl %v)", took.Round(time.Millisecond), wsHoldTTL)
	})

	t.Run("ConcurrentIncrementsThroughLeaderKill", func(t *testing.T) {
		leader := c.leader()
		burst(servers, create(servers[0], ""), wsBurst/5, func() {
			t.Logf("kill -9 of the leader %s", c.agents[leader].id)
			c.kill9(leader)
		})
	})
}
