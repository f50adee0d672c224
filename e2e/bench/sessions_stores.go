package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/paddock/paddock/e2e/child"
)

// The session stores of `bench sessions`, each started fresh for its rows
// on free loopback ports, with the php.ini settings and environment that
// make PHP keep its sessions there.

// Store keys, in report order: the --stores values.
const (
	storePaddock     = "paddock"
	storePaddockDly  = "paddock-delayed"
	storePaddockD0   = "paddock-delayed-0ms"
	storeRedisLock   = "redis-lock"
	storeRedis       = "redis"
	storeMemcached   = "memcached"
	storeStartBudget = 30 * time.Second
)

var sessionStores = []string{storePaddock, storePaddockDly, storePaddockD0, storeRedisLock, storeRedis, storeMemcached}

// storeLabels are the stores' names in the table.
var storeLabels = map[string]string{
	storePaddock:    "Paddock (3 nodes, write-through)",
	storePaddockDly: "Paddock (3 nodes, delayed write, its 100 ms window)",
	storePaddockD0:  "Paddock (3 nodes, delayed write, --web-session-flush-delay 0)",
	storeRedisLock:  "Redis, phpredis locking on",
	storeRedis:      "Redis, phpredis locking off (as shipped)",
	storeMemcached:  "memcached, php-memcached sess_locking on",
}

// sessionStore is a running store: its server processes, what the web
// servers need to use it, and which process the kill row kills.
type sessionStore struct {
	key   string
	procs *procSet
	// ini are php -d settings of every web server; env(i) is web server
	// i's extra environment.
	ini []string
	env func(i int) []string
	// victim is the node the kill row kills (the Paddock leader).
	victim func(ctx context.Context) (int, error)
	// what describes the victim, for the log.
	what string
	// applied, when set, is the raft commands the store's leader has
	// applied so far (Paddock's paddock_applied_commands_total).
	applied func(ctx context.Context) (float64, error)
}

// storeConfig is what starting a store needs.
type storeConfig struct {
	paddockBin, paddockPHP string
	agentArgs              []string
}

// startStore starts store key's servers under dir and waits until they
// serve.
func startStore(ctx context.Context, key string, cfg storeConfig, dir string) (*sessionStore, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, storeStartBudget)
	defer cancel()
	switch key {
	case storePaddock, storePaddockDly, storePaddockD0:
		return startPaddockStore(ctx, cfg, dir, key)
	case storeRedisLock, storeRedis:
		return startRedisStore(ctx, dir, key == storeRedisLock)
	case storeMemcached:
		return startMemcachedStore(ctx, dir)
	}
	return nil, fmt.Errorf("bench: unknown store %q", key)
}

// startPaddockStore starts three agents; web server i lists node i's HTTP
// address first.
func startPaddockStore(ctx context.Context, cfg storeConfig, dir, key string) (*sessionStore, error) {
	const nodes = 3
	ports, err := freePorts(3 * nodes)
	if err != nil {
		return nil, err
	}
	ids := make([]string, nodes)
	httpAddrs := make([]string, nodes)
	var bootstrap []string
	for i := range nodes {
		ids[i] = fmt.Sprintf("n%d", i+1)
		httpAddrs[i] = fmt.Sprintf("127.0.0.1:%d", ports[3*i+1])
		bootstrap = append(bootstrap, fmt.Sprintf("%s=127.0.0.1:%d", ids[i], ports[3*i+2]))
	}
	dataDir := func(i int) string { return filepath.Join(dir, ids[i]) }
	// The HTTP addresses, for whoever profiles the nodes (--agent-arg=--pprof).
	if err := os.WriteFile(filepath.Join(dir, "http-addrs"), []byte(strings.Join(httpAddrs, "\n")+"\n"), 0o644); err != nil {
		return nil, err
	}
	launch := func(i int) (*child.Proc, error) {
		args := child.AgentArgs(ids[i], dataDir(i), fmt.Sprintf("127.0.0.1:%d", ports[3*i+2]),
			fmt.Sprintf("127.0.0.1:%d", ports[3*i]), httpAddrs[i], bootstrap)
		args = append(args, "--log-level", "warn")
		if key == storePaddockD0 {
			args = append(args, "--web-session-flush-delay", "0s")
		}
		args = append(args, cfg.agentArgs...)
		return startProc(append([]string{cfg.paddockBin}, args...),
			dir, filepath.Join(dir, ids[i]+".log"))
	}
	s := &sessionStore{
		key:   key,
		procs: newProcSet(key, nodes, launch, dataDir),
		ini:   []string{"auto_prepend_file=" + cfg.paddockPHP},
		env: func(i int) []string {
			var eps []string
			for j := range nodes {
				eps = append(eps, httpAddrs[(i+j)%nodes])
			}
			env := []string{"PADDOCK_HTTP_ENDPOINTS=" + strings.Join(eps, ",")}
			if key == storePaddockDly || key == storePaddockD0 {
				env = append(env, "PADDOCK_SESSION_MODE=delayed")
			}
			return env
		},
		what: "the leader agent",
	}
	s.victim = func(ctx context.Context) (int, error) { return paddockLeader(ctx, httpAddrs) }
	s.applied = func(ctx context.Context) (float64, error) {
		l, err := paddockLeader(ctx, httpAddrs)
		if err != nil {
			return 0, err
		}
		return appliedCommands(ctx, "http://"+httpAddrs[l]+"/metrics")
	}
	for i := range nodes {
		if err := s.procs.Start(i); err != nil {
			return nil, errors.Join(err, s.procs.Close())
		}
	}
	for i := range nodes {
		err := pollUntil(ctx, storeStartBudget, ids[i]+" ready", func(ctx context.Context) error {
			return httpOK(ctx, "http://"+httpAddrs[i]+"/readyz")
		})
		if err != nil {
			return nil, errors.Join(err, s.procs.Close())
		}
	}
	if _, err := paddockLeader(ctx, httpAddrs); err != nil {
		return nil, errors.Join(err, s.procs.Close())
	}
	return s, nil
}

