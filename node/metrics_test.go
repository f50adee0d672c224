package node_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// scrape gathers reg into name -> label string -> value (a histogram's
// value is its sample count). The label string is `k=v,...` in label order.
func scrape(tb testing.TB, reg prometheus.Gatherer) map[string]map[string]float64 {
	tb.Helper()
	families, err := reg.Gather()
	if err != nil {
		tb.Fatalf("Gather: %v", err)
	}
	out := map[string]map[string]float64{}
	for _, mf := range families {
		series := map[string]float64{}
		for _, m := range mf.GetMetric() {
			labels := ""
			for i, l := range m.GetLabel() {
				if i > 0 {
					labels += ","
				}
				labels += l.GetName() + "=" + l.GetValue()
			}
			switch {
			case m.GetGauge() != nil:
				series[labels] = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				series[labels] = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				series[labels] = float64(m.GetHistogram().GetSampleCount())
			}
		}
		out[mf.GetName()] = series
	}
	return out
}

func TestMetrics(t *testing.T) {
	c := newCluster(t, 3)
	leader := c.WaitLeader(t)
	follower := c.Followers(leader)[0]
	fn := c.Node(follower)

	before := scrape(t, fn.Metrics())
	res := mustPropose(t, fn, createCmd("/metrics", []byte("x")))
	mustOpenSession(t, fn, 10*time.Second)
	c.Converged(t)

	for _, i := range c.Running() {
		n := c.Node(i)
		// Registries are per node: every node has its own series.
		got := scrape(t, n.Metrics())
		wantLeader := 0.0
		if i == leader {
			wantLeader = 1
		}
		znodes, sessions := n.FSM().Counts()
		checks := []struct {
			name, labels string
			want         func(float64) bool
			desc         string
		}{
			{"paddock_raft_state", "state=leader", func(v float64) bool { return v == wantLeader }, fmt.Sprint(wantLeader)},
			{"paddock_raft_state", "state=follower", func(v float64) bool { return v == 1-wantLeader }, fmt.Sprint(1 - wantLeader)},
			{"paddock_raft_state", "state=candidate", func(v float64) bool { return v == 0 }, "0"},
			{"paddock_raft_leader_known", "", func(v float64) bool { return v == 1 }, "1"},
			{"paddock_raft_term", "", func(v float64) bool { return v == float64(n.Raft().CurrentTerm()) }, "the raft term"},
			{"paddock_raft_commit_index", "", func(v float64) bool { return v >= float64(res.Index) }, fmt.Sprintf(">= %d", res.Index)},
			{"paddock_raft_applied_index", "", func(v float64) bool { return v >= float64(res.Index) }, fmt.Sprintf(">= %d", res.Index)},
			{"paddock_raft_last_log_index", "", func(v float64) bool { return v >= float64(res.Index) }, fmt.Sprintf(">= %d", res.Index)},
			{"paddock_znodes", "", func(v float64) bool { return v == float64(znodes) }, fmt.Sprint(znodes)},
			{"paddock_sessions", "", func(v float64) bool { return v == float64(sessions) && sessions == 1 }, "1"},
			{"paddock_watchers", "", func(v float64) bool { return v == float64(n.WatcherCount()) }, fmt.Sprint(n.WatcherCount())},
			{"paddock_fsm_stopped", "", func(v float64) bool { return v == 0 }, "0"},
			{"paddock_apply_duration_seconds", "", func(v float64) bool { return v > 0 }, "> 0 samples"},
			{"paddock_apply_batch_entries", "", func(v float64) bool { return v > 0 }, "> 0 samples"},
			// Every node counts what it applies, by operation.
			{"paddock_applied_commands_total", "op=create", func(v float64) bool { return v >= 1 }, ">= 1"},
			{"paddock_applied_commands_total", "op=open_session", func(v float64) bool { return v == 1 }, "1"},
			{"paddock_applied_commands_total", "op=web_session_write", func(v float64) bool { return v == 0 }, "0"},
			{"paddock_applied_commands_total", "op=unknown", func(v float64) bool { return v == 0 }, "0"},
		}
		for _, ck := range checks {
			v, ok := got[ck.name][ck.labels]
			if !ok {
				t.Errorf("%s: %s{%s} missing", n.ID(), ck.name, ck.labels)
				continue
			}
			if !ck.want(v) {
				t.Errorf("%s: %s{%s} = %v, want %s", n.ID(), ck.name, ck.labels, v, ck.desc)
			}
		}
		// The gRPC server series live in the same registry (rpc.NewServer).
		if _, ok := got["paddock_grpc_server_handled_total"]; !ok {
			t.Errorf("%s: paddock_grpc_server_handled_total missing", n.ID())
		}
	}

	after := scrape(t, fn.Metrics())
	for _, s := range []struct{ name, labels string }{
		{"paddock_forwarded_requests_total", "kind=write"},
		{"paddock_propose_duration_seconds", ""},
	} {
		// Two writes through the follower; registration may add more.
		if d := after[s.name][s.labels] - before[s.name][s.labels]; d < 2 {
			t.Errorf("%s{%s} on follower %s rose by %v, want >= 2", s.name, s.labels, fn.ID(), d)
		}
	}
	for _, kind := range []string{"read", "read_index", "keepalive", "web_session"} {
		if _, ok := after["paddock_forwarded_requests_total"]["kind="+kind]; !ok {
			t.Errorf("paddock_forwarded_requests_total{kind=%s} missing on %s", kind, fn.ID())
		}
	}
}
