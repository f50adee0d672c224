//go:build !linux

package boltlog

// dropResident does nothing where the advice is not wired up.
func dropResident(addr uintptr, size int64) {}
