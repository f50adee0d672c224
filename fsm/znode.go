package fsm

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/google/btree"
	"google.golang.org/protobuf/proto"

	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// znode is one node of the tree. A stored znode is never modified: changes
// store a modified copy, so snapshot clones stay valid.
//
// It is laid out for a tree of many small leaves (96 bytes, one size
// class, plus its data and path): the path is stored once, and the parent
// and name are slices of it; the fields only a parent needs are in dir,
// nil for a node that never had a child.
type znode struct {
	path  string
	data  []byte
	czxid uint64
	mzxid uint64
	ctime int64
	mtime int64
	// owner is the ephemeral owner, or the TTL or container mark (ttl.go).
	owner uint64
	dir   *dirStat
	// version is the data version (Stat.version).
	version int32
	// parentEnd and nameAt delimit the parent and name in path:
	// path[:parentEnd] and path[nameAt:] (the root's parent is "").
	parentEnd, nameAt uint16
}

// dirStat is the part of a znode's Stat that changes with its children.
// A znode whose dir is nil never had a child: its pzxid is its czxid and
// its cversion, children and sequence counter are 0. A stored dirStat is
// never modified, like the znode that holds it.
type dirStat struct {
	pzxid       uint64
	cversion    int32
	numChildren int32
	// seq is the next sequential suffix handed to a child.
	seq int64
}

// newZnode returns a znode at path (a valid path) with its parent and
// name delimited.
func newZnode(path string) *znode {
	n := &znode{path: path}
	n.delimit()
	return n
}

// delimit sets parentEnd and nameAt from path, as splitPath splits it.
func (n *znode) delimit() {
	i := strings.LastIndexByte(n.path, '/')
	switch {
	case n.path == "/":
		n.parentEnd, n.nameAt = 0, 1
	case i == 0:
		n.parentEnd, n.nameAt = 1, 1
	default:
		n.parentEnd, n.nameAt = uint16(i), uint16(i+1)
	}
}

func (n *znode) parent() string { return n.path[:n.parentEnd] }
func (n *znode) name() string   { return n.path[n.nameAt:] }

// childKey is a key that sorts as the child name of parent (name ""
// sorts before every child), for range scans.
func childKey(parent, name string) *znode {
	if parent == "/" {
		return &znode{path: "/" + name, parentEnd: 1, nameAt: 1}
	}
	return &znode{path: parent + "/" + name, parentEnd: uint16(len(parent)), nameAt: uint16(len(parent) + 1)}
}

// pzxid, cversion, numChildren and seq read dir, with its nil meaning.
func (n *znode) pzxid() uint64 {
	if n.dir == nil {
		return n.czxid
	}
	return n.dir.pzxid
}

func (n *znode) cversion() int32 {
	if n.dir == nil {
		return 0
	}
	return n.dir.cversion
}

func (n *znode) numChildren() int32 {
	if n.dir == nil {
		return 0
	}
	return n.dir.numChildren
}

func (n *znode) seq() int64 {
	if n.dir == nil {
		return 0
	}
	return n.dir.seq
}

// dirCopy returns a copy of n's dirStat to change, for a copy of n.
func (n *znode) dirCopy() *dirStat {
	if n.dir == nil {
		return &dirStat{pzxid: n.czxid}
	}
	d := *n.dir
	return &d
}

// Stat is a znode's Stat (ZooKeeper's meaning) as a plain value.
type Stat struct {
	Czxid, Mzxid, Pzxid uint64
	Ctime, Mtime        int64
	// EphemeralOwner is the owning session of an ephemeral znode, or, as
	// ZooKeeper's ephemeralOwner does, a mark for a TTL or container
	// znode (read it with Session, TTLMs and Container; Proto splits it
	// into the API's fields). One field keeps events, which the watch
	// history holds by the thousand, small.
	EphemeralOwner    uint64
	Version, Cversion int32
	DataLength        int32
	NumChildren       int32
}

// Proto returns s as the API's message.
func (s *Stat) Proto() *paddockv1.Stat {
	m := &paddockv1.Stat{}
	s.fill(m)
	return m
}

// fill sets the fields of m, an empty message, to s: for a Stat allocated
// together with the message that holds it.
func (s *Stat) fill(m *paddockv1.Stat) {
	m.Czxid, m.Mzxid, m.Pzxid = s.Czxid, s.Mzxid, s.Pzxid
	m.Ctime, m.Mtime = s.Ctime, s.Mtime
	m.Version, m.Cversion = s.Version, s.Cversion
	m.EphemeralOwner = s.Session()
	m.DataLength = s.DataLength
	m.NumChildren = s.NumChildren
	m.TtlMs = s.TTLMs()
	m.Container = s.Container()
}

