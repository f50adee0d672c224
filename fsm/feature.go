package fsm

import (
	"fmt"
	"slices"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// Feature levels. Each kind of command belongs to the level that
// introduced it (OpFeatureLevel). A binary supports every level up to its
// FeatureLevel; every member records the level it supports in the member
// table (RegisterMember.feature_level), and a leader proposes a command of
// a level above BaseFeatureLevel only when every member of the raft
// configuration records at least that level (CheckFeatureLevel). A replica
// that meets an entry above its level stops (see Err): applying it
// wrongly, or skipping it, would let replicas diverge.
const (
	// FeatureLevel is the highest feature level this binary supports.
	FeatureLevel uint32 = 3
	// BaseFeatureLevel is the level every Paddock binary supports: its
	// commands are proposed without asking the members, so a cluster
	// whose members have not registered yet (a new cluster, a member
	// still catching up) can still register them and serve writes.
	BaseFeatureLevel uint32 = 1
)

// OpFeatureLevel returns the feature level that introduced cmd's
// operation, and false if cmd carries no operation this binary knows. A
// new kind of command is a case here with the level of the release that
// adds it; so is an existing kind given a new field that older binaries
// would silently ignore (the case then inspects the field).
func OpFeatureLevel(cmd *raftv1.Command) (uint32, bool) {
	switch op := cmd.GetOp().(type) {
	case *raftv1.Command_Create:
		return fencedLevel(op.Create.GetFence() != nil), true
	case *raftv1.Command_Set:
		return fencedLevel(op.Set.GetFence() != nil), true
	case *raftv1.Command_Delete:
		return fencedLevel(op.Delete.GetFence() != nil), true
	case *raftv1.Command_Multi:
		return fencedLevel(multiFenced(op.Multi)), true
	case *raftv1.Command_OpenSession:
		return fencedLevel(op.OpenSession.GetLockDelayMs() != 0), true
	case *raftv1.Command_Contend, *raftv1.Command_Withdraw, *raftv1.Command_Proclaim:
		// Elections and locks (feature level 2).
		return 2, true
	case *raftv1.Command_WebSessionWrite, *raftv1.Command_WebSessionDelete:
		// PHP web sessions (feature level 3).
		return 3, true
	case *raftv1.Command_CloseSession,
		*raftv1.Command_CheckpointSessions,
		*raftv1.Command_RegisterMember,
		*raftv1.Command_Barrier,
		*raftv1.Command_DeleteIdle:
		// The first release (feature level 1: TTL and container znodes
		// are in it, so creating one needs no level of its own).
		return 1, true
	}
	return 0, false
}

// OpName names cmd's operation for messages ("create", "open_session").
func OpName(cmd *raftv1.Command) string {
	if n := opNumber(cmd); n != 0 {
		return opName(n)
	}
	return "an unknown operation"
}

// CheckFeatureLevel returns nil if cmd, whose operation needs feature
// level level, may be proposed to a cluster whose raft configuration
// holds the members ids, and otherwise an error matching ErrFeatureLevel
// that names the first member (by id) that does not record the level. A
// level at or below BaseFeatureLevel needs no record. Proposers pass
// OpFeatureLevel(cmd) as level; tests may pass another.
func (f *FSM) CheckFeatureLevel(cmd *raftv1.Command, level uint32, ids []string) error {
	if level <= BaseFeatureLevel {
		return nil
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, id := range slices.Sorted(slices.Values(ids)) {
		m, ok := f.state.members[id]
		if !ok {
			return fmt.Errorf("%w: member %s has not recorded its feature level yet, %s needs %d: wait for it to register, or upgrade %s",
				ErrFeatureLevel, id, OpName(cmd), level, id)
		}
		if m.GetFeatureLevel() < level {
			return fmt.Errorf("%w: member %s supports feature level %d, %s needs %d: upgrade %s",
				ErrFeatureLevel, id, m.GetFeatureLevel(), OpName(cmd), level, id)
		}
	}
	return nil
}

// Option configures a state machine.
type Option func(*FSM)

// WithFeatureLevel makes the state machine support feature levels up to
// level instead of FeatureLevel: tests use it to stand for a binary of an
// older or a newer release.
func WithFeatureLevel(level uint32) Option {
	return func(f *FSM) { f.level = level }
}

// FeatureLevel is the highest feature level this state machine applies.
func (f *FSM) FeatureLevel() uint32 { return f.level }

// understand returns nil if the state machine can apply cmd, the entry
// at index, and otherwise the fatal error that stops it.
func (f *FSM) understand(index uint64, cmd *raftv1.Command) error {
	opLevel, known := OpFeatureLevel(cmd)
	need := max(cmd.GetFeatureLevel(), opLevel)
	switch {
	case need > f.level:
		return fmt.Errorf("%w: entry %d needs feature level %d, this binary supports %d: upgrade paddock on this node",
			ErrUpgradeRequired, index, need, f.level)
	case !known && len(cmd.ProtoReflect().GetUnknown()) > 0:
		return fmt.Errorf("%w: entry %d carries an operation this binary does not know: upgrade paddock on this node",
			ErrUpgradeRequired, index)
	case !known:
		return fmt.Errorf("%w: entry %d carries no operation: it was written by another paddock or is corrupt: upgrade paddock on this node",
			ErrUpgradeRequired, index)
	}
	return nil
}

// undecodable is the fatal error of an entry that does not decode.
func undecodable(index uint64, err error) error {
	return fmt.Errorf("%w: entry %d cannot be decoded (%v): it was written by another paddock or is corrupt: upgrade paddock on this node",
		ErrUpgradeRequired, index, err)
}

// fail stops the state machine at the entry (or snapshot) that caused
// err: it applies nothing more. The first error stays. Callers hold mu.
func (f *FSM) fail(err error) {
	if f.fatal != nil {
		return
	}
	f.fatal = err // before close: Err reads it once failed is closed
	close(f.failed)
}

// Err returns the error that stopped the state machine, nil while it runs.
// It matches ErrUpgradeRequired and names the entry and the upgrade. It
// takes no lock: every read and proposal asks.
func (f *FSM) Err() error {
	select {
	case <-f.failed:
		return f.fatal
	default:
		return nil
	}
}

// Failed is closed when the state machine stops at an entry it cannot
// apply (Err says which). It then refuses every later entry without
// changing anything, refuses to snapshot or restore, and its applied
// index stays at the last entry it applied: its owner must stop the
// replica, which a newer binary can restart from its log.
func (f *FSM) Failed() <-chan struct{} { return f.failed }

// fencedLevel is the level of a tree write or session open: 2 when it
// uses a field of level 2 (a fence, a lock-delay) that a level-1 binary
// would silently ignore, else 1.
func fencedLevel(uses bool) uint32 {
	if uses {
		return 2
	}
	return 1
}

// multiFenced reports whether a multi or any of its ops carries a fence.
func multiFenced(m *paddockv1.MultiRequest) bool {
	if m.GetFence() != nil {
		return true
	}
	for _, o := range m.GetOps() {
		switch op := o.GetOp().(type) {
		case *paddockv1.Op_Create:
			if op.Create.GetFence() != nil {
				return true
			}
		case *paddockv1.Op_Set:
			if op.Set.GetFence() != nil {
				return true
			}
		case *paddockv1.Op_Delete:
			if op.Delete.GetFence() != nil {
				return true
			}
		}
	}
	return false
}
