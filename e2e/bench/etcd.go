package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/paddock/paddock/bench"
	"github.com/paddock/paddock/e2e/child"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

// etcdBinary is the etcd server of the Debian package etcd-server (3.4).
const etcdBinary = "etcd"

// errCreateExists is Create's error for a key that already exists.
var errCreateExists = errors.New("bench: create: key exists")

// etcdCluster is three etcd processes on loopback, statically bootstrapped
// (--initial-cluster), each with its own data directory. Everything else is
// etcd's default configuration (snapshot count, fsync per batch, quota), so
// the comparison is against etcd as it ships.
type etcdCluster struct {
	bin         string
	base        string
	clientPorts []int
	peerPorts   []int

	*procSet
}

// etcdNodes is the cluster size of every system in the comparison.
const etcdNodes = 3

// newEtcdCluster starts three etcd members under base and returns once the
// cluster has a leader and serves linearizable reads.
func newEtcdCluster(ctx context.Context, base string) (*etcdCluster, error) {
	bin, err := exec.LookPath(etcdBinary)
	if err != nil {
		return nil, fmt.Errorf("bench: etcd: %w (apt-get install etcd-server)", err)
	}
	ports, err := freePorts(2 * etcdNodes)
	if err != nil {
		return nil, err
	}
	c := &etcdCluster{
		bin:         bin,
		base:        base,
		clientPorts: ports[:etcdNodes],
		peerPorts:   ports[etcdNodes:],
	}
	c.procSet = newProcSet("etcd", etcdNodes, c.launch, c.dataDir)
	for i := range etcdNodes {
		if err := os.MkdirAll(c.nodeDir(i), 0o755); err != nil {
			return nil, fmt.Errorf("bench: etcd: %w", err)
		}
		if err := c.Start(i); err != nil {
			c.Close()
			return nil, err
		}
	}
	if err := c.waitServing(ctx, -1); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *etcdCluster) nodeDir(i int) string { return filepath.Join(c.base, fmt.Sprintf("etcd%d", i)) }
func (c *etcdCluster) dataDir(i int) string { return filepath.Join(c.nodeDir(i), "data") }
func (c *etcdCluster) clientURL(i int) string {
	return fmt.Sprintf("http://127.0.0.1:%d", c.clientPorts[i])
}
func (c *etcdCluster) peerURL(i int) string {
	return fmt.Sprintf("http://127.0.0.1:%d", c.peerPorts[i])
}

// endpoints are the client URLs of node (or of all nodes for -1).
func (c *etcdCluster) endpoints(node int) []string {
	if node >= 0 {
		return []string{c.clientURL(node)}
	}
	eps := make([]string, etcdNodes)
	for i := range eps {
		eps[i] = c.clientURL(i)
	}
	return eps
}

// launch starts member i. On a restart etcd finds its member in the
// data directory and ignores the --initial-cluster flags.
func (c *etcdCluster) launch(i int) (*child.Proc, error) {
	members := make([]string, etcdNodes)
	for j := range members {
		members[j] = fmt.Sprintf("n%d=%s", j, c.peerURL(j))
	}
	argv := []string{
		c.bin,
		"--name", fmt.Sprintf("n%d", i),
		"--data-dir", c.dataDir(i),
		"--listen-client-urls", c.clientURL(i),
		"--advertise-client-urls", c.clientURL(i),
		"--listen-peer-urls", c.peerURL(i),
		"--initial-advertise-peer-urls", c.peerURL(i),
		"--initial-cluster", strings.Join(members, ","),
		"--initial-cluster-state", "new",
		"--initial-cluster-token", "paddock-bench",
		"--logger", "zap",
		"--log-outputs", "stderr",
		"--log-level", "warn",
	}
	return startProc(argv, c.nodeDir(i), filepath.Join(c.nodeDir(i), "etcd.log"))
}

// waitServing polls until node (or the whole cluster, -1) answers a
// linearizable read, which needs a leader and a quorum.
func (c *etcdCluster) waitServing(ctx context.Context, node int) error {
	cli, err := newEtcdClient(c.endpoints(node))
	if err != nil {
		return err
	}
	defer cli.Close()
	return pollUntil(ctx, 60*time.Second, "etcd serving", func(ctx context.Context) error {
		_, err := cli.Get(ctx, "/bench-ready")
		return err
	})
}

// Name implements bench.Cluster.
func (c *etcdCluster) Name() string { return "etcd" }

// Prepare implements bench.Cluster: a flat key space needs no parents.
func (c *etcdCluster) Prepare(ctx context.Context) error { return nil }

