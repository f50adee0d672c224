package e2e

import (
	"os"
	"strings"
	"testing"
)

// TestAgentGCFlags: the agent sets the Go collector from its flags, as the
// runtime's own metrics show: a node restarted with --gc-percent and
// --memory-limit runs with them, the others with the defaults (GOGC 50, no
// limit) unless the test's environment sets GOGC or GOMEMLIMIT.
func TestAgentGCFlags(t *testing.T) {
	c := startCluster(t)
	tuned := c.agents[2]
	c.kill9(2)
	tuned.args = append(tuned.args, "--gc-percent", "37", "--memory-limit", "300MiB")
	c.restart(2)

	check := func(a *agent, want ...string) {
		t.Helper()
		body := curl(t, a.httpAddr, "/metrics").body
		for _, w := range want {
			if !strings.Contains(body, "\n"+w+"\n") {
				t.Errorf("GET /metrics on %s: no line %q", a.id, w)
			}
		}
	}
	check(tuned, "go_gc_gogc_percent 37", "go_gc_gomemlimit_bytes 3.145728e+08")
	var want []string
	if os.Getenv("GOGC") == "" {
		want = append(want, "go_gc_gogc_percent 50")
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		want = append(want, "go_gc_gomemlimit_bytes 9.223372036854776e+18")
	}
	check(c.agents[0], want...)
}
