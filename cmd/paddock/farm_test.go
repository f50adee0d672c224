package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paddock/paddock/farm"
)

// runFarm runs the paddock command line args in-process and returns its
// stdout, stderr and error.
func runFarm(args ...string) (string, string, error) {
	var out, errOut bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// mustFarm is runFarm failing the test on an error.
func mustFarm(t *testing.T, args ...string) string {
	t.Helper()
	out, _, err := runFarm(args...)
	if err != nil {
		t.Fatalf("paddock %q: %v", args, err)
	}
	return out
}

// skipWithoutFormat skips a test of a format not built yet (yaml and php
// come with the formats work).
func skipWithoutFormat(t *testing.T, name string) {
	t.Helper()
	if _, err := farm.ParseFormat(name); err != nil {
		t.Skipf("format %s not available: %v", name, err)
	}
}

const longName = "a-very-long-host-name.example.com"

// startFarm runs a node holding the farm /services/db: size 4, three
// hosts and common.
func startFarm(t *testing.T) string {
	t.Helper()
	a := startOneNode(t)
	ep := a.node.Config().GRPCAddr
	for _, kv := range [][2]string{
		{"/services", ""},
		{"/services/db", `{"size":4}`},
		{"/services/db/1.2.3.4", `{"hostname":"db-01","enabled":"0","mysql":{"replication_delay":"0"}}`},
		{"/services/db/1.2.3.5", `{"hostname":"db-02","enabled":"1","mysql":{"replication_delay":"12"}}`},
		{"/services/db/" + longName, `{"hostname":"db-03","enabled":"1"}`},
		{"/services/db/common", `{"pool":"main"}`},
		{"/services/empty", ""},
		{"/services/empty/bare", ""},
	} {
		mustFarm(t, "tree", "create", "--endpoints", ep, kv[0], kv[1])
	}
	return ep
}

func TestFarmLs(t *testing.T) {
	ep := startFarm(t)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"/services"}, "db\nempty\n"},
		{[]string{"/services/db"}, "1.2.3.4\n1.2.3.5\n" + longName + "\ncommon\n"},
		{[]string{"/services/db", "--fields", "hostname,enabled"}, "" +
			"1.2.3.4              hostname=db-01, enabled=0\n" +
			"1.2.3.5              hostname=db-02, enabled=1\n" +
			longName + " hostname=db-03, enabled=1\n" +
			"common               hostname=None, enabled=None\n"},
		{[]string{"/services/db", "--fields", "mysql.replication_delay,mysql", "-F", "enabled=1"}, "" +
			"1.2.3.5              mysql.replication_delay=12, mysql={\"replication_delay\":\"12\"}\n" +
			longName + " mysql.replication_delay=None, mysql=None\n"},
		{[]string{"/services/db", "-F", "mysql.replication_delay>5"}, "1.2.3.5\n"},
		{[]string{"/services/db", "-F", "!hostname"}, "common\n"},
		{[]string{"/services/empty", "--fields", "a"}, "bare\n"},
		{[]string{"/services/missing"}, ""},
		{[]string{"/services/db/"}, "1.2.3.4\n1.2.3.5\n" + longName + "\ncommon\n"},
	} {
		args := append([]string{"farm", "ls", "--endpoints", ep}, tt.args...)
		if got := mustFarm(t, args...); got != tt.want {
			t.Errorf("paddock %q = %q, want %q", args, got, tt.want)
		}
	}

	out := mustFarm(t, "farm", "ls", "-o", "json", "--endpoints", ep, "/services/db", "--fields", "enabled", "-F", "enabled=1")
	var doc struct {
		Zxid     uint64 `json:"zxid"`
		Children []struct {
			Name   string         `json:"name"`
			Fields map[string]any `json:"fields"`
		} `json:"children"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("farm ls -o json: %v in %s", err, out)
	}
	if len(doc.Children) != 2 || doc.Children[0].Name != "1.2.3.5" || doc.Children[1].Name != longName ||
		doc.Children[0].Fields["enabled"] != "1" || doc.Zxid == 0 {
		t.Errorf("farm ls -o json = %s, want 1.2.3.5 and %s with enabled=1 and a zxid", out, longName)
	}

	for _, args := range [][]string{
		{"--fields", "a..b"},
		{"-F", "a..b=1"},
	} {
		full := append([]string{"farm", "ls", "--endpoints", ep, "/services/db"}, args...)
		if _, _, err := runFarm(full...); err == nil || !strings.HasPrefix(err.Error(), "paddock: farm: bad") {
			t.Errorf("paddock %q: error %v, want paddock: farm: bad ...", full, err)
		}
	}
}

func TestFarmGet(t *testing.T) {
	ep := startFarm(t)
	host := "/services/db/1.2.3.5"
	for _, tt := range []struct {
		format string // skipped when not built (yaml and php come with the formats work)
		args   []string
		want   string
	}{
		{"", []string{host, "enabled"}, "1\n"},
		{"", []string{host, "mysql.replication_delay"}, "12\n"},
		{"", []string{host, "mysql"}, `{"replication_delay":"12"}` + "\n"},
		{"", []string{host, "nope"}, "None\n"},
		{"", []string{"/services/db", "size"}, "4\n"},
		{"json", []string{host, "-f", "json"}, "{\n    \"enabled\": \"1\",\n    \"hostname\": \"db-02\",\n    \"mysql\": {\n        \"replication_delay\": \"12\"\n    }\n}\n"},
		{"", []string{host, "-o", "json"}, "{\n  \"enabled\": \"1\",\n  \"hostname\": \"db-02\",\n  \"mysql\": {\n    \"replication_delay\": \"12\"\n  }\n}\n"},
		{"", []string{host, "enabled", "-o", "json"}, "\"1\"\n"},
		{"", []string{host, "nope", "-o", "json"}, "null\n"},
		{"", []string{"/services/db", "size", "-o", "json"}, "4\n"},
		{"yaml", []string{host}, "enabled: \"1\"\nhostname: db-02\nmysql:\n  replication_delay: \"12\"\n"},
		{"yaml", []string{host, "-f", "yaml", "mysql.replication_delay"}, "12\n"},
		{"php", []string{host, "-f", "php"}, "<?php\nreturn array\n(\n    \"enabled\" => \"1\",\n    \"hostname\" => \"db-02\",\n" +
			"    \"mysql\" => array\n    (\n        \"replication_delay\" => \"12\",\n    ),\n);\n"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			if tt.format != "" {
				skipWithoutFormat(t, tt.format)
			}
			args := append([]string{"farm", "get", "--endpoints", ep}, tt.args...)
			if got := mustFarm(t, args...); got != tt.want {
				t.Errorf("paddock %q = %q, want %q", args, got, tt.want)
			}
		})
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"/services/db/nope", "enabled"}, "paddock: NotFound: node does not exist: /services/db/nope"},
		{[]string{host, "-f", "xml"}, "paddock: farm: bad format"},
		{[]string{host, "-f", "dir"}, "paddock: farm: bad format"},
		{[]string{host, "-f", "json", "-o", "json"}, "paddock: -o json and -f cannot be used together"},
		{[]string{host, "a..b"}, "paddock: farm: bad field"},
	} {
		args := append([]string{"farm", "get", "--endpoints", ep}, tt.args...)
		if _, _, err := runFarm(args...); err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("paddock %q: error %v, want %s...", args, err, tt.want)
		}
	}
}

func TestFarmSetUnset(t *testing.T) {
	ep := startFarm(t)
	host := "/services/db/1.2.3.4"
	get := func() string {
		return mustFarm(t, "farm", "get", "-o", "json", "--endpoints", ep, host)
	}
	steps := []struct {
		args []string
		want map[string]any
	}{
		{[]string{"set", host, "enabled", "1"}, map[string]any{"hostname": "db-01", "enabled": "1", "mysql": map[string]any{"replication_delay": "0"}}},
		{[]string{"set", host, "mysql.replication_delay", "7"}, map[string]any{"hostname": "db-01", "enabled": "1", "mysql": map[string]any{"replication_delay": "7"}}},
		{[]string{"set", host, "a.b.c", "x y"}, map[string]any{"hostname": "db-01", "enabled": "1", "mysql": map[string]any{"replication_delay": "7"}, "a": map[string]any{"b": map[string]any{"c": "x y"}}}},
		{[]string{"unset", host, "a.b.c"}, map[string]any{"hostname": "db-01", "enabled": "1", "mysql": map[string]any{"replication_delay": "7"}, "a": map[string]any{"b": map[string]any{}}}},
		{[]string{"unset", host, "mysql"}, map[string]any{"hostname": "db-01", "enabled": "1", "a": map[string]any{"b": map[string]any{}}}},
		{[]string{"unset", host, "nope.deeper"}, map[string]any{"hostname": "db-01", "enabled": "1", "a": map[string]any{"b": map[string]any{}}}},
	}
	for _, st := range steps {
		args := append([]string{"farm"}, st.args...)
		args = append(args, "--endpoints", ep)
		if out := mustFarm(t, args...); out != "" {
			t.Errorf("paddock %q printed %q, want nothing", args, out)
		}
		want, _ := json.Marshal(st.want)
		var gotV any
		if err := json.Unmarshal([]byte(get()), &gotV); err != nil {
			t.Fatal(err)
		}
		got, _ := json.Marshal(gotV)
		if string(got) != string(want) {
			t.Errorf("after paddock %q: Get(%s) = %s, want %s", args, host, got, want)
		}
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"set", "/services/db/nope", "a", "1"}, "paddock: NotFound: node does not exist: /services/db/nope"},
		{[]string{"set", host, "a..b", "1"}, "paddock: farm: bad field"},
		{[]string{"unset", host, ""}, "paddock: farm: bad field"},
		{[]string{"set", "-o", "json", host, "a", "1"}, "paddock: farm set has no JSON output"},
	} {
		before := get()
		args := append([]string{"farm", "--endpoints", ep}, tt.args...)
		if _, _, err := runFarm(args...); err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("paddock %q: error %v, want %s...", args, err, tt.want)
		}
		if after := get(); after != before {
			t.Errorf("paddock %q changed %s from %s to %s", args, host, before, after)
		}
	}
}

func TestFarmCheck(t *testing.T) {
	ep := startFarm(t)
	mustFarm(t, "tree", "create", "--endpoints", ep, "/services/nosize", "")
	for _, tt := range []struct {
		setup []string // a farm set before the check
		args  []string
		code  int
		want  string
	}{
		// size 4, 3 hosts running (common excluded): 1 failing.
		{nil, []string{"/services/db"}, 2, "CRITICAL: 3/4 nodes running, 1 nodes failing, max allowed 10%\n"},
		{nil, []string{"/services/db", "-c", "2"}, 0, "OK: 3/4 nodes running, 1 nodes failing, max allowed 2\n"},
		{nil, []string{"/services/db", "-c", "50%", "-w", "1"}, 1, "WARNING: 3/4 nodes running, 1 nodes failing, max allowed 50%\n"},
		{nil, []string{"/services/db", "--max-failed-node", "1", "--warn-failed-node", "1"}, 2, "CRITICAL: 3/4 nodes running, 1 nodes failing, max allowed 1\n"},
		{nil, []string{"/services/db", "-c", "lots"}, 3, "UNKNOWN: Invalid `max_failed_node' argument format: lots\n"},
		{nil, []string{"/services/nosize"}, 3, "UNKNOWN: No `size' property found for `/services/nosize' farm\n"},
		// A bad threshold is the user's mistake, whatever the farm holds.
		{nil, []string{"/services/nosize", "-c", "lots"}, 3, "UNKNOWN: Invalid `max_failed_node' argument format: lots\n"},
		{nil, []string{"/services/nosize", "-w", "x%"}, 3, "UNKNOWN: Invalid `warn_failed_node' argument format: x%\n"},
		{[]string{"/services/db", "running_filter", "enabled=1"}, []string{"/services/db", "-c", "3", "-w", "2"}, 1, "WARNING: 2/4 nodes running, 2 nodes failing, max allowed 3\n"},
	} {
		if tt.setup != nil {
			mustFarm(t, append([]string{"farm", "set", "--endpoints", ep}, tt.setup...)...)
		}
		args := append([]string{"farm", "check", "--endpoints", ep}, tt.args...)
		out, _, err := runFarm(args...)
		if code := exitCode(t, err); code != tt.code || out != tt.want {
			t.Errorf("paddock %q = %q, exit %d; want %q, exit %d", args, out, code, tt.want, tt.code)
		}
	}

	out, _, err := runFarm("farm", "check", "-o", "json", "--endpoints", ep, "/services/db", "-c", "3")
	var doc checkJSON
	if jerr := json.Unmarshal([]byte(out), &doc); jerr != nil || exitCode(t, err) != 0 {
		t.Fatalf("farm check -o json = %q, %v: want JSON and exit 0", out, err)
	}
	if want := (checkJSON{Status: 0, Label: "OK", Message: "2/4 nodes running, 2 nodes failing, max allowed 3", Size: 4, Running: 2, Failing: 2}); doc != want {
		t.Errorf("farm check -o json = %+v, want %+v", doc, want)
	}

	// A cluster that cannot be read is UNKNOWN for Nagios, not exit 1.
	out, _, err = runFarm("farm", "check", "--timeout", "500ms", "--endpoints", freeAddr(t), "/services/db")
	if code := exitCode(t, err); code != 3 || !strings.HasPrefix(out, "UNKNOWN: paddock: Unavailable: no node reachable") {
		t.Errorf("farm check of an unreachable cluster = %q, exit %d; want UNKNOWN: paddock: Unavailable: no node reachable..., exit 3", out, code)
	}
}