// paddockLeader is the index of the node that says it leads, is ready and
// is named leader by itself, polled until ctx ends.
func paddockLeader(ctx context.Context, httpAddrs []string) (int, error) {
	leader := -1
	err := pollUntil(ctx, storeStartBudget, "paddock leader", func(ctx context.Context) error {
		for i, a := range httpAddrs {
			var st struct {
				ID       string `json:"id"`
				LeaderID string `json:"leader_id"`
				Role     string `json:"role"`
				Ready    bool   `json:"ready"`
			}
			if err := getJSON(ctx, "http://"+a+"/v1/cluster/status", &st); err != nil {
				continue // a node down: ask the others
			}
			if st.Role == "ROLE_LEADER" && st.Ready && st.LeaderID == st.ID {
				leader = i
				return nil
			}
		}
		return errors.New("no node leads")
	})
	return leader, err
}

var appliedLine = regexp.MustCompile(`(?m)^paddock_applied_commands_total\{op="[a-z_]+"\} (\S+)$`)

// appliedCommands sums paddock_applied_commands_total over its ops.
func appliedCommands(ctx context.Context, url string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	ms := appliedLine.FindAllSubmatch(b, -1)
	if len(ms) == 0 {
		return 0, fmt.Errorf("no paddock_applied_commands_total in %s", url)
	}
	var sum float64
	for _, m := range ms {
		v, err := strconv.ParseFloat(string(m[1]), 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", url, err)
		}
		sum += v
	}
	return sum, nil
}

// startRedisStore starts one redis-server with its default persistence
// (RDB snapshots at the default save points, no AOF, as Debian's
// redis.conf), data in dir so a restart loads what was saved.
func startRedisStore(ctx context.Context, dir string, locking bool) (*sessionStore, error) {
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	launch := func(int) (*child.Proc, error) {
		return startProc([]string{"redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(ports[0]),
			"--dir", dir, "--daemonize", "no", "--appendonly", "no", "--save", "3600 1 300 100 60 10000"},
			dir, filepath.Join(dir, "redis.log"))
	}
	lock := "0"
	key := storeRedis
	if locking {
		lock, key = "1", storeRedisLock
	}
	s := &sessionStore{
		key:   key,
		procs: newProcSet("redis", 1, launch, func(int) string { return dir }),
		ini: []string{"session.save_handler=redis", "session.save_path=tcp://" + addr,
			"redis.session.locking_enabled=" + lock},
		env:    func(int) []string { return nil },
		victim: func(context.Context) (int, error) { return 0, nil },
		what:   "redis-server",
	}
	if err := s.procs.Start(0); err != nil {
		return nil, err
	}
	err = pollUntil(ctx, storeStartBudget, "redis-server", func(ctx context.Context) error {
		return lineProbe(ctx, addr, "PING\r\n", "+PONG")
	})
	if err != nil {
		return nil, errors.Join(err, s.procs.Close())
	}
	return s, nil
}

// startMemcachedStore starts one memcached (64 MB, its default).
func startMemcachedStore(ctx context.Context, dir string) (*sessionStore, error) {
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	argv := []string{"memcached", "-l", "127.0.0.1", "-p", strconv.Itoa(ports[0]), "-U", "0"}
	if os.Geteuid() == 0 {
		// memcached refuses root without -u; another user would clear
		// the parent-death signal when it switches.
		argv = append(argv, "-u", "root")
	}
	launch := func(int) (*child.Proc, error) {
		return startProc(argv, dir, filepath.Join(dir, "memcached.log"))
	}
	s := &sessionStore{
		key:   storeMemcached,
		procs: newProcSet("memcached", 1, launch, func(int) string { return dir }),
		ini: []string{"session.save_handler=memcached", "session.save_path=" + addr,
			"memcached.sess_locking=1"},
		env:    func(int) []string { return nil },
		victim: func(context.Context) (int, error) { return 0, nil },
		what:   "memcached",
	}
	if err := s.procs.Start(0); err != nil {
		return nil, err
	}
	err = pollUntil(ctx, storeStartBudget, "memcached", func(ctx context.Context) error {
		return lineProbe(ctx, addr, "version\r\n", "VERSION")
	})
	if err != nil {
		return nil, errors.Join(err, s.procs.Close())
	}
	return s, nil
}