func (n *znode) statValue() Stat {
	return Stat{
		Czxid: n.czxid, Mzxid: n.mzxid, Pzxid: n.pzxid(),
		Ctime: n.ctime, Mtime: n.mtime,
		Version: n.version, Cversion: n.cversion(),
		EphemeralOwner: n.owner,
		DataLength:     int32(len(n.data)),
		NumChildren:    n.numChildren(),
	}
}

func (n *znode) stat() *paddockv1.Stat {
	s := n.statValue()
	return s.Proto()
}

// lessZnode orders by (parent, name): a node's children are contiguous.
func lessZnode(a, b *znode) bool {
	if pa, pb := a.parent(), b.parent(); pa != pb {
		return pa < pb
	}
	return a.name() < b.name()
}

func newTree() *btree.BTreeG[*znode] { return btree.NewG(32, lessZnode) }

// EventType is the kind of change an Event reports.
type EventType int

// Event types, with ZooKeeper's meaning.
const (
	EventCreated EventType = iota + 1
	EventDataChanged
	EventDeleted
	EventChildrenChanged
)

// Event is one change to one znode. Path and PrevData are shared with the
// tree (or with its earlier versions): they must not be modified.
type Event struct {
	Zxid     uint64
	Type     EventType
	Path     string
	Stat     Stat   // the znode's new Stat; zero for deletions
	PrevData []byte // for data changes and deletions
}

// txn is the working state of one command. Single ops check every
// precondition before their first change and run on the live tree; a Multi
// runs on a clone and is kept only if all its ops succeed.
type txn struct {
	tree   *btree.BTreeG[*znode]
	index  uint64
	now    int64
	events []Event
	// key is the lookup key get fills, the tree's (see treeTable.key) for
	// a txn that applies; nil for a reader's, which borrows one.
	key *znode
	// eph lists the ephemeral index changes in the order the ops made
	// them: a multi may create and then delete the same path, or the
	// reverse, and only replaying them in order leaves the index right.
	eph []ephRef
}

type ephRef struct {
	owner uint64
	path  string
	del   bool
}

func (t *txn) get(path string) *znode {
	k := t.key
	if k == nil {
		k = keyPool.Get().(*znode)
	}
	k.path = path
	k.delimit()
	n, _ := t.tree.Get(k)
	*k = znode{} // holds no path between lookups
	if t.key == nil {
		keyPool.Put(k)
	}
	return n
}

// keyPool holds the lookup keys readers borrow: the B-tree takes its key
// by pointer through its less function, so a key of its own would be an
// allocation per lookup. A key is only compared, never stored.
var keyPool = sync.Pool{New: func() any { return new(znode) }}

func (t *txn) put(n *znode) { t.tree.ReplaceOrInsert(n) }

func checkVersion(n *znode, want *int32) error {
	if want == nil || *want == -1 || *want == n.version {
		return nil
	}
	return errorf(ErrBadVersion, "%s is at version %d, not %d", n.path, n.version, *want)
}

