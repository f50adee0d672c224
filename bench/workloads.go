package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// memory preloads the keys and reads the servers' resident memory and
// on-disk size. Run does it first, so the servers hold the preloaded keys
// and nothing else the run wrote.
func (r *runner) memory(ctx context.Context) (Row, error) {
	row := Row{Workload: WorkloadMemory, CPUPer1kOps: -1, ClientCPUPer1kOps: -1, RSSBytes: -1, DiskBytes: -1}
	if err := r.preload(ctx); err != nil {
		return row, err
	}
	row.Ops = int64(len(r.keys))
	if pids := r.c.PIDs(); len(pids) > 0 {
		row.RSSBytes = 0
		for _, pid := range pids {
			n, err := rssBytes(pid)
			if err != nil {
				return row, err
			}
			row.RSSBytes += n
		}
	}
	if dirs := r.c.DataDirs(); len(dirs) > 0 {
		n, err := diskBytes(dirs)
		if err != nil {
			return row, err
		}
		row.DiskBytes = n
	}
	return row, nil
}

// watchLossTimeout is how long the watch workload waits for every watcher
// to get a write's event before it reports events lost.
const watchLossTimeout = 10 * time.Second

// watch measures the latency of watch events: one writer sets a key that
// n watchers watch, one write at a time, and each write's latency is, for
// every watcher, the event's arrival minus the write's acknowledgement (an
// event that arrives before the writer has its reply counts as 0). The
// next write waits until every watcher has the previous event, so the
// j-th event a watcher receives is the j-th write's.
//
// The watches share min(n, maxWatchClients) clients round-robin. Watch is
// called on them from this goroutine only, one after the other; each
// watch's channel is then drained by a goroutine of its own that appends
// arrival times to that watcher's own slice.
func (r *runner) watch(ctx context.Context, n int) (Row, error) {
	row := Row{Workload: WorkloadWatch, Clients: n, RSSBytes: -1, DiskBytes: -1}
	nc := min(n, maxWatchClients)
	cls, err := r.pool(ctx, nc+1)
	if err != nil {
		return row, err
	}
	writer := cls[nc]
	key := fmt.Sprintf("/bench/%s-watch%d", r.id, n)
	if err := writer.Create(ctx, key, r.value); err != nil {
		return row, fmt.Errorf("create %s: %w", key, err)
	}
	wctx, cancel := context.WithCancel(ctx)
	var (
		total   atomic.Int64 // events received by all watchers
		target  atomic.Int64 // total once the current write is everywhere
		all     = make(chan struct{}, 1)
		arrived = make([][]time.Time, n)
		wg      sync.WaitGroup
	)
	defer func() { cancel(); wg.Wait() }()
	for i := range n {
		ch, err := cls[i%nc].Watch(wctx, key)
		if err != nil {
			return row, fmt.Errorf("watch %s (%d of %d): %w", key, i+1, n, err)
		}
		wg.Go(func() {
			for {
				select {
				case t, ok := <-ch:
					if !ok {
						return
					}
					arrived[i] = append(arrived[i], t)
					if total.Add(1) == target.Load() {
						select {
						case all <- struct{}{}:
						default:
						}
					}
				case <-wctx.Done():
					return
				}
			}
		})
	}

	start := time.Now()
	from := start.Add(r.o.Warmup)
	to := from.Add(r.o.Duration)
	var (
		acks     []time.Time
		measured []bool
		before   map[int]float64
		self0    = time.Duration(-1)
		winStart time.Time
	)
	for k := 0; ; k++ {
		now := time.Now()
		if !now.Before(to) {
			break
		}
		inWindow := !now.Before(from)
		if inWindow && winStart.IsZero() {
			winStart, before, self0 = now, r.cpuSnapshot(), selfCPUOrNone()
		}
		select { // a signal left from an earlier write
		case <-all:
		default:
		}
		target.Store(int64((k + 1) * n))
		if err := writer.Put(ctx, key, r.value); err != nil {
			return row, fmt.Errorf("put %s: %w", key, err)
		}
		acks = append(acks, time.Now())
		measured = append(measured, inWindow)
		if total.Load() < int64((k+1)*n) {
			timer := time.NewTimer(watchLossTimeout)
			select {
			case <-all:
				timer.Stop()
			case <-timer.C:
				return row, fmt.Errorf("write %d: %d of %d watchers got the event within %v",
					k, total.Load()-int64(k*n), n, watchLossTimeout)
			case <-ctx.Done():
				timer.Stop()
				return row, ctx.Err()
			}
		}
	}
	after, self1 := r.cpuSnapshot(), selfCPUOrNone()
	elapsed := time.Since(winStart)
	cancel()
	wg.Wait()

	rec := &recorder{}
	for _, ts := range arrived {
		for j, t := range ts {
			if j >= len(acks) || !measured[j] {
				continue
			}
			rec.record(max(0, t.Sub(acks[j])))
		}
	}
	m := merge([]*recorder{rec})
	row.Ops = int64(len(m.lat))
	if !winStart.IsZero() && elapsed > 0 {
		row.OpsPerSec = float64(row.Ops) / elapsed.Seconds()
	}
	row.P50, row.P99 = percentile(m.lat, 0.50), percentile(m.lat, 0.99)
	row.CPUPer1kOps = cpuPer1k(before, after, row.Ops)
	row.ClientCPUPer1kOps = selfCPUPer1k(self0, self1, row.Ops)
	return row, nil
}

