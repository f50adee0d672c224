//go:build linux

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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

// The CLI of issue 14, as its users run it: `paddock elect` contenders
// whose command works under a fence, `paddock lock -n 2`, and `paddock
// farm exec` rolling over two hosts. Linux only: the contenders are
// paused with SIGSTOP and their commands die with them (Pdeathsig).

const (
	// holdTimeout is every contender's --session-timeout (the agents'
	// shortest), so that the kill and pause tests stay short.
	holdTimeout = 2 * time.Second
	// holdGrace is every contender's --grace.
	holdGrace = 2 * time.Second
)

// contenderScript is the command of an elect contender: it records its
// start, then creates fenced sequential znodes /work/w-TOKEN- in a loop,
// logging each outcome; on SIGTERM it tries one last fenced write (a late
// write, refused when it no longer leads) and exits 0. Its log lines are
// "NAME EVENT TOKEN [KEY]".
const contenderScript = `
T=$PADDOCK_ELECTION_TOKEN
fenced() { "$PADDOCK" tree create --endpoints "$EPS" --sequential --fence "elections/$E:$T" "$1" "$N" >/dev/null 2>>"$LOG.err"; }
trap 'echo "$N term $T" >> "$LOG"; if fenced "/work/late-$T-"; then echo "$N late-ok $T" >> "$LOG"; else echo "$N late-refused $T" >> "$LOG"; fi; exit 0' TERM
echo "$N start $T $PADDOCK_ELECTION_KEY" >> "$LOG"
while :; do
  if fenced "/work/w-$T-"; then echo "$N ok $T" >> "$LOG"; else echo "$N refused $T" >> "$LOG"; fi
  sleep 0.1
done
`

// groupProc is a paddock process started in a process group of its own
// (with the commands it runs), as a service manager starts it.
type groupProc struct {
	name    string
	p       *child.Proc
	outPath string // stdout and stderr: a file, so that a command left
	// behind by a killed paddock cannot hold up the wait for its end
}

// out is what the process printed so far.
func (g *groupProc) out() string {
	b, _ := os.ReadFile(g.outPath)
	return string(b)
}

