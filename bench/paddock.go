package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/paddock/paddock/client"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

const (
	// paddockNodes is the size of the cluster NewPaddockCluster starts.
	paddockNodes = 3
	// paddockStartTimeout bounds one agent's start (until /healthz) and the
	// cluster's first election (until every /readyz).
	paddockStartTimeout = 30 * time.Second
	// paddockStopTimeout is how long an agent may take to exit after
	// SIGTERM before it is killed.
	paddockStopTimeout = 15 * time.Second
	// paddockStartAttempts: a port picked as free may be taken before the
	// agent binds it, so the cluster is retried on new ports.
	paddockStartAttempts = 3
)

// paddockNode is one agent process with the flags it was started with, so
// that Start brings it back on the same ports and data.
type paddockNode struct {
	id, grpcAddr, httpAddr, dataDir, logPath string
	args                                     []string
	cmd                                      *exec.Cmd
	done                                     chan struct{} // closed once cmd is waited for
}

func (n *paddockNode) running() bool {
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// paddockCluster is a Paddock cluster: three agents it started, or
// (external) a cluster somebody else runs, known by its endpoints only.
type paddockCluster struct {
	bin       string
	env       []string // added to every agent's environment
	endpoints []string
	nodes     []*paddockNode // nil when external
	// rr rotates the endpoint order of whole-cluster clients, so that
	// they spread over the nodes as etcd's and ZooKeeper's clients do
	// (the Go client sends every call to the endpoint that answered
	// last, the first one at the start).
	rr atomic.Uint64
}

// NewPaddockCluster starts three `paddock agent` processes of binary bin
// on free loopback ports with data (and each agent's log, nX.log) under
// base, and returns once every node knows the leader. ctx bounds the
// start only; Close stops the agents. Options add flags or environment
// to every agent.
func NewPaddockCluster(ctx context.Context, bin, base string, opts ...AgentOption) (Cluster, error) {
	var o agentOptions
	for _, opt := range opts {
		opt(&o)
	}
	var errs []error
	for attempt := 1; attempt <= paddockStartAttempts; attempt++ {
		c, err := startPaddock(ctx, bin, filepath.Join(base, fmt.Sprintf("attempt%d", attempt)), o)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("bench: start paddock cluster: %w", errors.Join(errs...))
}

// NewPaddockEndpoints is a running Paddock cluster reached at endpoints
// (host:port of each node's gRPC), which the runner neither started nor
// may stop: it knows no processes or data directories (CPU, RSS and disk
// are not measured) and Stop and Start return ErrUnsupported. bin is the
// paddock binary that HoldCommand runs.
func NewPaddockEndpoints(bin string, endpoints []string) Cluster {
	return &paddockCluster{bin: bin, endpoints: endpoints}
}

// AgentOption changes how NewPaddockCluster starts its agents.
type AgentOption func(*agentOptions)

type agentOptions struct {
	args, env []string
}

// AgentArgs appends flags to every agent's command line (e.g. --pprof, to
// profile the servers under load).
func AgentArgs(args ...string) AgentOption {
	return func(o *agentOptions) { o.args = append(o.args, args...) }
}

// AgentEnv adds KEY=VALUE variables to every agent's environment (e.g.
// GOMAXPROCS=1 when the three nodes share two cores: see the bench
// command's help).
func AgentEnv(env ...string) AgentOption {
	return func(o *agentOptions) { o.env = append(o.env, env...) }
}

func startPaddock(ctx context.Context, bin, dir string, o agentOptions) (*paddockCluster, error) {
	ports, err := freePorts(3 * paddockNodes)
	if err != nil {
		return nil, err
	}
	c := &paddockCluster{bin: bin, env: o.env}
	var bootstrap []string
	for i := range paddockNodes {
		n := &paddockNode{
			id:       fmt.Sprintf("n%d", i+1),
			grpcAddr: fmt.Sprintf("127.0.0.1:%d", ports[3*i]),
			httpAddr: fmt.Sprintf("127.0.0.1:%d", ports[3*i+1]),
		}
		raftAddr := fmt.Sprintf("127.0.0.1:%d", ports[3*i+2])
		n.dataDir = filepath.Join(dir, n.id)
		n.logPath = filepath.Join(dir, n.id+".log")
		n.args = []string{"agent", "--id", n.id, "--data-dir", n.dataDir,
			"--raft-addr", raftAddr, "--grpc-addr", n.grpcAddr, "--http-addr", n.httpAddr,
			"--log-level", "warn"}
		bootstrap = append(bootstrap, n.id+"="+raftAddr)
		c.nodes = append(c.nodes, n)
		c.endpoints = append(c.endpoints, n.grpcAddr)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	for _, n := range c.nodes {
		n.args = append(n.args, "--bootstrap", strings.Join(bootstrap, ","))
		n.args = append(n.args, o.args...)
	}
	fail := func(err error) (*paddockCluster, error) {
		return nil, errors.Join(err, c.Close())
	}
	for i := range c.nodes {
		if err := c.spawn(i); err != nil {
			return fail(err)
		}
	}
	for i := range c.nodes {
		if err := c.waitHTTP(ctx, i, "/healthz"); err != nil {
			return fail(err)
		}
	}
	for i := range c.nodes {
		if err := c.waitHTTP(ctx, i, "/readyz"); err != nil {
			return fail(err)
		}
	}
	return c, nil
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("bench: free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// spawn starts node i's process, its output appended to its log.
func (c *paddockCluster) spawn(i int) error {
	n := c.nodes[i]
	log, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer log.Close() // the child has its own descriptor
	fmt.Fprintf(log, "=== bench: %s %s%s %s\n", time.Now().Format(time.RFC3339Nano), envPrefix(c.env), c.bin, strings.Join(n.args, " "))
	cmd := exec.Command(c.bin, n.args...)
	if len(c.env) > 0 {
		cmd.Env = append(os.Environ(), c.env...)
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("bench: start %s: %w", n.id, err)
	}
	n.cmd, n.done = cmd, make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(n.done)
	}()
	return nil
}

// envPrefix shows extra environment as a shell would: "K=V K2=V2 ".
func envPrefix(env []string) string {
	if len(env) == 0 {
		return ""
	}
	return strings.Join(env, " ") + " "
}

// probe is the HTTP client of the health checks: loopback, no proxy.
var probe = &http.Client{Timeout: time.Second, Transport: &http.Transport{}}

// waitHTTP waits until node i answers path with 200, failing early if it
// exits.
func (c *paddockCluster) waitHTTP(ctx context.Context, i int, path string) error {
	n := c.nodes[i]
	ctx, cancel := context.WithTimeout(ctx, paddockStartTimeout)
	defer cancel()
	last := "no answer"
	for {
		if !n.running() {
			return fmt.Errorf("bench: %s exited (%v) before serving; log %s:\n%s", n.id, n.cmd.ProcessState, n.logPath, logTail(n.logPath))
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.httpAddr+path, nil)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		resp, err := probe.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("bench: %s: %s not 200 in %v: %s", n.id, path, paddockStartTimeout, last)
		}
	}
}

// logTail is the end of a log, for an agent that failed to start.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > 4<<10 {
		b = b[len(b)-4<<10:]
	}
	return string(b)
}

// Name is "paddock".
func (c *paddockCluster) Name() string { return PaddockSystem }

// Nodes is the number of endpoints.
func (c *paddockCluster) Nodes() int { return len(c.endpoints) }

// PIDs are the running agents' processes; none for an external cluster.
func (c *paddockCluster) PIDs() []int {
	var pids []int
	for _, n := range c.nodes {
		if n.running() {
			pids = append(pids, n.cmd.Process.Pid)
		}
	}
	return pids
}

// DataDirs are the agents' data directories; none for an external
// cluster.
func (c *paddockCluster) DataDirs() []string {
	var dirs []string
	for _, n := range c.nodes {
		dirs = append(dirs, n.dataDir)
	}
	return dirs
}

// Prepare creates /bench, the parent of every benchmark key.
func (c *paddockCluster) Prepare(ctx context.Context) error {
	cl, err := client.New(ctx, client.Config{Endpoints: c.endpoints})
	if err != nil {
		return err
	}
	defer cl.Close()
	_, err = cl.Create(ctx, &paddockv1.CreateRequest{Path: "/bench", Type: paddockv1.NodeType_NODE_TYPE_PERSISTENT})
	if err != nil && !client.IsExists(err) {
		return fmt.Errorf("bench: create /bench: %w", err)
	}
	return nil
}

// Leader asks each node for its Status (through a client of that node
// alone) and returns the one whose raft role is leader. For a cluster
// reached by endpoints that leave the leader out (every endpoint answers,
// none leads, and the leader they name is none of them) it is -1.
func (c *paddockCluster) Leader(ctx context.Context) (int, error) {
	// FindLeader asks the nodes in turn: no lock needed.
	var ids, named []string
	i, err := FindLeader(ctx, len(c.endpoints), func(ctx context.Context, i int) (bool, error) {
		st, err := c.status(ctx, i)
		if err != nil {
			return false, err
		}
		ids = append(ids, st.GetId())
		if l := st.GetLeaderId(); l != "" {
			named = append(named, l)
		}
		return st.GetRole() == paddockv1.Role_ROLE_LEADER, nil
	})
	elsewhere := len(ids) == len(c.endpoints) && len(named) == len(ids) &&
		!slices.ContainsFunc(named, func(l string) bool { return slices.Contains(ids, l) })
	if errors.Is(err, ErrNoLeader) && elsewhere {
		return -1, nil
	}
	return i, err
}

// status is node i's Status.
func (c *paddockCluster) status(ctx context.Context, i int) (*paddockv1.StatusResponse, error) {
	cl, err := client.New(ctx, client.Config{Endpoints: c.endpoints[i : i+1]})
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	return cl.Status(ctx, &paddockv1.StatusRequest{})
}

// NewClient returns a Go client of the whole cluster, its endpoints
// rotated per client, or of node alone (a client with that one endpoint,
// which never fails over).
func (c *paddockCluster) NewClient(ctx context.Context, node int) (Client, error) {
	var eps []string
	switch {
	case node == -1:
		k := int(c.rr.Add(1) % uint64(len(c.endpoints)))
		eps = append(append(eps, c.endpoints[k:]...), c.endpoints[:k]...)
	case node >= 0 && node < len(c.endpoints):
		eps = []string{c.endpoints[node]}
	default:
		return nil, fmt.Errorf("bench: no node %d of %d", node, len(c.endpoints))
	}
	cl, err := client.New(ctx, client.Config{Endpoints: eps})
	if err != nil {
		return nil, err
	}
	return &paddockClient{c: cl}, nil
}

// Stop SIGTERMs node i and waits for it to exit (SIGKILL after
// paddockStopTimeout, reported as an error).
func (c *paddockCluster) Stop(i int) error {
	n, err := c.node(i)
	if err != nil {
		return err
	}
	return c.stop(n)
}

// node is started node i, for Stop and Start: ErrUnsupported for an
// external cluster.
func (c *paddockCluster) node(i int) (*paddockNode, error) {
	if c.nodes == nil {
		return nil, ErrUnsupported
	}
	if i < 0 || i >= len(c.nodes) {
		return nil, fmt.Errorf("bench: no node %d", i)
	}
	return c.nodes[i], nil
}

func (c *paddockCluster) stop(n *paddockNode) error {
	if !n.running() {
		return nil
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(paddockStopTimeout)
	defer t.Stop()
	select {
	case <-n.done:
		return nil
	case <-t.C:
		_ = n.cmd.Process.Kill()
		<-n.done
		return fmt.Errorf("bench: %s still running %v after SIGTERM; killed", n.id, paddockStopTimeout)
	}
}

// Start starts node i again with its flags and data, and returns once it
// answers /healthz (it may still be catching up: the restart workload
// measures until it serves).
func (c *paddockCluster) Start(i int) error {
	n, err := c.node(i)
	if err != nil {
		return err
	}
	if n.running() {
		return fmt.Errorf("bench: %s is running", n.id)
	}
	if err := c.spawn(i); err != nil {
		return err
	}
	return c.waitHTTP(context.Background(), i, "/healthz")
}

// HoldCommand is `paddock bench hold`, which holds key as an ephemeral of
// a session with ttl until it is killed.
func (c *paddockCluster) HoldCommand(key string, ttl time.Duration) []string {
	return []string{c.bin, "bench", "hold", "--endpoints", strings.Join(c.endpoints, ","),
		"--key", key, "--ttl", ttl.String()}
}

// Close stops every agent this cluster started.
func (c *paddockCluster) Close() error {
	var errs []error
	for _, n := range c.nodes {
		if n.cmd != nil {
			errs = append(errs, c.stop(n))
		}
	}
	return errors.Join(errs...)
}

// paddockClient is the Go client: keys are znode paths as they are.
type paddockClient struct{ c *client.Client }

// Create makes a persistent znode.
func (p *paddockClient) Create(ctx context.Context, key string, value []byte) error {
	_, err := p.c.Create(ctx, &paddockv1.CreateRequest{Path: key, Data: value, Type: paddockv1.NodeType_NODE_TYPE_PERSISTENT})
	return err
}

// Put sets the znode's data, whatever its version.
func (p *paddockClient) Put(ctx context.Context, key string, value []byte) error {
	_, err := p.c.Set(ctx, &paddockv1.SetRequest{Path: key, Data: value})
	return err
}

var (
	linearizable = &paddockv1.ReadOptions{Consistency: paddockv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE}
	serializable = &paddockv1.ReadOptions{Consistency: paddockv1.ReadConsistency_READ_CONSISTENCY_SERIALIZABLE}
)

// Get reads the znode, linearizably (read index) or from the contacted
// node alone.
func (p *paddockClient) Get(ctx context.Context, key string, c Consistency) error {
	read := linearizable
	if c == Serializable {
		read = serializable
	}
	_, err := p.c.Get(ctx, &paddockv1.GetRequest{Path: key, Read: read})
	return err
}

// Exists reads linearizably: the ephemeral cleanup workload then times the
// cluster's delete, not a follower's lag behind it.
func (p *paddockClient) Exists(ctx context.Context, key string) (bool, error) {
	resp, err := p.c.Exists(ctx, &paddockv1.ExistsRequest{Path: key, Read: linearizable})
	if err != nil {
		return false, err
	}
	return resp.GetExists(), nil
}

// Watch watches key with progress reports off (only events arrive) and
// sends one arrival time per event, taken when the response is received.
func (p *paddockClient) Watch(ctx context.Context, key string) (<-chan time.Time, error) {
	w, err := p.c.Watch(ctx, key, client.WatchOptions{ProgressInterval: -1})
	if err != nil {
		return nil, err
	}
	out := make(chan time.Time, 64)
	go func() {
		defer close(out)
		defer w.Close()
		for resp := range w.Responses() {
			t := time.Now()
			for range resp.Events {
				select {
				case out <- t:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// OpenSession opens a session kept alive by the client in the background.
func (p *paddockClient) OpenSession(ctx context.Context, ttl time.Duration) (Session, error) {
	s, err := p.c.NewSession(ctx, ttl)
	if err != nil {
		return nil, err
	}
	return &paddockSession{c: p.c, s: s}, nil
}

// Close closes the client and its sessions.
func (p *paddockClient) Close() error { return p.c.Close() }

// paddockSession is a client.Session kept alive in the background.
type paddockSession struct {
	c *client.Client
	s *client.Session
}

// CreateEphemeral makes an ephemeral znode owned by the session.
func (s *paddockSession) CreateEphemeral(ctx context.Context, key string, value []byte) error {
	_, err := s.c.Create(ctx, &paddockv1.CreateRequest{
		Path: key, Data: value, Type: paddockv1.NodeType_NODE_TYPE_EPHEMERAL, SessionId: s.s.ID(),
	})
	return err
}

// Close closes the session on the cluster, deleting its ephemerals.
func (s *paddockSession) Close(ctx context.Context) error { return s.s.Close(ctx) }

// ContenderCommand is `paddock bench contend` (see Contend), its
// endpoints rotated by i so that the contenders start on different
// nodes.
func (c *paddockCluster) ContenderCommand(name string, ttl time.Duration, i int) []string {
	k := i % len(c.endpoints)
	eps := append(slices.Clone(c.endpoints[k:]), c.endpoints[:k]...)
	return []string{c.bin, "bench", "contend", "--endpoints", strings.Join(eps, ","),
		"--election", name, "--ttl", ttl.String()}
}

// Kill sends SIGKILL to node i's agent and waits until it is reaped:
// ErrUnsupported for an external cluster.
func (c *paddockCluster) Kill(i int) error {
	n, err := c.node(i)
	if err != nil {
		return err
	}
	if !n.running() {
		return fmt.Errorf("bench: %s is not running", n.id)
	}
	if err := n.cmd.Process.Kill(); err != nil {
		return fmt.Errorf("bench: kill %s: %w", n.id, err)
	}
	<-n.done
	return nil
}

// NewMutex opens a session kept alive in the background and returns a
// mutex on lock name through it (LockService Acquire and Release).
func (p *paddockClient) NewMutex(ctx context.Context, name string, ttl time.Duration) (Mutex, error) {
	s, err := p.c.NewSession(ctx, ttl)
	if err != nil {
		return nil, err
	}
	return &paddockMutex{c: p.c, s: s, name: name}, nil
}

// paddockMutex is a lock held through one session.
type paddockMutex struct {
	c     *client.Client
	s     *client.Session
	name  string
	token uint64
}

// Lock acquires the lock, waiting as long as ctx allows.
func (m *paddockMutex) Lock(ctx context.Context) error {
	for {
		resp, err := m.c.Acquire(ctx, &paddockv1.AcquireRequest{Name: m.name, SessionId: m.s.ID()})
		if err != nil {
			return err
		}
		if resp.GetAcquired() {
			m.token = resp.GetHolder().GetToken()
			return nil
		}
	}
}

// Unlock releases the lock held with the last Lock's token.
func (m *paddockMutex) Unlock(ctx context.Context) error {
	_, err := m.c.Release(ctx, &paddockv1.ReleaseRequest{Name: m.name, Token: m.token})
	return err
}

// Close closes the mutex's session.
func (m *paddockMutex) Close(ctx context.Context) error { return m.s.Close(ctx) }
