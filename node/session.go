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
	return n.OpenSessionWithDelay(ctx, timeout, 0)
}

// OpenSessionWithDelay opens a session as OpenSession does, with a
// lock-delay: 0 takes the node's default (Config.LockDelay), a negative
// one asks for none.
func (n *Node) OpenSessionWithDelay(ctx context.Context, timeout, lockDelay time.Duration) (*paddockv1.OpenSessionResponse, uint64, error) {
	switch {
	case lockDelay == 0:
		lockDelay = n.cfg.LockDelay
	case lockDelay < 0:
		lockDelay = 0
	}
	if lockDelay > fsm.MaxTTL {
		return nil, 0, fmt.Errorf("%w: lock delay %v is over %v", fsm.ErrBadArgument, lockDelay, fsm.MaxTTL)
	}
	if timeout < 0 {
		return nil, 0, fmt.Errorf("%w: negative session timeout", fsm.ErrBadArgument)
	}
	if timeout == 0 {
		timeout = n.cfg.DefaultSessionTimeout
	}
	timeout = min(max(timeout, n.cfg.MinSessionTimeout), n.cfg.MaxSessionTimeout)
	res, err := n.Propose(ctx, &raftv1.Command{Op: &raftv1.Command_OpenSession{
		OpenSession: &raftv1.OpenSession{TimeoutMs: timeout.Milliseconds(), LockDelayMs: lockDelay.Milliseconds()},
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
	// A halted node renews nothing: it leads no longer than it takes to
	// close, and its sessions' owners should find the next leader.
	if err := n.errIfHalted(); err != nil {
		return 0, err
	}
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
	if err := n.errIfHalted(); err != nil {
		return nil, err
	}
	if !n.IsLeader() {
		return nil, ErrNotLeader
	}
	return n.sessions.renew(ctx, ids)
}

// tracker times sessions on the leader: the session kind of the leader's
// deadlines (deadline.go), plus renewals and checkpoints. Keepalives that
// arrive before the deadlines start (the barrier is pending) are kept as
// floors and honoured when they start.
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
	d *deadlines[uint64, struct{}]

	ckpt     sync.RWMutex // held by the checkpoint being proposed, shared by renewals
	lastCkpt time.Time    // only the timer loop touches it
}

func newTracker(n *Node) *tracker {
	t := &tracker{n: n}
	t.d = newDeadlines("session", t.load, t.expire)
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
	d := time.Duration(timer.TimeoutMs) * time.Millisecond
	if err := t.d.extend(id, time.Now().Add(d)); err != nil {
		return false, fmt.Errorf("%w: session %d", fsm.ErrSessionExpired, id)
	}
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
		t.d.set(id, time.Now().Add(time.Duration(op.OpenSession.GetTimeoutMs())*time.Millisecond), struct{}{})
	case *raftv1.Command_CloseSession:
		t.d.remove(op.CloseSession.GetSessionId())
	}
}

// load arms every session's clock at term start: from its checkpointed
// remaining time if it has one, else from its full timeout (a keepalive
// received while the barrier was pending may push it later: the floor).
func (t *tracker) load(now time.Time) map[uint64]deadline[struct{}] {
	t.lastCkpt = now
	out := map[uint64]deadline[struct{}]{}
	for _, s := range t.n.fsm.SessionTimers() {
		left := time.Duration(s.TimeoutMs) * time.Millisecond
		if s.RemainingMs > 0 {
			left = time.Duration(s.RemainingMs) * time.Millisecond
		}
		out[s.ID] = deadline[struct{}]{At: now.Add(left)}
	}
	return out
}

// checkpoint proposes, once per checkpoint interval, the remaining time
// of the sessions not renewed within it. It runs on the timer loop.
func (t *tracker) checkpoint(ctx context.Context, now time.Time) {
	interval := t.n.cfg.SessionCheckpointInterval
	if now.Sub(t.lastCkpt) < interval {
		return
	}
	t.lastCkpt = now
	t.ckpt.Lock()
	defer t.ckpt.Unlock()
	live := t.d.snapshot()
	var cps []*raftv1.SessionCheckpoint
	for _, s := range t.n.fsm.SessionTimers() {
		dl, ok := live[s.ID]
		if !ok {
			continue // expiring, or not timed here
		}
		// A session's deadline is its last renewal plus its timeout.
		renewed := dl.At.Add(-time.Duration(s.TimeoutMs) * time.Millisecond)
		if now.Sub(renewed) < interval {
			continue
		}
		left := max(dl.At.Sub(now).Milliseconds(), 1)
		cps = append(cps, &raftv1.SessionCheckpoint{SessionId: s.ID, RemainingMs: left})
	}
	if len(cps) == 0 {
		return
	}
	_, err := t.n.proposeLocal(ctx, &raftv1.Command{Op: &raftv1.Command_CheckpointSessions{
		CheckpointSessions: &raftv1.CheckpointSessions{Checkpoints: cps},
	}})
	if err != nil && ctx.Err() == nil {
		t.n.log.Warn("session checkpoint failed", "error", err)
	}
}

// expire proposes a due session's CloseSession.
func (t *tracker) expire(ctx context.Context, id uint64, _ struct{}) error {
	res, err := t.n.proposeLocal(ctx, &raftv1.Command{Op: &raftv1.Command_CloseSession{
		CloseSession: &raftv1.CloseSession{SessionId: id, Reason: raftv1.CloseReason_CLOSE_REASON_EXPIRED},
	}})
	if err != nil {
		if ctx.Err() == nil {
			t.n.log.Warn("session expiry failed; will retry", "session", id, "error", err)
		}
		return err
	}
	if res.Err == nil {
		t.n.log.Info("session expired", "session", id)
	}
	return nil
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
