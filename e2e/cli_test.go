package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// tree runs `paddock tree ARGS --endpoints EPS` and fails the test unless
// it exits 0.
func tree(t *testing.T, eps string, args ...string) string {
	t.Helper()
	r := paddock(t, append(append([]string{"tree"}, args...), "--endpoints", eps)...)
	if r.code != 0 {
		t.Fatalf("paddock tree %s: %v", strings.Join(args, " "), r)
	}
	return r.stdout
}

// treeFails runs `paddock tree ARGS --endpoints EPS`, which must exit
// non-zero with `paddock: CODE: ...` on stderr and nothing on stdout.
func treeFails(t *testing.T, eps, code string, args ...string) {
	t.Helper()
	r := paddock(t, append(append([]string{"tree"}, args...), "--endpoints", eps)...)
	if r.code == 0 {
		t.Errorf("paddock tree %s: exit 0, want failure with %s (%v)", strings.Join(args, " "), code, r)
		return
	}
	if want := "paddock: " + code + ": "; !strings.HasPrefix(r.stderr, want) {
		t.Errorf("paddock tree %s: stderr = %q, want prefix %q", strings.Join(args, " "), r.stderr, want)
	}
	if r.stdout != "" {
		t.Errorf("paddock tree %s: stdout = %q, want nothing", strings.Join(args, " "), r.stdout)
	}
}

