package node

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/paddock/paddock/fsm"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// OpenSession opens a session, clamping the timeout to the configured
// range (0 takes the default).
func (n *Node) OpenSession(ctx context.Context, timeout time.Duration) (*paddockv1.OpenSessionResponse, uint64, error) {
	if timeout < 0 {
		return nil, 0, fmt.Errorf("%w: negative session timeout", fsm.ErrBadArgument)
	}
	if timeout == 0 {
		timeout = n.cfg.DefaultSessionTimeout
	}
	timeout = min(max(timeout, n.cfg.MinSessionTimeout), n.cfg.MaxSessionTimeout)
	res, err := n.Propose(ctx, &raftv1.Command{Op: &raftv1.Command_OpenSession{
		OpenSession: &raftv1.OpenSession{TimeoutMs: timeout.Milliseconds()},
	}})
	if err != nil {
		return nil, 0, err
	}
	return res.Resp.(*paddockv1.OpenSessionResponse), res.Index, nil
}

// CloseSession closes a session and deletes its ephemerals.
func (n *Node) CloseSession(ctx context.Context, id uint64) (*paddockv1.CloseSessionResponse, uint64, error) {
	res, err := n.Propose(ctx, &raftv1.Command{Op: &raftv1.Command_CloseSession{
		CloseSession: &raftv1.CloseSession{SessionId: id, Reason: raftv1.CloseReason_CLOSE_REASON_CLIENT},
	}})
	if err != nil {
		return nil, 0, err
	}
	return res.Resp.(*paddockv1.CloseSessionResponse), res.Index, nil
}

// KeepAlive renews a session on the leader (forwarded in batches from a
// follower) and returns its timeout.
func (n *Node) KeepAlive(ctx context.Context, id uint64) (time.Duration, error) {
	ctx, cancel := n.withTimeout(ctx)
	defer cancel()
	var err error
	if n.IsLeader() {
		err = n.renewOne(ctx, id)
	} else {
		err = n.kaBatch.do(ctx, id)
		if errors.Is(err, ErrNotLeader) && n.IsLeader() {
			err = n.renewOne(ctx, id)
		}
	}
	if err != nil {
		return 0, err
	}
	// A session's id is the index that opened it: once that is applied
	// here, a follower lagging behind the leader knows its timeout too.
	if err := n.waiter.wait(ctx, id); err != nil {
		return 0, err
	}
	t, _ := n.fsm.SessionTimer(id)
	return time.Duration(t.TimeoutMs) * time.Millisecond, nil
}

func (n *Node) renewOne(ctx context.Context, id uint64) error {
	expired, err := n.sessions.renew(ctx, []uint64{id})
	if err == nil && len(expired) > 0 {
		err = fmt.Errorf("%w: session %d", fsm.ErrSessionExpired, id)
	}
	return err
}

// KeepAliveForPeer renews a follower's batch and returns the unknown ids.
func (n *Node) KeepAliveForPeer(ctx context.Context, ids []uint64) ([]uint64, error) {
	if !n.IsLeader() {
		return nil, ErrNotLeader
	}
	return n.sessions.renew(ctx, ids)
}

// tracker times sessions on the leader. It is active only while this node
// leads and has applied its barrier; keepalives that arrive before that
// are remembered and honoured when it starts.
//
// Answering a keepalive promises the session its timeout from about now,
// even if the leader changes. A new leader gives every session its full
// timeout from when it starts, or the remaining time of the session's
// last checkpoint. So renew answers only once
//   - the renewal is recorded, and then this node has confirmed that it
//     still leads (the reads' shared round, confirmLeadership): every
//     later leader starts after the renewal. A deposed leader that has
//     not noticed yet (paused, or cut off) answers nothing, rather than
//     renew a session that the new leader will expire (etcd's LeaseRenew
//     does the same);
//   - a checkpoint of the session's remaining time, taken before the
//     renewal, is cleared in the log, so no later leader starts its clock
//     from it. ckpt keeps renewals out of the window between taking a
//     checkpoint and applying it.
type tracker struct {
	n *Node

	ckpt sync.RWMutex // held by the checkpoint being proposed, shared by renewals

	mu        sync.Mutex
	active    bool
	deadline  map[uint64]time.Time
	timeout   map[uint64]time.Duration
	renewed   map[uint64]time.Time
	pending   map[uint64]time.Time // keepalives while inactive
	expiring  map[uint64]bool      // CloseSession proposed
	lastCkpt  time.Time
	tickEvery time.Duration
}

