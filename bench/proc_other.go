//go:build !linux

package bench

import "syscall"

// childProcAttr has nothing to add outside Linux (no parent-death
// signal); the runner kills its children itself.
func childProcAttr() *syscall.SysProcAttr { return nil }