func TestCLI(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	all := c.endpoints()

	if got := tree(t, all, "create", "/cli", "hello"); got != "/cli\n" {
		t.Errorf("tree create /cli = %q, want %q", got, "/cli\n")
	}
	if got := tree(t, all, "get", "/cli"); got != "hello" {
		t.Errorf("tree get /cli = %q, want %q", got, "hello")
	}
	if got := tree(t, all, "set", "/cli", "world"); got != "" {
		t.Errorf("tree set /cli = %q, want no output", got)
	}
	if got := tree(t, all, "get", "/cli"); got != "world" {
		t.Errorf("tree get /cli after set = %q, want %q", got, "world")
	}
	tree(t, all, "set", "--version", "1", "/cli", "again")
	treeFails(t, all, "FailedPrecondition", "set", "--version", "1", "/cli", "stale")
	tree(t, all, "create", "/cli/b")
	tree(t, all, "create", "/cli/a", "x")
	if got := tree(t, all, "ls", "/cli"); got != "a\nb\n" {
		t.Errorf("tree ls /cli = %q, want %q", got, "a\nb\n")
	}
	stat := tree(t, all, "stat", "/cli")
	for _, want := range []string{"version = 2\n", "num_children = 2\n", "data_length = 5\n", "ephemeral_owner = 0\n"} {
		if !strings.Contains(stat, want) {
			t.Errorf("tree stat /cli = %q, want a line %q", stat, want)
		}
	}

	// No DATA is empty data; DATA "-" is stdin, bytes as they are.
	if got := tree(t, all, "get", "/cli/b"); got != "" {
		t.Errorf("tree get /cli/b = %q, want empty", got)
	}
	stdin := "line 1\nline 2\x00\n"
	if r := run(t, strings.NewReader(stdin), paddockBin, "tree", "set", "--endpoints", all, "/cli/b", "-"); r.code != 0 {
		t.Errorf("tree set /cli/b - (stdin): %v", r)
	}
	if got := tree(t, all, "get", "/cli/b"); got != stdin {
		t.Errorf("tree get /cli/b after set from stdin = %q, want %q", got, stdin)
	}

	// -o json is one JSON document per command.
	var get struct {
		Header struct {
			Zxid string `json:"zxid"`
		} `json:"header"`
		Data string `json:"data"`
		Stat struct {
			Version int `json:"version"`
		} `json:"stat"`
	}
	if err := json.Unmarshal([]byte(tree(t, all, "get", "-o", "json", "/cli")), &get); err != nil {
		t.Errorf("tree get -o json: %v", err)
	}
	if want := base64.StdEncoding.EncodeToString([]byte("again")); get.Data != want || get.Stat.Version != 2 || atoi(get.Header.Zxid) == 0 {
		t.Errorf("tree get -o json /cli = %+v, want data %q, version 2, a zxid", get, want)
	}
	for _, args := range [][]string{
		{"stat", "-o", "json", "/cli"},
		{"ls", "-o", "json", "/cli"},
		{"create", "-o", "json", "/cli/c"},
		{"set", "-o", "json", "/cli/c", "y"},
		{"rm", "-o", "json", "/cli/c"},
	} {
		out := tree(t, all, args...)
		var doc map[string]any
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Errorf("tree %s: output is not JSON: %v: %q", strings.Join(args, " "), err, out)
		}
		if _, ok := doc["header"]; !ok {
			t.Errorf("tree %s: JSON %q has no header", strings.Join(args, " "), out)
		}
	}
	var st nodeStatus
	r := paddock(t, "status", "-o", "json", "--endpoints", all)
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || len(st.Members.Members) != 3 {
		t.Errorf("status -o json: %v, %d members, want JSON with 3 members (%v)", err, len(st.Members.Members), r)
	}
	r = paddock(t, "status", "--endpoints", all)
	if r.code != 0 || !strings.Contains(r.stdout, "leader") {
		t.Errorf("status: %v, want a table naming the leader", r)
	}

	// Failures: non-zero exit, the gRPC code on stderr.
	treeFails(t, all, "NotFound", "get", "/missing")
	treeFails(t, all, "NotFound", "stat", "/missing")
	treeFails(t, all, "AlreadyExists", "create", "/cli")
	treeFails(t, all, "InvalidArgument", "create", "relative")
	treeFails(t, all, "FailedPrecondition", "rm", "/cli")
	if r := paddock(t, "tree", "get", "-o", "yaml", "--endpoints", all, "/cli"); r.code == 0 || r.stderr == "" {
		t.Errorf("tree get -o yaml: %v, want a failure explained on stderr", r)
	}

	// Sequential: the parent's counter as a %010d suffix, increasing.
	seqRE := regexp.MustCompile(`^/cli/seq-(\d{10})\n$`)
	first := tree(t, all, "create", "--sequential", "/cli/seq-", "1")
	second := tree(t, all, "create", "--sequential", "/cli/seq-", "2")
	m1, m2 := seqRE.FindStringSubmatch(first), seqRE.FindStringSubmatch(second)
	if m1 == nil || m2 == nil {
		t.Errorf("tree create --sequential /cli/seq- = %q then %q, want /cli/seq-NNNNNNNNNN", first, second)
	} else if m2[1] <= m1[1] {
		t.Errorf("tree create --sequential: second suffix %s, want > first %s", m2[1], m1[1])
	}
	if m1 != nil {
		if got := tree(t, all, "get", strings.TrimSpace(first)); got != "1" {
			t.Errorf("tree get %s = %q, want %q", strings.TrimSpace(first), got, "1")
		}
	}

	// Failover: a dead endpoint first, a live one next. Reads and writes
	// (never sent to the dead one) both work, and promptly.
	dead, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	eps := fmt.Sprintf("127.0.0.1:%d,%s", dead[0], c.agents[1].grpcAddr)
	start := time.Now()
	if got := tree(t, eps, "get", "/cli"); got != "again" {
		t.Errorf("tree get /cli via %s = %q, want %q", eps, got, "again")
	}
	if got := tree(t, eps, "get", "--consistency", "serializable", "/cli/a"); got != "x" {
		t.Errorf("tree get --consistency serializable /cli/a via %s = %q, want %q", eps, got, "x")
	}
	tree(t, eps, "ls", "/cli")
	tree(t, eps, "create", "/cli/failover")
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("four commands with a dead first endpoint took %v, want well under 10s", d)
	}
	// Every endpoint dead: a clear Unavailable, not a hang.
	dead2, err := freePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	treeFails(t, fmt.Sprintf("127.0.0.1:%d,127.0.0.1:%d", dead2[0], dead2[1]), "Unavailable", "get", "--timeout", "5s", "/cli")

	// Recursive delete removes the subtree in one change.
	tree(t, all, "rm", "--recursive", "/cli")
	treeFails(t, all, "NotFound", "get", "/cli")
	treeFails(t, all, "NotFound", "ls", "/cli")
}
