package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ErrUnsupported is returned by a Cluster that cannot do what was asked:
// Stop and Start of a cluster reached by endpoints, which the runner did
// not start. The restart workload then reports its time as not measured.
var ErrUnsupported = errors.New("bench: not supported by this cluster")

const (
	// preloadWorkers create the preloaded keys in parallel.
	preloadWorkers = 64
	// maxWatchClients is how many Clients the watches of the watch
	// workload share (round-robin): a thousand watchers are a thousand
	// streams, not a thousand connections.
	maxWatchClients = 16
	// hardTimeout is how long past its window a row may run before its
	// operations are cancelled (and counted as failed): a stuck server
	// must not hang the run.
	hardTimeout = 30 * time.Second
	// pollEvery is the period of the Exists polls of ephemeral cleanup and
	// of the reads of restart: the resolution of their latencies.
	pollEvery = 10 * time.Millisecond
	// pollAttempt bounds one of those polls.
	pollAttempt = time.Second
)

// Run runs the workloads of o against c and returns one row per workload
// and concurrency level (or per watcher count). It calls c.Prepare first.
// Every key it makes has a prefix unique to the run, so runs against the
// same cluster do not collide. On error it returns the rows done so far
// with the error.
//
// Run opens Clients as it needs them and keeps them for the whole run (a
// pool grown to the largest concurrency level): worker i of every row
// uses client i, a client of one node alone placed by nodeFor around the
// leader (asked of c before every row; if it moved, the pool is reopened
// around the new one), and closes them at the end.
func Run(ctx context.Context, c Cluster, o Options) (*Results, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &runner{
		c:     c,
		o:     o,
		id:    fmt.Sprintf("%x", time.Now().UnixNano()),
		value: make([]byte, o.ValueSize),
	}
	for i := range r.value {
		r.value[i] = byte('a' + rand.IntN(26))
	}
	defer r.closeClients()
	res := &Results{System: c.Name(), Nodes: c.Nodes()}
	if err := c.Prepare(ctx); err != nil {
		return res, fmt.Errorf("bench: %s: prepare: %w", c.Name(), err)
	}
	for _, w := range runOrder {
		if !slices.Contains(o.Workloads, w) {
			continue
		}
		rows, err := r.workload(ctx, w)
		res.Rows = append(res.Rows, rows...)
		if err != nil {
			return res, fmt.Errorf("bench: %s: %s: %w", c.Name(), w, err)
		}
	}
	return res, nil
}

// runner is the state of one Run.
type runner struct {
	c Cluster
	o Options
	// id prefixes every key of the run.
	id string
	// value is written by every write.
	value []byte
	// clients is the pool: worker i uses clients[i], a client of node
	// nodeFor(i, leader, c.Nodes()) alone.
	clients []Client
	// leader is the node the clients are placed around, known once
	// placed is true (see place).
	leader int
	placed bool
	// keys are the preloaded keys, nil until preload.
	keys []string
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.o.Log, "%s %s: %s\n", time.Now().Format("15:04:05"), r.c.Name(), fmt.Sprintf(format, args...))
}

// pool returns n clients, opening the missing ones on their nodes.
func (r *runner) pool(ctx context.Context, n int) ([]Client, error) {
	for len(r.clients) < n {
		node := nodeFor(len(r.clients), r.leader, r.c.Nodes())
		cl, err := r.c.NewClient(ctx, node)
		if err != nil {
			return nil, fmt.Errorf("new client of node %d: %w", node, err)
		}
		r.clients = append(r.clients, cl)
	}
	return r.clients[:n], nil
}

func (r *runner) closeClients() {
	for _, cl := range r.clients {
		if err := cl.Close(); err != nil {
			r.logf("close client: %v", err)
		}
	}
	r.clients = nil
}