// exitCode is the process exit status main gives err.
func exitCode(t *testing.T, err error) int {
	t.Helper()
	var code exitCodeError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &code):
		return int(code)
	}
	return 1
}

// TestFarmZnodePath: every verb wants the znode's full path first, as
// zkfarmer, and fails before connecting anywhere.
func TestFarmZnodePath(t *testing.T) {
	for _, args := range [][]string{
		{"join", "services/db", "conf.json", "--name", "h"},
		{"import", "services/db", "conf.json", "--name", "h"},
		{"export", "services/db", "out.json"},
		{"ls", "services"},
		{"get", "services/db/h", "a"},
		{"set", "services/db/h", "a", "1"},
		{"unset", "services/db/h", "a"},
		{"check", "services/db"},
	} {
		full := append([]string{"farm", "--endpoints", "127.0.0.1:1"}, args...)
		_, _, err := runFarm(full...)
		want := `paddock: bad path "` + args[1] + `": the first argument must be the full path of the znode (eg: /services/db)`
		if err == nil || err.Error() != want {
			t.Errorf("paddock %q: error %v, want %s", full, err, want)
		}
	}
}

// TestFarmJoinExportFlags checks the flags of join, import and export,
// which are refused before any connection (the commands themselves are
// tested end to end in e2e).
func TestFarmJoinExportFlags(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "conf.json")
	if err := os.WriteFile(conf, []byte(`{"a":"1"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	txt := filepath.Join(dir, "conf.txt")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"join", "/f", txt, "--name", "h"}, "paddock: farm: bad format: cannot infer the format of " + txt},
		{[]string{"import", "/f", txt, "--name", "h"}, "paddock: farm: bad format: cannot infer the format of " + txt},
		{[]string{"export", "/f", txt}, "paddock: farm: bad format: cannot infer the format of " + txt},
		{[]string{"join", "/f", conf, "-f", "xml", "--name", "h"}, `paddock: farm: bad format: "xml"`},
		{[]string{"export", "/f", conf, "--format", "xml"}, `paddock: farm: bad format: "xml"`},
		{[]string{"join", "/f", conf, "--name", "h", "--session-timeout", "0s"}, "paddock: bad --session-timeout 0s: want > 0"},
		{[]string{"join", "/f", conf, "--name", "a/b"}, `paddock: bad --name "a/b"`},
		{[]string{"join", "/f", conf, "--name", "common"}, `paddock: bad --name "common"`},
		{[]string{"join", "/f", conf, "--name", ""}, `paddock: bad --name ""`},
		// Names and paths no znode can have fail at once, rather than
		// being retried forever.
		{[]string{"join", "/f", conf, "--name", ".."}, `paddock: bad --name "..": "/f/.." has a relative segment ".."`},
		{[]string{"join", "/f", conf, "--name", "."}, `paddock: bad --name "."`},
		{[]string{"import", "/f", conf, "--name", "h\xff"}, `paddock: bad --name "h\xff": "/f/h\xff" is not valid UTF-8`},
		{[]string{"join", "/f\x01", conf, "--name", "h"}, `paddock: bad path "/f\x01": "/f\x01" contains character U+0001`},
		{[]string{"join", "/f\x01", conf, "-c"}, `paddock: bad path "/f\x01"`},
		{[]string{"export", "/f\xff", conf}, `paddock: bad path "/f\xff": "/f\xff" is not valid UTF-8`},
		{[]string{"export", "/f", conf, "--wait", "10s:2s"}, `paddock: bad --wait "10s:2s": want 0 <= MIN <= MAX`},
		{[]string{"export", "/f", conf, "--wait", "soon"}, `paddock: bad --wait "soon"`},
		{[]string{"export", "/f", conf, "-F", "enabled=1,,x"}, "paddock: farm: bad filter"},
		{[]string{"export", "/f", conf, "-o", "json"}, "paddock: farm export has no JSON output"},
		{[]string{"join", "-q", "-v", "/f", conf, "--name", "h"}, "paddock: -q and -v cannot be used together"},
		{[]string{"import", "/f", conf, "--changed-cmd", "true"}, "unknown flag: --changed-cmd"},
		// import writes nothing to CONF and common is no host: neither
		// takes a hostname, and --hostname is not silently dropped.
		{[]string{"import", "/f", conf, "--name", "h", "--hostname", "x"}, "unknown flag: --hostname"},
		{[]string{"join", "/f", conf, "-c", "--hostname", "x"}, `paddock: bad --hostname "x": FARM/common is no host's`},
		{[]string{"join", "/f"}, "accepts between 2 and 2 arg(s), received 1"},
	} {
		full := append([]string{"farm", "--endpoints", "127.0.0.1:1"}, tt.args...)
		_, _, err := runFarm(full...)
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("paddock %q: error %v, want %s...", full, err, tt.want)
		}
	}
}

