package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/paddock/paddock/client"
	"github.com/paddock/paddock/e2e/child"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// What the farm tests (farm_test.go) share: `paddock farm join` and
// `paddock farm export` processes, the exports read back (PHP through real
// php), the counters their --changed-cmd appends to, bounds counted from
// the last leader change, and a direct client to look at the tree.

const (
	// farmSessionTimeout is every joiner's --session-timeout: the agents'
	// shortest, so that a killed host leaves quickly.
	farmSessionTimeout = 2 * time.Second
	// farmSlack is added to every bound (issue 13: 1 s of slack).
	farmSlack = time.Second
	// farmPatience is how long past its bound a state is still waited for,
	// so that a late state is reported with its delay, not as missing.
	farmPatience = 10 * time.Second
	// farmProcStart bounds a joiner's registration and an exporter's
	// first file.
	farmProcStart = 15 * time.Second
)

// phpMissing is the skip message of the tests that need php.
const phpMissing = "install php-cli (apt-get install -y php-cli)"

// findPHP returns php's path, or "" when it is missing and not required
// (PADDOCK_PHP_REQUIRE=1 makes a missing php fail the test).
func findPHP(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("php")
	if err == nil {
		return p
	}
	if os.Getenv("PADDOCK_PHP_REQUIRE") == "1" {
		t.Fatalf("php not found and PADDOCK_PHP_REQUIRE=1: %s", phpMissing)
	}
	return ""
}

// farmProc is a background `paddock farm join` or `paddock farm export`.
type farmProc struct {
	name   string
	p      *child.Proc
	out    *syncBuffer // stdout and stderr
	killed bool        // the test SIGKILLed it
}

// kill9 SIGKILLs the process and waits for its end.
func (fp *farmProc) kill9() {
	fp.killed = true
	fp.p.Kill()
}

