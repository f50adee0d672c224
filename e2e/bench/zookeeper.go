package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/paddock/paddock/bench"
	"github.com/paddock/paddock/e2e/child"
)

// The Debian package zookeeper (3.8) ships the server as a jar whose
// manifest names its dependencies; the server's main class is the quorum
// peer. The slf4j binding and log4j jars give it a logger (its own
// log4j.properties per node, console at WARN).
const (
	zkMainClass = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
	zkJar       = "/usr/share/java/zookeeper.jar"
	zkSLF4J     = "/usr/share/java/slf4j-log4j12.jar"
	zkLog4j     = "/usr/share/java/log4j-1.2.jar"
	// zkHeap is each server JVM's maximum heap: ample for 100,000 small
	// znodes and the default in many deployment guides.
	zkHeap = "-Xmx1g"
	// zkTick is ZooKeeper's tickTime. Its default, 2s, makes the smallest
	// session timeout 4s (2 ticks), above the benchmark's 2s; 500ms allows
	// 1s to 10s and expires sessions on a 500ms grid.
	zkTick  = 500 * time.Millisecond
	zkNodes = 3
)

// zkCluster is three ZooKeeper servers (QuorumPeerMain JVMs) on loopback,
// each with its own zoo.cfg, myid and data directory. Apart from tickTime,
// an unlimited number of connections per client IP (all clients here come
// from 127.0.0.1) and the admin HTTP server turned off, the configuration is
// ZooKeeper's default (forceSync on: every transaction log write is synced).
type zkCluster struct {
	java        string
	base        string
	clientPorts []int
	peerPorts   []int
	electPorts  []int

	*procSet
}

