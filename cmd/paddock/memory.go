package main

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"

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
// A small heap is the other case: GOGC 50 of a node holding a few MiB
// collects every few MiB allocated, many times a second under load (the
// collector took 13% of each node's CPU serving PHP web sessions, whose
// state is a few MiB). The minimum headroom lets the
// heap grow at least that much past its live part between collections,
// by raising GOGC while the live heap is small: GOGC is
// max(--gc-percent, 100 x headroom / live heap), recomputed after every
// collection (gcTuner). A node whose state is larger than twice the headroom runs at
// --gc-percent, so the bound above holds for the state that needs it.
//
// The flags win over the GOGC and GOMEMLIMIT environment variables;
// without the flag, a variable that is set is left to the runtime (and
// with GOGC set, no headroom is added unless --gc-min-headroom is given).
type gcFlags struct {
	gcPercent   int
	memoryLimit byteSize
	minHeadroom byteSize
}

// defaultGCPercent is the agent's GOGC.
const defaultGCPercent = 50

// defaultMinHeadroom is the agent's minimum heap growth between
// collections.
const defaultMinHeadroom = 32 << 20

func (g *gcFlags) register(fs *pflag.FlagSet) {
	fs.IntVar(&g.gcPercent, "gc-percent", defaultGCPercent,
		"heap growth between collections, in per cent of the live heap (GOGC; negative: off); the default keeps a node's heap within 1.5x its state")
	fs.Var(&g.memoryLimit, "memory-limit",
		"soft limit on the process's Go memory, e.g. 512MiB (GOMEMLIMIT); the collector works harder near it; 0: none")
	g.minHeadroom = defaultMinHeadroom
	fs.Var(&g.minHeadroom, "gc-min-headroom",
		"least heap growth between collections, e.g. 32MiB: a small heap is not collected every few MiB allocated (GOGC is raised while the live heap is under twice this); 0: GOGC is --gc-percent")
}

// apply sets the collector up, and returns the tuner to run when it
// keeps a minimum headroom (nil otherwise). Flags not given on the
// command line leave a GOGC or GOMEMLIMIT from the environment in force.
func (g *gcFlags) apply(fs *pflag.FlagSet) *gcTuner {
	var tuner *gcTuner
	if fs.Changed("gc-percent") || os.Getenv("GOGC") == "" || fs.Changed("gc-min-headroom") {
		percent := g.gcPercent
		if !fs.Changed("gc-percent") && os.Getenv("GOGC") != "" {
			percent = debug.SetGCPercent(-1) // read the environment's
		}
		debug.SetGCPercent(percent)
		if percent >= 0 && g.minHeadroom > 0 {
			tuner = &gcTuner{percent: percent, headroom: uint64(g.minHeadroom), current: percent,
				sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
		}
	}
	if fs.Changed("memory-limit") || (os.Getenv("GOMEMLIMIT") == "" && g.memoryLimit > 0) {
		limit := int64(g.memoryLimit)
		if limit == 0 {
			limit = math.MaxInt64 // the runtime's "no limit"
		}
		debug.SetMemoryLimit(limit)
	}
	return tuner
}

// gcTuner keeps GOGC at max(percent, 100 x headroom / live heap). It
// tunes after every collection (a cleanup on a sentinel object that each
// collection frees), so the next collection's target is the live heap
// just measured plus the headroom. Tuning on a timer instead lets the
// heap overshoot: a GOGC raised for a small live heap, applied by a later
// collection to a heap that grew meanwhile, multiplies it (a node
// started under load reached 130 MB instead of 45).
type gcTuner struct {
	percent  int
	headroom uint64
	current  int
	sample   []metrics.Sample
	stopped  atomic.Bool
	tuned    func() // tests: called after each tune by a collection
}

// gcSentinel is the object whose cleanup runs once per collection. It
// holds a pointer so that it is not a tiny allocation (whose cleanups may
// never run).
type gcSentinel struct {
	_ *gcTuner
	_ [16]byte
}

// start tunes GOGC now and after every collection until stop.
func (t *gcTuner) start() {
	t.tune()
	t.arm()
}

// stop ends the tuning after the next collection; GOGC stays as it is.
func (t *gcTuner) stop() { t.stopped.Store(true) }

// arm registers the cleanup of a new sentinel, which is unreachable at
// once: the next collection frees it and runs the cleanup.
func (t *gcTuner) arm() {
	runtime.AddCleanup(&gcSentinel{}, func(t *gcTuner) {
		if t.stopped.Load() {
			return
		}
		t.tune()
		if t.tuned != nil {
			t.tuned()
		}
		t.arm()
	}, t)
}

// tune sets GOGC for the live heap of the last collection. Only the
// cleanup goroutine calls it after start, so current needs no lock.
func (t *gcTuner) tune() {
	metrics.Read(t.sample)
	if t.sample[0].Value.Kind() != metrics.KindUint64 {
		return
	}
	want := gcPercentFor(t.percent, t.headroom, t.sample[0].Value.Uint64())
	if want != t.current {
		debug.SetGCPercent(want)
		t.current = want
	}
}

// maxTunedPercent bounds the raised GOGC: a live heap of a few hundred
// KiB (before the first collection) would otherwise ask for a huge one.
const maxTunedPercent = 5000

// gcPercentFor is the GOGC that lets a heap of live bytes grow at least
// headroom bytes (and at least percent per cent) before the next
// collection. Small changes are rounded away (to a multiple of 10), so
// that a live heap moving by a few bytes does not reset GOGC each time.
func gcPercentFor(percent int, headroom, live uint64) int {
	if live == 0 {
		return percent
	}
	want := headroom * 100 / live
	if want > maxTunedPercent {
		want = maxTunedPercent
	}
	want = want / 10 * 10
	if int(want) <= percent {
		return percent
	}
	return int(want)
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
