package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestAgentGCFlags: the agent sets the Go collector from its flags, as the
// runtime's own metrics show: a node restarted with --gc-percent,
// --memory-limit and --gc-min-headroom 0 runs with exactly them; the
// others with the defaults (no limit, and GOGC 50 raised while the live
// heap is small, by the 16 MiB minimum headroom) unless the test's
// environment sets GOGC or GOMEMLIMIT.
func TestAgentGCFlags(t *testing.T) {
	c := startCluster(t)
	tuned := c.agents[2]
	c.kill9(2)
	tuned.args = append(tuned.args, "--gc-percent", "37", "--memory-limit", "300MiB", "--gc-min-headroom", "0")
	c.restart(2)

	metric := func(a *agent, name string) (string, bool) {
		body := curl(t, a.httpAddr, "/metrics").body
		for line := range strings.SplitSeq(body, "\n") {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				return v, true
			}
		}
		return "", false
	}
	check := func(a *agent, want ...string) {
		t.Helper()
		for _, w := range want {
			name, value, _ := strings.Cut(w, " ")
			if got, ok := metric(a, name); !ok || got != value {
				t.Errorf("GET /metrics on %s: %s = %q, want %q", a.id, name, got, value)
			}
		}
	}
	check(tuned, "go_gc_gogc_percent 37", "go_gc_gomemlimit_bytes 3.145728e+08")
	if os.Getenv("GOMEMLIMIT") == "" {
		check(c.agents[0], "go_gc_gomemlimit_bytes 9.223372036854776e+18")
	}
	if os.Getenv("GOGC") != "" {
		return
	}
	// An idle node's live heap is a few MiB: its GOGC is raised above 50
	// once the tuner has seen a collection.
	ok, last := poll(20*time.Second, func() (bool, string) {
		v, _ := metric(c.agents[0], "go_gc_gogc_percent")
		p, err := strconv.ParseFloat(v, 64)
		return err == nil && p > 50, fmt.Sprintf("go_gc_gogc_percent %q", v)
	})
	if !ok {
		t.Errorf("an idle node's GOGC was not raised above 50 by the minimum headroom: %s", last)
	}
}
