package boltlog

import "golang.org/x/sys/unix"

// dropResident tells the kernel that this process no longer needs the
// pages of the file it has mapped: they leave its resident set (and the
// RSS operators watch) but stay in the page cache, and a later read of
// one faults it back in unchanged. bbolt maps the file shared and read
// only and writes with pwrite, so the page cache always holds what the
// mapping shows and nothing is lost. The caller holds a transaction, so
// bbolt cannot remap the file meanwhile: addr and size describe the
// current mapping (size, the transaction's view of the file, never
// exceeds it).
func dropResident(addr uintptr, size int64) {
	if addr == 0 || size <= 0 {
		return
	}
	// An error (the range no longer mapped) only means nothing was
	// dropped; the advice never changes what a read returns.
	_, _, _ = unix.Syscall(unix.SYS_MADVISE, addr, uintptr(size), unix.MADV_DONTNEED)
}
