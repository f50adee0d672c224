package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// clockTicks is sysconf(_SC_CLK_TCK), the unit of utime and stime in
// /proc/PID/stat: USER_HZ, which Linux fixes at 100 on every architecture
// Go supports, so it is a constant rather than a cgo call.
const clockTicks = 100

// cpuSeconds returns the user + system CPU time of process pid so far.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("bench: cpu of %d: %w", pid, err)
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// the fields that follow start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("bench: /proc/%d/stat: no command name", pid)
	}
	// After ')': state (field 3) ... utime (14), stime (15).
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("bench: /proc/%d/stat: %d fields", pid, len(f))
	}
	var ticks uint64
	for _, s := range f[11:13] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bench: /proc/%d/stat: %w", pid, err)
		}
		ticks += v
	}
	return float64(ticks) / clockTicks, nil
}

// cpuOf returns the CPU seconds of each of pids that can be read; a
// process that has exited is left out.
func cpuOf(pids []int) map[int]float64 {
	m := make(map[int]float64, len(pids))
	for _, pid := range pids {
		if s, err := cpuSeconds(pid); err == nil {
			m[pid] = s
		}
	}
	return m
}

// cpuDelta is the CPU seconds spent between two cpuOf snapshots by the
// processes in both.
func cpuDelta(before, after map[int]float64) float64 {
	var d float64
	for pid, a := range after {
		if b, ok := before[pid]; ok {
			d += a - b
		}
	}
	return d
}

// rssBytes returns the resident set size of process pid (VmRSS).
func rssBytes(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("bench: rss of %d: %w", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		kb, ok := strings.CutSuffix(strings.TrimSpace(rest), " kB")
		if !ok {
			return 0, fmt.Errorf("bench: /proc/%d/status: VmRSS %q", pid, rest)
		}
		v, err := strconv.ParseInt(strings.TrimSpace(kb), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bench: /proc/%d/status: %w", pid, err)
		}
		return v << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("bench: /proc/%d/status: %w", pid, err)
	}
	return 0, fmt.Errorf("bench: /proc/%d/status: no VmRSS", pid)
}

// diskBytes is the space the files under dirs take on disk, as du counts
// it (allocated blocks, so preallocated log segments count in full and
// sparse holes do not).
func diskBytes(dirs []string) (int64, error) {
	var n int64
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.Type().IsRegular() {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			} else {
				n += info.Size()
			}
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("bench: disk usage: %w", err)
		}
	}
	return n, nil
}
