//go:build !linux

package main

import "syscall"

// childSysProcAttr is nil where the kernel cannot kill a child with its
// parent: a command whose paddock was killed runs on (see child_linux.go).
func childSysProcAttr() *syscall.SysProcAttr { return nil }
