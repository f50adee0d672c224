//go:build linux

package robust

import (
	"errors"
	"os"
	"syscall"
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