// newZKCluster starts three servers under base and returns once each of
// them serves a synced read.
func newZKCluster(ctx context.Context, base string) (*zkCluster, error) {
	java, err := exec.LookPath("java")
	if err != nil {
		return nil, fmt.Errorf("bench: zookeeper: %w (apt-get install default-jre-headless)", err)
	}
	if _, err := os.Stat(zkJar); err != nil {
		return nil, fmt.Errorf("bench: zookeeper: %w (apt-get install zookeeper)", err)
	}
	ports, err := freePorts(3 * zkNodes)
	if err != nil {
		return nil, err
	}
	c := &zkCluster{
		java:        java,
		base:        base,
		clientPorts: ports[:zkNodes],
		peerPorts:   ports[zkNodes : 2*zkNodes],
		electPorts:  ports[2*zkNodes:],
	}
	c.procSet = newProcSet("zookeeper", zkNodes, c.launch, c.dataDir)
	for i := range zkNodes {
		if err := c.writeConfig(i); err != nil {
			return nil, err
		}
	}
	for i := range zkNodes {
		if err := c.Start(i); err != nil {
			c.Close()
			return nil, err
		}
	}
	for i := range zkNodes {
		if err := c.waitServing(ctx, i); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

func (c *zkCluster) nodeDir(i int) string { return filepath.Join(c.base, fmt.Sprintf("zk%d", i)) }
func (c *zkCluster) dataDir(i int) string { return filepath.Join(c.nodeDir(i), "data") }

// servers are the client addresses of node (or of all nodes for -1).
func (c *zkCluster) servers(node int) []string {
	if node >= 0 {
		return []string{fmt.Sprintf("127.0.0.1:%d", c.clientPorts[node])}
	}
	ss := make([]string, zkNodes)
	for i := range ss {
		ss[i] = fmt.Sprintf("127.0.0.1:%d", c.clientPorts[i])
	}
	return ss
}

// writeConfig writes node i's zoo.cfg, myid (ids are 1-based) and
// log4j.properties.
func (c *zkCluster) writeConfig(i int) error {
	if err := os.MkdirAll(c.dataDir(i), 0o755); err != nil {
		return fmt.Errorf("bench: zookeeper: %w", err)
	}
	tick := int(zkTick / time.Millisecond)
	var b strings.Builder
	fmt.Fprintf(&b, "tickTime=%d\n", tick)
	// initLimit and syncLimit are in ticks: 10s and 5s, as the stock
	// sample config's 10 and 5 ticks of 2s would be 20s and 10s.
	fmt.Fprintf(&b, "initLimit=%d\nsyncLimit=%d\n", 20, 10)
	fmt.Fprintf(&b, "dataDir=%s\n", c.dataDir(i))
	fmt.Fprintf(&b, "clientPort=%d\nclientPortAddress=127.0.0.1\n", c.clientPorts[i])
	b.WriteString("maxClientCnxns=0\n")
	b.WriteString("admin.enableServer=false\n")
	b.WriteString("4lw.commands.whitelist=ruok,srvr,mntr\n")
	for j := range zkNodes {
		fmt.Fprintf(&b, "server.%d=127.0.0.1:%d:%d\n", j+1, c.peerPorts[j], c.electPorts[j])
	}
	files := map[string]string{
		filepath.Join(c.nodeDir(i), "zoo.cfg"): b.String(),
		filepath.Join(c.dataDir(i), "myid"):    strconv.Itoa(i+1) + "\n",
		filepath.Join(c.nodeDir(i), "log4j.properties"): "log4j.rootLogger=WARN, CONSOLE\n" +
			"log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender\n" +
			"log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout\n" +
			"log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} %-5p [%t:%C{1}@%L] %m%n\n",
	}
	for path, text := range files {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			return fmt.Errorf("bench: zookeeper: %w", err)
		}
	}
	return nil
}

// launch starts server i's JVM.
func (c *zkCluster) launch(i int) (*child.Proc, error) {
	cp := strings.Join([]string{c.nodeDir(i), zkJar, zkSLF4J, zkLog4j}, ":")
	argv := []string{
		c.java, zkHeap,
		"-Dlog4j.configuration=file:" + filepath.Join(c.nodeDir(i), "log4j.properties"),
		"-cp", cp, zkMainClass, filepath.Join(c.nodeDir(i), "zoo.cfg"),
	}
	return startProc(argv, c.nodeDir(i), filepath.Join(c.nodeDir(i), "zookeeper.log"))
}

// waitServing polls until node answers a session and a synced read: a
// ZooKeeper server only accepts sessions while it is in a quorum.
func (c *zkCluster) waitServing(ctx context.Context, node int) error {
	return pollUntil(ctx, 60*time.Second, fmt.Sprintf("zookeeper node %d serving", node), func(ctx context.Context) error {
		conn, err := zkConnect(ctx, c.servers(node), 4*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		if _, err := conn.Sync("/"); err != nil {
			return err
		}
		_, _, err = conn.Get("/")
		return err
	})
}

// Name implements bench.Cluster.
func (c *zkCluster) Name() string { return "zookeeper" }

// Prepare implements bench.Cluster: ZooKeeper needs the parent /bench of
// every benchmark key.
func (c *zkCluster) Prepare(ctx context.Context) error {
	conn, err := zkConnect(ctx, c.servers(-1), 10*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Create("/bench", nil, 0, zk.WorldACL(zk.PermAll))
	if err != nil && !errors.Is(err, zk.ErrNodeExists) {
		return fmt.Errorf("bench: zookeeper create /bench: %w", err)
	}
	return nil
}

// zkClientTimeout is the session timeout of benchmark clients (not of
// benchmark sessions, which take the workload's ttl).
const zkClientTimeout = 10 * time.Second

// Leader implements bench.Cluster: the server whose answer to the srvr
// four-letter command (whitelisted in zoo.cfg) says "Mode: leader".
func (c *zkCluster) Leader(ctx context.Context) (int, error) {
	return bench.FindLeader(ctx, zkNodes, func(ctx context.Context, i int) (bool, error) {
		mode, err := zkMode(ctx, c.servers(i)[0])
		return mode == "leader", err
	})
}

// zkMode is the Mode line of a server's srvr answer: "leader",
// "follower", "standalone"; a server outside a quorum answers that it is
// not serving, an error here.
func zkMode(ctx context.Context, addr string) (string, error) {
	answer, err := zkFourLetter(ctx, addr, "srvr")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(answer, "\n") {
		if mode, ok := strings.CutPrefix(line, "Mode: "); ok {
			return strings.TrimSpace(mode), nil
		}
	}
	return "", fmt.Errorf("bench: zookeeper srvr %s: no Mode in %q", addr, answer)
}

// zkFourLetter sends the four-letter command cmd (whitelisted in
// zoo.cfg) to the server at addr and returns its answer, read until the
// server closes the connection.
func zkFourLetter(ctx context.Context, addr, cmd string) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("bench: zookeeper %s: %w", cmd, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return "", fmt.Errorf("bench: zookeeper %s: %w", cmd, err)
		}
	}
	if _, err := io.WriteString(conn, cmd); err != nil {
		return "", fmt.Errorf("bench: zookeeper %s: %w", cmd, err)
	}
	answer, err := io.ReadAll(io.LimitReader(conn, 64<<10))
	if err != nil {
		return "", fmt.Errorf("bench: zookeeper %s: %w", cmd, err)
	}
	return string(answer), nil
}

// NewClient implements bench.Cluster. A client of one node connects with
// that server's address alone: go-zookeeper only ever connects to the
// servers it is given (and reconnects to the same one), so every request
// and session of the client goes to that server.
func (c *zkCluster) NewClient(ctx context.Context, node int) (bench.Client, error) {
	if node < -1 || node >= zkNodes {
		return nil, fmt.Errorf("%w: %d", errNodeIndex, node)
	}
	servers := c.servers(node)
	conn, err := zkConnect(ctx, servers, zkClientTimeout)
	if err != nil {
		return nil, err
	}
	return &zkClient{conn: conn, servers: servers}, nil
}

// HoldCommand implements bench.Cluster: this program's hold subcommand.
func (c *zkCluster) HoldCommand(key string, ttl time.Duration) []string {
	return holdArgv("zookeeper", strings.Join(c.servers(-1), ","), key, ttl)
}

// ContenderCommand implements bench.ContenderCluster: this program's
// contend subcommand (the ZooKeeper recipe), its servers rotated by i
// (go-zookeeper shuffles them anyway).
func (c *zkCluster) ContenderCommand(name string, ttl time.Duration, i int) []string {
	ss := c.servers(-1)
	k := i % len(ss)
	return contendArgv("zookeeper", strings.Join(append(ss[k:], ss[:k]...), ","), name, ttl)
}

// zkNopLogger silences go-zookeeper, which logs every reconnect attempt
// (many while a node is stopped on purpose).
type zkNopLogger struct{}

func (zkNopLogger) Printf(string, ...any) {}

// zkConnect opens a connection and waits for its session: a ZooKeeper
// session is a connection with a timeout, negotiated by the server within
// [2, 20] ticks.
func zkConnect(ctx context.Context, servers []string, timeout time.Duration) (*zk.Conn, error) {
	conn, events, err := zk.Connect(servers, timeout, zk.WithLogger(zkNopLogger{}), zk.WithLogInfo(false))
	if err != nil {
		return nil, fmt.Errorf("bench: zookeeper connect: %w", err)
	}
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return nil, fmt.Errorf("bench: zookeeper connect: closed before a session")
			}
			if ev.State == zk.StateHasSession {
				// The channel must keep being drained for the
				// connection's life; it closes when the conn does.
				go func() {
					for range events {
					}
				}()
				return conn, nil
			}
		case <-ctx.Done():
			conn.Close()
			return nil, fmt.Errorf("bench: zookeeper connect %v: %w", servers, ctx.Err())
		}
	}
}

