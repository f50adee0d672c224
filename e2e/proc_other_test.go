//go:build !linux

package e2e

import "syscall"

// sysProcAttr: only Linux has a parent-death signal; elsewhere cleanups
// alone stop the children.
func sysProcAttr() *syscall.SysProcAttr { return nil }