func newTracker(n *Node) *tracker {
	t := &tracker{n: n, pending: map[uint64]time.Time{}}
	t.tickEvery = min(100*time.Millisecond, n.cfg.MinSessionTimeout/10)
	return t
}

// renew renews the sessions ids on this leader and returns those it does
// not know (or is expiring). It answers only as the tracker's doc says.
func (t *tracker) renew(ctx context.Context, ids []uint64) ([]uint64, error) {
	expired, err := t.record(ctx, ids)
	if err != nil {
		return nil, err
	}
	if _, err := t.n.readIndex.do(ctx, struct{}{}); err != nil {
		return nil, err
	}
	return expired, nil
}

// record records the renewals and clears their sessions' checkpoints.
func (t *tracker) record(ctx context.Context, ids []uint64) ([]uint64, error) {
	t.ckpt.RLock()
	defer t.ckpt.RUnlock()
	var expired []uint64
	var cps []*raftv1.SessionCheckpoint
	for _, id := range ids {
		switch checkpointed, err := t.keepalive(id); {
		case err != nil:
			expired = append(expired, id)
		case checkpointed:
			cps = append(cps, &raftv1.SessionCheckpoint{SessionId: id})
		}
	}
	if len(cps) > 0 {
		_, err := t.n.proposeLocal(ctx, &raftv1.Command{Op: &raftv1.Command_CheckpointSessions{
			CheckpointSessions: &raftv1.CheckpointSessions{Checkpoints: cps},
		}})
		if err != nil {
			return nil, err
		}
	}
	return expired, nil
}

// keepalive renews a session this leader knows and reports whether it
// has a checkpoint to clear.
func (t *tracker) keepalive(id uint64) (checkpointed bool, _ error) {
	timer, ok := t.n.fsm.SessionTimer(id)
	if !ok {
		return false, fmt.Errorf("%w: session %d", fsm.ErrSessionExpired, id)
	}
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.active {
		t.pending[id] = now
		return timer.RemainingMs > 0, nil
	}
	if t.expiring[id] {
		return false, fmt.Errorf("%w: session %d", fsm.ErrSessionExpired, id)
	}
	d := time.Duration(timer.TimeoutMs) * time.Millisecond
	t.deadline[id] = now.Add(d)
	t.timeout[id] = d
	t.renewed[id] = now
	return timer.RemainingMs > 0, nil
}

// applied keeps the tracker in step with sessions this leader opened or
// closed.
func (t *tracker) applied(cmd *raftv1.Command, res *fsm.Result) {
	if res.Err != nil {
		return
	}
	switch op := cmd.GetOp().(type) {
	case *raftv1.Command_OpenSession:
		id := res.Resp.(*paddockv1.OpenSessionResponse).GetSessionId()
		t.track(id, time.Duration(op.OpenSession.GetTimeoutMs())*time.Millisecond)
	case *raftv1.Command_CloseSession:
		t.forget(op.CloseSession.GetSessionId())
	}
}

func (t *tracker) track(id uint64, d time.Duration) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.active {
		return // start reads it from the state machine
	}
	t.deadline[id] = now.Add(d)
	t.timeout[id] = d
	t.renewed[id] = now
}

func (t *tracker) forget(id uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.active {
		delete(t.deadline, id)
		delete(t.timeout, id)
		delete(t.renewed, id)
		delete(t.expiring, id)
	}
}

// start arms every session's clock: from its checkpointed remaining time
// if it has one, else from its full timeout, and never earlier than a
// keepalive received while the barrier was pending allows.
func (t *tracker) start() {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.active = true
	t.deadline = map[uint64]time.Time{}
	t.timeout = map[uint64]time.Duration{}
	t.renewed = map[uint64]time.Time{}
	t.expiring = map[uint64]bool{}
	t.lastCkpt = now
	for _, s := range t.n.fsm.SessionTimers() {
		full := time.Duration(s.TimeoutMs) * time.Millisecond
		left := full
		if s.RemainingMs > 0 {
			left = time.Duration(s.RemainingMs) * time.Millisecond
		}
		dl := now.Add(left)
		if p, ok := t.pending[s.ID]; ok && p.Add(full).After(dl) {
			dl = p.Add(full)
		}
		t.deadline[s.ID] = dl
		t.timeout[s.ID] = full
		t.renewed[s.ID] = dl.Add(-full)
	}
	t.pending = map[uint64]time.Time{}
}

func (t *tracker) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.active = false
	t.pending = map[uint64]time.Time{}
}