func TestFarmParseWait(t *testing.T) {
	for _, tt := range []struct {
		in       string
		min, max time.Duration
		err      bool
	}{
		{"", 0, 0, false},
		{"2s", 2 * time.Second, 8 * time.Second, false},
		{"2s:10s", 2 * time.Second, 10 * time.Second, false},
		{"500ms:500ms", 500 * time.Millisecond, 500 * time.Millisecond, false},
		{"0s:1s", 0, time.Second, false},
		{" 1s : 3s ", time.Second, 3 * time.Second, false},
		{"10s:2s", 0, 0, true},
		{"-1s", 0, 0, true},
		{"2", 0, 0, true},
		{"2s:", 0, 0, true},
		{":2s", 0, 0, true},
		{"1s:2s:3s", 0, 0, true},
	} {
		lo, hi, err := parseWait(tt.in)
		if (err != nil) != tt.err || lo != tt.min || hi != tt.max {
			t.Errorf("parseWait(%q) = %v, %v, %v; want %v, %v, error %v", tt.in, lo, hi, err, tt.min, tt.max, tt.err)
		}
	}
}

func TestFarmEndpointPrecedence(t *testing.T) {
	for _, tt := range []struct {
		name               string
		endpoints, host    string
		endpointsSet       bool
		hostSet            bool
		paddockEnv, zkhost string
		want               string
		wantSource         endpointSource
	}{
		{name: "all", endpoints: "e:1", endpointsSet: true, host: "h:1", hostSet: true, paddockEnv: "p:1", zkhost: "z:1", want: "e:1", wantSource: fromEndpointsFlag},
		{name: "host over env", host: "h:1", hostSet: true, paddockEnv: "p:1", zkhost: "z:1", want: "h:1", wantSource: fromHostFlag},
		{name: "paddock env over zkhost", paddockEnv: "p:1", zkhost: "z:1", want: "p:1", wantSource: fromPaddockEnv},
		{name: "zkhost", zkhost: "z:1,z:2", want: "z:1,z:2", wantSource: fromZKHOST},
		{name: "default", want: defaultEndpoints, wantSource: fromDefault},
		{name: "empty flag counts", endpoints: "", endpointsSet: true, zkhost: "z:1", want: "", wantSource: fromEndpointsFlag},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("PADDOCK_ENDPOINTS", tt.paddockEnv)
			t.Setenv("ZKHOST", tt.zkhost)
			got, src := resolveEndpoints(tt.endpoints, tt.endpointsSet, tt.host, tt.hostSet, os.Getenv)
			if got != tt.want || src != tt.wantSource {
				t.Errorf("resolveEndpoints = %q from %s, want %q from %s", got, src, tt.want, tt.wantSource)
			}
		})
	}
}

