package robust

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/paddock/paddock/e2e/child"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

const (
	// clusterSize is the number of agents.
	clusterSize = 3
	// startTimeout bounds Start's wait for a ready cluster when ctx allows
	// longer.
	startTimeout = 60 * time.Second
	// probeTimeout bounds one Status call made while polling: a paused or
	// cut-off node must not hold a poll round for long.
	probeTimeout = time.Second
	// pollInterval is the pause between poll rounds.
	pollInterval = 100 * time.Millisecond
	// logTail is how much of an agent's log an error quotes.
	logTail = 4 << 10
)

// Options configure a cluster.
type Options struct {
	// Bin is the paddock binary (built by the caller).
	Bin string
	// Dir holds the data dirs and agent logs, one subdir per node.
	Dir string
	// SnapshotThreshold and TrailingLogs set the agents' flags of the same
	// names; 0 leaves the agents' defaults.
	SnapshotThreshold, TrailingLogs uint64
	// ExtraArgs are added to every agent's command line.
	ExtraArgs []string
	// Logf, if not nil, receives progress messages (t.Logf).
	Logf func(format string, args ...any)
}

// Cluster is three paddock agents, n1..n3, each in its own network
// namespace (see the package doc). Its methods may be called from several
// goroutines.
type Cluster struct {
	opts  Options
	net   *network
	nodes []*node

	mu       sync.Mutex // guards closed, closeErr
	closed   bool
	closeErr error
}

// node is one agent: its addresses and flags, and its current process.
type node struct {
	idx                          int
	id                           string // n1..n3
	ns                           string
	ip                           string
	raftAddr, grpcAddr, httpAddr string
	dataDir, logPath             string
	args                         []string

	mu     sync.Mutex  // guards the fields below
	p      *child.Proc // nil before the first start; exited when down
	paused bool
	conn   *grpc.ClientConn
}

// running reports whether nd's process is up (paused counts as up).
func (nd *node) running() bool {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.p != nil && !nd.p.Exited()
}

// Start makes the network, starts agents n1..n3 and waits until every one
// is ready and they agree on a leader. On error it removes everything it
// made.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if opts.Bin == "" || opts.Dir == "" {
		return nil, errors.New("robust: Options.Bin and Options.Dir are required")
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	var err error
	if opts.Bin, err = filepath.Abs(opts.Bin); err != nil {
		return nil, fmt.Errorf("robust: %w", err)
	}
	if opts.Dir, err = filepath.Abs(opts.Dir); err != nil {
		return nil, fmt.Errorf("robust: %w", err)
	}
	nw, err := allocate(opts.Logf)
	if err != nil {
		return nil, err
	}
	c := &Cluster{opts: opts, net: nw}
	if err := c.start(ctx); err != nil {
		return nil, errors.Join(err, c.Close())
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	o := c.opts
	o.Logf("robust: cluster %s on %s (namespaces %s*, host link %s)", c.net.id, c.net.subnet, nsPrefix(c.net.id), c.net.link)
	if err := c.net.setup(ctx); err != nil {
		return err
	}
	var bootstrap []string
	for i := range clusterSize {
		ip := c.net.nodeIP(i)
		nd := &node{
			idx:      i,
			id:       fmt.Sprintf("n%d", i+1),
			ns:       c.net.nodes[i],
			ip:       ip,
			raftAddr: net.JoinHostPort(ip, strconv.Itoa(raftPort)),
			grpcAddr: net.JoinHostPort(ip, strconv.Itoa(grpcPort)),
			httpAddr: net.JoinHostPort(ip, strconv.Itoa(httpPort)),
		}
		dir := filepath.Join(o.Dir, nd.id)
		nd.dataDir = filepath.Join(dir, "data")
		nd.logPath = filepath.Join(dir, "agent.log")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("robust: %w", err)
		}
		bootstrap = append(bootstrap, nd.id+"="+nd.raftAddr)
		c.nodes = append(c.nodes, nd)
	}
	for _, nd := range c.nodes {
		nd.args = child.AgentArgs(nd.id, nd.dataDir, nd.raftAddr, nd.grpcAddr, nd.httpAddr, bootstrap)
		if o.SnapshotThreshold != 0 {
			nd.args = append(nd.args, "--snapshot-threshold", strconv.FormatUint(o.SnapshotThreshold, 10))
		}
		if o.TrailingLogs != 0 {
			nd.args = append(nd.args, "--trailing-logs", strconv.FormatUint(o.TrailingLogs, 10))
		}
		nd.args = append(nd.args, o.ExtraArgs...)
		if err := c.launch(nd); err != nil {
			return err
		}
	}
	for _, nd := range c.nodes {
		if err := c.waitServing(ctx, nd, true); err != nil {
			return err
		}
	}
	leader, err := c.Leader(ctx)
	if err != nil {
		return err
	}
	o.Logf("robust: cluster %s ready, leader %s", c.net.id, c.nodes[leader].id)
	return nil
}

