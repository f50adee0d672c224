package fsm

import (
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// Elections and locks (contentions) are recipes on the tree, in the
// reserved subtree that only node-built commands change:
//
//	/paddock/elections/NAME            a container, data {"limit":1}
//	/paddock/elections/NAME/SEQ-SID    a candidate: ephemeral of session SID
//	/paddock/locks/NAME                a container, data {"limit":N}
//	/paddock/locks/NAME/SEQ-SID        a holder or waiter
//
// SEQ is the line's sequence number (ten digits), so name order is
// creation order, which is czxid order. The first limit children hold the
// election or lock; a child's fencing token is its czxid, global and
// increasing. A session has at most one child per line (Contend finds
// it). When a session with a lock-delay expires holding, its child stays
// as a placeholder: a TTL znode of the delay, owned by no session, that
// keeps its place (so no one else holds it) and whose token is dead; the
// leader's deadline tracker deletes it like any TTL znode.
//
// A fence (on Create, Set, Delete, Multi) names a line and a token; the
// write applies only if the token's child is ephemeral (its session
// lives) and among the line's first limit children.

// Contention roots, below ReservedPath.
const (
	ElectionsPath = ReservedPath + "/elections"
	LocksPath     = ReservedPath + "/locks"
)

// ContentionDir returns the znode of the election or lock name, or an
// error (ErrBadArgument) for an unknown kind or a bad name.
func ContentionDir(kind raftv1.ContentionKind, name string) (string, error) {
	if err := checkContentionName(name); err != nil {
		return "", err
	}
	switch kind {
	case raftv1.ContentionKind_CONTENTION_KIND_ELECTION:
		return ElectionsPath + "/" + name, nil
	case raftv1.ContentionKind_CONTENTION_KIND_LOCK:
		return LocksPath + "/" + name, nil
	}
	return "", errorf(ErrBadArgument, "unknown contention kind %d", kind)
}

// MaxContentionNameLength is the longest election or lock name, in
// bytes: the longest whose candidates' paths
// (/paddock/elections/NAME/SEQUENCE-SESSION, with a sequence of up to 19
// digits and a session id of up to 20) fit in MaxPathLength, so that every
// candidate is a valid znode that a snapshot restores.
const MaxContentionNameLength = MaxPathLength - len(ElectionsPath+"//-") - 19 - 20

// checkContentionName accepts one valid znode name.
func checkContentionName(name string) error {
	if name == "" {
		return errorf(ErrBadArgument, "empty election or lock name")
	}
	if len(name) > MaxContentionNameLength {
		return errorf(ErrBadArgument, "election or lock name of %d bytes, limit %d", len(name), MaxContentionNameLength)
	}
	if strings.Contains(name, "/") {
		return errorf(ErrBadArgument, "election or lock name %q has a '/': it is one znode name", name)
	}
	if err := ValidatePath("/"+name, false); err != nil {
		return errorf(ErrBadArgument, "election or lock name %q: %v", name, err)
	}
	return nil
}

// ParseFenceName splits a fence name, "elections/NAME" or "locks/NAME".
func ParseFenceName(s string) (raftv1.ContentionKind, string, error) {
	kind, name, ok := strings.Cut(s, "/")
	if ok {
		switch kind {
		case "elections":
			return raftv1.ContentionKind_CONTENTION_KIND_ELECTION, name, checkContentionName(name)
		case "locks":
			return raftv1.ContentionKind_CONTENTION_KIND_LOCK, name, checkContentionName(name)
		}
	}
	return 0, "", errorf(ErrBadArgument, "fence name %q: want elections/NAME or locks/NAME", s)
}

// limitData is a line's container data.
func limitData(limit uint32) []byte {
	return []byte(`{"limit":` + strconv.FormatUint(uint64(limit), 10) + `}`)
}

// lineLimit reads a line's container data; what Contend did not write
// (impossible below /paddock) reads as 1.
func lineLimit(data []byte) uint32 {
	s, ok := strings.CutPrefix(string(data), `{"limit":`)
	if s, ok2 := strings.CutSuffix(s, "}"); ok && ok2 {
		if n, err := strconv.ParseUint(s, 10, 32); err == nil && n > 0 {
			return uint32(n)
		}
	}
	return 1
}

// checkContendArgs checks a Contend without the state.
func checkContendArgs(op *raftv1.Contend) (string, error) {
	dir, err := ContentionDir(op.GetKind(), op.GetName())
	if err != nil {
		return "", err
	}
	if op.GetKind() == raftv1.ContentionKind_CONTENTION_KIND_ELECTION && op.GetLimit() != 1 {
		return "", errorf(ErrBadArgument, "an election has one leader, not %d", op.GetLimit())
	}
	if op.GetLimit() == 0 || op.GetLimit() > MaxLockLimit {
		return "", errorf(ErrBadArgument, "lock limit %d: want 1 to %d", op.GetLimit(), MaxLockLimit)
	}
	if op.GetSessionId() == 0 {
		return "", errorf(ErrBadArgument, "no session")
	}
	if err := checkData(op.GetValue()); err != nil {
		return "", err
	}
	return dir, nil
}

// MaxLockLimit is the most holders a semaphore may have.
const MaxLockLimit = 10000

// line is a contention's children in line order.
func (t *txn) line(dir string) []*znode { return t.appendChildren(nil, dir) }

// contender describes a line's child.
func contender(name string, n *znode) *paddockv1.Contender {
	return &paddockv1.Contender{
		Name: name, Key: n.path, Value: n.data, Token: n.czxid,
		SessionId: n.session(), ModZxid: n.mzxid, Ctime: n.ctime,
	}
}

// applyContend enters a session in a line, or finds its place.
func (s *state) applyContend(c *applyCtx, op *raftv1.Contend) (proto.Message, error) {
	dir, err := checkContendArgs(op)
	if err != nil {
		return nil, err
	}
	sid := op.GetSessionId()
	if !s.sessionOK(sid) {
		return nil, errorf(ErrSessionExpired, "session %d", sid)
	}
	t := s.newTxn(c.index, c.now, c.events)
	d := t.get(dir)
	if d != nil {
		if have := lineLimit(d.data); have != op.GetLimit() && d.numChildren() > 0 {
			return nil, errorf(ErrLimitMismatch, "%s has limit %d, not %d", op.GetName(), have, op.GetLimit())
		} else if have != op.GetLimit() {
			// An empty line the leader has not deleted yet: the first
			// Acquire of the new line fixes the limit.
			m := *d
			m.data = limitData(op.GetLimit())
			m.version++
			m.mzxid, m.mtime = t.index, t.now
			t.put(&m)
			t.events = append(t.events, Event{Zxid: t.index, Type: EventDataChanged, Path: m.path, Stat: m.statValue(), PrevData: d.data})
			d = &m
		}
		for p := range s.tree.ephemerals[sid] {
			if n := t.get(p); n != nil && n.parent() == dir {
				return &raftv1.ContendResponse{Candidate: contender(op.GetName(), n), Existing: true, Limit: op.GetLimit()}, nil
			}
		}
		if op.GetTryOnly() && uint32(d.numChildren()) >= op.GetLimit() {
			return &raftv1.ContendResponse{Busy: true, Limit: op.GetLimit()}, nil
		}
	}
	root, _ := splitPath(dir)
	if t.get(root) == nil {
		t.addChild(t.get(ReservedPath), root, nil, 0, false)
	}
	if d == nil {
		d = t.addChild(t.get(root), dir, limitData(op.GetLimit()), ownerSpecial, false)
	}
	name := fmt.Sprintf("%0*d-%d", sequenceDigits, d.seq(), sid)
	n := t.addChild(d, dir+"/"+name, op.GetValue(), sid, true)
	t.eph = append(t.eph, ephRef{owner: sid, path: n.path})
	s.commit(t, c)
	return &raftv1.ContendResponse{Candidate: contender(op.GetName(), n), Limit: op.GetLimit()}, nil
}

// addChild creates path below parent (which the caller looked up) with
// the owner field owner, bumping the parent's sequence when seq is set,
// and returns the new znode.
func (t *txn) addChild(parent *znode, path string, data []byte, owner uint64, seq bool) *znode {
	n := newZnode(path)
	n.data = data
	n.czxid, n.mzxid = t.index, t.index
	n.ctime, n.mtime = t.now, t.now
	n.owner = owner
	p := *parent
	p.dir = parent.dirCopy()
	p.dir.numChildren++
	p.dir.cversion++
	p.dir.pzxid = t.index
	if seq {
		p.dir.seq++
	}
	t.put(&p)
	t.put(n)
	t.events = append(t.events,
		Event{Zxid: t.index, Type: EventCreated, Path: n.path, Stat: n.statValue()},
		Event{Zxid: t.index, Type: EventChildrenChanged, Path: p.path, Stat: p.statValue()})
	return n
}

// findToken returns the line's child whose czxid is token, with the
// line's limit and the child's place, or nil.
func (t *txn) findToken(dir string, token uint64) (n *znode, limit uint32, place int) {
	d := t.get(dir)
	if d == nil {
		return nil, 0, 0
	}
	limit = lineLimit(d.data)
	for i, c := range t.line(dir) {
		if c.czxid == token {
			return c, limit, i
		}
	}
	return nil, limit, 0
}

// applyWithdraw removes a candidate by token (Resign, Release): an
// explicit step down, so no lock-delay.
func (s *state) applyWithdraw(c *applyCtx, op *raftv1.Withdraw) (proto.Message, error) {
	dir, err := ContentionDir(op.GetKind(), op.GetName())
	if err != nil {
		return nil, err
	}
	t := s.newTxn(c.index, c.now, c.events)
	n, _, _ := t.findToken(dir, op.GetToken())
	if n == nil || n.session() == 0 {
		return nil, errorf(ErrNotHeld, "%s: token %d is not in line (resigned, released, or its session ended)", op.GetName(), op.GetToken())
	}
	t.tree.Delete(n)
	t.eph = append(t.eph, ephRef{owner: n.owner, path: n.path, del: true})
	t.events = append(t.events, Event{Zxid: t.index, Type: EventDeleted, Path: n.path, PrevData: n.data})
	t.detach(dir)
	s.commit(t, c)
	return nil, nil
}

// applyProclaim sets the leader's value if token leads.
func (s *state) applyProclaim(c *applyCtx, op *raftv1.Proclaim) (proto.Message, error) {
	dir, err := ContentionDir(raftv1.ContentionKind_CONTENTION_KIND_ELECTION, op.GetName())
	if err != nil {
		return nil, err
	}
	if err := checkData(op.GetValue()); err != nil {
		return nil, err
	}
	t := s.newTxn(c.index, c.now, c.events)
	if err := t.checkFence(&paddockv1.Fence{Name: "elections/" + op.GetName(), Token: op.GetToken()}); err != nil {
		return nil, err
	}
	n, _, _ := t.findToken(dir, op.GetToken())
	m := *n
	m.data = op.GetValue()
	m.version++
	m.mzxid = t.index
	m.mtime = t.now
	t.put(&m)
	t.events = append(t.events, Event{Zxid: t.index, Type: EventDataChanged, Path: m.path, Stat: m.statValue(), PrevData: n.data})
	s.commit(t, c)
	return &paddockv1.ProclaimResponse{Leader: contender(op.GetName(), &m)}, nil
}

// checkFence returns nil if f is nil or its token holds its line now,
// else ErrFenceLost (ErrBadArgument for a malformed fence).
func (t *txn) checkFence(f *paddockv1.Fence) error {
	if f == nil {
		return nil
	}
	kind, name, err := ParseFenceName(f.GetName())
	if err != nil {
		return err
	}
	if f.GetToken() == 0 {
		return errorf(ErrBadArgument, "fence %s without a token", f.GetName())
	}
	dir, _ := ContentionDir(kind, name)
	n, limit, place := t.findToken(dir, f.GetToken())
	switch {
	case n == nil:
		return errorf(ErrFenceLost, "%s: token %d no longer holds it (resigned, released, or its session ended)", f.GetName(), f.GetToken())
	case n.session() == 0:
		return errorf(ErrFenceLost, "%s: token %d no longer holds it (its session expired)", f.GetName(), f.GetToken())
	case uint32(place) >= limit:
		return errorf(ErrFenceLost, "%s: token %d does not hold it (%d ahead in line)", f.GetName(), f.GetToken(), place)
	}
	return nil
}

// checkFenceArg checks a fence without the state.
func checkFenceArg(f *paddockv1.Fence) error {
	if f == nil {
		return nil
	}
	if _, _, err := ParseFenceName(f.GetName()); err != nil {
		return err
	}
	if f.GetToken() == 0 {
		return errorf(ErrBadArgument, "fence %s without a token", f.GetName())
	}
	return nil
}

// lockDelayed turns the children that session id holds in lines into
// lock-delay placeholders, before CloseSession deletes the session's
// other ephemerals, and returns their paths.
func (t *txn) lockDelayed(paths []string, delayMs int64) map[string]bool {
	out := map[string]bool{}
	for _, p := range paths {
		n := t.get(p)
		dir := n.parent()
		root, _ := splitPath(dir)
		if root != ElectionsPath && root != LocksPath {
			continue
		}
		d := t.get(dir)
		limit := lineLimit(d.data)
		held := false
		for i, c := range t.line(dir) {
			if uint32(i) >= limit {
				break
			}
			if c.path == n.path {
				held = true
				break
			}
		}
		if !held {
			continue
		}
		m := *n
		m.owner = ownerSpecial | ownerTTL | uint64(delayMs)
		m.mzxid = t.index
		m.mtime = t.now
		m.version++
		t.put(&m)
		t.events = append(t.events, Event{Zxid: t.index, Type: EventDataChanged, Path: m.path, Stat: m.statValue(), PrevData: n.data})
		out[p] = true
	}
	return out
}

// Contended is one child of a line as Contention lists it.
type Contended struct {
	*paddockv1.Contender
	// DelayMs is a lock-delay placeholder's delay (Contender.session_id
	// is 0), counted from Mtime; 0 for a candidate.
	DelayMs int64
	// Mtime is when the child last changed (leader's clock, ms).
	Mtime int64
}

// Contention is a line as it was at Zxid.
type Contention struct {
	// Zxid is the applied index the line was read at.
	Zxid uint64
	// Limit is the line's holder limit, 0 when the line does not exist.
	Limit uint32
	// Line is every child in line order; the first Limit hold.
	Line []Contended
}

// Contention reads an election's or lock's line.
func (f *FSM) Contention(kind raftv1.ContentionKind, name string) (Contention, error) {
	dir, err := ContentionDir(kind, name)
	if err != nil {
		return Contention{}, err
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := Contention{Zxid: f.applied.Load()}
	t := &txn{tree: f.state.tree.nodes}
	d := t.get(dir)
	if d == nil {
		return out, nil
	}
	out.Limit = lineLimit(d.data)
	for _, c := range t.line(dir) {
		out.Line = append(out.Line, Contended{Contender: contender(name, c), DelayMs: c.ttlMs(), Mtime: c.mtime})
	}
	return out, nil
}
