package fsm

import (
	"bytes"
	"fmt"

	"github.com/google/btree"

	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// znode is one node of the tree. A stored znode is never modified: changes
// store a modified copy, so snapshot clones stay valid.
type znode struct {
	parent, name string
	data         []byte
	czxid        uint64
	mzxid        uint64
	pzxid        uint64
	ctime, mtime int64
	version      int32
	cversion     int32
	owner        uint64
	numChildren  int32
	// seq is the next sequential suffix handed to a child.
	seq int64
}

func (n *znode) path() string { return joinPath(n.parent, n.name) }

func (n *znode) stat() *paddockv1.Stat {
	return &paddockv1.Stat{
		Czxid: n.czxid, Mzxid: n.mzxid, Pzxid: n.pzxid,
		Ctime: n.ctime, Mtime: n.mtime,
		Version: n.version, Cversion: n.cversion,
		EphemeralOwner: n.owner,
		DataLength:     int32(len(n.data)),
		NumChildren:    n.numChildren,
	}
}

// lessZnode orders by (parent, name): a node's children are contiguous.
func lessZnode(a, b *znode) bool {
	if a.parent != b.parent {
		return a.parent < b.parent
	}
	return a.name < b.name
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

// Event is one change to one znode.
type Event struct {
	Zxid     uint64
	Type     EventType
	Path     string
	Stat     *paddockv1.Stat // nil for deletions
	PrevData []byte          // for data changes and deletions
}

// txn is the working state of one command. Single ops check every
// precondition before their first change and run on the live tree; a Multi
// runs on a clone and is kept only if all its ops succeed.
type txn struct {
	tree   *btree.BTreeG[*znode]
	index  uint64
	now    int64
	events []Event
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
	parent, name := splitPath(path)
	n, _ := t.tree.Get(&znode{parent: parent, name: name})
	return n
}

func (t *txn) put(n *znode) { t.tree.ReplaceOrInsert(n) }

func checkVersion(n *znode, want *int32) error {
	if want == nil || *want == -1 || *want == n.version {
		return nil
	}
	return fmt.Errorf("%w: %s is at version %d, not %d", ErrBadVersion, n.path(), n.version, *want)
}

// create applies a CreateRequest; sessionOK reports whether an owner exists.
func (t *txn) create(req *paddockv1.CreateRequest, sessionOK func(uint64) bool) (*paddockv1.CreateResponse, error) {
	if err := checkWritable(req.GetPath(), req.GetSequential()); err != nil {
		return nil, err
	}
	if err := checkData(req.GetData()); err != nil {
		return nil, err
	}
	ephemeral := false
	switch req.GetType() {
	case paddockv1.NodeType_NODE_TYPE_UNSPECIFIED, paddockv1.NodeType_NODE_TYPE_PERSISTENT:
		if req.GetSessionId() != 0 {
			return nil, fmt.Errorf("%w: session_id given for a persistent node", ErrBadArgument)
		}
	case paddockv1.NodeType_NODE_TYPE_EPHEMERAL:
		ephemeral = true
		if !sessionOK(req.GetSessionId()) {
			return nil, fmt.Errorf("%w: session %d", ErrSessionExpired, req.GetSessionId())
		}
	default:
		return nil, fmt.Errorf("%w: unknown node type %d", ErrBadArgument, req.GetType())
	}
	path := req.GetPath()
	if path == "/" && !req.GetSequential() {
		// The root always exists, and has no parent to look up.
		return nil, fmt.Errorf("%w: /", ErrNodeExists)
	}
	parentPath, _ := splitPath(path)
	if req.GetSequential() {
		// "/a/" + seq names a child of /a; "/a/lock-" + seq a child too.
		parentPath, _ = splitPath(path + "0")
	}
	parent := t.get(parentPath)
	if parent == nil {
		return nil, fmt.Errorf("%w: parent %s", ErrNoNode, parentPath)
	}
	if parent.owner != 0 {
		return nil, fmt.Errorf("%w: %s", ErrEphemeralParent, parentPath)
	}
	if req.GetSequential() {
		path = fmt.Sprintf("%s%0*d", path, sequenceDigits, parent.seq)
		if len(path) > MaxPathLength {
			return nil, fmt.Errorf("%w: longer than %d bytes", ErrBadPath, MaxPathLength)
		}
	}
	if t.get(path) != nil {
		return nil, fmt.Errorf("%w: %s", ErrNodeExists, path)
	}
	_, name := splitPath(path)
	n := &znode{
		parent: parentPath, name: name, data: req.GetData(),
		czxid: t.index, mzxid: t.index, pzxid: t.index,
		ctime: t.now, mtime: t.now,
	}
	if ephemeral {
		n.owner = req.GetSessionId()
		t.eph = append(t.eph, ephRef{owner: n.owner, path: path})
	}
	p := *parent
	p.numChildren++
	p.cversion++
	p.pzxid = t.index
	if req.GetSequential() {
		p.seq++
	}
	t.put(&p)
	t.put(n)
	st := n.stat()
	t.events = append(t.events,
		Event{Zxid: t.index, Type: EventCreated, Path: path, Stat: st},
		Event{Zxid: t.index, Type: EventChildrenChanged, Path: parentPath, Stat: p.stat()})
	return &paddockv1.CreateResponse{Path: path, Stat: st}, nil
}

func (t *txn) set(req *paddockv1.SetRequest) (*paddockv1.SetResponse, error) {
	if err := checkWritable(req.GetPath(), false); err != nil {
		return nil, err
	}
	if err := checkData(req.GetData()); err != nil {
		return nil, err
	}
	n := t.get(req.GetPath())
	if n == nil {
		return nil, fmt.Errorf("%w: %s", ErrNoNode, req.GetPath())
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
	st := m.stat()
	t.events = append(t.events, Event{Zxid: t.index, Type: EventDataChanged, Path: req.GetPath(), Stat: st, PrevData: n.data})
	return &paddockv1.SetResponse{Stat: st}, nil
}

func (t *txn) check(op *paddockv1.CheckOp) (*paddockv1.Stat, error) {
	if err := ValidatePath(op.GetPath(), false); err != nil {
		return nil, err
	}
	n := t.get(op.GetPath())
	if n == nil {
		return nil, fmt.Errorf("%w: %s", ErrNoNode, op.GetPath())
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
		return nil, fmt.Errorf("%w: the root cannot be deleted", ErrBadArgument)
	}
	n := t.get(path)
	if n == nil {
		return nil, fmt.Errorf("%w: %s", ErrNoNode, path)
	}
	if err := checkVersion(n, req.Version); err != nil {
		return nil, err
	}
	if n.numChildren > 0 && !req.GetRecursive() {
		return nil, fmt.Errorf("%w: %s has %d", ErrNotEmpty, path, n.numChildren)
	}
	// Collect the subtree, parents before children, then delete in reverse
	// so children go first, as ZooKeeper's deleteall does.
	doomed := []*znode{n}
	for i := 0; i < len(doomed); i++ {
		if doomed[i].numChildren > 0 {
			doomed = t.appendChildren(doomed, doomed[i].path())
		}
	}
	for i := len(doomed) - 1; i >= 0; i-- {
		d := doomed[i]
		t.tree.Delete(d)
		p := d.path()
		if d.owner != 0 {
			t.eph = append(t.eph, ephRef{owner: d.owner, path: p, del: true})
		}
		t.events = append(t.events, Event{Zxid: t.index, Type: EventDeleted, Path: p, PrevData: d.data})
	}
	t.detach(n.parent)
	return &paddockv1.DeleteResponse{Deleted: int32(len(doomed))}, nil
}

// detach records that one child of parentPath went away.
func (t *txn) detach(parentPath string) {
	parent := t.get(parentPath)
	p := *parent
	p.numChildren--
	p.cversion++
	p.pzxid = t.index
	t.put(&p)
	t.events = append(t.events, Event{Zxid: t.index, Type: EventChildrenChanged, Path: parentPath, Stat: p.stat()})
}

// appendChildren appends the children of path, in name order.
func (t *txn) appendChildren(dst []*znode, path string) []*znode {
	t.tree.AscendGreaterOrEqual(&znode{parent: path}, func(c *znode) bool {
		if c.parent != path {
			return false
		}
		dst = append(dst, c)
		return true
	})
	return dst
}

func (f *FSM) newTxn(index uint64, now int64) *txn {
	return &txn{tree: f.tree, index: index, now: now}
}

// commit keeps a successful txn's side effects.
func (f *FSM) commit(t *txn, events *[]Event) {
	f.tree = t.tree
	for _, e := range t.eph {
		if e.del {
			delete(f.ephemerals[e.owner], e.path)
			continue
		}
		set := f.ephemerals[e.owner]
		if set == nil {
			set = make(map[string]struct{})
			f.ephemerals[e.owner] = set
		}
		set[e.path] = struct{}{}
	}
	*events = append(*events, t.events...)
}

func (f *FSM) sessionOK(id uint64) bool { _, ok := f.sessions[id]; return ok }

func (f *FSM) applyCreate(index uint64, now int64, req *paddockv1.CreateRequest, events *[]Event) (*paddockv1.CreateResponse, error) {
	t := f.newTxn(index, now)
	resp, err := t.create(req, f.sessionOK)
	if err == nil {
		f.commit(t, events)
	}
	return resp, err
}

func (f *FSM) applySet(index uint64, now int64, req *paddockv1.SetRequest, events *[]Event) (*paddockv1.SetResponse, error) {
	t := f.newTxn(index, now)
	resp, err := t.set(req)
	if err == nil {
		f.commit(t, events)
	}
	return resp, err
}

func (f *FSM) applyDelete(index uint64, req *paddockv1.DeleteRequest, events *[]Event) (*paddockv1.DeleteResponse, error) {
	t := f.newTxn(index, 0)
	resp, err := t.delete(req)
	if err == nil {
		f.commit(t, events)
	}
	return resp, err
}

// applyMulti runs the ops on a clone of the tree; the clone replaces the
// tree only if every op succeeded.
func (f *FSM) applyMulti(index uint64, now int64, req *paddockv1.MultiRequest, events *[]Event) (*paddockv1.MultiResponse, error) {
	t := f.newTxn(index, now)
	t.tree = f.tree.Clone()
	resp := &paddockv1.MultiResponse{Results: make([]*paddockv1.OpResult, 0, len(req.GetOps()))}
	for i, op := range req.GetOps() {
		r, err := t.multiOp(op, f.sessionOK)
		if err != nil {
			return nil, &MultiError{Index: i, Err: err}
		}
		resp.Results = append(resp.Results, r)
	}
	f.commit(t, events)
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
		return nil, fmt.Errorf("%w: empty op", ErrBadArgument)
	}
}

// Get returns a copy of a znode's data and its Stat.
func (f *FSM) Get(path string) ([]byte, *paddockv1.Stat, error) {
	if err := ValidatePath(path, false); err != nil {
		return nil, nil, err
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	n := f.newTxn(0, 0).get(path)
	if n == nil {
		return nil, nil, fmt.Errorf("%w: %s", ErrNoNode, path)
	}
	// Stored data is shared with snapshots and later versions: the caller
	// gets its own copy, as documented.
	return bytes.Clone(n.data), n.stat(), nil
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
		return nil, fmt.Errorf("%w: page size %d", ErrBadArgument, limit)
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	t := f.newTxn(0, 0)
	n := t.get(path)
	if n == nil {
		return nil, fmt.Errorf("%w: %s", ErrNoNode, path)
	}
	page := &ListPage{Stat: n.stat(), Children: make([]*paddockv1.Child, 0, min(limit, int(n.numChildren)))}
	f.tree.AscendGreaterOrEqual(&znode{parent: path, name: after}, func(c *znode) bool {
		if c.parent != path {
			return false
		}
		if c.name == after && after != "" {
			return true
		}
		if len(page.Children) == limit {
			page.Next = page.Children[limit-1].Name
			return false
		}
		page.Children = append(page.Children, &paddockv1.Child{Name: c.name, Stat: c.stat()})
		return true
	})
	return page, nil
}

// Counts returns the number of znodes and sessions.
func (f *FSM) Counts() (znodes, sessions int) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.tree.Len(), len(f.sessions)
}