// lineProbe sends req to addr and wants a first line starting with want.
func lineProbe(ctx context.Context, addr, req, want string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := conn.Write([]byte(req)); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, want) {
		return fmt.Errorf("answered %q, want %s", strings.TrimSpace(line), want)
	}
	return nil
}

// probeClient is the HTTP client of readiness checks: loopback, no proxy.
var probeClient = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{}}

func httpOK(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// sessionPage is the site's one page, the same for every store: it
// counts the session's page views in $_SESSION['n'] and prints the count.
// Any warning (a session that cannot be read, locked or written: PHP
// reports a failed write as a warning only, and session_write_close
// still returns true) makes it a 500, so that the load generator counts
// it as failed instead of trusting a count that was not stored. op=peek
// reads the count without the lock or a write; op=ping is for readiness.
const sessionPage = `<?php
$op = $_GET['op'] ?? 'inc';
if ($op === 'ping') {
    echo "pong\n";
    return;
}
error_clear_last();
if (!session_start($op === 'peek' ? ['read_and_close' => true] : [])) {
    http_response_code(503);
    echo "session_start failed\n";
    return;
}
if ($op === 'inc') {
    $_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
    session_write_close();
}
$e = error_get_last();
if ($e !== null) {
    http_response_code(500);
    echo 'error: ', $e['message'], "\n";
    return;
}
echo 'n=', $_SESSION['n'] ?? 0, "\n";
`

// webServer is one `php -S` server, leading its own process group so that
// its workers are stopped with it.
type webServer struct {
	addr string
	p    *child.Proc
}

// webIni are the php -d settings every web server gets, whatever the
// store: errors to the server's log; opcache on as on any production PHP
// (php-cli has it off; the Paddock handler is PHP code that would
// otherwise be compiled on every request); max_execution_time 30 as
// php.ini ships it for the web (php-cli has 0, which phpredis would take
// as its lock's lifetime); PHP's defaults for the sessions otherwise.
var webIni = []string{"display_errors=0", "log_errors=1", "error_log=", "opcache.enable_cli=1",
	"max_execution_time=30", "session.use_strict_mode=0"}

// startWebServers starts n php -S servers for store s, serving docroot.
func startWebServers(ctx context.Context, php, docroot, logDir string, n, workers int, s *sessionStore) ([]*webServer, error) {
	ports, err := freePorts(n)
	if err != nil {
		return nil, err
	}
	var ws []*webServer
	for i := range n {
		w := &webServer{addr: fmt.Sprintf("127.0.0.1:%d", ports[i])}
		var args []string
		// sys_temp_dir: the run's directory, for what a handler keeps
		// between requests (the Paddock handler: the leader's address).
		ini := append(append(append([]string(nil), webIni...), s.ini...), "sys_temp_dir="+logDir)
		for _, kv := range ini {
			args = append(args, "-d", kv)
		}
		args = append(args, "-S", w.addr, "-t", docroot)
		logf, err := os.OpenFile(filepath.Join(logDir, fmt.Sprintf("web%d.log", i+1)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			stopWebServers(ws)
			return nil, fmt.Errorf("bench: %w", err)
		}
		cmd := exec.Command(php, args...)
		cmd.Env = append(append(os.Environ(), "PHP_CLI_SERVER_WORKERS="+strconv.Itoa(workers)), s.env(i)...)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		err = cmd.Start()
		logf.Close()
		if err != nil {
			stopWebServers(ws)
			return nil, fmt.Errorf("bench: start php -S: %w", err)
		}
		w.p = child.Watch(cmd)
		ws = append(ws, w)
	}
	for _, w := range ws {
		err := pollUntil(ctx, storeStartBudget, "php -S "+w.addr, func(ctx context.Context) error {
			if w.p.Exited() {
				return fmt.Errorf("exited: %v", w.p.Err())
			}
			return httpOK(ctx, "http://"+w.addr+"/?op=ping")
		})
		if err != nil {
			stopWebServers(ws)
			return nil, err
		}
	}
	return ws, nil
}

// stopWebServers kills each server's process group (its id is the PID of
// the server this program started) and waits for the server.
func stopWebServers(ws []*webServer) {
	for _, w := range ws {
		_ = syscall.Kill(-w.p.Pid(), syscall.SIGKILL)
		w.p.Kill()
	}
}
