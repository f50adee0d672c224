package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/paddock/paddock/e2e/child"
)

// stopGrace is how long a server gets to exit after SIGTERM before it is
// killed: etcd and the ZooKeeper JVM both exit within a second or two.
const stopGrace = 15 * time.Second

// startProc starts argv with its stdout and stderr appended to logPath. The
// child gets SIGKILL if this program dies first (Pdeathsig), so a crashed
// benchmark leaves no servers behind. Only processes started here are ever
// signalled, and only by their own PID.
func startProc(argv []string, dir, logPath string) (*child.Proc, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("bench: open log: %w", err)
	}
	defer lf.Close() // the child has its own descriptor
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Stdout = lf
	cmd.Stderr = lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start %s: %w", filepath.Base(argv[0]), err)
	}
	return child.Watch(cmd), nil
}

// stopProc sends SIGTERM, waits up to stopGrace, then sends SIGKILL, and
// returns once the process is reaped.
func stopProc(p *child.Proc) error {
	if p.Exited() {
		return nil
	}
	_ = p.Signal(syscall.SIGTERM)
	if p.Wait(stopGrace) {
		return nil
	}
	p.Kill()
	return fmt.Errorf("bench: pid %d ignored SIGTERM for %v, killed", p.Pid(), stopGrace)
}

// freePorts returns n distinct loopback TCP ports that were free a moment
// ago: all listeners are held open until every port is picked, so the n
// ports differ from one another.
func freePorts(n int) ([]int, error) {
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("bench: free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// pollUntil calls f every interval until it returns nil, ctx ends, or the
// timeout passes; the error says what f last reported.
func pollUntil(ctx context.Context, timeout time.Duration, what string, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		attempt, cancelAttempt := context.WithTimeout(ctx, 2*time.Second)
		last = f(attempt)
		cancelAttempt()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bench: %s: %w (last: %v)", what, ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// errNodeIndex is returned for a node index outside the cluster.
var errNodeIndex = errors.New("bench: node index out of range")

// procSet is a cluster's server processes, one slot per node, and the
// parts of bench.Cluster that do not depend on the system: Nodes, PIDs,
// DataDirs, Stop, Start, Close. launch starts node i's process (on a
// restart, on the same ports and data); dataDir is node i's data
// directory.
type procSet struct {
	name    string
	launch  func(i int) (*child.Proc, error)
	dataDir func(i int) string

	mu    sync.Mutex
	procs []*child.Proc
}

func newProcSet(name string, nodes int, launch func(int) (*child.Proc, error), dataDir func(int) string) *procSet {
	return &procSet{name: name, launch: launch, dataDir: dataDir, procs: make([]*child.Proc, nodes)}
}

// Nodes implements bench.Cluster.
func (s *procSet) Nodes() int { return len(s.procs) }

// DataDirs implements bench.Cluster.
func (s *procSet) DataDirs() []string {
	ds := make([]string, len(s.procs))
	for i := range ds {
		ds[i] = s.dataDir(i)
	}
	return ds
}

// PIDs implements bench.Cluster: the running servers.
func (s *procSet) PIDs() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var pids []int
	for _, p := range s.procs {
		if p != nil && !p.Exited() {
			pids = append(pids, p.Pid())
		}
	}
	return pids
}

// Stop implements bench.Cluster: SIGTERM, on which every system here
// stops cleanly (SIGKILL after a grace period, see stopProc).
func (s *procSet) Stop(node int) error {
	if node < 0 || node >= len(s.procs) {
		return fmt.Errorf("%w: %d", errNodeIndex, node)
	}
	s.mu.Lock()
	p := s.procs[node]
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	return stopProc(p)
}

// Kill implements bench.Killer: SIGKILL, a crash.
func (s *procSet) Kill(node int) error {
	if node < 0 || node >= len(s.procs) {
		return fmt.Errorf("%w: %d", errNodeIndex, node)
	}
	s.mu.Lock()
	p := s.procs[node]
	s.mu.Unlock()
	if p == nil || p.Exited() {
		return fmt.Errorf("bench: %s node %d is not running", s.name, node)
	}
	p.Kill()
	return nil
}

// Start implements bench.Cluster: it returns once the process is
// launched; the caller measures when it serves.
func (s *procSet) Start(node int) error {
	if node < 0 || node >= len(s.procs) {
		return fmt.Errorf("%w: %d", errNodeIndex, node)
	}
	s.mu.Lock()
	p := s.procs[node]
	s.mu.Unlock()
	if p != nil && !p.Exited() {
		return fmt.Errorf("bench: %s node %d is running", s.name, node)
	}
	p, err := s.launch(node)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.procs[node] = p
	s.mu.Unlock()
	return nil
}

// Close implements bench.Cluster: it stops every server, returning the
// first error.
func (s *procSet) Close() error {
	s.mu.Lock()
	ps := append([]*child.Proc(nil), s.procs...)
	s.mu.Unlock()
	var first error
	for _, p := range ps {
		if p == nil {
			continue
		}
		if err := stopProc(p); err != nil && first == nil {
			first = err
		}
	}
	return first
}
