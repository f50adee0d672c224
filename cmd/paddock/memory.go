package main

import (
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
)

// gcFlags are the agent's settings for the Go collector.
//
// A node keeps its whole state in the Go heap, and most of that heap lives
// long: the znode tree, the request id table, the watch history. The
// collector lets the heap grow to (1 + GOGC/100) times what was live after
// the last collection before it collects again, so with Go's default
// GOGC=100 a node's heap, and so its RSS, swings up to twice its state.
// GOGC=50 bounds that at 1.5 times, for a few per cent more CPU per write
// (the collector runs twice as often); the README gives the figures.
//
// The memory limit is a soft cap on the whole Go runtime's memory
// (debug.SetMemoryLimit): near it the collector runs more often,
// whatever GOGC says. It is off by default: a node whose state outgrew a
// default cap would spend its CPU collecting (up to half of it) instead
// of failing visibly. Set it below the memory the machine or container
// gives the process, with room for the state to grow.
//
// Both flags win over the GOGC and GOMEMLIMIT environment variables;
// without the flag, a variable that is set is left to the runtime.
type gcFlags struct {
	gcPercent   int
	memoryLimit byteSize
}

// defaultGCPercent is the agent's GOGC.
const defaultGCPercent = 50

func (g *gcFlags) register(fs *pflag.FlagSet) {
	fs.IntVar(&g.gcPercent, "gc-percent", defaultGCPercent,
		"heap growth between collections, in per cent of the live heap (GOGC; negative: off); the default keeps a node's heap within 1.5x its state")
	fs.Var(&g.memoryLimit, "memory-limit",
		"soft limit on the process's Go memory, e.g. 512MiB (GOMEMLIMIT); the collector works harder near it; 0: none")
}

// apply sets the collector up. Flags not given on the command line leave
// a GOGC or GOMEMLIMIT from the environment in force.
func (g *gcFlags) apply(fs *pflag.FlagSet) {
	if fs.Changed("gc-percent") || os.Getenv("GOGC") == "" {
		debug.SetGCPercent(g.gcPercent)
	}
	if fs.Changed("memory-limit") || (os.Getenv("GOMEMLIMIT") == "" && g.memoryLimit > 0) {
		limit := int64(g.memoryLimit)
		if limit == 0 {
			limit = math.MaxInt64 // the runtime's "no limit"
		}
		debug.SetMemoryLimit(limit)
	}
}

// byteSize is a flag value in bytes, written like GOMEMLIMIT: an integer
// and an optional unit B, KiB, MiB, GiB or TiB.
type byteSize int64

var byteUnits = []struct {
	suffix string
	shift  uint
}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"B", 0}}

func (b *byteSize) Set(s string) error {
	num, shift := s, uint(0)
	for _, u := range byteUnits {
		if strings.HasSuffix(s, u.suffix) {
			num, shift = strings.TrimSuffix(s, u.suffix), u.shift
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64>>shift {
		return fmt.Errorf("paddock: bad size %q: want a whole number of B, KiB, MiB, GiB or TiB, like 512MiB", s)
	}
	*b = byteSize(n << shift)
	return nil
}

// String writes b in the largest unit that divides it.
func (b *byteSize) String() string {
	for _, u := range byteUnits {
		if n := int64(*b); n != 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return "0"
}

func (b *byteSize) Type() string { return "bytes" }
