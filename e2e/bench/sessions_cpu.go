package main

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CPU time of the processes of `bench sessions`, from /proc (the module
// runs on Linux only: its children get a parent-death signal).

// userHZ is the unit of utime and stime in /proc/PID/stat, which Linux
// fixes at 100.
const userHZ = 100

// procStat is what /proc/PID/stat says of a process: its process group
// and its user + system CPU seconds so far.
func procStat(pid int) (pgrp int, cpu float64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// after the last ')' come state (3), ppid, pgrp (5) ... utime (14),
	// stime (15).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("bench: /proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("bench: /proc/%d/stat: %d fields", pid, len(f))
	}
	if pgrp, err = strconv.Atoi(f[2]); err != nil {
		return 0, 0, fmt.Errorf("bench: /proc/%d/stat: %w", pid, err)
	}
	var ticks uint64
	for _, s := range f[11:13] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("bench: /proc/%d/stat: %w", pid, err)
		}
		ticks += v
	}
	return pgrp, float64(ticks) / userHZ, nil
}

// cpuSnapshot is the CPU seconds of processes by PID.
type cpuSnapshot map[int]float64

// snapshotPIDs reads the CPU of pids; one that has exited is left out.
func snapshotPIDs(pids []int) cpuSnapshot {
	s := cpuSnapshot{}
	for _, pid := range pids {
		if _, cpu, err := procStat(pid); err == nil {
			s[pid] = cpu
		}
	}
	return s
}

// snapshotGroups reads the CPU of every process in the process groups
// pgids (a php -S server and the workers it forked).
func snapshotGroups(pgids []int) cpuSnapshot {
	s := cpuSnapshot{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return s
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		pgrp, cpu, err := procStat(pid)
		if err == nil && slices.Contains(pgids, pgrp) {
			s[pid] = cpu
		}
	}
	return s
}

// selfCPU is this process's user + system CPU seconds so far: the load
// generator's.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// since is the CPU seconds spent from before to s by the processes in
// both.
func (s cpuSnapshot) since(before cpuSnapshot) float64 {
	var d float64
	for pid, a := range s {
		if b, ok := before[pid]; ok {
			d += a - b
		}
	}
	return d
}
