package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// lockSessionTTL is the session timeout of the lock workload's mutexes:
// long enough that no session expires under load on a busy machine (the
// workload measures round trips, not expiry).
const lockSessionTTL = 10 * time.Second

// lock measures lock round trips at n clients: every worker has a mutex
// of its own (a session through its client) on one lock shared by the
// row, and each operation is Lock then Unlock, so at n > 1 the workers
// queue for the lock and ops/s is the rate of hand-overs.
func (r *runner) lock(ctx context.Context, n int) (Row, error) {
	row := Row{Workload: WorkloadLock, Clients: n, RSSBytes: -1, DiskBytes: -1}
	cls, err := r.pool(ctx, n)
	if err != nil {
		return row, err
	}
	if _, ok := cls[0].(Locker); !ok {
		r.logf("lock: not supported by this cluster's clients")
		row.CPUPer1kOps = -1
		return row, nil
	}
	name := fmt.Sprintf("%s-lock%d", r.id, n)
	ms := make([]Mutex, 0, n)
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), hardTimeout)
		defer cancel()
		for _, m := range ms {
			if err := m.Close(cctx); err != nil {
				r.logf("lock: close mutex: %v", err)
			}
		}
	}()
	for _, cl := range cls {
		m, err := cl.(Locker).NewMutex(ctx, name, lockSessionTTL)
		if err != nil {
			return row, fmt.Errorf("new mutex on %s: %w", name, err)
		}
		ms = append(ms, m)
	}
	return r.closedLoop(ctx, WorkloadLock, n, func(ctx context.Context, _ Client, wk, _ int, _ *rand.Rand) error {
		if err := ms[wk].Lock(ctx); err != nil {
			return fmt.Errorf("lock %s: %w", name, err)
		}
		if err := ms[wk].Unlock(ctx); err != nil {
			return fmt.Errorf("unlock %s: %w", name, err)
		}
		return nil
	})
}
