package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paddock/paddock/e2e/child"
)

const (
	// startTimeout bounds an agent's start (listening, /healthz answering)
	// and a cluster's first election.
	startTimeout = 20 * time.Second
	// stopTimeout is how long an agent may take to exit after SIGTERM.
	stopTimeout = 10 * time.Second
	// startAttempts is how often a cluster is started on fresh ports when a
	// port picked as free was taken before the agent bound it.
	startAttempts = 3
	// logTail is how much of each agent's log a failed test prints.
	logTail = 48 << 10
)

// agent is one `paddock agent` process of a cluster, with the flags it was
// started with so that it can be restarted on the same ports and data.
type agent struct {
	id                           string
	raftAddr, grpcAddr, httpAddr string
	dataDir, logPath             string
	args                         []string
	p                            *child.Proc // nil or exited when down
	killed                       bool        // the test SIGKILLed p
}

// running reports whether the agent's process is up.
func (a *agent) running() bool { return a.p != nil && !a.p.Exited() }

// cluster is three agents on loopback, each with its own data dir and log.
type cluster struct {
	t       *testing.T
	base    string
	agents  []*agent
	stopped bool // stopAll has run
}

// startCluster starts a three-node cluster and waits until it has a leader
// that every node knows. It retries on new ports when an agent fails to
// start (a port picked as free was taken meanwhile). Every agent is stopped
// in t.Cleanup.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{t: t, base: t.TempDir()}
	t.Cleanup(c.stopAll)
	for attempt := 1; ; attempt++ {
		err := c.tryStart(attempt)
		if err == nil {
			break
		}
		for _, a := range c.agents {
			if a.p != nil {
				a.killed = true
				a.p.Kill()
			}
		}
		if attempt == startAttempts {
			t.Fatalf("start cluster: %v", err)
		}
		t.Logf("start cluster, attempt %d: %v; retrying on new ports", attempt, err)
	}
	c.leader()
	return c
}