// fakeServer accepts TCP connections on 127.0.0.1 and hands each to
// serve; it stops with the test.
func fakeServer(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				serve(c)
			}()
		}
	}()
	return l.Addr().String()
}

// TestFarmNotZooKeeper: an endpoint that accepts TCP but does not speak
// gRPC (a ZooKeeper left in ZKHOST) gets a question, not Unavailable.
func TestFarmNotZooKeeper(t *testing.T) {
	// ZooKeeper reads a 4-byte length, finds it far too large and closes.
	zk := fakeServer(t, func(c net.Conn) {
		var n [4]byte
		io.ReadFull(c, n[:])
	})
	// A server that answers something else (ZooKeeper's 4-letter-word reply).
	junk := fakeServer(t, func(c net.Conn) {
		c.Write([]byte("imok\x00\x00\x00\x00\x00\x00"))
		io.Copy(io.Discard, c)
	})
	closer := fakeServer(t, func(net.Conn) {})

	for _, tt := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"zkhost", map[string]string{"ZKHOST": zk}, nil,
			"paddock: " + zk + " does not speak Paddock's gRPC (it closed the connection on the HTTP/2 preface): does ZKHOST still name a ZooKeeper server? Paddock's gRPC port is 2281 by default"},
		{"-H", nil, []string{"-H", junk},
			"paddock: " + junk + ` does not speak Paddock's gRPC (it answered "imok\x00\x00\x00\x00\x00" instead of an HTTP/2 SETTINGS frame): does -H still name a ZooKeeper server? Paddock's gRPC port is 2281 by default`},
		{"paddock env", map[string]string{"PADDOCK_ENDPOINTS": closer}, nil,
			"paddock: " + closer + " does not speak Paddock's gRPC (it closed the connection on the HTTP/2 preface): does PADDOCK_ENDPOINTS still name a ZooKeeper server? Paddock's gRPC port is 2281 by default"},
		{"refused and zk", nil, []string{"--endpoints", freeAddr(t) + "," + zk},
			"paddock: " + zk + " does not speak Paddock's gRPC (it closed the connection on the HTTP/2 preface): does --endpoints still name a ZooKeeper server?"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("PADDOCK_ENDPOINTS", "")
			t.Setenv("ZKHOST", "")
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			for _, verb := range [][]string{{"ls", "/services"}, {"get", "/a", "b"}, {"set", "/a", "b", "1"}, {"join", "/f", filepath.Join(t.TempDir(), "c.json"), "--name", "h"}} {
				args := append(append([]string{"farm"}, tt.args...), verb...)
				_, _, err := runFarm(args...)
				if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
					t.Errorf("paddock %q: error %v, want %s...", args, err, tt.want)
				}
			}
			args := append(append([]string{"farm", "check"}, tt.args...), "/services/db")
			out, _, err := runFarm(args...)
			if code := exitCode(t, err); code != 3 || !strings.HasPrefix(out, "UNKNOWN: "+tt.want) {
				t.Errorf("paddock %q = %q, exit %d; want UNKNOWN: %s..., exit 3", args, out, code, tt.want)
			}
		})
	}

	// A real node among the endpoints is used, whatever else is listed.
	a := startOneNode(t)
	args := []string{"farm", "ls", "--endpoints", zk + "," + a.node.Config().GRPCAddr, "/"}
	if out, _, err := runFarm(args...); err != nil || !strings.Contains(out, "paddock") {
		t.Errorf("paddock %q = %q, %v; want the root's children", args, out, err)
	}
}