// create applies a CreateRequest; sessionOK reports whether an owner exists.
func (t *txn) create(req *paddockv1.CreateRequest, sessionOK func(uint64) bool) (*paddockv1.CreateResponse, error) {
	if err := checkWritable(req.GetPath(), req.GetSequential()); err != nil {
		return nil, err
	}
	if err := checkData(req.GetData()); err != nil {
		return nil, err
	}
	if err := checkNodeType(req); err != nil {
		return nil, err
	}
	if err := t.checkFence(req.GetFence()); err != nil {
		return nil, err
	}
	ephemeral := false
	switch req.GetType() {
	case paddockv1.NodeType_NODE_TYPE_UNSPECIFIED, paddockv1.NodeType_NODE_TYPE_PERSISTENT,
		paddockv1.NodeType_NODE_TYPE_TTL, paddockv1.NodeType_NODE_TYPE_CONTAINER:
	case paddockv1.NodeType_NODE_TYPE_EPHEMERAL:
		ephemeral = true
		if !sessionOK(req.GetSessionId()) {
			return nil, errorf(ErrSessionExpired, "session %d", req.GetSessionId())
		}
	default:
		return nil, errorf(ErrBadArgument, "unknown node type %d", req.GetType())
	}
	path := req.GetPath()
	if path == "/" && !req.GetSequential() {
		// The root always exists, and has no parent to look up.
		return nil, errorf(ErrNodeExists, "/")
	}
	parentPath, _ := splitPath(path)
	if req.GetSequential() {
		// "/a/" + seq names a child of /a; "/a/lock-" + seq a child too.
		parentPath, _ = splitPath(path + "0")
	}
	parent := t.get(parentPath)
	if parent == nil {
		return nil, errorf(ErrNoNode, "parent %s", parentPath)
	}
	if parent.session() != 0 {
		return nil, errorf(ErrEphemeralParent, "%s", parentPath)
	}
	if req.GetSequential() {
		path = sequentialPath(path, parent.seq())
		if len(path) > MaxPathLength {
			return nil, errorf(ErrBadPath, "longer than %d bytes", MaxPathLength)
		}
	}
	n := newZnode(path)
	n.data = req.GetData()
	n.czxid, n.mzxid = t.index, t.index
	n.ctime, n.mtime = t.now, t.now
	n.owner = specialOwner(req)
	if ephemeral {
		n.owner = req.GetSessionId()
	}
	// Inserting is the existence check: one descent of the tree instead
	// of a lookup and then an insert. A znode already there is put back,
	// so a failed create leaves the tree's contents as they were.
	if old, exists := t.tree.ReplaceOrInsert(n); exists {
		t.tree.ReplaceOrInsert(old)
		return nil, errorf(ErrNodeExists, "%s", path)
	}
	if ephemeral {
		t.eph = append(t.eph, ephRef{owner: n.owner, path: path})
	}
	p := *parent
	p.dir = parent.dirCopy()
	p.dir.numChildren++
	p.dir.cversion++
	p.dir.pzxid = t.index
	if req.GetSequential() {
		p.dir.seq++
	}
	t.put(&p)
	st := n.statValue()
	t.events = append(t.events,
		Event{Zxid: t.index, Type: EventCreated, Path: n.path, Stat: st},
		Event{Zxid: t.index, Type: EventChildrenChanged, Path: p.path, Stat: p.statValue()})
	r := &createResult{resp: paddockv1.CreateResponse{Path: path}}
	st.fill(&r.stat)
	r.resp.Stat = &r.stat
	return &r.resp, nil
}

// createResult and setResult are a response and its Stat in one
// allocation: they live and die together.
type createResult struct {
	resp paddockv1.CreateResponse
	stat paddockv1.Stat
}

type setResult struct {
	resp paddockv1.SetResponse
	stat paddockv1.Stat
}

// sequentialPath is path with the sequential suffix for seq, as
// fmt.Sprintf("%s%0*d", path, sequenceDigits, seq) writes it.
func sequentialPath(path string, seq int64) string {
	if seq < 0 {
		return fmt.Sprintf("%s%0*d", path, sequenceDigits, seq)
	}
	var digits [20]byte
	d := strconv.AppendInt(digits[:0], seq, 10)
	b := make([]byte, 0, len(path)+max(len(d), sequenceDigits))
	b = append(b, path...)
	for range sequenceDigits - len(d) {
		b = append(b, '0')
	}
	return string(append(b, d...))
}

func (t *txn) set(req *paddockv1.SetRequest) (*paddockv1.SetResponse, error) {
	if err := checkWritable(req.GetPath(), false); err != nil {
		return nil, err
	}
	if err := checkData(req.GetData()); err != nil {
		return nil, err
	}
	if err := t.checkFence(req.GetFence()); err != nil {
		return nil, err
	}
	n := t.get(req.GetPath())
	if n == nil {
		return nil, errorf(ErrNoNode, "%s", req.GetPath())
	}
	if err := checkVersion(n, req.Version); err != nil {
		return nil, err
	}
	m := *n
	m.data = req.GetData()
	m.version++
	m.mzxid = t.index
	m.mtime = t.now
	t.put(&m)
	st := m.statValue()
	t.events = append(t.events, Event{Zxid: t.index, Type: EventDataChanged, Path: m.path, Stat: st, PrevData: n.data})
	r := &setResult{}
	st.fill(&r.stat)
	r.resp.Stat = &r.stat
	return &r.resp, nil
}

