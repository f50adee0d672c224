package fsm

import (
	"fmt"
	"google.golang.org/protobuf/proto"
	"time"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// TTL and container znodes (ZooKeeper's meaning). The state machine only
// records what a znode is and deletes an idle one when the leader asks
// (DeleteIdle): it never decides that time has passed. The leader's
// deadline tracker (package node) times them.
//
// A znode's owner field says what kind it is, as ZooKeeper's
// ephemeralOwner does, so the znode stays 96 bytes: 0 for persistent, a
// session id for ephemeral (session ids are raft indexes, far below 2^62),
// ownerSpecial for a container, and ownerSpecial|ownerTTL|ttl for a TTL
// znode. Snapshots and the API carry the kind in fields of their own.
const (
	ownerSpecial = uint64(1) << 63
	ownerTTL     = uint64(1) << 62
	ownerTTLMask = ownerTTL - 1
)

// MaxTTL is the longest TTL a TTL znode may have.
const MaxTTL = 365 * 24 * time.Hour

// ownerSession, ownerTTLMs and ownerContainer read an owner field.
func ownerSession(owner uint64) uint64 {
	if owner&ownerSpecial != 0 {
		return 0
	}
	return owner
}

func ownerTTLMs(owner uint64) int64 {
	if owner&(ownerSpecial|ownerTTL) != ownerSpecial|ownerTTL {
		return 0
	}
	return int64(owner & ownerTTLMask)
}

func ownerContainer(owner uint64) bool { return owner == ownerSpecial }

// session is the ephemeral owner of n, 0 if n is not ephemeral.
func (n *znode) session() uint64 { return ownerSession(n.owner) }

// ttlMs is n's TTL in milliseconds, 0 if n is not a TTL znode.
func (n *znode) ttlMs() int64 { return ownerTTLMs(n.owner) }

// container reports whether n is a container znode.
func (n *znode) container() bool { return ownerContainer(n.owner) }

// Session is the owning session of an ephemeral znode, 0 for others.
func (s *Stat) Session() uint64 { return ownerSession(s.EphemeralOwner) }

// TTLMs is a TTL znode's TTL in milliseconds, 0 for others.
func (s *Stat) TTLMs() int64 { return ownerTTLMs(s.EphemeralOwner) }

// Container reports whether the znode is a container.
func (s *Stat) Container() bool { return ownerContainer(s.EphemeralOwner) }

// TTLOrContainer reports whether the znode is a TTL or container znode,
// in one bit test.
func (s *Stat) TTLOrContainer() bool { return s.EphemeralOwner&ownerSpecial != 0 }

// StatOwner is the EphemeralOwner of a Stat value for an API Stat: the
// inverse of the split Stat.Proto makes.
func StatOwner(p *paddockv1.Stat) uint64 {
	switch {
	case p.GetContainer():
		return ownerSpecial
	case p.GetTtlMs() > 0:
		return ownerSpecial | ownerTTL | uint64(p.GetTtlMs())
	}
	return p.GetEphemeralOwner()
}

// checkNodeType checks a CreateRequest's type, ttl_ms, session and
// sequential flag against each other, as ZooKeeper's CreateMode does:
// a TTL needs a TTL node (an ephemeral cannot have one), a container is
// never sequential.
func checkNodeType(req *paddockv1.CreateRequest) error {
	typ := req.GetType()
	if typ == paddockv1.NodeType_NODE_TYPE_TTL {
		if ttl := req.GetTtlMs(); ttl <= 0 || ttl > MaxTTL.Milliseconds() {
			return errorf(ErrBadArgument, "ttl %dms, must be 1ms to %s", ttl, MaxTTL)
		}
	} else if req.GetTtlMs() != 0 {
		return errorf(ErrBadArgument, "ttl_ms is only for TTL nodes, not %s ones", typeName(typ))
	}
	if req.GetSessionId() != 0 && typ != paddockv1.NodeType_NODE_TYPE_EPHEMERAL {
		return errorf(ErrBadArgument, "session_id given for a %s node", typeName(typ))
	}
	if typ == paddockv1.NodeType_NODE_TYPE_CONTAINER && req.GetSequential() {
		return errorf(ErrBadArgument, "a container node cannot be sequential")
	}
	return nil
}

func typeName(t paddockv1.NodeType) string {
	switch t {
	case paddockv1.NodeType_NODE_TYPE_EPHEMERAL:
		return "ephemeral"
	case paddockv1.NodeType_NODE_TYPE_TTL:
		return "TTL"
	case paddockv1.NodeType_NODE_TYPE_CONTAINER:
		return "container"
	}
	return "persistent"
}

// specialOwner is the owner field of a new TTL or container znode, 0 for
// the other types. req has passed checkNodeType.
func specialOwner(req *paddockv1.CreateRequest) uint64 {
	switch req.GetType() {
	case paddockv1.NodeType_NODE_TYPE_TTL:
		return ownerSpecial | ownerTTL | uint64(req.GetTtlMs())
	case paddockv1.NodeType_NODE_TYPE_CONTAINER:
		return ownerSpecial
	}
	return 0
}

// ownerOf is the owner field of a snapshot znode.
func ownerOf(z *raftv1.Znode) (uint64, error) {
	switch {
	case z.GetContainer() && (z.GetTtlMs() != 0 || z.GetEphemeralOwner() != 0):
		return 0, fmt.Errorf("fsm: snapshot: %s is a container with an owner or a ttl", z.GetPath())
	case z.GetContainer():
		return ownerSpecial, nil
	case z.GetTtlMs() != 0:
		if z.GetEphemeralOwner() != 0 || z.GetTtlMs() < 0 || uint64(z.GetTtlMs()) > ownerTTLMask {
			return 0, fmt.Errorf("fsm: snapshot: %s has a bad ttl or an owner and a ttl", z.GetPath())
		}
		return ownerSpecial | ownerTTL | uint64(z.GetTtlMs()), nil
	case z.GetEphemeralOwner()&ownerSpecial != 0:
		return 0, fmt.Errorf("fsm: snapshot: %s has a bad ephemeral owner", z.GetPath())
	}
	return z.GetEphemeralOwner(), nil
}

// applyDeleteIdle deletes a TTL or container znode that is still as the
// leader saw it when it set its deadline. Anything else (gone, changed,
// not empty, a container never given a child, another kind of znode) is
// not a failure: the leader's view was stale, nothing is deleted, and the
// response says 0.
func (s *state) applyDeleteIdle(c *applyCtx, op *raftv1.DeleteIdle) (proto.Message, error) {
	if err := ValidatePath(op.GetPath(), false); err != nil {
		return nil, err
	}
	t := s.newTxn(c.index, 0, c.events)
	n := t.get(op.GetPath())
	if n == nil || !idle(n, op.GetMzxid(), op.GetPzxid()) {
		return &paddockv1.DeleteResponse{}, nil
	}
	t.tree.Delete(n)
	t.events = append(t.events, Event{Zxid: c.index, Type: EventDeleted, Path: n.path, PrevData: n.data})
	t.detach(n.parent())
	s.commit(t, c)
	return &paddockv1.DeleteResponse{Deleted: 1}, nil
}

// idle reports whether n may be deleted by a DeleteIdle that saw mzxid
// and pzxid.
func idle(n *znode, mzxid, pzxid uint64) bool {
	if n.numChildren() != 0 || n.mzxid != mzxid || n.pzxid() != pzxid {
		return false
	}
	return n.ttlMs() > 0 || (n.container() && n.cversion() > 0)
}

// Idle is a TTL znode, or a container that had children and has none,
// as a new leader lists them to time them.
type Idle struct {
	Path         string
	Mzxid, Pzxid uint64
	// TTLMs is the TTL of a TTL znode, 0 for a container.
	TTLMs int64
}

// IdleCandidates lists every TTL znode without children and every empty
// container that had a child. It scans the tree: the leader calls it once per term.
func (f *FSM) IdleCandidates() []Idle {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []Idle
	f.state.tree.nodes.Ascend(func(n *znode) bool {
		if n.owner&ownerSpecial == 0 {
			return true
		}
		if n.numChildren() > 0 || (n.container() && n.cversion() == 0) {
			return true
		}
		out = append(out, Idle{Path: n.path, Mzxid: n.mzxid, Pzxid: n.pzxid(), TTLMs: n.ttlMs()})
		return true
	})
	return out
}
