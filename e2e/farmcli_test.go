package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The farm commands TestFarm runs beyond /services/db: check, import,
// ls of a long name, and how endpoints are found.

// lsLines runs `paddock farm ls ...` and returns its lines, sorted.
func (w *farmWorld) lsLines(t *testing.T, args ...string) []string {
	t.Helper()
	out := w.farmOK(t, args...)
	l := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	sort.Strings(l)
	return l
}

// check: Nagios states and exit codes as hosts join and leave and the
// running_filter changes; a long host name is never truncated by ls.
func (w *farmWorld) check(t *testing.T) {
	const web = "/services/web"
	const long = "web-with-a-name-longer-than-twenty.example.com"
	want := func(code int, line string, args ...string) {
		t.Helper()
		r := w.farmCLI(t, append([]string{"check", web}, args...)...)
		if r.code != code || r.stdout != line+"\n" {
			t.Errorf("farm check %s %s: %v, want exit %d and %q", web, strings.Join(args, " "), r, code, line)
		}
	}
	// A farm created by hand, as zkfarmer users did with zkCli: no size.
	if r := paddock(t, "tree", "create", "--endpoints", w.eps, web); r.code != 0 {
		t.Fatalf("tree create %s: %v", web, r)
	}
	want(3, "UNKNOWN: No `size' property found for `"+web+"' farm", "-c", "1")

	joiners := map[string]*farmProc{}
	for _, h := range []struct{ name, enabled string }{{"10.1.0.1", "1"}, {long, "1"}, {"10.1.0.3", "0"}} {
		conf := filepath.Join(w.dir, "web-"+h.name+".json")
		writeTree(t, w.dir, map[string]string{filepath.Base(conf): `{"enabled": "` + h.enabled + `"}`})
		joiners[h.name] = w.join(t, web, conf, h.name, "--hostname", "w")
	}
	ok, last := poll(5*time.Second, func() (bool, string) {
		r := w.farmCLI(t, "get", web, "size")
		return r.stdout == "3\n", r.String()
	})
	if !ok {
		t.Fatalf("farm get %s size after three joins: %s, want 3", web, last)
	}
	wantLs := []string{fmt.Sprintf("%-20s enabled=1", "10.1.0.1"), fmt.Sprintf("%-20s enabled=0", "10.1.0.3"), long + " enabled=1"}
	if got := w.lsLines(t, "ls", web, "--fields", "enabled"); !reflect.DeepEqual(got, wantLs) {
		t.Errorf("farm ls %s --fields enabled (lines sorted):\n got %q\nwant %q", web, got, wantLs)
	}

	want(0, "OK: 3/3 nodes running, 0 nodes failing, max allowed 1", "-c", "1")
	w.farmOK(t, "set", web, "running_filter", "enabled=1")
	want(1, "WARNING: 2/3 nodes running, 1 nodes failing, max allowed 2", "-c", "2", "-w", "1")
	want(1, "WARNING: 2/3 nodes running, 1 nodes failing, max allowed 50%", "-c", "50%", "-w", "30%")
	want(2, "CRITICAL: 2/3 nodes running, 1 nodes failing, max allowed 1", "-c", "1")
	want(2, "CRITICAL: 2/3 nodes running, 1 nodes failing, max allowed 10%") // the default
	want(3, "UNKNOWN: Invalid `max_failed_node' argument format: many", "-c", "many")

	joiners["10.1.0.1"].kill9()
	event := time.Now()
	w.leaders.within(t, "check after kill -9 of a running host", event, farmSessionTimeout+time.Second, func() (bool, string) {
		r := w.farmCLI(t, "check", web, "-c", "2")
		return r.code == 2, r.String()
	})
	want(2, "CRITICAL: 1/3 nodes running, 2 nodes failing, max allowed 2", "-c", "2")
	w.farmOK(t, "unset", web, "running_filter")
	want(0, "OK: 2/3 nodes running, 1 nodes failing, max allowed 2", "-c", "2", "-w", "2")

	// A joiner stopped cleanly closes its session: its host leaves at once.
	j := joiners["10.1.0.3"]
	j.p.Signal(syscall.SIGTERM)
	if !j.p.Wait(5 * time.Second) {
		t.Fatalf("farm join 10.1.0.3 still running 5s after SIGTERM: %s", j.out.String())
	}
	j.killed = true
	if code := j.p.ExitCode(); code != 0 {
		t.Errorf("farm join 10.1.0.3 exit code after SIGTERM = %d, want 0: %s", code, j.out.String())
	}
	if _, _, ok := w.znode(t, web+"/10.1.0.3"); ok {
		t.Errorf("%s/10.1.0.3 exists after its joiner exited on SIGTERM, want it deleted with the session", web)
	}
	want(1, "WARNING: 1/3 nodes running, 2 nodes failing, max allowed 3", "-c", "3", "-w", "2")
}