func (t *txn) check(op *paddockv1.CheckOp) (*paddockv1.Stat, error) {
	if err := ValidatePath(op.GetPath(), false); err != nil {
		return nil, err
	}
	n := t.get(op.GetPath())
	if n == nil {
		return nil, errorf(ErrNoNode, "%s", op.GetPath())
	}
	v := op.GetVersion()
	if err := checkVersion(n, &v); err != nil {
		return nil, err
	}
	return n.stat(), nil
}

func (t *txn) delete(req *paddockv1.DeleteRequest) (*paddockv1.DeleteResponse, error) {
	path := req.GetPath()
	if err := checkWritable(path, false); err != nil {
		return nil, err
	}
	if path == "/" {
		return nil, errorf(ErrBadArgument, "the root cannot be deleted")
	}
	if err := t.checkFence(req.GetFence()); err != nil {
		return nil, err
	}
	n := t.get(path)
	if n == nil {
		return nil, errorf(ErrNoNode, "%s", path)
	}
	if err := checkVersion(n, req.Version); err != nil {
		return nil, err
	}
	if n.numChildren() > 0 && !req.GetRecursive() {
		return nil, errorf(ErrNotEmpty, "%s has %d", path, n.numChildren())
	}
	// Collect the subtree, parents before children, then delete in reverse
	// so children go first, as ZooKeeper's deleteall does.
	doomed := []*znode{n}
	for i := 0; i < len(doomed); i++ {
		if doomed[i].numChildren() > 0 {
			doomed = t.appendChildren(doomed, doomed[i].path)
		}
	}
	for i := len(doomed) - 1; i >= 0; i-- {
		d := doomed[i]
		t.tree.Delete(d)
		if d.session() != 0 {
			t.eph = append(t.eph, ephRef{owner: d.owner, path: d.path, del: true})
		}
		t.events = append(t.events, Event{Zxid: t.index, Type: EventDeleted, Path: d.path, PrevData: d.data})
	}
	t.detach(n.parent())
	return &paddockv1.DeleteResponse{Deleted: int32(len(doomed))}, nil
}

// detach records that one child of parentPath went away.
func (t *txn) detach(parentPath string) {
	parent := t.get(parentPath)
	p := *parent
	p.dir = parent.dirCopy()
	p.dir.numChildren--
	p.dir.cversion++
	p.dir.pzxid = t.index
	t.put(&p)
	t.events = append(t.events, Event{Zxid: t.index, Type: EventChildrenChanged, Path: p.path, Stat: p.statValue()})
}

// appendChildren appends the children of path, in name order.
func (t *txn) appendChildren(dst []*znode, path string) []*znode {
	t.tree.AscendGreaterOrEqual(childKey(path, ""), func(c *znode) bool {
		if c.parent() != path {
			return false
		}
		dst = append(dst, c)
		return true
	})
	return dst
}

// newTxn starts a txn whose events are appended to the batch's events
// (the txn's own until commit: the slice it was given does not see them).
// Only the apply goroutine, holding the FSM's lock for writing, may start
// one: it uses the state's lookup key. Readers use reader.
func (s *state) newTxn(index uint64, now int64, events []Event) *txn {
	return &txn{tree: s.tree.nodes, index: index, now: now, events: events, key: &s.tree.key}
}

// reader is a txn for looking up only, safe under the FSM's read lock.
func (s *state) reader() *txn { return &txn{tree: s.tree.nodes} }

// commit keeps a successful txn's side effects.
func (s *state) commit(t *txn, c *applyCtx) {
	s.tree.nodes = t.tree
	for _, e := range t.eph {
		if e.del {
			delete(s.tree.ephemerals[e.owner], e.path)
			continue
		}
		set := s.tree.ephemerals[e.owner]
		if set == nil {
			set = make(map[string]struct{})
			s.tree.ephemerals[e.owner] = set
		}
		set[e.path] = struct{}{}
	}
	c.events = t.events
}

func (s *state) sessionOK(id uint64) bool { _, ok := s.sessions[id]; return ok }

func (s *state) applyCreate(c *applyCtx, req *paddockv1.CreateRequest) (proto.Message, error) {
	t := s.newTxn(c.index, c.now, c.events)
	resp, err := t.create(req, s.sessionOK)
	if err == nil {
		s.commit(t, c)
	}
	return resp, err
}

func (s *state) applySet(c *applyCtx, req *paddockv1.SetRequest) (proto.Message, error) {
	t := s.newTxn(c.index, c.now, c.events)
	resp, err := t.set(req)
	if err == nil {
		s.commit(t, c)
	}
	return resp, err
}

