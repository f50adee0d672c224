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

	"github.com/paddock/paddock/e2e/child"
)

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
func startProc(bin string, nd *node) (*child.Proc, error) {
	log, err := os.OpenFile(nd.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("robust: %w", err)
	}
	defer log.Close() // the child has its own descriptor
	argv := append([]string{"netns", "exec", nd.ns, bin}, nd.args...)
	fmt.Fprintf(log, "=== robust: %s ip %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(argv, " "))
	cmd := exec.Command("ip", argv...)
	cmd.Env = child.Env()
	cmd.Dir = filepath.Dir(nd.logPath)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = sysProcAttr()
	if err := spawn(cmd); err != nil {
		return nil, fmt.Errorf("robust: start %s: %w", nd.id, err)
	}
	return child.Watch(cmd), nil
}

// checkExec checks that the process p is bin itself, not an `ip` that
// forked it: Kill, Pause and Close signal that pid alone.
func checkExec(p *child.Proc, bin string) error {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.Pid()))
	if err != nil {
		if p.Exited() {
			return nil // the caller reports the exit
		}
		return fmt.Errorf("robust: %w", err)
	}
	want, err := filepath.EvalSymlinks(bin)
	if err != nil {
		return fmt.Errorf("robust: %w", err)
	}
	if exe != want {
		return fmt.Errorf("robust: pid %d runs %s, not %s: ip netns exec did not exec the agent", p.Pid(), exe, want)
	}
	return nil
}

// errExited is wrapped by the errors of waits cut short by an agent's exit.
var errExited = errors.New("robust: agent exited")
