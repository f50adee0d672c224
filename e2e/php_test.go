package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paddock/paddock/client"
	"github.com/paddock/paddock/e2e/child"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// The PHP library (php/) against real clusters: its PHPUnit tests, and
// the worker demo (php/examples/worker.php) run as three real php
// processes.

const (
	// phpToolsMissing is the skip message of the tests that run the PHP
	// library.
	phpToolsMissing = "install php-cli, php-curl and phpunit (apt-get install -y php-cli php-curl phpunit)"
	// phpunitTimeout bounds the whole PHPUnit run.
	phpunitTimeout = 4 * time.Minute
	// workerSession is the workers' session timeout: the agents' shortest.
	workerSession = 2 * time.Second
)

// findPHPLibTools returns php's and phpunit's paths, skipping the test
// when php (with curl) or phpunit is missing, or failing it when
// PADDOCK_PHP_REQUIRE=1.
func findPHPLibTools(t *testing.T, needPHPUnit bool) (php, phpunit string) {
	t.Helper()
	missing := func(what string) {
		if os.Getenv("PADDOCK_PHP_REQUIRE") == "1" {
			t.Fatalf("%s and PADDOCK_PHP_REQUIRE=1: %s", what, phpToolsMissing)
		}
		t.Skipf("%s: %s", what, phpToolsMissing)
	}
	php, err := exec.LookPath("php")
	if err != nil {
		missing("php not found")
	}
	out, err := exec.Command(php, "-m").Output()
	if err != nil || !regexp.MustCompile(`(?m)^curl\r?$`).Match(out) {
		missing("php has no curl extension")
	}
	if needPHPUnit {
		if phpunit, err = exec.LookPath("phpunit"); err != nil {
			missing("phpunit not found")
		}
	}
	return php, phpunit
}

// httpEndpoints is the HTTP addresses of the cluster's agents, comma
// separated (PADDOCK_HTTP_ENDPOINTS).
func (c *cluster) httpEndpoints() string {
	var eps []string
	for _, a := range c.agents {
		eps = append(eps, a.httpAddr)
	}
	return strings.Join(eps, ",")
}

// startLoneAgent starts an agent that belongs to no cluster: it never
// knows a leader, so it answers polls 503 UNAVAILABLE "no leader". It
// returns its HTTP address; the agent is stopped in t.Cleanup.
func startLoneAgent(t *testing.T) string {
	t.Helper()
	ports, err := freePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[i]) }
	out := &syncBuffer{}
	p, err := startProc("lone agent", out, out, paddockBin, "agent", "--id", "lone", "--data-dir", filepath.Join(dir, "lone"),
		"--raft-addr", addr(0), "--grpc-addr", addr(1), "--http-addr", addr(2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("--- log of the lone agent ---\n%s", out.String())
		}
	})
	hc := http.Client{Timeout: time.Second}
	ok, last := poll(startTimeout, func() (bool, string) {
		resp, err := hc.Get("http://" + addr(2) + "/v1/poll?timeout_ms=100")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable, fmt.Sprintf("GET /v1/poll: HTTP %d", resp.StatusCode)
	})
	if !ok {
		t.Fatalf("lone agent does not answer 503 after %v: %s\n%s", startTimeout, last, out.String())
	}
	return addr(2)
}

// TestPHPUnit runs the PHP library's PHPUnit tests (php/tests) against a
// three-node cluster, with a node that has no leader for the 503
// failover test. A skipped PHPUnit test fails the run: here every test
// has what it needs.
func TestPHPUnit(t *testing.T) {
	t.Parallel()
	_, phpunit := findPHPLibTools(t, true)
	c := startCluster(t)
	lone := startLoneAgent(t)

	root, err := filepath.Abs("../php")
	if err != nil {
		t.Fatal(err)
	}
	// The tests of group iptables drop packets with iptables: as root,
	// where iptables can list the rules.
	args := []string{"--configuration", filepath.Join(root, "phpunit.xml.dist"), "--fail-on-skipped", "--fail-on-incomplete", "--testdox"}
	if os.Geteuid() != 0 || exec.Command("iptables", "-w", "-S", "INPUT").Run() != nil {
		t.Log("leaving out the PHP tests of group iptables: they need root and a working iptables (apt-get install iptables)")
		args = append(args, "--exclude-group", "iptables")
	}
	// The tests' clients call over curl, then over kept connections
	// (option persistent, which the session handler uses).
	for _, persistent := range []string{"0", "1"} {
		ctx, cancel := context.WithTimeout(context.Background(), phpunitTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, phpunit, args...)
		cmd.Dir = root
		// TMPDIR: where the session handler keeps the leader's address
		// (PHP's sys_get_temp_dir), the test's own directory.
		cmd.Env = append(child.Env(), "PADDOCK_HTTP_ENDPOINTS="+c.httpEndpoints(),
			"PADDOCK_TEST_NO_LEADER_ENDPOINT="+lone, "TMPDIR="+t.TempDir(), "PADDOCK_TEST_PERSISTENT="+persistent)
		cmd.SysProcAttr = sysProcAttr()
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err = cmd.Run()
		if ctx.Err() != nil {
			t.Fatalf("phpunit (PADDOCK_TEST_PERSISTENT=%s) still running after %v:\n%s", persistent, phpunitTimeout, out.String())
		}
		if err != nil {
			t.Fatalf("phpunit (PADDOCK_TEST_PERSISTENT=%s): %v\n%s", persistent, err, out.String())
		}
		if testing.Verbose() {
			t.Logf("phpunit (PADDOCK_TEST_PERSISTENT=%s):\n%s", persistent, out.String())
		}
	}
}