// launch starts nd's agent and gives it a fresh client connection (the
// old one may be deep in its reconnect backoff).
func (c *Cluster) launch(nd *node) error {
	p, err := startProc(c.opts.Bin, nd)
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(nd.grpcAddr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: time.Second,
		}))
	if err != nil {
		p.Kill()
		return fmt.Errorf("robust: grpc client for %s: %w", nd.id, err)
	}
	nd.mu.Lock()
	old := nd.conn
	nd.p, nd.paused, nd.conn = p, false, conn
	nd.mu.Unlock()
	if old != nil {
		old.Close()
	}
	c.opts.Logf("robust: started %s (pid %d) in %s", nd.id, p.Pid(), nd.ns)
	return nil
}

// waitServing polls nd's Status until it answers (and, with ready, says it
// is ready), failing early if its process exits. Then it checks that the
// pid is the agent's own.
func (c *Cluster) waitServing(ctx context.Context, nd *node, ready bool) error {
	last := "no answer yet"
	for {
		nd.mu.Lock()
		p := nd.p
		nd.mu.Unlock()
		if p.Exited() {
			return fmt.Errorf("robust: %s exited (%v) before serving: %w; log %s:\n%s", nd.id, p.Err(), errExited, nd.logPath, child.Tail(nd.logPath, logTail))
		}
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		st, err := c.Status(pctx, nd.idx)
		cancel()
		switch {
		case err != nil:
			last = err.Error()
		case ready && !st.GetReady():
			last = fmt.Sprintf("role %s, leader %q, not ready", st.GetRole(), st.GetLeaderId())
		default:
			return checkExec(p, c.opts.Bin)
		}
		if !sleep(ctx, pollInterval) {
			return fmt.Errorf("robust: %s not serving: %w (last: %s)", nd.id, ctx.Err(), last)
		}
	}
}

// sleep waits d or until ctx ends, and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// N is the number of nodes, 3.
func (c *Cluster) N() int { return len(c.nodes) }

// ID is the cluster's id: its namespaces are pdk-<id>-*, its host link
// pdk<id>.
func (c *Cluster) ID() string { return c.net.id }

// Endpoint is node i's gRPC address, "10.x.y.(i+1):7001", i in 0..N()-1.
func (c *Cluster) Endpoint(i int) string { return c.nodes[i].grpcAddr }

// Endpoints are every node's gRPC address, in node order.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, nd := range c.nodes {
		eps = append(eps, nd.grpcAddr)
	}
	return eps
}

// HTTPAddr is node i's HTTP address (health, JSON gateway).
func (c *Cluster) HTTPAddr(i int) string { return c.nodes[i].httpAddr }

// NodeID is node i's id, "n1".."n3".
func (c *Cluster) NodeID(i int) string { return c.nodes[i].id }

// LogPath is the file agent i's stdout and stderr are appended to, across
// restarts.
func (c *Cluster) LogPath(i int) string { return c.nodes[i].logPath }

// Conn is the harness's own client connection to node i alone (no
// failover). It is replaced when the node restarts; callers must not close
// it.
func (c *Cluster) Conn(i int) *grpc.ClientConn {
	nd := c.nodes[i]
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.conn
}

// Status calls ClusterService.Status on node i only, with no failover.
// Give ctx a deadline: a paused node holds the call until it ends.
func (c *Cluster) Status(ctx context.Context, i int) (*paddockv1.StatusResponse, error) {
	return paddockv1.NewClusterServiceClient(c.Conn(i)).Status(ctx, &paddockv1.StatusRequest{})
}

// StatusHash is Status with the digest of node i's whole state and the
// applied index it was taken at.
func (c *Cluster) StatusHash(ctx context.Context, i int) (*paddockv1.StatusResponse, error) {
	return paddockv1.NewClusterServiceClient(c.Conn(i)).Status(ctx, &paddockv1.StatusRequest{StateHash: true})
}

// Leader polls until the nodes that answer agree on one leader, and
// returns its index. They agree when one node says it is the leader and is
// ready, no answering node names another leader (a node that knows none,
// such as an isolated one, is not counted against), and a majority, the
// leader included, names it. Nodes that are down or paused are not asked;
// a node that does not answer within a second is left out of that round.
// Leader returns ctx's error, with what the nodes said last, when ctx ends
// first: give ctx a deadline.
func (c *Cluster) Leader(ctx context.Context) (int, error) {
	last := "no node answered"
	for {
		leader, seen := c.leaderRound(ctx)
		if leader >= 0 {
			return leader, nil
		}
		if seen != "" {
			last = seen
		}
		if !sleep(ctx, pollInterval) {
			return -1, fmt.Errorf("robust: no leader: %w (last: %s)", ctx.Err(), last)
		}
	}
}

