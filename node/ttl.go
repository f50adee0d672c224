package node

import (
	"context"
	"time"

	"github.com/paddock/paddock/fsm"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// containerGrace is how long the leader waits after a container's last
// child went before deleting it: a client that deletes the last child
// and creates the next one at once (a lock queue) keeps its container.
const containerGrace = 250 * time.Millisecond

// idleSeen is what the leader saw of a TTL or container znode when it set
// its deadline: DeleteIdle deletes it only if it is still so.
type idleSeen struct{ mzxid, pzxid uint64 }

// idleNodes is the TTL and container kind of the leader's deadlines,
// keyed by path.
//
// The leader never trusts a wall clock it did not read itself (mtime was
// stamped by whichever leader applied the change), so a TTL counts from
// the later of the last change this leader applied and its term start: a
// new leader gives every TTL znode its full TTL. Changes are the TTL
// znode's creation, a data change, and the removal of its last child (a
// TTL znode with children is not timed: it cannot be deleted). A
// container is due containerGrace after its last child went, or after
// term start for one already empty. The deadline is only a lower bound
// of the deletion: DeleteIdle applies only if the znode is still as seen,
// so a change racing the deletion wins.
//
// The leader learns of changes as the fsm's event sink (Applied, on the
// apply goroutine); for ordinary znodes that costs a field check per
// event while leading, and nothing otherwise.
type idleNodes struct {
	n *Node
	d *deadlines[string, idleSeen]
}

func newIdleNodes(n *Node) *idleNodes {
	i := &idleNodes{n: n}
	i.d = newDeadlines("idle znode", i.load, i.fire)
	return i
}

// idleDue is when a TTL znode (ttlMs > 0) or a container seen idle at now
// may be deleted.
func idleDue(now time.Time, ttlMs int64) time.Time {
	if ttlMs > 0 {
		return now.Add(time.Duration(ttlMs) * time.Millisecond)
	}
	return now.Add(containerGrace)
}

func (i *idleNodes) load(now time.Time) map[string]deadline[idleSeen] {
	out := map[string]deadline[idleSeen]{}
	for _, c := range i.n.fsm.IdleCandidates() {
		out[c.Path] = deadline[idleSeen]{At: idleDue(now, c.TTLMs), Val: idleSeen{c.Mzxid, c.Pzxid}}
	}
	return out
}

// Applied keeps the deadlines in step with the applied changes.
func (i *idleNodes) Applied(_ uint64, events []fsm.Event) {
	if !i.d.on.Load() {
		return
	}
	var now time.Time
	for k := range events {
		e := &events[k]
		if e.Type == fsm.EventDeleted {
			i.d.remove(e.Path)
			continue
		}
		st := &e.Stat
		if !st.TTLOrContainer() {
			continue // the one check an ordinary znode's event costs
		}
		if st.NumChildren > 0 || (st.Container() && st.Cversion == 0) {
			i.d.remove(e.Path)
			continue
		}
		if now.IsZero() {
			now = time.Now()
		}
		i.d.set(e.Path, idleDue(now, st.TTLMs()), idleSeen{st.Mzxid, st.Pzxid})
	}
}

// Restored does nothing: only a follower installs a snapshot, and a
// leader rebuilds its deadlines from the state when its term starts.
func (i *idleNodes) Restored(uint64) {}

func (i *idleNodes) fire(ctx context.Context, path string, seen idleSeen) error {
	res, err := i.n.proposeLocal(ctx, &raftv1.Command{Op: &raftv1.Command_DeleteIdle{
		DeleteIdle: &raftv1.DeleteIdle{Path: path, Mzxid: seen.mzxid, Pzxid: seen.pzxid},
	}})
	if err != nil {
		if ctx.Err() == nil {
			i.n.log.Warn("idle znode deletion failed; will retry", "path", path, "error", err)
		}
		return err
	}
	if r, ok := res.Resp.(*paddockv1.DeleteResponse); ok && r.GetDeleted() > 0 {
		i.n.log.Debug("idle znode deleted", "path", path)
	}
	return nil
}