func (s *state) applyDelete(c *applyCtx, req *paddockv1.DeleteRequest) (proto.Message, error) {
	t := s.newTxn(c.index, 0, c.events)
	resp, err := t.delete(req)
	if err == nil {
		s.commit(t, c)
	}
	return resp, err
}

// applyMulti runs the ops on a clone of the tree; the clone replaces the
// tree only if every op succeeded.
func (s *state) applyMulti(c *applyCtx, req *paddockv1.MultiRequest) (proto.Message, error) {
	t := s.newTxn(c.index, c.now, c.events)
	t.tree = s.tree.nodes.Clone()
	if err := t.checkFence(req.GetFence()); err != nil {
		return nil, err
	}
	resp := &paddockv1.MultiResponse{Results: make([]*paddockv1.OpResult, 0, len(req.GetOps()))}
	for i, op := range req.GetOps() {
		r, err := t.multiOp(op, s.sessionOK)
		if err != nil {
			return nil, &MultiError{Index: i, Err: err}
		}
		resp.Results = append(resp.Results, r)
	}
	s.commit(t, c)
	return resp, nil
}

func (t *txn) multiOp(op *paddockv1.Op, sessionOK func(uint64) bool) (*paddockv1.OpResult, error) {
	switch o := op.GetOp().(type) {
	case *paddockv1.Op_Check:
		st, err := t.check(o.Check)
		return &paddockv1.OpResult{Result: &paddockv1.OpResult_Check{Check: st}}, err
	case *paddockv1.Op_Create:
		r, err := t.create(o.Create, sessionOK)
		return &paddockv1.OpResult{Result: &paddockv1.OpResult_Create{Create: r}}, err
	case *paddockv1.Op_Set:
		r, err := t.set(o.Set)
		return &paddockv1.OpResult{Result: &paddockv1.OpResult_Set{Set: r}}, err
	case *paddockv1.Op_Delete:
		r, err := t.delete(o.Delete)
		return &paddockv1.OpResult{Result: &paddockv1.OpResult_Delete{Delete: r}}, err
	default:
		return nil, errorf(ErrBadArgument, "empty op")
	}
}

// Get returns a copy of a znode's data and its Stat.
func (f *FSM) Get(path string) ([]byte, *paddockv1.Stat, error) {
	st := &paddockv1.Stat{}
	data, err := f.GetInto(path, st)
	if err != nil {
		return nil, nil, err
	}
	return data, st, nil
}

// GetInto is Get for a caller that allocates the Stat message itself
// (with the response that holds it, say): it fills st, an empty message,
// and returns a copy of the data. st is left as it was on error.
func (f *FSM) GetInto(path string, st *paddockv1.Stat) ([]byte, error) {
	if err := ValidatePath(path, false); err != nil {
		return nil, err
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	n := f.state.reader().get(path)
	if n == nil {
		return nil, errorf(ErrNoNode, "%s", path)
	}
	s := n.statValue()
	s.fill(st)
	// Stored data is shared with snapshots and later versions: the caller
	// gets its own copy, as documented.
	return bytes.Clone(n.data), nil
}

// ListPage is one page of children.
type ListPage struct {
	Children []*paddockv1.Child
	// Next is the name to continue after, "" when the page is the last.
	Next string
	Stat *paddockv1.Stat
}

// List returns up to limit children of path whose names sort after after.
func (f *FSM) List(path, after string, limit int) (*ListPage, error) {
	if err := ValidatePath(path, false); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, errorf(ErrBadArgument, "page size %d", limit)
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	t := f.state.reader()
	n := t.get(path)
	if n == nil {
		return nil, errorf(ErrNoNode, "%s", path)
	}
	page := &ListPage{Stat: n.stat(), Children: make([]*paddockv1.Child, 0, min(limit, int(n.numChildren())))}
	t.tree.AscendGreaterOrEqual(childKey(path, after), func(c *znode) bool {
		if c.parent() != path {
			return false
		}
		if after != "" && c.name() == after {
			return true
		}
		if len(page.Children) == limit {
			page.Next = page.Children[limit-1].Name
			return false
		}
		page.Children = append(page.Children, &paddockv1.Child{Name: c.name(), Stat: c.stat()})
		return true
	})
	return page, nil
}

// Counts returns the number of znodes and sessions.
func (f *FSM) Counts() (znodes, sessions int) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.tree.nodes.Len(), len(f.state.sessions)
}
