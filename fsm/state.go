package fsm

import (
	"errors"

	"google.golang.org/protobuf/proto"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
)

// state is every table of the replicated state, held in one value so that
// reset (a new state), Snapshot, Restore (a swap of the whole value) and
// StateHash cannot forget one: they all go through tables. A new table is
// a field here, a type in its own file implementing table, and an entry in
// tables; TestStateTablesListed fails if the last is missing.
type state struct {
	// tree is the znode tree and its derived ephemeral index (tree.go).
	tree *treeTable
	// sessions are the client sessions (session.go).
	sessions sessionTable
	// members are the registered members (member.go).
	members memberTable
	// requests remembers recent request ids and their results (dedupe.go).
	requests *requestTable
	// webSessions are the PHP web sessions (websession.go).
	webSessions *webSessionTable
}

// newState returns the state of a new cluster: the root and /paddock, no
// sessions, members, request ids or web sessions.
func newState(limits requestLimits) *state {
	s := emptyState(limits)
	s.tree.plant()
	return s
}

// emptyState returns a state whose every table is empty, the tree without
// even a root: what a restore fills.
func emptyState(limits requestLimits) *state {
	return &state{
		tree:        newTreeTable(),
		sessions:    sessionTable{},
		members:     memberTable{},
		requests:    newRequestTable(limits),
		webSessions: newWebSessionTable(),
	}
}

// tables lists every table, in the order their records are snapshotted
// (the tree first: nothing else refers to a znode, but a reader sees the
// bulk of the state first).
func (s *state) tables() []table {
	return []table{s.tree, s.sessions, s.members, s.requests, s.webSessions}
}

// table is one table of the state: it snapshots, restores and so hashes
// itself. Each lives in its own file with its own snapshot record kinds
// (SnapshotRecord's oneof).
type table interface {
	// capture returns an immutable view of the table for a snapshot or a
	// state hash. The caller holds the FSM's lock for writing; the view is
	// written later, concurrently with applies.
	capture() tableView
	// restore loads one snapshot record into the table, which belongs to a
	// fresh state not yet shared. It returns false if the record is not
	// one of the table's kinds.
	restore(rec *raftv1.SnapshotRecord) (bool, error)
	// restored checks the table once every record was loaded.
	restored() error
}

// tableView is a table's snapshot: its records, written in a fixed order
// (the same state writes the same bytes, which StateHash relies on).
type tableView interface {
	// records is how many records write writes.
	records() uint64
	// write writes the records.
	write(rw *recordWriter) error
}

// applyCtx is what applying one entry carries to every domain method: the
// entry's index (the zxid of what it changes), the command's time (the
// leader's clock: the state machine reads none), and the batch's events,
// to which a successful change appends its own.
type applyCtx struct {
	index  uint64
	term   uint64 // the entry's raft term
	now    int64
	events []Event
	// requestID is the command's request id.
	requestID []byte
	// webSessionApplied is FSM's hook (WithWebSessionHook), nil if none.
	webSessionApplied func(WebSessionChange)
}

// apply dispatches on the operation, one case per operation, each calling
// the domain method of the same shape. A command with no operation this
// binary knows gets errUnknownOp.
func (s *state) apply(c *applyCtx, cmd *raftv1.Command) (proto.Message, error) {
	switch op := cmd.GetOp().(type) {
	case *raftv1.Command_Create:
		return s.applyCreate(c, op.Create)
	case *raftv1.Command_Set:
		return s.applySet(c, op.Set)
	case *raftv1.Command_Delete:
		return s.applyDelete(c, op.Delete)
	case *raftv1.Command_Multi:
		return s.applyMulti(c, op.Multi)
	case *raftv1.Command_OpenSession:
		return s.applyOpenSession(c, op.OpenSession)
	case *raftv1.Command_CloseSession:
		return s.applyCloseSession(c, op.CloseSession)
	case *raftv1.Command_CheckpointSessions:
		return s.applyCheckpoint(c, op.CheckpointSessions)
	case *raftv1.Command_RegisterMember:
		return s.applyRegisterMember(c, op.RegisterMember)
	case *raftv1.Command_Barrier:
		return s.applyBarrier(c, op.Barrier)
	case *raftv1.Command_DeleteIdle:
		return s.applyDeleteIdle(c, op.DeleteIdle)
	case *raftv1.Command_Contend:
		return s.applyContend(c, op.Contend)
	case *raftv1.Command_Withdraw:
		return s.applyWithdraw(c, op.Withdraw)
	case *raftv1.Command_Proclaim:
		return s.applyProclaim(c, op.Proclaim)
	case *raftv1.Command_WebSessionWrite:
		return s.applyWebSessionWrite(c, op.WebSessionWrite)
	case *raftv1.Command_WebSessionDelete:
		return s.applyWebSessionDelete(c, op.WebSessionDelete)
	}
	return nil, errUnknownOp
}

// errUnknownOp is apply's answer to a command whose operation this binary
// does not know; Apply turns it into a bad entry.
var errUnknownOp = errors.New("fsm: unknown operation")

// applyBarrier changes nothing: a new leader commits one before serving.
func (s *state) applyBarrier(*applyCtx, *raftv1.Barrier) (proto.Message, error) {
	return nil, nil
}