// phpWorker is one php/examples/worker.php process.
type phpWorker struct {
	name    string
	p       *child.Proc
	out     *syncBuffer
	killed  bool // SIGKILLed by the test
	stopped bool // SIGSTOPped by the test and not yet stepped down
}

// Lines the worker prints (php/examples/worker.php).
var (
	workerLeads     = regexp.MustCompile(`worker (\S+): leader with token (\d+)$`)
	workerStep      = regexp.MustCompile(`worker (\S+): step (\d+) with token (\d+): (\S+)$`)
	workerStepsDown = regexp.MustCompile(`worker (\S+): (fenced write refused: fence lost|session expired), stepping down`)
)

// workerState is what a worker's output says so far.
type workerState struct {
	leading bool     // its last leadership line is "leader with token"
	token   string   // the token of its last "leader with token"
	tokens  []string // every token it led with
	steps   []string // "path token" of each step it reported done
	fenced  int      // its "fenced write refused" lines
}

func (w *phpWorker) state() workerState {
	var s workerState
	for _, line := range strings.Split(w.out.String(), "\n") {
		if m := workerLeads.FindStringSubmatch(line); m != nil {
			s.leading, s.token = true, m[2]
			s.tokens = append(s.tokens, m[2])
		} else if m := workerStep.FindStringSubmatch(line); m != nil {
			s.steps = append(s.steps, m[4]+" "+m[3])
		} else if m := workerStepsDown.FindStringSubmatch(line); m != nil {
			s.leading = false
			if strings.HasPrefix(m[2], "fenced") {
				s.fenced++
			}
		}
	}
	return s
}

// TestPHPWorker runs the worker demo as three php processes: exactly one
// leads at a time; kill -9 of the leader gives another leader within the
// session timeout + 1 s (counted from the later of the kill and the last
// Paddock leader change); a leader paused past its session is replaced,
// and when it resumes its fenced write is refused and it steps down; every
// fenced write that succeeded came from its token's leader, and the log's
// tokens never go back.
func TestPHPWorker(t *testing.T) {
	t.Parallel()
	php, _ := findPHPLibTools(t, false)
	c := startCluster(t)
	leaders := watchLeaders(t, c)
	script, err := filepath.Abs("../php/examples/worker.php")
	if err != nil {
		t.Fatal(err)
	}
	const election, logPath = "php-demo", "/php-demo"

	var workers []*phpWorker
	for i := range 3 {
		w := &phpWorker{name: fmt.Sprintf("w%d", i+1), out: &syncBuffer{}}
		w.p, err = startProc(w.name, w.out, w.out, php, script, "--endpoints", c.httpEndpoints(),
			"--election", election, "--session-timeout-ms", strconv.Itoa(int(workerSession.Milliseconds())),
			"--step-ms", "100", "--campaign-ms", "5000", "--log", logPath, "--name", w.name)
		if err != nil {
			t.Fatal(err)
		}
		workers = append(workers, w)
	}
	t.Cleanup(func() {
		for _, w := range workers {
			if w.p.Exited() && !w.killed {
				t.Errorf("%s exited on its own (%v)", w.name, w.p.Err())
			}
			w.p.Signal(syscall.SIGCONT)
			w.p.Kill()
			if t.Failed() || testing.Verbose() {
				t.Logf("--- output of %s ---\n%s", w.name, w.out.String())
			}
		}
	})

	// leading returns the workers that say they lead, alive and not
	// paused by the test, failing the test when there are two.
	leading := func() []*phpWorker {
		var ls []*phpWorker
		for _, w := range workers {
			if !w.killed && !w.stopped && w.state().leading {
				ls = append(ls, w)
			}
		}
		if len(ls) > 1 {
			t.Fatalf("two workers lead at once: %s (token %s) and %s (token %s)",
				ls[0].name, ls[0].state().token, ls[1].name, ls[1].state().token)
		}
		return ls
	}
	// newLeader waits for a leader other than old (nil: any) that has
	// made 3 steps, and checks the bound from `from`.
	newLeader := func(old *phpWorker, from time.Time, bound time.Duration) *phpWorker {
		t.Helper()
		var got *phpWorker
		var at time.Time
		ok, last := poll(bound+farmPatience, func() (bool, string) {
			ls := leading()
			if len(ls) == 1 && ls[0] != old && at.IsZero() {
				got, at = ls[0], time.Now()
			}
			if got == nil {
				return false, "no new leader"
			}
			return len(got.state().steps) >= 3, got.name + " leads, fewer than 3 steps"
		})
		if !ok {
			t.Fatalf("no new leader with a step after %v: %s", bound+farmPatience, last)
		}
		start := leaders.from(from)
		d := at.Sub(start)
		if d > bound {
			t.Errorf("%s led %v after %s, want within %v", got.name, d.Round(time.Millisecond), start.Format("15:04:05.000"), bound)
		}
		t.Logf("%s leads %v after %s, with token %s", got.name, d.Round(time.Millisecond), start.Format("15:04:05.000"), got.state().token)
		return got
	}
	bound := workerSession + farmSlack

	first := newLeader(nil, time.Now(), startTimeout)

	// kill -9 of the leader: another takes over within the bound.
	first.killed = true
	killedAt := time.Now()
	first.p.Kill()
	second := newLeader(first, killedAt, bound)

	// SIGSTOP of the leader past its session: the third worker takes
	// over; on SIGCONT the old leader's next fenced write is refused.
	if err := second.p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	second.stopped = true
	stoppedAt := time.Now()
	third := newLeader(second, stoppedAt, bound)
	if err := second.p.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	ok, last := poll(10*time.Second, func() (bool, string) {
		st := second.state()
		return !st.leading, fmt.Sprintf("%s still says it leads", second.name)
	})
	if !ok {
		t.Fatalf("%s resumed and did not step down: %s", second.name, last)
	}
	second.stopped = false
	// Its next step is normally a fenced write, refused; if it was
	// stopped inside a keepalive, that one finds the session gone first.
	// Either way checkWorkerLog sees any write that got through.
	if second.state().fenced == 0 {
		t.Logf("%s stepped down on its expired session before a fenced write: %s", second.name, lastLines(second.out.String(), 3))
	}
	// It waits in line again, and the third keeps leading.
	n := len(third.state().steps)
	ok, last = poll(10*time.Second, func() (bool, string) {
		ls := leading()
		return len(third.state().steps) >= n+5 && len(ls) == 1 && ls[0] == third, "third's steps"
	})
	if !ok {
		t.Fatalf("%s does not go on leading: %s", third.name, last)
	}
	for _, w := range workers {
		if !w.killed {
			w.killed = true
			w.p.Kill()
		}
	}
	checkWorkerLog(t, c, election, logPath, workers)
}

