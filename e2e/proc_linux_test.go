//go:build linux

package e2e

import "syscall"

// sysProcAttr makes the kernel SIGKILL a child if the test binary dies
// without running its cleanups (a -timeout panic), so no agent outlives
// the run.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
