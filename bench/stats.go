package bench

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// recorder collects one worker's latencies. Every worker has its own and
// they are merged when the window ends, so recording costs an append and
// no lock or atomic per operation.
//
// Latencies are kept as raw samples and sorted once, not in an HDR
// histogram: percentiles are then exact, there is no dependency, and the
// memory (8 bytes per operation: a few MB for the ~10^5-10^6 operations a
// 10 s row reaches on one machine) is no concern.
type recorder struct {
	lat []time.Duration
	// failed counts operations that returned an error; err is the first.
	failed int64
	err    error
}

func (r *recorder) record(d time.Duration) { r.lat = append(r.lat, d) }

// measured reports whether r has recorded an operation, done or failed.
func (r *recorder) measured() bool { return len(r.lat) > 0 || r.failed > 0 }

func (r *recorder) fail(err error) {
	if r.failed == 0 {
		r.err = err
	}
	r.failed++
}

// merged is the union of recorders, sorted.
type merged struct {
	lat    []time.Duration
	failed int64
	err    error
}

func merge(rs []*recorder) merged {
	var m merged
	n := 0
	for _, r := range rs {
		n += len(r.lat)
	}
	m.lat = make([]time.Duration, 0, n)
	for _, r := range rs {
		m.lat = append(m.lat, r.lat...)
		if r.failed > 0 && m.err == nil {
			m.err = r.err
		}
		m.failed += r.failed
	}
	slices.Sort(m.lat)
	return m
}

// percentile returns the nearest-rank q-quantile (0 < q <= 1) of sorted:
// the smallest sample with at least q of the samples at or below it. It is
// 0 for no samples.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// maxFailedShare is the share of failed operations a row tolerates: a
// timeout or a dropped connection under load is reported, not fatal, but a
// row that mostly failed measures nothing.
const maxFailedShare = 0.01

// check returns an error when too many of m's operations failed.
func (m merged) check(what string) error {
	total := int64(len(m.lat)) + m.failed
	if m.failed > 0 && float64(m.failed) > maxFailedShare*float64(total) {
		return fmt.Errorf("bench: %s: %d of %d operations failed, first: %w", what, m.failed, total, m.err)
	}
	return nil
}