// startFarmProc starts `paddock farm ARGS...` for test t; it is SIGKILLed
// in owner's Cleanup (owner is t or a parent of t whose subtests share the
// process), which also fails owner if it reported a data race or exited on
// its own.
func startFarmProc(t, owner *testing.T, name string, args ...string) *farmProc {
	t.Helper()
	fp := &farmProc{name: name, out: &syncBuffer{}}
	var err error
	fp.p, err = startProc(name, fp.out, fp.out, paddockBin, append([]string{"farm"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	owner.Cleanup(func() {
		t := owner
		if fp.p.Exited() && !fp.killed {
			t.Errorf("%s exited during the test (%v): %s", name, fp.p.Err(), fp.out.String())
		}
		fp.p.Kill()
		if strings.Contains(fp.out.String(), "WARNING: DATA RACE") {
			t.Errorf("%s reported a data race:\n%s", name, fp.out.String())
		}
		if t.Failed() {
			t.Logf("--- output of %s (paddock farm %s) ---\n%s", name, strings.Join(args, " "), fp.out.String())
		}
	})
	return fp
}

// joinArgs is the command line of a joiner (verb join or import) of farm
// with conf as name.
func joinArgs(verb, eps, farm, conf, name string, extra ...string) []string {
	return append([]string{verb, farm, conf, "--name", name,
		"--session-timeout", farmSessionTimeout.String(), "--endpoints", eps}, extra...)
}

// exporter is a background `paddock farm export` and what it writes.
type exporter struct {
	*farmProc
	format  string // json, yaml or php: how the test reads dest
	dest    string
	counter string // --changed-cmd appends a line here
	runs    int    // --changed-cmd runs the test accounted for
}

// startExporter exports farm to dir/export.EXT (the format inferred from
// the extension) through eps, its --changed-cmd appending to a counter.
func startExporter(t, owner *testing.T, dir, eps, farm, format string, extra ...string) *exporter {
	t.Helper()
	e := &exporter{format: format,
		dest:    filepath.Join(dir, "export."+format),
		counter: filepath.Join(dir, format+".count")}
	args := append([]string{"export", farm, e.dest, "-c", "echo changed >> " + shellQuote(e.counter),
		"--endpoints", eps}, extra...)
	e.farmProc = startFarmProc(t, owner, "export "+format, args...)
	return e
}

// countLines is the number of lines of a counter file (0 if missing).
func countLines(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return bytes.Count(b, []byte("\n"))
}

// hosts is a farm as an export holds it: host name to configuration,
// nested objects as map[string]any, values as they were decoded.
type hosts = map[string]any

// read parses e's file; php reads the PHP export (json_encode of what
// `require` returns), "" when php is missing (the PHP file is then not
// checked).
func (e *exporter) read(php string) (hosts, error) {
	var b []byte
	var err error
	switch e.format {
	case "php":
		if php == "" {
			return nil, nil
		}
		b, err = exec.Command(php, "-r", `echo json_encode(require $argv[1]);`, e.dest).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("php require %s: %v: %s", e.dest, err, b)
		}
		if string(b) == "[]" { // PHP's empty array is a list
			return hosts{}, nil
		}
	default:
		if b, err = os.ReadFile(e.dest); err != nil {
			return nil, err
		}
	}
	h := hosts{}
	switch e.format {
	case "yaml":
		err = yaml.Unmarshal(b, &h)
	default:
		err = json.Unmarshal(b, &h)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %v in %q", e.dest, err, b)
	}
	return h, nil
}

// leaderLog records when each new leader was first seen.
type leaderLog struct {
	start   time.Time
	mu      sync.Mutex
	term    uint64
	changes []leaderChange
}

type leaderChange struct {
	at   time.Time
	id   string
	term uint64
}

// watchLeaders asks every agent for its status every 50 ms until the test
// ends, recording each new term's leader.
func watchLeaders(t *testing.T, c *cluster) *leaderLog {
	l := &leaderLog{start: time.Now()}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, a := range c.agents {
		cl, err := client.New(ctx, client.Config{Endpoints: []string{a.grpcAddr}, DialTimeout: 500 * time.Millisecond, RetryTimeout: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cl.Close()
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				sctx, scancel := context.WithTimeout(ctx, 500*time.Millisecond)
				st, err := cl.Status(sctx, &paddockv1.StatusRequest{})
				scancel()
				if err == nil && st.GetRole() == paddockv1.Role_ROLE_LEADER {
					l.seen(st.GetId(), st.GetTerm())
				}
			}
		}()
	}
	return l
}

func (l *leaderLog) seen(id string, term uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if term > l.term {
		l.term = term
		l.changes = append(l.changes, leaderChange{time.Now(), id, term})
	}
}

// from is the later of t and the last leader change.
func (l *leaderLog) from(t time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.changes); n > 0 && l.changes[n-1].at.After(t) {
		return l.changes[n-1].at
	}
	return t
}

// String is the leader history, times from the start of the log.
func (l *leaderLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var parts []string
	for _, c := range l.changes {
		parts = append(parts, fmt.Sprintf("%s (term %d) at +%.2fs", c.id, c.term, c.at.Sub(l.start).Seconds()))
	}
	return "leaders: " + strings.Join(parts, ", ")
}

// within waits until cond holds, and fails the test if that took longer
// than bound plus farmSlack counted from the later of event and the last
// leader change. It fails at once if cond never holds within the bound
// plus farmPatience.
func (l *leaderLog) within(t *testing.T, what string, event time.Time, bound time.Duration, cond func() (bool, string)) {
	t.Helper()
	ok, last := poll(time.Until(event.Add(bound+farmSlack+farmPatience)), cond)
	took := time.Now()
	if !ok {
		t.Fatalf("%s: not after %v (bound %v + %v slack): %s; event at +%.2fs, %s",
			what, took.Sub(event).Round(time.Millisecond), bound, farmSlack, last, event.Sub(l.start).Seconds(), l)
	}
	from := l.from(event)
	if d := took.Sub(from); d > bound+farmSlack {
		t.Errorf("%s: took %v from +%.2fs, bound %v + %v slack; event at +%.2fs, %s",
			what, d.Round(time.Millisecond), from.Sub(l.start).Seconds(), bound, farmSlack, event.Sub(l.start).Seconds(), l)
		return
	}
	t.Logf("%s: %v", what, took.Sub(event).Round(time.Millisecond))
}

// farmWorld is the state the farm tests share: the cluster, a client of
// it, the exporters and what they must hold.
type farmWorld struct {
	top     *testing.T // the test whose subtests share the world
	c       *cluster
	leaders *leaderLog
	cl      *client.Client
	php     string
	dir     string
	// eps are the endpoints of joiners and writers, exportEps the
	// exporters' (their first one is the node the exporters use).
	eps, exportEps string
	exporters      []*exporter
	want           hosts // the farm the exporters must hold
}

// exports waits until every export holds w.want, within bound of event.
func (w *farmWorld) exports(t *testing.T, what string, event time.Time, bound time.Duration) {
	t.Helper()
	w.leaders.within(t, what+": every export", event, bound, func() (bool, string) {
		var bad []string
		for _, e := range w.exporters {
			got, err := e.read(w.php)
			switch {
			case err != nil:
				bad = append(bad, fmt.Sprintf("%s: %v", e.format, err))
			case got == nil: // php missing
			case !reflect.DeepEqual(got, w.want):
				bad = append(bad, fmt.Sprintf("%s (-got +want):\n%s", e.format, cmp.Diff(got, w.want)))
			}
		}
		return len(bad) == 0, strings.Join(bad, "\n")
	})
}

// changedOnce checks that each exporter's --changed-cmd ran exactly once
// more than the runs accounted for (waiting for its run, which follows
// the file's write); with atLeast, once or more, and accounts for them.
func (w *farmWorld) changedOnce(t *testing.T, what string, atLeast bool) {
	t.Helper()
	for _, e := range w.exporters {
		want := e.runs + 1
		ok, _ := poll(5*time.Second, func() (bool, string) { return countLines(e.counter) >= want, "" })
		n := countLines(e.counter)
		switch {
		case !ok:
			t.Errorf("%s: export %s's --changed-cmd ran %d times in all, want %d", what, e.format, n, want)
		case n != want && !atLeast:
			t.Errorf("%s: export %s's --changed-cmd ran %d times for this change, want exactly 1", what, e.format, n-e.runs)
		}
		e.runs = n
	}
}

// znode reads a znode directly: its data and whether it is ephemeral, or
// ok false when it does not exist.
func (w *farmWorld) znode(t *testing.T, p string) (data string, ephemeral, ok bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	g, err := w.cl.Get(ctx, &paddockv1.GetRequest{Path: p})
	if client.IsNotFound(err) {
		return "", false, false
	}
	if err != nil {
		t.Fatalf("get %s: %v", p, err)
	}
	return string(g.GetData()), g.GetStat().GetEphemeralOwner() != 0, true
}

// children lists a znode's children, sorted.
func (w *farmWorld) children(t *testing.T, p string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := w.cl.List(ctx, &paddockv1.ListRequest{Path: p})
	if client.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("list %s: %v", p, err)
	}
	var names []string
	for _, c := range r.GetChildren() {
		names = append(names, c.GetName())
	}
	sort.Strings(names)
	return names
}