// run times sessions until ctx ends (leadership lost or shutdown).
func (t *tracker) run(ctx context.Context) {
	t.start()
	defer t.stop()
	tick := time.NewTicker(t.tickEvery)
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			t.ckpt.Lock()
			expired, ckpt := t.due(now)
			for _, id := range expired {
				wg.Add(1)
				go func() {
					defer wg.Done()
					t.expire(ctx, id)
				}()
			}
			if ckpt != nil {
				if _, err := t.n.proposeLocal(ctx, ckpt); err != nil && ctx.Err() == nil {
					t.n.log.Warn("session checkpoint failed", "error", err)
				}
			}
			t.ckpt.Unlock()
		}
	}
}

// due returns the sessions past their deadline and, when one is due, a
// checkpoint command with the remaining time of the idle sessions.
func (t *tracker) due(now time.Time) ([]uint64, *raftv1.Command) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var expired []uint64
	for id, dl := range t.deadline {
		if now.After(dl) && !t.expiring[id] {
			t.expiring[id] = true
			expired = append(expired, id)
		}
	}
	slices.Sort(expired)
	var cps []*raftv1.SessionCheckpoint
	interval := t.n.cfg.SessionCheckpointInterval
	if now.Sub(t.lastCkpt) >= interval {
		t.lastCkpt = now
		for _, id := range slices.Sorted(maps.Keys(t.deadline)) {
			if t.expiring[id] || now.Sub(t.renewed[id]) < interval {
				continue
			}
			left := max(t.deadline[id].Sub(now).Milliseconds(), 1)
			cps = append(cps, &raftv1.SessionCheckpoint{SessionId: id, RemainingMs: left})
		}
	}
	if len(cps) == 0 {
		return expired, nil
	}
	return expired, &raftv1.Command{Op: &raftv1.Command_CheckpointSessions{
		CheckpointSessions: &raftv1.CheckpointSessions{Checkpoints: cps},
	}}
}

func (t *tracker) expire(ctx context.Context, id uint64) {
	_, err := t.n.proposeLocal(ctx, &raftv1.Command{Op: &raftv1.Command_CloseSession{
		CloseSession: &raftv1.CloseSession{SessionId: id, Reason: raftv1.CloseReason_CLOSE_REASON_EXPIRED},
	}})
	if err != nil && ctx.Err() == nil {
		t.n.log.Warn("session expiry failed; will retry", "session", id, "error", err)
		t.mu.Lock()
		delete(t.expiring, id)
		t.mu.Unlock()
		return
	}
	t.n.log.Info("session expired", "session", id)
}

// keepaliveBatcher forwards a follower's keepalives to the leader: while
// one batch is in flight, the next accumulates.
type keepaliveBatcher struct {
	n *Node

	mu      sync.Mutex
	waiting map[uint64][]chan error
	running bool
}

func newKeepaliveBatcher(n *Node) *keepaliveBatcher {
	return &keepaliveBatcher{n: n, waiting: map[uint64][]chan error{}}
}

func (b *keepaliveBatcher) do(ctx context.Context, id uint64) error {
	ch := make(chan error, 1)
	b.mu.Lock()
	b.waiting[id] = append(b.waiting[id], ch)
	if !b.running {
		b.running = true
		go b.loop()
	}
	b.mu.Unlock()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *keepaliveBatcher) loop() {
	for {
		b.mu.Lock()
		batch := b.waiting
		b.waiting = map[uint64][]chan error{}
		if len(batch) == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		ids := slices.Sorted(maps.Keys(batch))
		expired, err := b.send(ids)
		for id, chans := range batch {
			e := err
			if e == nil && expired[id] {
				e = fmt.Errorf("%w: session %d", fsm.ErrSessionExpired, id)
			}
			for _, ch := range chans {
				ch <- e
			}
		}
	}
}

func (b *keepaliveBatcher) send(ids []uint64) (map[uint64]bool, error) {
	b.n.metrics.forwarded.WithLabelValues(fwdKeepAlive).Inc()
	ctx, cancel := context.WithTimeout(context.Background(), b.n.cfg.RequestTimeout)
	defer cancel()
	conn, err := b.n.leaderConn(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := raftv1.NewInternalServiceClient(conn).KeepAlive(ctx, &raftv1.KeepAliveRequest{SessionIds: ids})
	if err != nil {
		return nil, fromPeer(err)
	}
	expired := map[uint64]bool{}
	for _, id := range resp.GetExpiredIds() {
		expired[id] = true
	}
	return expired, nil
}