func (c *cluster) tryStart(attempt int) error {
	ports, err := freePorts(9)
	if err != nil {
		return err
	}
	dir := filepath.Join(c.base, fmt.Sprintf("attempt%d", attempt))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	c.agents = nil
	var bootstrap []string
	for i := range 3 {
		a := &agent{
			id:       fmt.Sprintf("n%d", i+1),
			raftAddr: fmt.Sprintf("127.0.0.1:%d", ports[3*i]),
			grpcAddr: fmt.Sprintf("127.0.0.1:%d", ports[3*i+1]),
			httpAddr: fmt.Sprintf("127.0.0.1:%d", ports[3*i+2]),
		}
		a.dataDir = filepath.Join(dir, a.id)
		a.logPath = filepath.Join(dir, a.id+".log")
		bootstrap = append(bootstrap, a.id+"="+a.raftAddr)
		c.agents = append(c.agents, a)
	}
	for _, a := range c.agents {
		a.args = child.AgentArgs(a.id, a.dataDir, a.raftAddr, a.grpcAddr, a.httpAddr, bootstrap)
		if err := c.startAgent(a); err != nil {
			return err
		}
	}
	for _, a := range c.agents {
		if err := c.waitHealthy(a); err != nil {
			return err
		}
	}
	return nil
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// startAgent starts a's process, appending its output to a.logPath.
func (c *cluster) startAgent(a *agent) error {
	log, err := os.OpenFile(a.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer log.Close() // the child has its own descriptor
	fmt.Fprintf(log, "=== e2e: %s %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(a.args, " "))
	a.p, err = startProc(a.id, log, log, paddockBin, a.args...)
	return err
}

// waitHealthy waits until a answers /healthz, failing early if it exits.
func (c *cluster) waitHealthy(a *agent) error {
	ok, last := poll(startTimeout, func() (bool, string) {
		if a.p.Exited() {
			return false, "exited"
		}
		code, _, err := httpGet(a.httpAddr, "/healthz")
		if err != nil {
			return false, err.Error()
		}
		return code == http.StatusOK, fmt.Sprintf("/healthz %d", code)
	})
	if ok {
		return nil
	}
	if a.p.Exited() {
		return fmt.Errorf("%s exited (%v) before serving:\n%s", a.id, a.p.Err(), child.Tail(a.logPath, 4<<10))
	}
	return fmt.Errorf("%s not healthy after %v: %s", a.id, startTimeout, last)
}

// httpGet is the harness's own probe (tests use curl).
func httpGet(addr, path string) (int, http.Header, error) {
	hc := http.Client{Timeout: time.Second}
	resp, err := hc.Get("http://" + addr + path)
	if err != nil {
		return 0, nil, err
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header, nil
}

// waitReady waits until agent i answers /readyz with 200.
func (c *cluster) waitReady(i int) {
	c.t.Helper()
	a := c.agents[i]
	ok, last := poll(startTimeout, func() (bool, string) {
		code, _, err := httpGet(a.httpAddr, "/readyz")
		if err != nil {
			return false, err.Error()
		}
		return code == http.StatusOK, fmt.Sprintf("/readyz %d", code)
	})
	if !ok {
		c.t.Fatalf("%s not ready after %v: %s", a.id, startTimeout, last)
	}
}

// kill9 SIGKILLs agent i and waits for it to die.
func (c *cluster) kill9(i int) {
	c.t.Helper()
	c.agents[i].killed = true
	c.agents[i].p.Kill()
}

// restart starts agent i again with the same flags and data dir, and waits
// until it serves.
func (c *cluster) restart(i int) {
	c.t.Helper()
	a := c.agents[i]
	if a.running() {
		c.t.Fatalf("restart %s: still running", a.id)
	}
	a.killed = false
	if err := c.startAgent(a); err != nil {
		c.t.Fatalf("restart %s: %v", a.id, err)
	}
	if err := c.waitHealthy(a); err != nil {
		c.t.Fatalf("restart %s: %v", a.id, err)
	}
}

// endpoints is the --endpoints value for the given agents (all if none).
func (c *cluster) endpoints(idx ...int) string {
	if len(idx) == 0 {
		for i := range c.agents {
			idx = append(idx, i)
		}
	}
	var eps []string
	for _, i := range idx {
		eps = append(eps, c.agents[i].grpcAddr)
	}
	return strings.Join(eps, ",")
}

// nodeStatus is the part of `paddock status -o json` the tests read.
// Integers of 64 bits are strings in protojson.
type nodeStatus struct {
	Status struct {
		ID          string `json:"id"`
		Role        string `json:"role"`
		LeaderID    string `json:"leader_id"`
		Term        string `json:"term"`
		CommitIndex string `json:"commit_index"`
		Znodes      string `json:"znodes"`
		Ready       bool   `json:"ready"`
	} `json:"status"`
	Members struct {
		Members []struct {
			ID       string `json:"id"`
			GrpcAddr string `json:"grpc_addr"`
			Leader   bool   `json:"leader"`
		} `json:"members"`
	} `json:"members"`
}

// status runs `paddock status -o json` against agent i alone.
func (c *cluster) status(i int) (nodeStatus, error) {
	c.t.Helper()
	var st nodeStatus
	r := paddock(c.t, "status", "-o", "json", "--timeout", "3s", "--endpoints", c.agents[i].grpcAddr)
	if r.code != 0 {
		return st, fmt.Errorf("paddock status: %v", r)
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		return st, fmt.Errorf("paddock status -o json: %v in %q", err, r.stdout)
	}
	return st, nil
}

// leader waits until every running agent names the same leader, which is
// running, says it leads and is ready, and returns its index.
func (c *cluster) leader() int {
	c.t.Helper()
	leader := -1
	ok, last := poll(startTimeout, func() (bool, string) {
		leader = -1
		ids := map[string]bool{}
		var seen []string
		for i, a := range c.agents {
			if !a.running() {
				continue
			}
			st, err := c.status(i)
			if err != nil {
				return false, err.Error()
			}
			seen = append(seen, fmt.Sprintf("%s: role %s leader %q ready %t", a.id, st.Status.Role, st.Status.LeaderID, st.Status.Ready))
			ids[st.Status.LeaderID] = true
			if st.Status.Role == "ROLE_LEADER" && st.Status.Ready && st.Status.LeaderID == a.id {
				leader = i
			}
		}
		return leader >= 0 && len(ids) == 1, strings.Join(seen, "; ")
	})
	if !ok {
		c.t.Fatalf("no leader known to all running nodes after %v: %s", startTimeout, last)
	}
	return leader
}

// stopAll SIGTERMs every running agent and checks that each exits 0 within
// stopTimeout, that none reported a data race, and prints the logs of a
// failed test.
func (c *cluster) stopAll() {
	if c.stopped {
		return
	}
	c.stopped = true
	t := c.t
	for _, a := range c.agents {
		switch {
		case a.running():
			a.p.Signal(syscall.SIGTERM)
		case a.p != nil && !a.killed:
			t.Errorf("%s exited during the test: %v", a.id, a.p.Err())
		}
	}
	deadline := time.Now().Add(stopTimeout)
	for _, a := range c.agents {
		if a.p == nil {
			continue
		}
		if !a.p.Wait(time.Until(deadline)) {
			t.Errorf("%s still running %v after SIGTERM; killing it", a.id, stopTimeout)
			a.p.Kill()
			continue
		}
		if code := a.p.ExitCode(); code != 0 && !a.killed {
			t.Errorf("%s exit code after SIGTERM = %d, want 0", a.id, code)
		}
	}
	for _, a := range c.agents {
		if b, err := os.ReadFile(a.logPath); err == nil && strings.Contains(string(b), "WARNING: DATA RACE") {
			t.Errorf("%s log reports a data race", a.id)
		}
	}
	if t.Failed() {
		for _, a := range c.agents {
			t.Logf("--- log of %s (%s) ---\n%s", a.id, a.logPath, child.Tail(a.logPath, logTail))
		}
	}
}

// atoi parses a protojson 64-bit integer (a string), 0 on error.
func atoi(s string) int64 {
	v, _ := strconv.ParseInt(s, 10, 64)
	return v
}