// cleanupRounds is how many clients ephemeral cleanup kills: one per
// second of Duration, 1 to 5 (each takes the session timeout and more).
func (r *runner) cleanupRounds() int {
	return min(max(int(r.o.Duration/time.Second), 1), 5)
}

// ephemeralCleanup starts the cluster's HoldCommand (a process owning an
// ephemeral key through a session), SIGKILLs it once it is ready, and
// measures the time until the key is gone, polling Exists every
// pollEvery. P99 of a handful of rounds is their maximum.
func (r *runner) ephemeralCleanup(ctx context.Context) (Row, error) {
	row := Row{Workload: WorkloadEphemeralCleanup, Clients: 1, CPUPer1kOps: -1, ClientCPUPer1kOps: -1, RSSBytes: -1, DiskBytes: -1}
	cls, err := r.pool(ctx, 1)
	if err != nil {
		return row, err
	}
	rec := &recorder{}
	for i := range r.cleanupRounds() {
		key := fmt.Sprintf("/bench/%s-eph%d", r.id, i)
		d, err := r.killHolder(ctx, cls[0], key)
		if err != nil {
			return row, err
		}
		rec.record(d)
	}
	m := merge([]*recorder{rec})
	row.Ops = int64(len(m.lat))
	row.P50, row.P99 = percentile(m.lat, 0.50), percentile(m.lat, 0.99)
	return row, nil
}

// lockedBuffer keeps a child's stderr for error messages.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 64<<10 {
		return len(p), nil // enough to tell what went wrong
	}
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// killHolder runs one round of ephemeral cleanup on key.
func (r *runner) killHolder(ctx context.Context, cl Client, key string) (time.Duration, error) {
	argv := r.c.HoldCommand(key, r.o.SessionTTL)
	if len(argv) == 0 {
		return 0, errors.New("empty hold command")
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = childProcAttr()
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", strings.Join(argv, " "), err)
	}
	exited := make(chan error, 1)
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
		}
		<-exited
	}()
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		lines <- line
		// Wait only once stdout has been read: it closes the pipe.
		exited <- cmd.Wait()
	}()
	timer := time.NewTimer(hardTimeout)
	defer timer.Stop()
	select {
	case line := <-lines:
		if line != "ready\n" {
			return 0, fmt.Errorf("hold %s: said %q, want \"ready\": %s", key, line, stderr)
		}
	case <-timer.C:
		return 0, fmt.Errorf("hold %s: not ready after %v: %s", key, hardTimeout, stderr)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	// The holder's create is acknowledged, but the client polling may be
	// served by another node that has not applied it yet: see the key
	// before killing, or a "gone" would be measured before it ever came.
	if err := pollUntil(ctx, hardTimeout, pollAttempt, func(ctx context.Context) (bool, error) {
		return cl.Exists(ctx, key)
	}); err != nil {
		return 0, fmt.Errorf("hold %s: the key never appeared: %w", key, err)
	}
	killedAt := time.Now()
	if err := cmd.Process.Kill(); err != nil {
		return 0, fmt.Errorf("kill holder: %w", err)
	}
	killed = true
	limit := 5*r.o.SessionTTL + hardTimeout
	if err := pollUntil(ctx, limit, pollAttempt, func(ctx context.Context) (bool, error) {
		ok, err := cl.Exists(ctx, key)
		return !ok, err
	}); err != nil {
		return 0, fmt.Errorf("%s still there %v after its owner was killed: %w", key, limit, err)
	}
	return time.Since(killedAt), nil
}

