package fsm

import (
	"fmt"
	"maps"
	"slices"

	"google.golang.org/protobuf/proto"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// session is one client session. The state machine never decides expiry:
// the leader proposes CloseSession when a session's deadline passes.
type session struct {
	id        uint64
	timeoutMs int64
	ctime     int64
	// remainingMs is the last checkpointed time left, 0 if none (full
	// timeout). A new leader starts the session's clock from it.
	remainingMs int64
	// lockDelayMs is the session's lock-delay, 0 if none.
	lockDelayMs int64
}

// sessionTable is the client sessions by id. Its snapshot records are
// SessionRecords, sorted by id.
type sessionTable map[uint64]*session

// sessionView is a copy of the (small) table, sorted by id.
type sessionView []session

func (t sessionTable) capture() tableView {
	v := make(sessionView, 0, len(t))
	for _, id := range slices.Sorted(maps.Keys(t)) {
		v = append(v, *t[id])
	}
	return v
}

func (v sessionView) records() uint64 { return uint64(len(v)) }

func (v sessionView) write(rw *recordWriter) error {
	for _, ss := range v {
		rec := &raftv1.SnapshotRecord{Record: &raftv1.SnapshotRecord_Session{Session: &raftv1.SessionRecord{
			Id: ss.id, TimeoutMs: ss.timeoutMs, Ctime: ss.ctime, RemainingMs: ss.remainingMs, LockDelayMs: ss.lockDelayMs,
		}}}
		if err := rw.write(rec); err != nil {
			return err
		}
	}
	return nil
}

func (t sessionTable) restore(rec *raftv1.SnapshotRecord) (bool, error) {
	s := rec.GetSession()
	if s == nil {
		return false, nil
	}
	if _, dup := t[s.GetId()]; dup {
		return true, fmt.Errorf("fsm: snapshot: session %d appears twice", s.GetId())
	}
	t[s.GetId()] = &session{id: s.GetId(), timeoutMs: s.GetTimeoutMs(), ctime: s.GetCtime(), remainingMs: s.GetRemainingMs(), lockDelayMs: s.GetLockDelayMs()}
	return true, nil
}

func (t sessionTable) restored() error { return nil }

// SessionTimer is what the leader needs to time a session.
type SessionTimer struct {
	ID          uint64
	TimeoutMs   int64
	RemainingMs int64
}

func (s *state) applyOpenSession(c *applyCtx, op *raftv1.OpenSession) (proto.Message, error) {
	if op.GetTimeoutMs() <= 0 {
		return nil, errorf(ErrBadArgument, "session timeout %dms", op.GetTimeoutMs())
	}
	if op.GetLockDelayMs() < 0 || op.GetLockDelayMs() > MaxTTL.Milliseconds() {
		return nil, errorf(ErrBadArgument, "lock delay %dms", op.GetLockDelayMs())
	}
	s.sessions[c.index] = &session{id: c.index, timeoutMs: op.GetTimeoutMs(), ctime: c.now, lockDelayMs: op.GetLockDelayMs()}
	return &paddockv1.OpenSessionResponse{SessionId: c.index, TimeoutMs: op.GetTimeoutMs()}, nil
}

// applyCloseSession removes the session and, in the same entry, every
// ephemeral znode it owns.
func (s *state) applyCloseSession(c *applyCtx, op *raftv1.CloseSession) (proto.Message, error) {
	id := op.GetSessionId()
	if _, ok := s.sessions[id]; !ok {
		return nil, errorf(ErrSessionExpired, "session %d", id)
	}
	t := s.newTxn(c.index, c.now, c.events)
	paths := slices.Sorted(maps.Keys(s.tree.ephemerals[id]))
	var kept map[string]bool
	if ss := s.sessions[id]; ss.lockDelayMs > 0 && op.GetReason() == raftv1.CloseReason_CLOSE_REASON_EXPIRED {
		kept = t.lockDelayed(paths, ss.lockDelayMs)
	}
	deleted := 0
	for _, p := range paths {
		if kept[p] {
			continue
		}
		deleted++
		n := t.get(p)
		t.tree.Delete(n)
		t.events = append(t.events, Event{Zxid: c.index, Type: EventDeleted, Path: n.path, PrevData: n.data})
		t.detach(n.parent())
	}
	s.commit(t, c)
	delete(s.sessions, id)
	delete(s.tree.ephemerals, id)
	return &paddockv1.CloseSessionResponse{Deleted: int32(deleted)}, nil
}

func (s *state) applyCheckpoint(_ *applyCtx, op *raftv1.CheckpointSessions) (proto.Message, error) {
	for _, c := range op.GetCheckpoints() {
		ss, ok := s.sessions[c.GetSessionId()]
		if !ok {
			continue
		}
		r := max(c.GetRemainingMs(), 0)
		if r >= ss.timeoutMs {
			r = 0
		}
		ss.remainingMs = r
	}
	return nil, nil
}

// Session describes one session.
func (f *FSM) Session(id uint64) (*paddockv1.Session, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s, ok := f.state.sessions[id]
	if !ok {
		return nil, errorf(ErrNoSession, "%d", id)
	}
	return f.state.describe(s), nil
}

// Sessions describes every session, sorted by id.
func (f *FSM) Sessions() []*paddockv1.Session {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]*paddockv1.Session, 0, len(f.state.sessions))
	for _, id := range slices.Sorted(maps.Keys(f.state.sessions)) {
		out = append(out, f.state.describe(f.state.sessions[id]))
	}
	return out
}

func (st *state) describe(s *session) *paddockv1.Session {
	return &paddockv1.Session{
		Id: s.id, TimeoutMs: s.timeoutMs, Ctime: s.ctime, LockDelayMs: s.lockDelayMs,
		Ephemerals: slices.Sorted(maps.Keys(st.tree.ephemerals[s.id])),
	}
}

// SessionTimers returns every session's timeout and checkpointed remaining
// time, sorted by id, for a new leader to start its clocks from.
func (f *FSM) SessionTimers() []SessionTimer {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]SessionTimer, 0, len(f.state.sessions))
	for _, id := range slices.Sorted(maps.Keys(f.state.sessions)) {
		s := f.state.sessions[id]
		out = append(out, SessionTimer{ID: id, TimeoutMs: s.timeoutMs, RemainingMs: s.remainingMs})
	}
	return out
}

// SessionTimer returns one session's timer, false if it does not exist.
func (f *FSM) SessionTimer(id uint64) (SessionTimer, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s, ok := f.state.sessions[id]
	if !ok {
		return SessionTimer{}, false
	}
	return SessionTimer{ID: id, TimeoutMs: s.timeoutMs, RemainingMs: s.remainingMs}, true
}
