package fsm

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/google/btree"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
)

// Result is what applying one entry produced: the index of the entry that
// made the change, the response (one of the paddock.v1 response messages,
// without header, or nil) and the domain error, if the command failed and
// changed nothing.
//
// A command whose request id the state machine has seen is Replayed: it
// changed nothing, and Index, Resp and Err are those of the entry that
// first carried the id, so the caller sees the original zxid.
type Result struct {
	Index    uint64
	Resp     proto.Message
	Err      error
	Replayed bool
}

// Sink receives what every applied batch changed. It is called after the
// state lock is released, on the apply goroutine, and must not block.
type Sink interface {
	// Applied reports the events of a batch and the last index applied.
	Applied(index uint64, events []Event)
	// Restored reports that the whole state was replaced by a snapshot.
	Restored(index uint64)
}

// FSM is the replicated state machine. It implements raft.BatchingFSM.
type FSM struct {
	sink Sink

	mu       sync.RWMutex
	tree     *btree.BTreeG[*znode]
	sessions map[uint64]*session
	// ephemerals indexes the tree by owner; derived, never snapshotted.
	ephemerals map[uint64]map[string]struct{}
	members    map[string]*raftv1.RegisterMember
	// requests remembers recent request ids and their results.
	requests *requestTable

	applied    atomic.Uint64
	badEntries atomic.Uint64
}

var _ raft.BatchingFSM = (*FSM)(nil)

// New returns an empty state machine holding the root and /paddock. sink
// may be nil.
func New(sink Sink) *FSM {
	f := &FSM{sink: sink}
	f.reset()
	return f
}

// reset installs empty state. Callers hold mu or own f exclusively.
func (f *FSM) reset() {
	f.tree = newTree()
	root := newZnode("/")
	root.dir = &dirStat{numChildren: 1, cversion: 1}
	f.tree.ReplaceOrInsert(root)
	f.tree.ReplaceOrInsert(newZnode(ReservedPath))
	f.sessions = make(map[uint64]*session)
	f.ephemerals = make(map[uint64]map[string]struct{})
	f.members = make(map[string]*raftv1.RegisterMember)
	limits := defaultRequestLimits
	if f.requests != nil {
		limits = f.requests.limits
	}
	f.requests = newRequestTable(limits)
}

// Apply applies one entry; raft uses ApplyBatch, this serves tests and
// callers without batching.
func (f *FSM) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies entries in order and returns one *Result per entry
// (nil for configuration entries).
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	results := make([]any, len(logs))
	var events []Event
	var last uint64
	f.mu.Lock()
	for i, l := range logs {
		last = l.Index
		if l.Type != raft.LogCommand {
			continue
		}
		res := f.applyEntry(l.Index, l.Data, &events)
		results[i] = res
	}
	// Published under mu, which capture holds: a snapshot's index always
	// matches its tree.
	if last > f.applied.Load() {
		f.applied.Store(last)
	}
	f.mu.Unlock()
	if f.sink != nil {
		f.sink.Applied(f.applied.Load(), events)
	}
	return results
}

// applyEntry decodes and applies one command entry. A command with a
// request id seen within the window is replayed instead; otherwise its
// result, success or domain failure, is remembered under the id. Bad
// entries are not: they change nothing, the table included.
func (f *FSM) applyEntry(index uint64, data []byte, events *[]Event) *Result {
	var cmd raftv1.Command
	if err := proto.Unmarshal(data, &cmd); err != nil {
		f.badEntries.Add(1)
		return &Result{Index: index, Err: fmt.Errorf("%w: index %d: %v", ErrBadEntry, index, err)}
	}
	id := cmd.GetRequestId()
	if len(id) > 0 {
		if err := checkRequestID(id); err != nil {
			return &Result{Index: index, Err: err}
		}
		if r, ok := f.requests.lookup(id, cmd.GetTimeUnixMs()); ok {
			return f.replay(index, &cmd, r)
		}
	}
	resp, err := f.applyCommand(index, &cmd, events)
	if err != nil {
		// The domain methods return a typed nil response with their error;
		// a failed command has no response, not a non-nil interface
		// holding a nil pointer.
		resp = nil
	}
	res := &Result{Index: index, Resp: resp, Err: err}
	if len(id) > 0 && !errors.Is(err, ErrBadEntry) {
		f.remember(&cmd, res)
	}
	return res
}

// applyCommand dispatches on the operation. Each case is one domain method.
func (f *FSM) applyCommand(index uint64, cmd *raftv1.Command, events *[]Event) (proto.Message, error) {
	now := cmd.GetTimeUnixMs()
	switch op := cmd.GetOp().(type) {
	case *raftv1.Command_Create:
		return f.applyCreate(index, now, op.Create, events)
	case *raftv1.Command_Set:
		return f.applySet(index, now, op.Set, events)
	case *raftv1.Command_Delete:
		return f.applyDelete(index, op.Delete, events)
	case *raftv1.Command_Multi:
		return f.applyMulti(index, now, op.Multi, events)
	case *raftv1.Command_OpenSession:
		return f.applyOpenSession(index, now, op.OpenSession)
	case *raftv1.Command_CloseSession:
		return f.applyCloseSession(index, op.CloseSession, events)
	case *raftv1.Command_CheckpointSessions:
		f.applyCheckpoint(op.CheckpointSessions)
		return nil, nil
	case *raftv1.Command_RegisterMember:
		return nil, f.applyRegisterMember(op.RegisterMember)
	case *raftv1.Command_Barrier:
		return nil, nil
	case *raftv1.Command_DeleteIdle:
		return f.applyDeleteIdle(index, op.DeleteIdle, events)
	default:
		f.badEntries.Add(1)
		return nil, fmt.Errorf("%w: index %d: unknown operation", ErrBadEntry, index)
	}
}

// AppliedIndex is the last raft index applied (commands and configuration
// entries; raft's own no-op entries never reach the state machine).
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// BadEntries counts entries rejected as undecodable or unknown.
func (f *FSM) BadEntries() uint64 { return f.badEntries.Load() }

// Snapshot captures the state in O(sessions + members + request ids): the
// tree is a copy-on-write clone, request entries are shared (immutable).
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.capture(), nil
}

// Restore replaces the state with a snapshot's.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	fresh := &FSM{}
	fresh.reset()
	index, err := fresh.readSnapshot(rc)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.tree, f.sessions, f.ephemerals, f.members = fresh.tree, fresh.sessions, fresh.ephemerals, fresh.members
	fresh.requests.limits = f.requests.limits
	f.requests = fresh.requests
	f.applied.Store(index)
	f.mu.Unlock()
	if f.sink != nil {
		f.sink.Restored(index)
	}
	return nil
}