// startGroupProc starts `paddock args...` with env added, in its own
// process group; the whole group is SIGKILLed in t.Cleanup.
func startGroupProc(t *testing.T, name string, env []string, args ...string) *groupProc {
	t.Helper()
	g := &groupProc{name: name, outPath: filepath.Join(t.TempDir(), "out")}
	out, err := os.Create(g.outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close() // the child has its own descriptor
	cmd := exec.Command(paddockBin, args...)
	cmd.Env = append(child.Env(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	g.p = child.Watch(cmd)
	t.Cleanup(func() {
		syscall.Kill(-g.p.Pid(), syscall.SIGKILL)
		syscall.Kill(-g.p.Pid(), syscall.SIGCONT)
		g.p.Kill()
		if strings.Contains(g.out(), "WARNING: DATA RACE") {
			t.Errorf("%s reported a data race:\n%s", name, g.out())
		}
		if t.Failed() {
			t.Logf("--- output of %s (paddock %s) ---\n%s", name, strings.Join(args, " "), g.out())
		}
	})
	return g
}

// logLine is one line of a command's log: "NAME EVENT TOKEN [REST]".
type logLine struct {
	name, event string
	token       uint64
	rest        string
}

// readLog parses a log file (missing: empty).
func readLog(t *testing.T, path string) []logLine {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []logLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.SplitN(sc.Text(), " ", 4)
		if len(fields) < 2 {
			t.Fatalf("%s: bad line %q", path, sc.Text())
		}
		l := logLine{name: fields[0], event: fields[1]}
		if len(fields) > 2 {
			l.token, _ = strconv.ParseUint(fields[2], 10, 64)
		}
		if len(fields) > 3 {
			l.rest = fields[3]
		}
		out = append(out, l)
	}
	return out
}

// starts returns the start lines of log, in order.
func starts(log []logLine) []logLine {
	var out []logLine
	for _, l := range log {
		if l.event == "start" {
			out = append(out, l)
		}
	}
	return out
}

// TestElectLockCLI runs `paddock elect`, `paddock lock` and `paddock farm
// exec` against one cluster.
func TestElectLockCLI(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	leaders := watchLeaders(t, c)
	eps := c.endpoints()
	cl, err := client.New(context.Background(), client.Config{Endpoints: strings.Split(eps, ",")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	t.Run("elect", func(t *testing.T) { testElect(t, leaders, cl, eps) })
	t.Run("lock -n 2", func(t *testing.T) { testLockSemaphore(t, eps) })
	t.Run("farm exec", func(t *testing.T) { testFarmExec(t, eps) })
}

// testElect: three contenders, one runs at a time; kill -9 of the
// leader's elect hands over within the session timeout; a leader paused
// (SIGSTOP of its process group) past its session is replaced, and on
// waking its fenced writes are refused and its command is stopped.
func testElect(t *testing.T, leaders *leaderLog, cl *client.Client, eps string) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "log")
	if r := paddock(t, "tree", "create", "--endpoints", eps, "/work"); r.code != 0 {
		t.Fatalf("tree create /work: %v", r)
	}
	procs := map[string]*groupProc{}
	for _, n := range []string{"A", "B", "C"} {
		env := []string{"N=" + n, "LOG=" + logPath, "EPS=" + eps, "PADDOCK=" + paddockBin, "E=batch"}
		procs[n] = startGroupProc(t, "elect "+n, env, "elect", "batch", "--value", n, "--endpoints", eps,
			"--session-timeout", holdTimeout.String(), "--grace", holdGrace.String(), "--", "sh", "-c", contenderScript)
	}

	// One leads; the others wait.
	var first logLine
	ok, last := poll(farmProcStart, func() (bool, string) {
		s := starts(readLog(t, logPath))
		if len(s) > 0 {
			first = s[0]
		}
		return len(s) > 0 && countEvent(readLog(t, logPath), first.token, "ok") >= 3, fmt.Sprintf("starts %v", s)
	})
	if !ok {
		t.Fatalf("no contender led and wrote 3 times within %v: %s", farmProcStart, last)
	}
	if !strings.HasPrefix(first.rest, "/paddock/elections/batch/") {
		t.Errorf("PADDOCK_ELECTION_KEY = %q, want /paddock/elections/batch/...", first.rest)
	}
	r := paddock(t, "elect", "--leader", "batch", "--endpoints", eps)
	if want := fmt.Sprintf("%d %s %s\n", first.token, first.rest, first.name); r.code != 0 || r.stdout != want {
		t.Errorf("elect --leader batch: %v, want stdout %q", r, want)
	}

	// kill -9 of the leader's elect: its command dies with it, and the
	// next leads within the session timeout.
	killed := time.Now()
	procs[first.name].p.Kill()
	var second logLine
	leaders.within(t, "kill -9 of the leader's elect: the next leads", killed, holdTimeout, func() (bool, string) {
		s := starts(readLog(t, logPath))
		if len(s) > 1 {
			second = s[1]
		}
		return len(s) > 1, fmt.Sprintf("starts %v", s)
	})
	if t.Failed() {
		return
	}
	waitEvents(t, logPath, second.token, "ok", 3)
	checkOneAtATime(t, readLog(t, logPath), first.token, second.token, true)
	// A leader elected by a Campaign that had waited long is confirmed at
	// once: it is not stopped a session timeout after that Campaign was
	// sent (a needless stop).
	secondSeen := time.Now()
	poll(holdTimeout+500*time.Millisecond, func() (bool, string) { return procs[second.name].p.Exited(), "" })
	if procs[second.name].p.Exited() || countEvent(readLog(t, logPath), second.token, "term") > 0 {
		t.Fatalf("the new leader %s stopped its command within %v of leading: %s", second.name, time.Since(secondSeen).Round(time.Millisecond), procs[second.name].out())
	}

	// SIGSTOP of the leader's process group (elect and its command) past
	// its session: the third takes over.
	paused := procs[second.name]
	stopped := time.Now()
	if err := syscall.Kill(-paused.p.Pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	var third logLine
	leaders.within(t, "SIGSTOP of the leader: the next leads", stopped, holdTimeout, func() (bool, string) {
		s := starts(readLog(t, logPath))
		if len(s) > 2 {
			third = s[2]
		}
		return len(s) > 2, fmt.Sprintf("starts %v", s)
	})
	if t.Failed() {
		syscall.Kill(-paused.p.Pid(), syscall.SIGCONT)
		return
	}
	waitEvents(t, logPath, third.token, "ok", 3)
	// Waking up, the old leader's writes are refused, and its elect
	// stops its command and exits 75.
	resumed := time.Now()
	if err := syscall.Kill(-paused.p.Pid(), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	leaders.within(t, "the woken leader stops its command and exits", resumed, holdGrace, func() (bool, string) {
		return paused.p.Exited(), "still running"
	})
	if !paused.p.Exited() {
		return
	}
	if code := paused.p.ExitCode(); code != 75 {
		t.Errorf("the woken leader's elect exited %d, want 75 (leadership lost): %s", code, paused.out())
	}
	if out := paused.out(); !strings.Contains(out, "stopping the command") {
		t.Errorf("the woken leader's elect said %q, want why it stopped its command", out)
	}
	log := readLog(t, logPath)
	if countEvent(log, second.token, "late-refused") != 1 || countEvent(log, second.token, "late-ok") != 0 {
		t.Errorf("the woken leader's late write (on SIGTERM) was not refused: log %v", eventsOf(log, second.token))
	}
	// Before the pause it wrote; after the takeover nothing of its got in.
	checkOneAtATime(t, log, second.token, third.token, false)
	checkFencedHistory(t, cl, "batch")

	// SIGTERM to the last leader's elect is forwarded to its command,
	// which exits 0: elect resigns at once and exits 0 too; no one is
	// left in line.
	last3 := procs[third.name]
	last3.p.Signal(syscall.SIGTERM)
	if !last3.p.Wait(holdGrace + 5*time.Second) {
		t.Fatalf("elect %s still running after SIGTERM", third.name)
	}
	if code := last3.p.ExitCode(); code != 0 {
		t.Errorf("elect %s after SIGTERM: exit %d, want 0 (its command's status)", third.name, code)
	}
	if n := countEvent(readLog(t, logPath), third.token, "late-ok"); n != 1 {
		t.Errorf("the leader's write on SIGTERM, still leading: %d late-ok lines, want 1", n)
	}
	r = paddock(t, "elect", "--leader", "batch", "--endpoints", eps)
	if r.code != 1 || r.stderr != "paddock: election batch has no leader\n" {
		t.Errorf("elect --leader batch after the last resigned: %v, want exit 1, no leader", r)
	}
}

// countEvent counts the lines of token with event.
func countEvent(log []logLine, token uint64, event string) int {
	n := 0
	for _, l := range log {
		if l.token == token && l.event == event {
			n++
		}
	}
	return n
}

// eventsOf is the events of token, in order.
func eventsOf(log []logLine, token uint64) []string {
	var out []string
	for _, l := range log {
		if l.token == token {
			out = append(out, l.event)
		}
	}
	return out
}

// waitEvents waits until token has n lines of event.
func waitEvents(t *testing.T, logPath string, token uint64, event string, n int) {
	t.Helper()
	ok, _ := poll(10*time.Second, func() (bool, string) { return countEvent(readLog(t, logPath), token, event) >= n, "" })
	if !ok {
		t.Fatalf("token %d: fewer than %d %q lines: %v", token, n, event, eventsOf(readLog(t, logPath), token))
	}
}

// checkOneAtATime checks the log around a handover from old to next: the
// tokens start in increasing order, and once next has started old has
// no late write that got in and no new start, or with strict (its
// command died with its elect) no line at all.
//
// Without strict an "ok" of old may follow next's start: old was paused
// (SIGSTOP) after its write was acknowledged and before its shell
// echoed "ok", so the line lands after the takeover although the write
// came before it. Whether each write got in while its token led is
// checked by zxid, not by log order, in checkFencedHistory.
func checkOneAtATime(t *testing.T, log []logLine, old, next uint64, strict bool) {
	t.Helper()
	var prev uint64
	for _, s := range starts(log) {
		if s.token <= prev {
			t.Errorf("start of token %d after token %d: leaders must come in token order", s.token, prev)
		}
		prev = s.token
	}
	nextStarted := false
	for _, l := range log {
		if l.token == next && l.event == "start" {
			nextStarted = true
		}
		if nextStarted && l.token == old && (strict || l.event == "late-ok" || l.event == "start") {
			t.Errorf("token %d: %q after token %d started: two ran at once", old, l.event, next)
		}
	}
}

// checkFencedHistory replays the cluster's history and checks that every
// fenced znode under /work (named after its writer's token) was created
// while that token led the election: the leader at a zxid is the first
// candidate under /paddock/elections/NAME then, and its token is the zxid
// that created it.
func checkFencedHistory(t *testing.T, cl *client.Client, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	head, err := cl.Get(ctx, &paddockv1.GetRequest{Path: "/work"})
	if err != nil {
		t.Fatal(err)
	}
	w, err := cl.Watch(ctx, "/", client.WatchOptions{Recursive: true, StartZxid: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var events []*paddockv1.Event
	for up := uint64(0); up < head.GetHeader().GetZxid(); {
		select {
		case r := <-w.Responses():
			events = append(events, r.Events...)
			up = r.Zxid
		case <-w.Done():
			t.Fatalf("watch of the history ended: %v", w.Err())
		}
	}
	prefix := "/paddock/elections/" + name + "/"
	candidates := map[string]uint64{} // name -> token (czxid)
	writes := 0
	for _, ev := range events {
		switch {
		case strings.HasPrefix(ev.Path, prefix) && ev.Kind == paddockv1.EventKind_EVENT_KIND_CREATED:
			candidates[strings.TrimPrefix(ev.Path, prefix)] = ev.Zxid
		case strings.HasPrefix(ev.Path, prefix) && ev.Kind == paddockv1.EventKind_EVENT_KIND_DELETED:
			delete(candidates, strings.TrimPrefix(ev.Path, prefix))
		case strings.HasPrefix(ev.Path, "/work/") && ev.Kind == paddockv1.EventKind_EVENT_KIND_CREATED:
			parts := strings.Split(strings.TrimPrefix(ev.Path, "/work/"), "-")
			token, _ := strconv.ParseUint(parts[1], 10, 64)
			var names []string
			for n := range candidates {
				names = append(names, n)
			}
			sort.Strings(names)
			var leader uint64
			if len(names) > 0 {
				leader = candidates[names[0]]
			}
			if leader != token {
				t.Errorf("%s created at zxid %d with token %d while token %d led: a fenced write of a non-leader got in", ev.Path, ev.Zxid, token, leader)
			}
			writes++
		}
	}
	if writes == 0 {
		t.Errorf("no fenced write in the history up to zxid %d", head.GetHeader().GetZxid())
	}
	t.Logf("%d fenced writes, each by the leader of its token", writes)
}

// testLockSemaphore: five `paddock lock -n 2` at once; their commands
// log in and out: never more than two inside, each exits with its
// command's status.
func testLockSemaphore(t *testing.T, eps string) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "log")
	script := `echo "$N in $PADDOCK_LOCK_TOKEN" >> "$LOG"; sleep 0.3; echo "$N out $PADDOCK_LOCK_TOKEN" >> "$LOG"; exit $RC`
	var procs []*groupProc
	names := []string{"p1", "p2", "p3", "p4", "p5"}
	for i, n := range names {
		env := []string{"N=" + n, "LOG=" + logPath, "RC=" + strconv.Itoa(i)}
		procs = append(procs, startGroupProc(t, "lock "+n, env, "lock", "sem", "-n", "2", "--endpoints", eps,
			"--session-timeout", holdTimeout.String(), "--", "sh", "-c", script))
	}
	for i, p := range procs {
		if !p.p.Wait(30 * time.Second) {
			t.Fatalf("lock %s still running after 30s: %s", names[i], p.out())
		}
		if code := p.p.ExitCode(); code != i {
			t.Errorf("lock %s exited %d, want %d (its command's): %s", names[i], code, i, p.out())
		}
	}
	inside, most := map[string]bool{}, 0
	log := readLog(t, logPath)
	for _, l := range log {
		switch l.event {
		case "in":
			inside[l.name] = true
		case "out":
			delete(inside, l.name)
		}
		most = max(most, len(inside))
	}
	if most > 2 || most < 2 || len(log) != 2*len(names) {
		t.Errorf("log %v: at most %d inside at once and %d lines, want 2 and %d", log, most, len(log), 2*len(names))
	}
	// A differing -n is refused while the lock is in use; free, it is not.
	hold := startGroupProc(t, "lock holder", nil, "lock", "sem", "-n", "2", "--endpoints", eps, "--", "sleep", "30")
	ok, _ := poll(10*time.Second, func() (bool, string) {
		r := paddock(t, "tree", "ls", "--endpoints", eps, "/paddock/locks/sem")
		return r.code == 0 && r.stdout != "", ""
	})
	if !ok {
		t.Fatalf("the holder did not take the lock: %s", hold.out())
	}
	r := paddock(t, "lock", "sem", "-n", "3", "--endpoints", eps, "--", "true")
	if r.code != 1 || !strings.Contains(r.stderr, "FailedPrecondition") {
		t.Errorf("lock -n 3 of a lock held with -n 2: %v, want exit 1 and FailedPrecondition", r)
	}
}

// testFarmExec: two joined hosts (real `farm join`, syncing JSON files
// both ways) run `farm exec -c 1 -s enabled=0 -s maint.reason=deploy` at
// once: never both inside, each sees its fields set inside, and both the
// entries and the joiners' files are as before afterwards.
func testFarmExec(t *testing.T, eps string) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "log")
	hosts := []string{"hA", "hB"}
	for _, n := range hosts {
		conf := filepath.Join(dir, n+".json")
		if err := os.WriteFile(conf, []byte(`{"enabled": "1"}`), 0o644); err != nil {
			t.Fatal(err)
		}
		startFarmProc(t, t, "join "+n, joinArgs("join", eps, "/services/web", conf, n, "--hostname", n)...)
	}
	// What each entry holds, as farm get -f json prints it.
	entry := func(n string) string {
		return paddock(t, "farm", "get", "-f", "json", "--endpoints", eps, "/services/web/"+n).stdout
	}
	for _, n := range hosts {
		ok, last := poll(farmProcStart, func() (bool, string) { e := entry(n); return strings.Contains(e, `"enabled": "1"`), e })
		if !ok {
			t.Fatalf("/services/web/%s not joined: %q", n, last)
		}
	}
	before := map[string]string{}
	for _, n := range hosts {
		before[n] = entry(n)
	}
	script := `f() { "$PADDOCK" farm get --endpoints "$EPS" /services/web/$N "$1"; }
echo "$N in $(f enabled) $(f maint.reason)" >> "$LOG"; sleep 0.3; echo "$N out" >> "$LOG"`
	var procs []*groupProc
	for _, n := range hosts {
		env := []string{"N=" + n, "LOG=" + logPath, "EPS=" + eps, "PADDOCK=" + paddockBin}
		procs = append(procs, startGroupProc(t, "farm exec "+n, env, "farm", "exec", "/services/web", "-c", "1",
			"--name", n, "-s", "enabled=0", "-s", "maint.reason=deploy", "--endpoints", eps, "--", "sh", "-c", script))
	}
	for _, p := range procs {
		if !p.p.Wait(30*time.Second) || p.p.ExitCode() != 0 {
			t.Fatalf("%s: exited %t, code %d: %s", p.name, p.p.Exited(), p.p.ExitCode(), p.out())
		}
	}
	b, _ := os.ReadFile(logPath)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	// Whole runs one after the other, fields set inside.
	ok := len(lines) == 4
	for i := 0; ok && i < 4; i += 2 {
		n := strings.Fields(lines[i])[0]
		ok = lines[i] == n+" in 0 deploy" && lines[i+1] == n+" out"
	}
	if !ok {
		t.Errorf("farm exec log:\n%s\nwant each host in (enabled 0, maint.reason deploy) and out in turn", b)
	}
	for _, n := range hosts {
		if got := entry(n); got != before[n] {
			t.Errorf("/services/web/%s after farm exec:\n%s\nwant as before:\n%s", n, got, before[n])
		}
		// The joiner wrote the changes to its file and back.
		conf := filepath.Join(dir, n+".json")
		ok, last := poll(5*time.Second, func() (bool, string) {
			b, _ := os.ReadFile(conf)
			return strings.Contains(string(b), `"enabled": "1"`) && !strings.Contains(string(b), "maint"), string(b)
		})
		if !ok {
			t.Errorf("%s after farm exec: %s, want enabled 1 and no maint again", conf, last)
		}
	}
}
