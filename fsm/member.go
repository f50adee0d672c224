package fsm

import (
	"maps"
	"slices"

	"google.golang.org/protobuf/proto"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
)

func (f *FSM) applyRegisterMember(op *raftv1.RegisterMember) error {
	if op.GetId() == "" {
		return errorf(ErrBadArgument, "member id is empty")
	}
	f.members[op.GetId()] = proto.CloneOf(op)
	return nil
}

// Member returns the registered addresses of a member.
func (f *FSM) Member(id string) (*raftv1.RegisterMember, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	m, ok := f.members[id]
	return m, ok
}

// Members returns every registered member, sorted by id. The returned
// messages must not be modified.
func (f *FSM) Members() []*raftv1.RegisterMember {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]*raftv1.RegisterMember, 0, len(f.members))
	for _, id := range slices.Sorted(maps.Keys(f.members)) {
		out = append(out, f.members[id])
	}
	return out
}
