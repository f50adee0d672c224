package fsm

import (
	"maps"
	"slices"

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
}

// SessionTimer is what the leader needs to time a session.
type SessionTimer struct {
	ID          uint64
	TimeoutMs   int64
	RemainingMs int64
}

func (f *FSM) applyOpenSession(index uint64, now int64, op *raftv1.OpenSession) (*paddockv1.OpenSessionResponse, error) {
	if op.GetTimeoutMs() <= 0 {
		return nil, errorf(ErrBadArgument, "session timeout %dms", op.GetTimeoutMs())
	}
	f.sessions[index] = &session{id: index, timeoutMs: op.GetTimeoutMs(), ctime: now}
	return &paddockv1.OpenSessionResponse{SessionId: index, TimeoutMs: op.GetTimeoutMs()}, nil
}

// applyCloseSession removes the session and, in the same entry, every
// ephemeral znode it owns.
func (f *FSM) applyCloseSession(index uint64, op *raftv1.CloseSession, events *[]Event) (*paddockv1.CloseSessionResponse, error) {
	id := op.GetSessionId()
	if _, ok := f.sessions[id]; !ok {
		return nil, errorf(ErrSessionExpired, "session %d", id)
	}
	t := f.newTxn(index, 0, *events)
	paths := slices.Sorted(maps.Keys(f.ephemerals[id]))
	for _, p := range paths {
		n := t.get(p)
		t.tree.Delete(n)
		t.events = append(t.events, Event{Zxid: index, Type: EventDeleted, Path: n.path, PrevData: n.data})
		t.detach(n.parent())
	}
	f.commit(t, events)
	delete(f.sessions, id)
	delete(f.ephemerals, id)
	return &paddockv1.CloseSessionResponse{Deleted: int32(len(paths))}, nil
}

func (f *FSM) applyCheckpoint(op *raftv1.CheckpointSessions) {
	for _, c := range op.GetCheckpoints() {
		s, ok := f.sessions[c.GetSessionId()]
		if !ok {
			continue
		}
		r := max(c.GetRemainingMs(), 0)
		if r >= s.timeoutMs {
			r = 0
		}
		s.remainingMs = r
	}
}

// Session describes one session.
func (f *FSM) Session(id uint64) (*paddockv1.Session, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s, ok := f.sessions[id]
	if !ok {
		return nil, errorf(ErrNoSession, "%d", id)
	}
	return f.describe(s), nil
}

// Sessions describes every session, sorted by id.
func (f *FSM) Sessions() []*paddockv1.Session {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]*paddockv1.Session, 0, len(f.sessions))
	for _, id := range slices.Sorted(maps.Keys(f.sessions)) {
		out = append(out, f.describe(f.sessions[id]))
	}
	return out
}

func (f *FSM) describe(s *session) *paddockv1.Session {
	return &paddockv1.Session{
		Id: s.id, TimeoutMs: s.timeoutMs, Ctime: s.ctime,
		Ephemerals: slices.Sorted(maps.Keys(f.ephemerals[s.id])),
	}
}

// SessionTimers returns every session's timeout and checkpointed remaining
// time, sorted by id, for a new leader to start its clocks from.
func (f *FSM) SessionTimers() []SessionTimer {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]SessionTimer, 0, len(f.sessions))
	for _, id := range slices.Sorted(maps.Keys(f.sessions)) {
		s := f.sessions[id]
		out = append(out, SessionTimer{ID: id, TimeoutMs: s.timeoutMs, RemainingMs: s.remainingMs})
	}
	return out
}

// SessionTimer returns one session's timer, false if it does not exist.
func (f *FSM) SessionTimer(id uint64) (SessionTimer, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s, ok := f.sessions[id]
	if !ok {
		return SessionTimer{}, false
	}
	return SessionTimer{ID: id, TimeoutMs: s.timeoutMs, RemainingMs: s.remainingMs}, true
}