func TestFarmChangedCommand(t *testing.T) {
	var stderr, logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	changedCommand(context.Background(), "echo out; echo err >&2; exit 3", &stderr, log)()
	if got := stderr.String(); got != "out\nerr\n" {
		t.Errorf("changed command's output = %q, want %q", got, "out\nerr\n")
	}
	if !strings.Contains(logs.String(), "changed command failed") || !strings.Contains(logs.String(), "exit status 3") {
		t.Errorf("log = %q, want the failure with exit status 3", logs.String())
	}
	logs.Reset()
	changedCommand(context.Background(), "true", &stderr, log)()
	if !strings.Contains(logs.String(), "changed command ran") {
		t.Errorf("log = %q, want the command's run", logs.String())
	}
	if changedCommand(context.Background(), "", &stderr, log) != nil {
		t.Error("changedCommand(\"\") is not nil")
	}
}

// TestFarmChangedCommandStopped: a changed command still running when the
// command stops (SIGTERM ends ctx) is killed, its output pipe released,
// so join and export exit instead of waiting for it.
func TestFarmChangedCommandStopped(t *testing.T) {
	var stderr bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	run := changedCommand(ctx, "sleep 60; true", &stderr, slog.New(slog.NewTextHandler(io.Discard, nil)))
	done := make(chan struct{})
	go func() { run(); close(done) }()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the changed command still held the caller 10s after its context ended")
	}
}

