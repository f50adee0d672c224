//go:build linux

package robust

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// supported is false where the harness cannot run at all.
const supported = true

// sysProcAttr puts an agent in its own process group, so that a Ctrl-C at
// the test's terminal does not reach it, and has the kernel SIGKILL it when
// the thread that forked it ends (see spawn).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// pauseSignal and resumeSignal stop and continue a process.
var pauseSignal, resumeSignal os.Signal = syscall.SIGSTOP, syscall.SIGCONT

// lockFile takes an exclusive lock on f, waiting for it.
func lockFile(f *os.File) error { return syscall.Flock(int(f.Fd()), syscall.LOCK_EX) }

// unlockFile releases lockFile's lock.
func unlockFile(f *os.File) error { return syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }

// pidExists reports whether a process with this pid exists in this PID
// namespace (EPERM: it exists but is not ours to signal).
func pidExists(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// waitStopped waits until every thread of pid is in the stopped state.
// kill(2) returns once SIGSTOP is queued; the threads stop when the kernel
// next schedules them, which on a loaded machine can be after the caller's
// next request has been answered.
func waitStopped(pid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		stopped, err := allStopped(pid)
		if err != nil || stopped {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("robust: pid %d not stopped after %s", pid, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// allStopped reports whether every thread of pid is stopped ('T' or 't' in
// /proc/PID/task/TID/stat).
func allStopped(pid int) (bool, error) {
	stats, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(stats) == 0 {
		return false, fmt.Errorf("robust: threads of pid %d: %v", pid, err)
	}
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			return false, nil // a thread ended while we looked: look again
		}
		// The state follows the command name, which is in parentheses
		// and may itself hold spaces or parentheses.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 >= len(s) {
			return false, fmt.Errorf("robust: %s: unexpected %q", p, s)
		}
		if st := s[i+2]; st != 'T' && st != 't' {
			return false, nil
		}
	}
	return true, nil
}