// leaderRound asks every running, unpaused node for its Status at once and
// returns the leader they agree on, or -1, with a summary of the answers.
func (c *Cluster) leaderRound(ctx context.Context) (int, string) {
	sts := make([]*paddockv1.StatusResponse, len(c.nodes))
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i, nd := range c.nodes {
		nd.mu.Lock()
		up := nd.p != nil && !nd.p.Exited() && !nd.paused
		nd.mu.Unlock()
		if !up {
			errs[i] = errors.New("down or paused")
			continue
		}
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, probeTimeout)
			defer cancel()
			sts[i], errs[i] = c.Status(pctx, i)
		})
	}
	wg.Wait()
	var seen []string
	claims := -1
	for i, st := range sts {
		if st == nil {
			seen = append(seen, fmt.Sprintf("%s: %v", c.nodes[i].id, errs[i]))
			continue
		}
		seen = append(seen, fmt.Sprintf("%s: %s term %d leader %q ready %t", c.nodes[i].id, st.GetRole(), st.GetTerm(), st.GetLeaderId(), st.GetReady()))
		if st.GetRole() == paddockv1.Role_ROLE_LEADER && st.GetLeaderId() == c.nodes[i].id && st.GetReady() {
			if claims >= 0 {
				return -1, strings.Join(seen, "; ") // two claim to lead
			}
			claims = i
		}
	}
	summary := strings.Join(seen, "; ")
	if claims < 0 {
		return -1, summary
	}
	votes := 0
	for _, st := range sts {
		switch id := st.GetLeaderId(); {
		case st == nil || id == "":
		case id == c.nodes[claims].id:
			votes++
		default:
			return -1, summary
		}
	}
	if votes*2 <= len(c.nodes) {
		return -1, summary
	}
	return claims, summary
}

// Kill SIGKILLs agent i and waits for it to exit.
func (c *Cluster) Kill(i int) error {
	nd := c.nodes[i]
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.p == nil || nd.p.Exited() {
		return fmt.Errorf("robust: kill %s: not running", nd.id)
	}
	nd.p.Kill()
	nd.paused = false
	c.opts.Logf("robust: killed %s (pid %d)", nd.id, nd.p.Pid())
	return nil
}

// Restart starts agent i again on the same data dir and addresses, and
// waits until it answers Status (not until it is ready: it may be cut off
// by a fault).
func (c *Cluster) Restart(ctx context.Context, i int) error {
	nd := c.nodes[i]
	// Holding c.mu keeps Close from running between the checks and the
	// launch, which would leave an agent behind.
	c.mu.Lock()
	var err error
	switch {
	case c.closed:
		err = fmt.Errorf("robust: restart %s: cluster closed", nd.id)
	case nd.running():
		err = fmt.Errorf("robust: restart %s: still running", nd.id)
	default:
		err = c.launch(nd)
	}
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return c.waitServing(ctx, nd, false)
}

// Pause stops agent i with SIGSTOP.
func (c *Cluster) Pause(i int) error { return c.signal(i, pauseSignal, true) }

// Resume continues agent i with SIGCONT.
func (c *Cluster) Resume(i int) error { return c.signal(i, resumeSignal, false) }

func (c *Cluster) signal(i int, sig os.Signal, pause bool) error {
	nd := c.nodes[i]
	if sig == nil {
		return errors.New("robust: pause and resume need linux")
	}
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.p == nil || nd.p.Exited() {
		return fmt.Errorf("robust: signal %s: not running", nd.id)
	}
	if err := nd.p.Signal(sig); err != nil {
		return fmt.Errorf("robust: signal %s: %w", nd.id, err)
	}
	if pause {
		// Return only once it is stopped: a caller that pauses the leader
		// and then calls it must find it silent.
		if err := waitStopped(nd.p.Pid(), 10*time.Second); err != nil {
			return fmt.Errorf("robust: pause %s: %w", nd.id, err)
		}
	}
	nd.paused = pause
	return nil
}

// Running reports whether agent i's process is up; a paused agent is.
func (c *Cluster) Running(i int) bool { return c.nodes[i].running() }

// Paused reports whether agent i is paused (Pause without Resume since).
func (c *Cluster) Paused(i int) bool {
	nd := c.nodes[i]
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.paused && nd.p != nil && !nd.p.Exited()
}

// Close SIGKILLs every agent the cluster started (by pid), deletes its
// namespaces, links and bridge and its marker file. It also reports a data
// race any agent's log holds (agents built with -race print them). Later
// calls return the first call's result.
func (c *Cluster) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return c.closeErr
	}
	c.closed = true
	var errs []error
	for _, nd := range c.nodes {
		nd.mu.Lock()
		if nd.conn != nil {
			nd.conn.Close()
		}
		if nd.p != nil {
			nd.p.Kill() // SIGKILL ends a stopped process too
		}
		nd.mu.Unlock()
	}
	err := withLock(func() error {
		if err := teardown(c.net.id); err != nil {
			return err
		}
		if err := os.Remove(markerPath(c.net.id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("robust: %w", err)
		}
		return nil
	})
	errs = append(errs, err)
	for _, nd := range c.nodes {
		if b, err := os.ReadFile(nd.logPath); err == nil && strings.Contains(string(b), "WARNING: DATA RACE") {
			errs = append(errs, fmt.Errorf("robust: %s's log %s reports a data race", nd.id, nd.logPath))
		}
	}
	c.closeErr = errors.Join(errs...)
	c.opts.Logf("robust: cluster %s closed", c.net.id)
	return c.closeErr
}