func TestFarmLogLevel(t *testing.T) {
	for _, tt := range []struct {
		quiet       bool
		verbose     int
		longRunning bool
		want        slog.Level
	}{
		{false, 0, false, slog.LevelWarn},
		{false, 0, true, slog.LevelInfo},
		{false, 1, false, slog.LevelInfo},
		{false, 1, true, slog.LevelDebug},
		{false, 2, false, slog.LevelDebug},
		{true, 0, true, slog.LevelWarn},
	} {
		o := &farmOptions{quiet: tt.quiet, verbose: tt.verbose}
		cmd := newFarmCmd()
		log, err := o.logger(cmd, tt.longRunning)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if !log.Enabled(ctx, tt.want) || (tt.want > slog.LevelDebug && log.Enabled(ctx, tt.want-4)) {
			t.Errorf("logger(quiet %v, verbose %d, long-running %v): level not %v", tt.quiet, tt.verbose, tt.longRunning, tt.want)
		}
	}
	if _, err := (&farmOptions{quiet: true, verbose: 1}).logger(newFarmCmd(), true); err == nil {
		t.Error("logger(-q -v) did not fail")
	}
}

// zkServer is the Debian zookeeper package's start script.
const zkServer = "/usr/share/zookeeper/bin/zkServer.sh"