// workload runs every row of workload w, placing the clients before
// each.
func (r *runner) workload(ctx context.Context, w string) ([]Row, error) {
	var rows []Row
	add := func(measure func() (Row, error)) error {
		if err := r.place(ctx); err != nil {
			return err
		}
		row, err := measure()
		if err != nil {
			return err
		}
		row.Leader = r.leader
		r.logRow(row)
		rows = append(rows, row)
		return nil
	}
	switch w {
	case WorkloadMemory:
		return rows, add(func() (Row, error) { return r.memory(ctx) })
	case WorkloadEphemeralCleanup:
		return rows, add(func() (Row, error) { return r.ephemeralCleanup(ctx) })
	case WorkloadRestart:
		return rows, add(func() (Row, error) { return r.restart(ctx) })
	case WorkloadElection:
		return rows, add(func() (Row, error) { return r.election(ctx) })
	case WorkloadElectionServerKill:
		return rows, add(func() (Row, error) { return r.electionServerKill(ctx) })
	case WorkloadLock:
		for _, n := range r.o.LockClients {
			if err := add(func() (Row, error) { return r.lock(ctx, n) }); err != nil {
				return rows, err
			}
		}
		return rows, nil
	case WorkloadWatch:
		for _, n := range r.o.Watchers {
			if err := add(func() (Row, error) { return r.watch(ctx, n) }); err != nil {
				return rows, err
			}
		}
		return rows, nil
	}
	for _, n := range r.o.Clients {
		err := add(func() (Row, error) {
			op, err := r.op(ctx, w, n)
			if err != nil {
				return Row{}, err
			}
			return r.closedLoop(ctx, w, n, op)
		})
		if err != nil {
			return rows, err
		}
	}
	return rows, nil
}

func (r *runner) logRow(row Row) {
	if row.Workload == WorkloadElection || row.Workload == WorkloadElectionServerKill {
		r.logf("%s contenders=%d leader=%d: rounds=%d p50=%v p99=%v leaders stopped=%d",
			row.Workload, row.Clients, row.Leader, row.Ops, row.P50, row.P99, row.Stops)
		return
	}
	r.logf("%s clients=%d leader=%d: ops=%d ops/s=%.0f p50=%v p99=%v cpu/1k=%.3f client-cpu/1k=%.3f rss=%d disk=%d",
		row.Workload, row.Clients, row.Leader, row.Ops, row.OpsPerSec, row.P50, row.P99, row.CPUPer1kOps, row.ClientCPUPer1kOps, row.RSSBytes, row.DiskBytes)
}

// opFunc is operation i of worker w, on the worker's client and with the
// worker's random source.
type opFunc func(ctx context.Context, cl Client, w, i int, rng *rand.Rand) error

// cpuSnapshot is the CPU seconds of the cluster's processes now, or nil
// when the cluster has none known.
func (r *runner) cpuSnapshot() map[int]float64 {
	pids := r.c.PIDs()
	if len(pids) == 0 {
		return nil
	}
	return cpuOf(pids)
}

// cpuPer1k is the servers' CPU seconds between two snapshots per 1,000
// ops, -1 when not measured.
func cpuPer1k(before, after map[int]float64, ops int64) float64 {
	if before == nil || after == nil || ops == 0 {
		return -1
	}
	return cpuDelta(before, after) / float64(ops) * 1000
}

// selfCPUOrNone is this process's CPU so far, -1 when unreadable.
func selfCPUOrNone() time.Duration {
	d, err := selfCPU()
	if err != nil {
		return -1
	}
	return d
}

// selfCPUPer1k is the load generator's CPU seconds between two readings
// per 1,000 ops, -1 when not measured.
func selfCPUPer1k(before, after time.Duration, ops int64) float64 {
	if before < 0 || after < 0 || ops == 0 {
		return -1
	}
	return (after - before).Seconds() / float64(ops) * 1000
}

// sleepUntil waits until t or ctx's end, and reports whether t came.
func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// closedLoop runs n workers, each calling op back to back on its own
// client for Warmup and then Duration. Operations started inside the
// measured window are measured (their latency, or their failure); the
// servers' CPU time is read at the window's edges. A worker whose
// operations all started before the window (on a machine so slow that one
// operation outlasts the window) runs one more after it, so that no row
// comes out empty; that one counts toward ops/s as if inside the window.
func (r *runner) closedLoop(ctx context.Context, w string, n int, op opFunc) (Row, error) {
	row := Row{Workload: w, Clients: n, RSSBytes: -1, DiskBytes: -1}
	cls, err := r.pool(ctx, n)
	if err != nil {
		return row, err
	}
	start := time.Now()
	from := start.Add(r.o.Warmup)
	to := from.Add(r.o.Duration)
	hard, cancel := context.WithDeadline(ctx, to.Add(hardTimeout))
	defer cancel()
	seed := uint64(start.UnixNano())
	recs := make([]*recorder, n)
	var wg sync.WaitGroup
	for wk := range n {
		rec := &recorder{}
		recs[wk] = rec
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(wk)))
			for i := 0; ; i++ {
				t0 := time.Now()
				if hard.Err() != nil || !t0.Before(to) && rec.measured() {
					return
				}
				err := op(hard, cls[wk], wk, i, rng)
				if t0.Before(from) {
					continue // warm-up
				}
				if err != nil {
					rec.fail(err)
					continue
				}
				rec.record(time.Since(t0))
			}
		})
	}
	var (
		before, after map[int]float64
		self0, self1  = time.Duration(-1), time.Duration(-1)
	)
	if sleepUntil(hard, from) {
		before, self0 = r.cpuSnapshot(), selfCPUOrNone()
		if sleepUntil(hard, to) {
			after, self1 = r.cpuSnapshot(), selfCPUOrNone()
		}
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return row, err
	}
	m := merge(recs)
	if err := m.check(fmt.Sprintf("%d clients", n)); err != nil {
		return row, err
	}
	if m.failed > 0 {
		r.logf("%s clients=%d: %d operations failed, first: %v", w, n, m.failed, m.err)
	}
	row.Ops = int64(len(m.lat))
	row.OpsPerSec = float64(row.Ops) / r.o.Duration.Seconds()
	row.P50, row.P99 = percentile(m.lat, 0.50), percentile(m.lat, 0.99)
	row.CPUPer1kOps = cpuPer1k(before, after, row.Ops)
	row.ClientCPUPer1kOps = selfCPUPer1k(self0, self1, row.Ops)
	return row, nil
}