// join starts a joiner of farm and waits until its ephemeral znode exists.
func (w *farmWorld) join(t *testing.T, farm, conf, name string, extra ...string) *farmProc {
	t.Helper()
	return w.register(t, "join", farm, conf, name, extra...)
}

// register starts `paddock farm join` or `import` (verb) and waits until
// the host's ephemeral znode exists.
func (w *farmWorld) register(t *testing.T, verb, farm, conf, name string, extra ...string) *farmProc {
	t.Helper()
	j := startFarmProc(t, w.top, verb+" "+name, joinArgs(verb, w.eps, farm, conf, name, extra...)...)
	hp := farm + "/" + name
	ok, last := poll(farmProcStart, func() (bool, string) {
		if j.p.Exited() {
			return true, ""
		}
		data, eph, ok := w.znode(t, hp)
		return ok && eph, fmt.Sprintf("exists %t, ephemeral %t, data %q", ok, eph, data)
	})
	if !ok || j.p.Exited() {
		t.Fatalf("farm %s %s %s --name %s: no ephemeral %s after %v (%s); exited %t, output %q",
			verb, farm, conf, name, hp, farmProcStart, last, j.p.Exited(), j.out.String())
	}
	return j
}

// writeTree writes files (relative path to content) under dir.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// fileIs waits until the file at p holds want (trimmed, as a DJB value).
func (w *farmWorld) fileIs(t *testing.T, what, p, want string, event time.Time, bound time.Duration) {
	t.Helper()
	w.leaders.within(t, what, event, bound, func() (bool, string) {
		b, err := os.ReadFile(p)
		if err != nil {
			return false, err.Error()
		}
		return strings.TrimSpace(string(b)) == want, fmt.Sprintf("%s holds %q, want %q", p, b, want)
	})
}