// TestFarmRealZooKeeper points ZKHOST at a real ZooKeeper server (the
// Debian package's, when installed; skipped otherwise): the farm commands
// ask whether ZKHOST still names one.
func TestFarmRealZooKeeper(t *testing.T) {
	if _, err := os.Stat(zkServer); err != nil {
		t.Skipf("no ZooKeeper server (%v): apt-get install zookeeper to run this test", err)
	}
	dir := t.TempDir()
	addr := freeAddr(t)
	host, port, _ := net.SplitHostPort(addr)
	cfg := filepath.Join(dir, "zoo.cfg")
	conf := fmt.Sprintf("tickTime=2000\ndataDir=%s\nclientPort=%s\nclientPortAddress=%s\nadmin.enableServer=false\n", filepath.Join(dir, "data"), port, host)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var zkOut bytes.Buffer
	zk := exec.Command(zkServer, "start-foreground", cfg)
	zk.Env = append(os.Environ(), "ZOO_LOG_DIR="+dir, "ZOO_LOG4J_PROP=WARN,CONSOLE")
	zk.Stdout, zk.Stderr = &zkOut, &zkOut
	if err := zk.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		zk.Process.Kill() // the script execs java: this is the server
		zk.Wait()
	})
	// ZooKeeper binds its port before it serves: wait for an answer to
	// the srvr four-letter word (allowed by default), not for a connect.
	deadline := time.Now().Add(30 * time.Second)
	for !zkServes(addr) {
		if time.Now().After(deadline) {
			t.Fatalf("ZooKeeper not serving on %s after 30s:\n%s", addr, zkOut.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	t.Setenv("PADDOCK_ENDPOINTS", "")
	t.Setenv("ZKHOST", addr)
	want := "paddock: " + addr + " does not speak Paddock's gRPC (it closed the connection on the HTTP/2 preface): does ZKHOST still name a ZooKeeper server? Paddock's gRPC port is 2281 by default"
	if _, _, err := runFarm("farm", "ls", "/services"); err == nil || err.Error() != want {
		t.Errorf("paddock farm ls with ZKHOST=%s: error %v, want %s", addr, err, want)
	}
	out, _, err := runFarm("farm", "check", "/services/db")
	if code := exitCode(t, err); code != 3 || out != "UNKNOWN: "+want+"\n" {
		t.Errorf("paddock farm check with ZKHOST=%s = %q, exit %d; want UNKNOWN: %s, exit 3", addr, out, code, want)
	}
}

// TestFarmRetries: -r N runs a one-shot command N more times while no
// node is reachable, logged with -v.
func TestFarmRetries(t *testing.T) {
	args := []string{"farm", "get", "-v", "-r", "2", "--timeout", "200ms", "--endpoints", freeAddr(t), "/a", "b"}
	_, stderr, err := runFarm(args...)
	if err == nil || !strings.HasPrefix(err.Error(), "paddock: Unavailable: no node reachable") {
		t.Errorf("paddock %q: error %v, want paddock: Unavailable: no node reachable...", args, err)
	}
	if n := strings.Count(stderr, "msg=retrying"); n != 2 || !strings.Contains(stderr, "retry=2 of=2") {
		t.Errorf("paddock %q logged %d retries:\n%s\nwant 2", args, n, stderr)
	}
	args = []string{"farm", "get", "-r", "-1", "--endpoints", freeAddr(t), "/a", "b"}
	if _, _, err := runFarm(args...); err == nil || err.Error() != "paddock: bad --retries -1: want >= 0" {
		t.Errorf("paddock %q: error %v, want paddock: bad --retries -1: want >= 0", args, err)
	}
}

// TestFarmJoinExportWiring runs `farm join` and `farm export --once`
// against a real node: the joined host is exported, a `farm set` reaches
// the local configuration and runs --changed-cmd, and the end of join's
// context (SIGINT/SIGTERM) closes its session, so the host's znode goes
// at once, with exit 0. Skipped while the engines are not built.
func TestFarmJoinExportWiring(t *testing.T) {
	a := startOneNode(t)
	ep := a.node.Config().GRPCAddr
	dir := t.TempDir()
	conf := filepath.Join(dir, "conf.json")
	if err := os.WriteFile(conf, []byte(`{"enabled":"0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(dir, "changed")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	var joinErr lockedBuffer
	go func() {
		root := newRootCmd()
		root.SetOut(io.Discard)
		root.SetErr(&joinErr)
		root.SetArgs([]string{"farm", "join", "--endpoints", ep, "/services/db", conf,
			"--name", "h1", "--hostname", "hx", "--session-timeout", "30s", "--changed-cmd", "echo ran >> " + marker})
		done <- root.ExecuteContext(ctx)
	}()
	// eventually polls cond until it holds, failing after 10s or when
	// join stopped.
	eventually := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			select {
			case err := <-done:
				if err != nil && strings.Contains(err.Error(), "not built yet") {
					t.Skipf("farm join: %v", err)
				}
				t.Fatalf("farm join stopped waiting for %s: %v; stderr:\n%s", what, err, joinErr.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %s after 10s; join's stderr:\n%s", what, joinErr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	eventually("/services/db/h1", func() bool {
		_, _, err := runFarm("farm", "get", "--endpoints", ep, "/services/db/h1", "enabled")
		return err == nil
	})

	dest := filepath.Join(dir, "out.json")
	if _, stderr, err := runFarm("farm", "export", "--once", "--endpoints", ep, "/services/db", dest); err != nil {
		t.Fatalf("farm export --once: %v; stderr:\n%s", err, stderr)
	}
	b, err := os.ReadFile(dest)
	if err != nil {
		t.Fatal(err)
	}
	got, err := farm.DecodeConf(b)
	if want := (farm.Conf{"h1": farm.Conf{"enabled": "0", "hostname": "hx"}}); err != nil || !got.Equal(want) {
		t.Errorf("farm export --once wrote %s (%v), want %s", b, err, want.Encode())
	}

	mustFarm(t, "farm", "set", "--endpoints", ep, "/services/db/h1", "enabled", "1")
	eventually("the set in the local configuration and the changed command", func() bool {
		b, err := os.ReadFile(conf)
		if err != nil {
			return false
		}
		c, err := farm.DecodeConf(b)
		m, _ := os.ReadFile(marker)
		return err == nil && c["enabled"] == "1" && string(m) == "ran\n"
	})

	cancel() // as SIGINT/SIGTERM do
	if err := <-done; err != nil {
		t.Fatalf("farm join after its context ended: %v, want exit 0", err)
	}
	// The session was closed, not left to expire (30s): the znode is gone.
	if _, _, err := runFarm("farm", "get", "--endpoints", ep, "/services/db/h1", "enabled"); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Errorf("farm get /services/db/h1 after join stopped: %v, want NotFound", err)
	}
}

// zkServes reports whether the ZooKeeper server at addr answers srvr.
func zkServes(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("srvr")); err != nil {
		return false
	}
	b, _ := io.ReadAll(c)
	return bytes.Contains(b, []byte("Zookeeper version"))
}

// join's changed command runs in the background: the caller never waits
// for it, and calls made while it runs coalesce into one more run.
func TestFarmChangedInBackground(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	release := make(chan struct{})
	runs := make(chan struct{}, 10)
	run := inBackground(ctx, func() {
		runs <- struct{}{}
		<-release
	})
	run()
	<-runs // the first run is under way, held
	for range 5 {
		run() // must not block
	}
	close(release)
	select {
	case <-runs: // the coalesced second run
	case <-time.After(10 * time.Second):
		t.Fatal("no second run after calls made during the first")
	}
	select {
	case <-runs:
		t.Fatal("a third run: calls made during one run must coalesce into one")
	case <-time.After(200 * time.Millisecond):
	}
	if inBackground(ctx, nil) != nil {
		t.Error("inBackground(nil) is not nil")
	}
}

// TestZnodeArg: trailing slashes go, as zkfarmer strips them; nothing
// else is cleaned, so a path with "." or ".." is refused instead of being
// read as another farm.
func TestZnodeArg(t *testing.T) {
	for in, want := range map[string]string{
		"/services/db":   "/services/db",
		"/services/db/":  "/services/db",
		"/services/db//": "/services/db",
		"/":              "/",
	} {
		if got := znodeArg([]string{in}); got != want {
			t.Errorf("znodeArg(%q) = %q, want %q", in, got, want)
		}
	}
	for _, bad := range []string{"/services/../db", "/services/./db", "/services//db"} {
		if err := checkZnodePath(znodeArg([]string{bad})); err == nil {
			t.Errorf("checkZnodePath(znodeArg(%q)) = nil, want an error", bad)
		}
	}
}