// importOneWay: `farm import` copies CONF's changes to the farm (merged
// onto the znode), never the farm's to CONF, and adds no hostname.
func (w *farmWorld) importOneWay(t *testing.T) {
	const farm, name = "/services/imp", "10.2.0.1"
	conf := filepath.Join(w.dir, "imp.json")
	writeTree(t, w.dir, map[string]string{"imp.json": `{"enabled": "0"}`})
	w.register(t, "import", farm, conf, name)
	node := farm + "/" + name
	znodeIs := func(want string) func() (bool, string) {
		return func() (bool, string) {
			data, _, _ := w.znode(t, node)
			var got, wantV map[string]any
			json.Unmarshal([]byte(data), &got)
			json.Unmarshal([]byte(want), &wantV)
			return reflect.DeepEqual(got, wantV), fmt.Sprintf("%s holds %q, want %s", node, data, want)
		}
	}
	if ok, last := znodeIs(`{"enabled": "0"}`)(); !ok {
		t.Errorf("farm import without --hostname: %s", last)
	}
	w.farmOK(t, "set", node, "enabled", "1")
	changed, _ := poll(time.Second, func() (bool, string) {
		b, _ := os.ReadFile(conf)
		return string(b) != `{"enabled": "0"}`, ""
	})
	if changed {
		b, _ := os.ReadFile(conf)
		t.Errorf("farm import wrote a farm change to CONF: %q", b)
	}
	event := time.Now()
	writeTree(t, w.dir, map[string]string{"imp.json": `{"enabled": "0", "weight": "3"}`})
	w.leaders.within(t, "farm import: a change of CONF merged onto the znode", event, time.Second, znodeIs(`{"enabled": "1", "weight": "3"}`))
}

// endpointFlags: the first of --endpoints, -H/--host, PADDOCK_ENDPOINTS,
// ZKHOST that is set names the cluster; the others are ignored.
func (w *farmWorld) endpointFlags(t *testing.T) {
	good := w.eps
	bad := deadEndpoint(t)
	get := []string{"farm", "get", dbFarmPath, "size"}
	for _, tc := range []struct {
		name  string
		env   []string
		flags []string
		ok    bool
	}{
		{"--endpoints first", []string{"PADDOCK_ENDPOINTS=" + bad, "ZKHOST=" + bad}, []string{"--endpoints", good, "-H", bad}, true},
		{"-H before the environment", []string{"PADDOCK_ENDPOINTS=" + bad, "ZKHOST=" + bad}, []string{"-H", good}, true},
		{"--host", []string{"ZKHOST=" + bad}, []string{"--host", good}, true},
		{"PADDOCK_ENDPOINTS before ZKHOST", []string{"PADDOCK_ENDPOINTS=" + good, "ZKHOST=" + bad}, nil, true},
		{"ZKHOST", []string{"ZKHOST=" + good}, nil, true},
		{"-H wins over PADDOCK_ENDPOINTS", []string{"PADDOCK_ENDPOINTS=" + good}, []string{"-H", bad}, false},
		{"PADDOCK_ENDPOINTS wins over ZKHOST", []string{"PADDOCK_ENDPOINTS=" + bad, "ZKHOST=" + good}, nil, false},
	} {
		r := runWith(t, tc.env, nil, paddockBin, append(append(append([]string{}, get...), tc.flags...), "--timeout", "2s")...)
		if (r.code == 0) != tc.ok || (tc.ok && r.stdout != "3\n") {
			t.Errorf("%s: %s paddock %s %s: %v, want success %t", tc.name, strings.Join(tc.env, " "), strings.Join(get, " "), strings.Join(tc.flags, " "), r, tc.ok)
		}
	}
	// zkfarmer's global flags are accepted, before or after the verb.
	for _, flags := range [][]string{{"-q"}, {"-v"}, {"-r", "2"}, {"--retries", "2", "-v"}} {
		r := runWith(t, []string{"ZKHOST=" + good}, nil, paddockBin, append(append([]string{"farm"}, flags...), "get", dbFarmPath, "size")...)
		if r.code != 0 || r.stdout != "3\n" {
			t.Errorf("paddock farm %s get %s size: %v, want 3", strings.Join(flags, " "), dbFarmPath, r)
		}
	}
}

// deadEndpoint is a loopback address nothing listens on.
func deadEndpoint(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// notPaddock: an endpoint that is no Paddock (a ZooKeeper server closes a
// connection that does not speak its protocol; others write junk) gets an
// error asking whether it still names a ZooKeeper server.
func (w *farmWorld) notPaddock(t *testing.T) {
	closes := func(c net.Conn) { c.Close() }
	for _, tc := range []struct {
		name  string
		serve func(net.Conn)
		// the endpoint comes from flag (--endpoints or -H) or from the
		// environment variable env
		flag, env string
	}{
		{"closes", closes, "--endpoints", ""},
		{"writes junk", func(c net.Conn) {
			c.Write([]byte("this is not gRPC\r\n\r\n"))
			c.Close()
		}, "--endpoints", ""},
		{"closes", closes, "-H", ""},
		{"closes", closes, "", "ZKHOST"},
	} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				tc.serve(c)
			}
		}()
		args, env, source := []string{"farm", "ls", "/services"}, []string(nil), tc.flag
		if tc.env != "" {
			env, source = []string{tc.env + "=" + l.Addr().String()}, tc.env
		} else {
			args = append(args, tc.flag, l.Addr().String())
		}
		start := time.Now()
		r := runWith(t, env, nil, paddockBin, args...)
		l.Close()
		if r.code == 0 || !strings.Contains(r.stderr, "does "+source+" still name a ZooKeeper server") || !strings.Contains(r.stderr, l.Addr().String()) {
			t.Errorf("farm ls against a listener that %s, named by %s: %v, want a failure naming %s and asking whether %s still names a ZooKeeper server",
				tc.name, source, r, l.Addr(), source)
		}
		t.Logf("listener that %s, named by %s: failed after %v: %s", tc.name, source, time.Since(start).Round(time.Millisecond), strings.TrimSpace(r.stderr))
	}
}