// checkWorkerLog checks the log the workers wrote: each entry's token is
// one its writer led with, tokens never decrease in log order (a
// deposed leader's write after its successor's would), and every step a
// worker reported is in the log.
func checkWorkerLog(t *testing.T, c *cluster, election, logPath string, workers []*phpWorker) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := client.New(ctx, client.Config{Endpoints: strings.Split(c.endpoints(), ",")})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	list, err := cl.List(ctx, &paddockv1.ListRequest{Path: logPath, PageSize: 10000, WithData: true})
	if err != nil {
		t.Fatalf("list %s: %v", logPath, err)
	}
	ledWith := map[string]string{} // token -> worker
	reported := map[string]bool{}  // "path token"
	for _, w := range workers {
		st := w.state()
		for _, tok := range st.tokens {
			if other, ok := ledWith[tok]; ok && other != w.name {
				t.Errorf("token %s led by both %s and %s", tok, other, w.name)
			}
			ledWith[tok] = w.name
		}
		for _, s := range st.steps {
			reported[s] = true
		}
	}
	children := list.GetChildren()
	sort.Slice(children, func(i, j int) bool { return children[i].GetName() < children[j].GetName() })
	var prev uint64
	for _, ch := range children {
		f := strings.Fields(string(ch.GetData()))
		if len(f) != 3 {
			t.Errorf("%s/%s: data %q, want \"WORKER TOKEN STEP\"", logPath, ch.GetName(), ch.GetData())
			continue
		}
		who, tok := f[0], f[1]
		if ledWith[tok] != who {
			t.Errorf("%s/%s written by %s with token %s, which %s", logPath, ch.GetName(), who, tok,
				map[bool]string{true: "was led by " + ledWith[tok], false: "no worker led with"}[ledWith[tok] != ""])
		}
		n, _ := strconv.ParseUint(tok, 10, 64)
		if n < prev {
			t.Errorf("%s/%s has token %d after an entry with token %d: a deposed leader's write was applied", logPath, ch.GetName(), n, prev)
		}
		prev = max(prev, n)
		delete(reported, logPath+"/"+ch.GetName()+" "+tok)
	}
	for s := range reported {
		t.Errorf("a worker reported step %q, which is not in the log", s)
	}
	if len(children) == 0 {
		t.Errorf("%s is empty", logPath)
	}
	t.Logf("%d log entries, tokens %v", len(children), ledWith)
}