// zkClient is a bench.Client over one go-zookeeper connection.
type zkClient struct {
	conn    *zk.Conn
	servers []string
}

// Create implements bench.Client: a persistent znode.
func (z *zkClient) Create(ctx context.Context, key string, value []byte) error {
	if _, err := z.conn.Create(key, value, 0, zk.WorldACL(zk.PermAll)); err != nil {
		return fmt.Errorf("bench: zookeeper create %s: %w", key, err)
	}
	return nil
}

// Put implements bench.Client: setData at any version.
func (z *zkClient) Put(ctx context.Context, key string, value []byte) error {
	if _, err := z.conn.Set(key, value, -1); err != nil {
		return fmt.Errorf("bench: zookeeper set %s: %w", key, err)
	}
	return nil
}

// Get implements bench.Client. ZooKeeper reads are served by the connected
// server; its documented way to read the latest committed value is sync
// then getData, which is what a linearizable read costs there.
func (z *zkClient) Get(ctx context.Context, key string, cons bench.Consistency) error {
	if cons == bench.Linearizable {
		if _, err := z.conn.Sync(key); err != nil {
			return fmt.Errorf("bench: zookeeper sync %s: %w", key, err)
		}
	}
	if _, _, err := z.conn.Get(key); err != nil {
		return fmt.Errorf("bench: zookeeper get %s: %w", key, err)
	}
	return nil
}

// Exists implements bench.Client.
func (z *zkClient) Exists(ctx context.Context, key string) (bool, error) {
	ok, _, err := z.conn.Exists(key)
	if err != nil {
		return false, fmt.Errorf("bench: zookeeper exists %s: %w", key, err)
	}
	return ok, nil
}

