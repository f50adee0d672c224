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
// collection (gcTuner). A node whose state is larger than 100 x headroom /
// --gc-percent (twice the headroom at 50) runs at --gc-percent, so the
// bound above holds for the state that needs it.
//
// The flags win over the GOGC and GOMEMLIMIT environment variables;
// without the flag, a variable that is set is left to the runtime (and
// with GOGC set and neither --gc-percent nor --gc-min-headroom given, no
// headroom is added).
type gcFlags struct {
	gcPercent   int
	memoryLimit byteSize
	minHeadroom byteSize
}

// defaultGCPercent is the agent's GOGC.
const defaultGCPercent = 50

// defaultMinHeadroom is the agent's minimum heap growth between
// collections.
const defaultMinHeadroom = 16 << 20

func (g *gcFlags) register(fs *pflag.FlagSet) {
	fs.IntVar(&g.gcPercent, "gc-percent", defaultGCPercent,
		"heap growth between collections, in per cent of the live heap (GOGC; negative: off); the default keeps a node's heap within 1.5x its state")
	fs.Var(&g.memoryLimit, "memory-limit",
		"soft limit on the process's Go memory, e.g. 512MiB (GOMEMLIMIT); the collector works harder near it; 0: none")
	g.minHeadroom = defaultMinHeadroom
	fs.Var(&g.minHeadroom, "gc-min-headroom",
		"least heap growth between collections, e.g. 16MiB: a small heap is not collected every few MiB allocated (GOGC is raised to about 100 x this / live heap when that is more than --gc-percent); 0: GOGC is --gc-percent")
}

// apply sets the collector up, and returns the tuner to run when it
// keeps a minimum headroom (nil otherwise). Flags not given on the
// command line leave a GOGC or GOMEMLIMIT from the environment in force.
func (g *gcFlags) apply(fs *pflag.FlagSet) *gcTuner {
	var tuner *gcTuner
	if fs.Changed("gc-percent") || os.Getenv("GOGC") == "" || fs.Changed("gc-min-headroom") {
		percent := g.gcPercent
		if !fs.Changed("gc-percent") && os.Getenv("GOGC") != "" {
			percent = environmentGCPercent()
		}
		debug.SetGCPercent(percent)
		if percent >= 0 && g.minHeadroom > 0 {
			tuner = newGCTuner(percent, uint64(g.minHeadroom))
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

// environmentGCPercent is the GOGC the runtime took from the environment
// (-1: off).
func environmentGCPercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return defaultGCPercent
	}
	if p := s[0].Value.Uint64(); p <= math.MaxInt32 {
		return int(p)
	}
	return -1
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
		// The next sentinel first: a collection that starts while this
		// one tunes frees it.
		t.arm()
		t.tune()
		if t.tuned != nil {
			t.tuned()
		}
	}, t)
}

// tune sets GOGC for the heap the last collection found: its live heap,
// and the stacks and globals it scanned, which the runtime counts in
// GOGC's base too.
func (t *gcTuner) tune() {
	metrics.Read(t.sample)
	var v [3]uint64
	for i, m := range t.sample {
		if m.Value.Kind() != metrics.KindUint64 {
			return
		}
		v[i] = m.Value.Uint64()
	}
	want := gcPercentFor(t.percent, t.headroom, v[0], v[1]+v[2])
	if want != t.current {
		debug.SetGCPercent(want)
		t.current = want
	}
}

// gcTunerMetrics are what tune reads: the live heap, then the stacks and
// globals, of the last collection.
var gcTunerMetrics = []string{"/gc/heap/live:bytes", "/gc/scan/stack:bytes", "/gc/scan/globals:bytes"}

// newGCTuner returns a tuner of GOGC percent with headroom bytes.
func newGCTuner(percent int, headroom uint64) *gcTuner {
	t := &gcTuner{percent: percent, headroom: headroom, current: percent}
	for _, name := range gcTunerMetrics {
		t.sample = append(t.sample, metrics.Sample{Name: name})
	}
	return t
}

// maxTunedPercent bounds the raised GOGC, whatever the headroom.
const maxTunedPercent = 5000

// runtimeHeapMinimum is the Go runtime's smallest heap goal at GOGC 100;
// at GOGC g it is g/100 times that (runtime/mgcpacer.go): a GOGC of
// thousands for a heap of 1 MiB would put the next collection at a
// hundred MiB or more, whatever the live heap.
const runtimeHeapMinimum = 4 << 20

// gcPercentFor is the GOGC that lets a heap of live bytes, with scanned
// bytes of stacks and globals, grow about headroom bytes (and at least
// percent per cent) before the next collection: the runtime's goal is
// live + (live + scanned) x GOGC/100, and never below its minimum heap,
// which GOGC scales. Small changes are rounded away (to a multiple of
// 10), so that a live heap moving by a few bytes does not reset GOGC
// each time.
func gcPercentFor(percent int, headroom, live, scanned uint64) int {
	if live == 0 {
		return percent // no collection yet
	}
	want := headroom * 100 / (live + scanned)
	// The minimum heap at want must stay within live + headroom.
	if limit := (live + headroom) * 100 / runtimeHeapMinimum; want > limit {
		want = limit
	}
	want = min(want, maxTunedPercent) / 10 * 10
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