// Leader implements bench.Cluster: the member whose Status (maintenance
// API, asked of each member's own endpoint) names itself as the leader.
func (c *etcdCluster) Leader(ctx context.Context) (int, error) {
	cli, err := newEtcdClient(c.endpoints(-1))
	if err != nil {
		return -1, err
	}
	defer cli.Close()
	return bench.FindLeader(ctx, etcdNodes, func(ctx context.Context, i int) (bool, error) {
		st, err := cli.Status(ctx, c.clientURL(i))
		if err != nil {
			return false, err
		}
		return st.Leader != 0 && st.Leader == st.Header.GetMemberId(), nil
	})
}

// NewClient implements bench.Cluster. A client of one node has that
// member's endpoint alone and no AutoSyncInterval, so it never learns the
// others' endpoints: every request goes to that member.
func (c *etcdCluster) NewClient(ctx context.Context, node int) (bench.Client, error) {
	if node < -1 || node >= etcdNodes {
		return nil, fmt.Errorf("%w: %d", errNodeIndex, node)
	}
	cli, err := newEtcdClient(c.endpoints(node))
	if err != nil {
		return nil, err
	}
	return &etcdClient{cli: cli}, nil
}

// HoldCommand implements bench.Cluster: this program's hold subcommand.
func (c *etcdCluster) HoldCommand(key string, ttl time.Duration) []string {
	return holdArgv("etcd", strings.Join(c.endpoints(-1), ","), key, ttl)
}

// ContenderCommand implements bench.ContenderCluster: this program's
// contend subcommand (etcd's election API), its endpoints rotated by i.
func (c *etcdCluster) ContenderCommand(name string, ttl time.Duration, i int) []string {
	eps := c.endpoints(-1)
	k := i % len(eps)
	return contendArgv("etcd", strings.Join(append(eps[k:], eps[:k]...), ","), name, ttl)
}

// newEtcdClient opens a clientv3 client with logging off (it would log
// every retried request of a stopped member).
func newEtcdClient(endpoints []string) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("bench: etcd client: %w", err)
	}
	return cli, nil
}

// etcdClient is a bench.Client over clientv3.
type etcdClient struct {
	cli *clientv3.Client
}

// Create implements bench.Client: a transaction that puts only if the key
// has never been created, the etcd idiom for create-if-absent.
func (e *etcdClient) Create(ctx context.Context, key string, value []byte) error {
	resp, err := e.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(value))).
		Commit()
	if err != nil {
		return fmt.Errorf("bench: etcd create %s: %w", key, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%w: %s", errCreateExists, key)
	}
	return nil
}

// Put implements bench.Client.
func (e *etcdClient) Put(ctx context.Context, key string, value []byte) error {
	if _, err := e.cli.Put(ctx, key, string(value)); err != nil {
		return fmt.Errorf("bench: etcd put %s: %w", key, err)
	}
	return nil
}

// Get implements bench.Client: etcd's Range is linearizable by default and
// served locally with WithSerializable.
func (e *etcdClient) Get(ctx context.Context, key string, cons bench.Consistency) error {
	var opts []clientv3.OpOption
	if cons == bench.Serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	if _, err := e.cli.Get(ctx, key, opts...); err != nil {
		return fmt.Errorf("bench: etcd get %s: %w", key, err)
	}
	return nil
}

// Exists implements bench.Client: a local count-only range.
func (e *etcdClient) Exists(ctx context.Context, key string) (bool, error) {
	resp, err := e.cli.Get(ctx, key, clientv3.WithCountOnly(), clientv3.WithSerializable())
	if err != nil {
		return false, fmt.Errorf("bench: etcd exists %s: %w", key, err)
	}
	return resp.Count > 0, nil
}