// op returns the operation of a closed-loop workload at n clients,
// preloading the keys the reads need. Keys written are distinct per run,
// level (n: levels are distinct), worker and operation.
func (r *runner) op(ctx context.Context, w string, n int) (opFunc, error) {
	switch w {
	case WorkloadWrite:
		return func(ctx context.Context, cl Client, wk, i int, _ *rand.Rand) error {
			return cl.Create(ctx, fmt.Sprintf("/bench/%s-w%d-%d-%d", r.id, n, wk, i), r.value)
		}, nil
	case WorkloadReadLinearizable, WorkloadReadSerializable, WorkloadMixed:
		if err := r.preload(ctx); err != nil {
			return nil, err
		}
		keys := r.keys
		switch w {
		case WorkloadReadLinearizable:
			return func(ctx context.Context, cl Client, _, _ int, rng *rand.Rand) error {
				return cl.Get(ctx, keys[rng.IntN(len(keys))], Linearizable)
			}, nil
		case WorkloadReadSerializable:
			return func(ctx context.Context, cl Client, _, _ int, rng *rand.Rand) error {
				return cl.Get(ctx, keys[rng.IntN(len(keys))], Serializable)
			}, nil
		default:
			return func(ctx context.Context, cl Client, _, _ int, rng *rand.Rand) error {
				k := keys[rng.IntN(len(keys))]
				if rng.IntN(10) == 0 {
					return cl.Put(ctx, k, r.value)
				}
				return cl.Get(ctx, k, Linearizable)
			}, nil
		}
	case WorkloadSessionChurn:
		return func(ctx context.Context, cl Client, wk, i int, _ *rand.Rand) error {
			s, err := cl.OpenSession(ctx, r.o.SessionTTL)
			if err != nil {
				return fmt.Errorf("open session: %w", err)
			}
			key := fmt.Sprintf("/bench/%s-s%d-%d-%d", r.id, n, wk, i)
			if err := s.CreateEphemeral(ctx, key, r.value); err != nil {
				_ = s.Close(ctx)
				return fmt.Errorf("create ephemeral: %w", err)
			}
			if err := s.Close(ctx); err != nil {
				return fmt.Errorf("close session: %w", err)
			}
			return nil
		}, nil
	}
	return nil, fmt.Errorf("bench: no operation for workload %q", w)
}

// preload creates o.Keys keys once per run, with preloadWorkers clients in
// parallel; the read, mixed, memory and restart workloads share them.
func (r *runner) preload(ctx context.Context) error {
	if r.keys != nil {
		return nil
	}
	if r.o.Keys == 0 {
		return errors.New("bench: the workload needs preloaded keys and Keys is 0")
	}
	keys := make([]string, r.o.Keys)
	for i := range keys {
		keys[i] = fmt.Sprintf("/bench/%s-k%07d", r.id, i)
	}
	workers := min(preloadWorkers, len(keys))
	cls, err := r.pool(ctx, workers)
	if err != nil {
		return err
	}
	r.logf("preloading %d keys with %d workers", len(keys), workers)
	start := time.Now()
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		errs = make([]error, workers)
	)
	for wk := range workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(len(keys)) {
					return
				}
				if err := cls[wk].Create(ctx, keys[i], r.value); err != nil {
					errs[wk] = fmt.Errorf("preload %s: %w", keys[i], err)
					next.Store(int64(len(keys))) // stop the others
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	r.logf("preloaded %d keys in %v", len(keys), time.Since(start).Round(time.Millisecond))
	r.keys = keys
	return nil
}
