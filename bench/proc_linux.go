package bench

import "syscall"

// childProcAttr makes the kernel SIGKILL a child the runner started if the
// runner dies first, so no process outlives a crashed run.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