// Watch implements bench.Client. WithCreatedNotify makes the server send an
// empty "created" response once the watcher is registered; Watch waits for
// it, so a change made after Watch returns is delivered.
func (e *etcdClient) Watch(ctx context.Context, key string) (<-chan time.Time, error) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	wch := e.cli.Watch(wctx, key, clientv3.WithCreatedNotify())
	select {
	case resp, ok := <-wch:
		if !ok {
			cancel()
			return nil, fmt.Errorf("bench: etcd watch %s: closed before created: %w", key, ctx.Err())
		}
		if err := resp.Err(); err != nil {
			cancel()
			return nil, fmt.Errorf("bench: etcd watch %s: %w", key, err)
		}
		if !resp.Created {
			cancel()
			return nil, fmt.Errorf("bench: etcd watch %s: first response is not the created notice", key)
		}
	case <-ctx.Done():
		cancel()
		return nil, fmt.Errorf("bench: etcd watch %s: %w", key, ctx.Err())
	}
	out := make(chan time.Time, 1024)
	go func() {
		defer cancel()
		defer close(out)
		for resp := range wch {
			now := time.Now()
			for range resp.Events {
				select {
				case out <- now:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// OpenSession implements bench.Client: a lease of ttl (whole seconds,
// rounded up: etcd's TTL unit) kept alive by the client.
func (e *etcdClient) OpenSession(ctx context.Context, ttl time.Duration) (bench.Session, error) {
	secs := int64((ttl + time.Second - 1) / time.Second)
	lease, err := e.cli.Grant(ctx, secs)
	if err != nil {
		return nil, fmt.Errorf("bench: etcd grant: %w", err)
	}
	kctx, cancel := context.WithCancel(context.Background())
	ka, err := e.cli.KeepAlive(kctx, lease.ID)
	if err != nil {
		cancel()
		_, _ = e.cli.Revoke(ctx, lease.ID)
		return nil, fmt.Errorf("bench: etcd keepalive: %w", err)
	}
	// The keep-alive responses must be drained or the client logs that
	// its channel is full; they carry nothing the benchmark needs.
	go func() {
		for range ka {
		}
	}()
	return &etcdSession{cli: e.cli, id: lease.ID, cancel: cancel}, nil
}

// Close implements bench.Client.
func (e *etcdClient) Close() error { return e.cli.Close() }

// NewMutex implements bench.Locker: a concurrency.Session (a lease of ttl,
// whole seconds, kept alive) and a concurrency.Mutex on the key prefix
// /bench/NAME.
func (e *etcdClient) NewMutex(ctx context.Context, name string, ttl time.Duration) (bench.Mutex, error) {
	secs := int((ttl + time.Second - 1) / time.Second)
	s, err := concurrency.NewSession(e.cli, concurrency.WithTTL(secs))
	if err != nil {
		return nil, fmt.Errorf("bench: etcd session: %w", err)
	}
	return &etcdMutex{s: s, m: concurrency.NewMutex(s, "/bench/"+name)}, nil
}

// etcdMutex is a concurrency.Mutex with its session.
type etcdMutex struct {
	s *concurrency.Session
	m *concurrency.Mutex
}

// Lock implements bench.Mutex.
func (m *etcdMutex) Lock(ctx context.Context) error { return m.m.Lock(ctx) }

// Unlock implements bench.Mutex.
func (m *etcdMutex) Unlock(ctx context.Context) error { return m.m.Unlock(ctx) }

// Close implements bench.Mutex: it revokes the session's lease.
func (m *etcdMutex) Close(ctx context.Context) error { return m.s.Close() }

// etcdSession is a lease with a keep-alive.
type etcdSession struct {
	cli    *clientv3.Client
	id     clientv3.LeaseID
	cancel context.CancelFunc
}

// CreateEphemeral implements bench.Session: a put attached to the lease,
// deleted by etcd when the lease ends.
func (s *etcdSession) CreateEphemeral(ctx context.Context, key string, value []byte) error {
	if _, err := s.cli.Put(ctx, key, string(value), clientv3.WithLease(s.id)); err != nil {
		return fmt.Errorf("bench: etcd put %s with lease: %w", key, err)
	}
	return nil
}

// Close implements bench.Session: revoking the lease deletes its keys at
// once.
func (s *etcdSession) Close(ctx context.Context) error {
	s.cancel()
	if _, err := s.cli.Revoke(ctx, s.id); err != nil {
		return fmt.Errorf("bench: etcd revoke: %w", err)
	}
	return nil
}

// etcdHold is the hold subcommand for etcd: it writes "ready" to w once key
// exists under a kept-alive lease, then returns the client for the caller
// to keep open until it is killed.
func etcdHold(ctx context.Context, endpoints, key string, ttl time.Duration, w io.Writer) (io.Closer, error) {
	cli, err := newEtcdClient(strings.Split(endpoints, ","))
	if err != nil {
		return nil, err
	}
	c := &etcdClient{cli: cli}
	s, err := c.OpenSession(ctx, ttl)
	if err != nil {
		cli.Close()
		return nil, err
	}
	if err := s.CreateEphemeral(ctx, key, []byte("held")); err != nil {
		cli.Close()
		return nil, err
	}
	if _, err := io.WriteString(w, "ready\n"); err != nil {
		cli.Close()
		return nil, err
	}
	return cli, nil
}
