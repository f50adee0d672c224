package fsm

import (
	"fmt"
	"maps"
	"slices"

	"google.golang.org/protobuf/proto"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
)

// memberTable is the registered members by id: where each serves clients.
// Its snapshot records are the RegisterMember messages, sorted by id.
type memberTable map[string]*raftv1.RegisterMember

// memberView is the table's (immutable) messages, sorted by id.
type memberView []*raftv1.RegisterMember

func (t memberTable) capture() tableView {
	v := make(memberView, 0, len(t))
	for _, id := range slices.Sorted(maps.Keys(t)) {
		v = append(v, t[id])
	}
	return v
}

func (v memberView) records() uint64 { return uint64(len(v)) }

func (v memberView) write(rw *recordWriter) error {
	for _, m := range v {
		if err := rw.write(&raftv1.SnapshotRecord{Record: &raftv1.SnapshotRecord_Member{Member: m}}); err != nil {
			return err
		}
	}
	return nil
}

func (t memberTable) restore(rec *raftv1.SnapshotRecord) (bool, error) {
	m := rec.GetMember()
	if m == nil {
		return false, nil
	}
	if m.GetId() == "" {
		return true, fmt.Errorf("fsm: snapshot: member without an id")
	}
	if _, dup := t[m.GetId()]; dup {
		return true, fmt.Errorf("fsm: snapshot: member %s appears twice", m.GetId())
	}
	t[m.GetId()] = m
	return true, nil
}

func (t memberTable) restored() error { return nil }

func (s *state) applyRegisterMember(_ *applyCtx, op *raftv1.RegisterMember) (proto.Message, error) {
	if op.GetId() == "" {
		return nil, errorf(ErrBadArgument, "member id is empty")
	}
	s.members[op.GetId()] = proto.CloneOf(op)
	return nil, nil
}

// Member returns the registered addresses of a member.
func (f *FSM) Member(id string) (*raftv1.RegisterMember, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	m, ok := f.state.members[id]
	return m, ok
}

// Members returns every registered member, sorted by id. The returned
// messages must not be modified.
func (f *FSM) Members() []*raftv1.RegisterMember {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]*raftv1.RegisterMember, 0, len(f.state.members))
	for _, id := range slices.Sorted(maps.Keys(f.state.members)) {
		out = append(out, f.state.members[id])
	}
	return out
}
