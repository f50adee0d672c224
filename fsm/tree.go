package fsm

import (
	"fmt"

	"github.com/google/btree"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
)

// treeTable is the znode tree and, derived from it, the index of
// ephemeral znodes by owning session. Its snapshot records are the znodes
// (Znode records) in tree order; the index is rebuilt on restore, never
// snapshotted.
type treeTable struct {
	nodes *btree.BTreeG[*znode]
	// ephemerals indexes the tree by owner; derived, never snapshotted.
	ephemerals map[uint64]map[string]struct{}
	// key is the apply goroutine's lookup key (txn.get), not state.
	key znode
}

// newTreeTable returns an empty tree, without even a root: the table a
// restore fills.
func newTreeTable() *treeTable {
	return &treeTable{nodes: newTree(), ephemerals: make(map[uint64]map[string]struct{})}
}

// plant adds what a new cluster's tree holds: the root and /paddock.
func (t *treeTable) plant() {
	root := newZnode("/")
	root.dir = &dirStat{numChildren: 1, cversion: 1}
	t.nodes.ReplaceOrInsert(root)
	t.nodes.ReplaceOrInsert(newZnode(ReservedPath))
}

// treeView is a copy-on-write clone of the tree.
type treeView struct{ nodes *btree.BTreeG[*znode] }

// capture clones the tree in O(1). btree's Clone replaces the tree's
// copy-on-write context, so two clones at once race: the caller holds the
// FSM's lock for writing.
func (t *treeTable) capture() tableView { return treeView{nodes: t.nodes.Clone()} }

func (v treeView) records() uint64 { return uint64(v.nodes.Len()) }

// write writes the znodes in tree order: a parent always before its
// children. One record and one Znode message are refilled for every znode.
func (v treeView) write(rw *recordWriter) error {
	zn := &raftv1.Znode{}
	rec := &raftv1.SnapshotRecord{Record: &raftv1.SnapshotRecord_Znode{Znode: zn}}
	var err error
	v.nodes.Ascend(func(n *znode) bool {
		*zn = raftv1.Znode{
			Path: n.path, Data: n.data,
			Czxid: n.czxid, Mzxid: n.mzxid, Pzxid: n.pzxid(),
			Ctime: n.ctime, Mtime: n.mtime,
			Version: n.version, Cversion: n.cversion(),
			EphemeralOwner: n.session(), Sequence: n.seq(),
			TtlMs: n.ttlMs(), Container: n.container(),
		}
		err = rw.write(rec)
		return err == nil
	})
	return err
}

// restore loads a Znode record into an empty tree (the snapshot holds
// the root and /paddock).
func (t *treeTable) restore(rec *raftv1.SnapshotRecord) (bool, error) {
	z := rec.GetZnode()
	if z == nil {
		return false, nil
	}
	return true, t.loadZnode(z)
}

// restored checks that the snapshot had a root.
func (t *treeTable) restored() error {
	if _, ok := t.nodes.Get(newZnode("/")); !ok {
		return fmt.Errorf("fsm: snapshot has no root")
	}
	return nil
}

// loadZnode inserts a snapshot znode; its parent was inserted before it.
// Children counts and the ephemeral index are derived.
func (t *treeTable) loadZnode(z *raftv1.Znode) error {
	if err := ValidatePath(z.GetPath(), false); err != nil {
		return fmt.Errorf("fsm: snapshot: %w", err)
	}
	n := newZnode(z.GetPath())
	n.data = z.GetData()
	n.czxid, n.mzxid = z.GetCzxid(), z.GetMzxid()
	n.ctime, n.mtime = z.GetCtime(), z.GetMtime()
	n.version = z.GetVersion()
	owner, err := ownerOf(z)
	if err != nil {
		return err
	}
	n.owner = owner
	if z.GetPzxid() != z.GetCzxid() || z.GetCversion() != 0 || z.GetSequence() != 0 {
		n.dir = &dirStat{pzxid: z.GetPzxid(), cversion: z.GetCversion(), seq: z.GetSequence()}
	}
	if parent := n.parent(); parent != "" {
		p, ok := t.nodes.Get(newZnode(parent))
		if !ok {
			return fmt.Errorf("fsm: snapshot: %s comes before its parent", z.GetPath())
		}
		// p and its dir are private to this fresh tree: counting in
		// place is safe.
		if p.dir == nil {
			p.dir = p.dirCopy()
		}
		p.dir.numChildren++
	}
	if _, dup := t.nodes.ReplaceOrInsert(n); dup {
		// Its parent was counted twice; the table is discarded on error.
		return fmt.Errorf("fsm: snapshot: %s appears twice", z.GetPath())
	}
	if n.session() != 0 {
		set := t.ephemerals[n.owner]
		if set == nil {
			set = make(map[string]struct{})
			t.ephemerals[n.owner] = set
		}
		set[z.GetPath()] = struct{}{}
	}
	return nil
}