// Watch implements bench.Client. ZooKeeper watches are one-shot: the loop
// records each trigger's arrival and re-arms with exists-watch (which
// covers creation, data changes and deletion) before it reports the
// trigger. Changes made between a trigger and the re-arm coalesce: they
// are not reported one by one, that is ZooKeeper's real behaviour, and a
// burst of writes to one key yields fewer events than writes. The re-arm
// is a round trip per trigger and per watcher, also as in ZooKeeper.
func (z *zkClient) Watch(ctx context.Context, key string) (<-chan time.Time, error) {
	_, _, ch, err := z.conn.ExistsW(key)
	if err != nil {
		return nil, fmt.Errorf("bench: zookeeper watch %s: %w", key, err)
	}
	out := make(chan time.Time, 1024)
	go func() {
		defer close(out)
		for {
			select {
			case ev := <-ch:
				now := time.Now()
				if ev.Type == zk.EventNotWatching || ev.Err != nil {
					return // connection closed or session expired
				}
				// Re-arm before reporting: whoever waits for this
				// event may change the key as soon as it is reported,
				// and that change must find the watch set.
				var err error
				if _, _, ch, err = z.conn.ExistsW(key); err != nil {
					return
				}
				select {
				case out <- now:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// OpenSession implements bench.Client: a ZooKeeper session is a
// connection, so this opens one with ttl as its session timeout.
func (z *zkClient) OpenSession(ctx context.Context, ttl time.Duration) (bench.Session, error) {
	conn, err := zkConnect(ctx, z.servers, ttl)
	if err != nil {
		return nil, err
	}
	return &zkSession{conn: conn}, nil
}

// Close implements bench.Client.
func (z *zkClient) Close() error {
	z.conn.Close()
	return nil
}

// NewMutex implements bench.Locker: a session (a connection to the
// client's servers with ttl as its timeout) and go-zookeeper's lock
// recipe (zk.Lock: an ephemeral sequential znode under /bench/NAME, the
// lowest holds, every other watches the one just before it).
func (z *zkClient) NewMutex(ctx context.Context, name string, ttl time.Duration) (bench.Mutex, error) {
	conn, err := zkConnect(ctx, z.servers, ttl)
	if err != nil {
		return nil, err
	}
	return &zkMutex{conn: conn, l: zk.NewLock(conn, "/bench/"+name, zk.WorldACL(zk.PermAll))}, nil
}

// zkMutex is a zk.Lock with its session's connection. zk.Lock takes no
// context: a Lock waits until the lock is held or the session fails.
type zkMutex struct {
	conn *zk.Conn
	l    *zk.Lock
}

// Lock implements bench.Mutex.
func (m *zkMutex) Lock(ctx context.Context) error { return m.l.Lock() }

// Unlock implements bench.Mutex.
func (m *zkMutex) Unlock(ctx context.Context) error { return m.l.Unlock() }

// Close implements bench.Mutex: closing the connection ends the session.
func (m *zkMutex) Close(ctx context.Context) error {
	m.conn.Close()
	return nil
}

// zkSession is one session's connection.
type zkSession struct {
	conn *zk.Conn
}

// CreateEphemeral implements bench.Session.
func (s *zkSession) CreateEphemeral(ctx context.Context, key string, value []byte) error {
	if _, err := s.conn.Create(key, value, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		return fmt.Errorf("bench: zookeeper create ephemeral %s: %w", key, err)
	}
	return nil
}

// Close implements bench.Session: closing the connection sends
// closeSession and waits for its answer, by which time the server has
// deleted the session's ephemerals.
func (s *zkSession) Close(ctx context.Context) error {
	s.conn.Close()
	return nil
}

// zkHold is the hold subcommand for ZooKeeper: it writes "ready" to w once
// key exists as an ephemeral of a session with timeout ttl, and returns the
// connection for the caller to keep open until it is killed.
func zkHold(ctx context.Context, servers, key string, ttl time.Duration, w io.Writer) (io.Closer, error) {
	conn, err := zkConnect(ctx, strings.Split(servers, ","), ttl)
	if err != nil {
		return nil, err
	}
	s := &zkSession{conn: conn}
	if err := s.CreateEphemeral(ctx, key, []byte("held")); err != nil {
		conn.Close()
		return nil, err
	}
	if _, err := io.WriteString(w, "ready\n"); err != nil {
		conn.Close()
		return nil, err
	}
	// The connection is the session: closing it ends the hold.
	return &zkClient{conn: conn}, nil
}