// pollUntil calls cond every pollEvery until it is true, for at most
// limit, each call bounded by attempt. An error of cond is kept as the
// reason and polling goes on: a read may fail while a node restarts.
func pollUntil(ctx context.Context, limit, attempt time.Duration, cond func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var last error
	for {
		actx, acancel := context.WithTimeout(ctx, attempt)
		ok, err := cond(actx)
		acancel()
		if err == nil && ok {
			return nil
		}
		if err != nil {
			last = err
		}
		t := time.NewTimer(pollEvery)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			if last != nil {
				return fmt.Errorf("%w (last error: %w)", ctx.Err(), last)
			}
			return ctx.Err()
		}
	}
}

// restartLimit bounds the restart workload's wait for the node to serve.
const restartLimit = 2 * time.Minute

// restart stops the first follower (nodeFor(0): the node of worker 0)
// gracefully, waits until the others serve, starts it again and measures
// the time from Start until a client of that node alone serves a
// linearizable read of a preloaded key: each attempt a new client (a
// client's reconnect backoff would otherwise be measured too), bounded by
// a second, every pollEvery. The pool's clients are closed first, so that
// the node comes back to no clients of its own, as with every system (a
// client of one node would otherwise reconnect to it as it starts).
func (r *runner) restart(ctx context.Context) (Row, error) {
	row := Row{Workload: WorkloadRestart, CPUPer1kOps: -1, ClientCPUPer1kOps: -1, RSSBytes: -1, DiskBytes: -1}
	if err := r.preload(ctx); err != nil {
		return row, err
	}
	r.closeClients() // a later row reopens them
	node := nodeFor(0, r.leader, r.c.Nodes())
	if err := r.c.Stop(node); err != nil {
		if errors.Is(err, ErrUnsupported) {
			row.P50, row.P99 = -1, -1
			return row, nil
		}
		return row, fmt.Errorf("stop node %d: %w", node, err)
	}
	key := r.keys[rand.IntN(len(r.keys))]
	serves := func(node int) func(context.Context) (bool, error) {
		return func(ctx context.Context) (bool, error) {
			cl, err := r.c.NewClient(ctx, node)
			if err != nil {
				return false, err
			}
			defer cl.Close()
			return true, cl.Get(ctx, key, Linearizable)
		}
	}
	// The stopped node may lead by now if the leader moved since it was
	// asked: let the others elect one first, so that the time measured is
	// the node's own recovery, not an election.
	if err := pollUntil(ctx, restartLimit, pollAttempt, serves(-1)); err != nil {
		return row, fmt.Errorf("cluster not serving %v after node %d stopped: %w", restartLimit, node, err)
	}
	started := time.Now()
	if err := r.c.Start(node); err != nil {
		return row, fmt.Errorf("start node %d: %w", node, err)
	}
	if err := pollUntil(ctx, restartLimit, pollAttempt, serves(node)); err != nil {
		return row, fmt.Errorf("node %d not serving %v after start: %w", node, restartLimit, err)
	}
	d := time.Since(started)
	row.Ops, row.P50, row.P99 = 1, d, d
	return row, nil
}