// jsonFileIs waits until the JSON file at p decodes to want.
func (w *farmWorld) jsonFileIs(t *testing.T, what, p string, want map[string]any, event time.Time, bound time.Duration) {
	t.Helper()
	w.leaders.within(t, what, event, bound, func() (bool, string) {
		b, err := os.ReadFile(p)
		if err != nil {
			return false, err.Error()
		}
		var got map[string]any
		if err := json.Unmarshal(b, &got); err != nil {
			return false, fmt.Sprintf("%s: %v in %q", p, err, b)
		}
		return reflect.DeepEqual(got, want), fmt.Sprintf("%s (-got +want):\n%s", p, cmp.Diff(got, want))
	})
}

// farmCLI runs `paddock farm ARGS... --endpoints w.eps`.
func (w *farmWorld) farmCLI(t *testing.T, args ...string) result {
	t.Helper()
	return paddock(t, append(append([]string{"farm"}, args...), "--endpoints", w.eps)...)
}

// farmOK runs farmCLI and fails the test unless it exits 0.
func (w *farmWorld) farmOK(t *testing.T, args ...string) string {
	t.Helper()
	r := w.farmCLI(t, args...)
	if r.code != 0 {
		t.Fatalf("paddock farm %s: %v", strings.Join(args, " "), r)
	}
	return r.stdout
}

// parseYAML decodes a YAML object.
func parseYAML(b []byte) (any, error) {
	var v map[string]any
	if err := yaml.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// parseJSON decodes a JSON object.
func parseJSON(b []byte) (any, error) {
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// readDJB reads a DJB directory: each directory a dict, each file a key
// whose trimmed content is the value, dotfiles ignored.
func readDJB(dir string) (map[string]any, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if e.IsDir() {
			if out[e.Name()], err = readDJB(p); err != nil {
				return nil, err
			}
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		out[e.Name()] = strings.TrimSpace(string(b))
	}
	return out, nil
}

// connectedTo reports whether process pid has a TCP connection
// established to addr, as ss(8) sees it (true when ss is missing: the
// check is then skipped).
func connectedTo(pid int, addr string) (bool, string) {
	if _, err := exec.LookPath("ss"); err != nil {
		return true, "ss not found (iproute2): not checked"
	}
	out, err := exec.Command("ss", "-tnpH", "state", "established", "dst", addr).CombinedOutput()
	if err != nil {
		return false, fmt.Sprintf("ss: %v: %s", err, out)
	}
	return strings.Contains(string(out), fmt.Sprintf("pid=%d,", pid)), "ss: " + string(out)
}

// cloneHosts deep-copies a farm.
func cloneHosts(h hosts) hosts {
	b, _ := json.Marshal(h)
	var out hosts
	_ = json.Unmarshal(b, &out)
	return out
}
