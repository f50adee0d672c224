package main

import "syscall"

// childSysProcAttr has the kernel SIGKILL the command paddock runs while
// holding if paddock dies first (kill -9): no one would stop it once the
// holding is lost. It stays in paddock's process group.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
