package robust

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// proc is one run of an agent process.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has been waited for
	err  error         // Wait's error, set before done is closed
}

// pid is the agent's pid (ip netns exec execs the agent in its place).
func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill SIGKILLs the process, unless it has ended, and waits for its end.
func (p *proc) kill() {
	if !p.exited() {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

// spawnReq asks the spawner goroutine to start cmd.
type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	spawnOnce sync.Once
	spawnCh   chan spawnReq
)

// spawn starts cmd from one goroutine locked to its OS thread for the rest
// of the process's life. The kernel sends an agent its parent-death signal
// when the thread that forked it ends, not the process: the Go runtime
// ends a thread when a goroutine exits while locked to it (as code that
// enters namespaces does), and an agent forked from such a thread would be
// killed in the middle of a test. No other goroutine ever runs on the
// spawner's thread, so it ends only with the process.
func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnCh = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked, see above
			for r := range spawnCh {
				r.done <- r.cmd.Start()
			}
		}()
	})
	r := spawnReq{cmd: cmd, done: make(chan error, 1)}
	spawnCh <- r
	return <-r.done
}

// startProc starts the agent of node nd in its namespace, appending its
// stdout and stderr to its log.
func startProc(bin string, nd *node) (*proc, error) {
	log, err := os.OpenFile(nd.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("robust: %w", err)
	}
	defer log.Close() // the child has its own descriptor
	argv := append([]string{"netns", "exec", nd.ns, bin}, nd.args...)
	fmt.Fprintf(log, "=== robust: %s ip %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(argv, " "))
	cmd := exec.Command("ip", argv...)
	cmd.Env = childEnv()
	cmd.Dir = filepath.Dir(nd.logPath)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = sysProcAttr()
	if err := spawn(cmd); err != nil {
		return nil, fmt.Errorf("robust: start %s: %w", nd.id, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// childEnv is the test's environment without PADDOCK_ENDPOINTS (agents
// take none) and with GORACE's exit delay off, so that a race-built agent
// exits at once.
func childEnv() []string {
	var env []string
	gorace := "atexit_sleep_ms=0"
	for _, kv := range os.Environ() {
		switch {
		case strings.HasPrefix(kv, "PADDOCK_ENDPOINTS="):
		case strings.HasPrefix(kv, "GORACE="):
			gorace = strings.TrimPrefix(kv, "GORACE=") + " " + gorace
		default:
			env = append(env, kv)
		}
	}
	return append(env, "GORACE="+gorace)
}

// checkExec checks that the process p is bin itself, not an `ip` that
// forked it: Kill, Pause and Close signal that pid alone.
func checkExec(p *proc, bin string) error {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.pid()))
	if err != nil {
		if p.exited() {
			return nil // the caller reports the exit
		}
		return fmt.Errorf("robust: %w", err)
	}
	want, err := filepath.EvalSymlinks(bin)
	if err != nil {
		return fmt.Errorf("robust: %w", err)
	}
	if exe != want {
		return fmt.Errorf("robust: pid %d runs %s, not %s: ip netns exec did not exec the agent", p.pid(), exe, want)
	}
	return nil
}

// tail returns the last n bytes of the file at path.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = append([]byte("...\n"), b[len(b)-n:]...)
	}
	return string(b)
}

// errExited is wrapped by the errors of waits cut short by an agent's exit.
var errExited = errors.New("robust: agent exited")
