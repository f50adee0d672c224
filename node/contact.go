package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Leader contact: a replica cut off from the leader (an isolated
// follower, a leader that lost its quorum) still has its last state and
// would go on answering polls and watches from it, saying "nothing
// changed" for as long as the cut lasts, with no error to make the client
// try another node. ZooKeeper's servers close their clients' connections
// when they lose the leader for that reason. So does Paddock, for the
// requests that wait for changes: a node out of contact refuses new polls
// and watches and ends the running ones with ErrLostLeader (Unavailable),
// and the client resumes from its last zxid on another node, losing
// nothing. Contact is judged every contactCheckEvery; a follower is out
// of contact when it knows no leader or has not heard from it for a
// heartbeat timeout, raft's own rule for starting an election (the
// leader sends a heartbeat every tenth of it).

// ErrLostLeader is a poll or watch refused or ended because this node has
// lost contact with the leader, so its state may be stale.
var ErrLostLeader = fmt.Errorf("%w: this node has lost contact with the leader; retry on another node", ErrNoLeader)

// contactCheckEvery is how often the contact monitor looks.
const contactCheckEvery = 100 * time.Millisecond

// contact broadcasts the loss of leader contact: lost returns a channel
// that is closed while (and as soon as) the node is out of contact.
type contact struct {
	mu   sync.Mutex
	ch   chan struct{}
	lost bool
}

func newContact() *contact { return &contact{ch: make(chan struct{})} }

// lostCh is closed once the node is out of contact (already closed if it
// is now).
func (c *contact) lostCh() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ch
}

// set records the current state.
func (c *contact) set(inContact bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case !inContact && !c.lost:
		c.lost = true
		close(c.ch)
	case inContact && c.lost:
		c.lost = false
		c.ch = make(chan struct{})
	}
}

// inLeaderContact reports whether this node is the leader or a follower
// (voter or not) that knows the leader and heard from it lately.
func (n *Node) inLeaderContact() bool {
	switch n.raft.State() {
	case raft.Leader:
		return true
	case raft.Follower:
		addr, _ := n.raft.LeaderWithID()
		return addr != "" && time.Since(n.raft.LastContact()) <= n.cfg.HeartbeatTimeout
	}
	return false
}

// checkLeaderContact is inLeaderContact as an error.
func (n *Node) checkLeaderContact() error {
	if n.inLeaderContact() {
		return nil
	}
	return ErrLostLeader
}

// monitorContact keeps n.contact up to date until ctx ends.
func (n *Node) monitorContact(ctx context.Context) {
	defer n.wg.Done()
	t := time.NewTicker(contactCheckEvery)
	defer t.Stop()
	for {
		n.contact.set(n.inLeaderContact())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// withLeaderContact returns a context that ends with cause ErrLostLeader
// when the node loses contact with the leader, and a release func. After
// a call ended with the context's error, lostContact tells which.
func (n *Node) withLeaderContact(ctx context.Context) (context.Context, context.CancelFunc) {
	cctx, cancel := context.WithCancelCause(ctx)
	if n.inLeaderContact() {
		// The monitor may not have seen the contact yet.
		n.contact.set(true)
	}
	lost := n.contact.lostCh()
	go func() {
		select {
		case <-lost:
			cancel(ErrLostLeader)
		case <-cctx.Done():
		}
	}()
	return cctx, func() { cancel(context.Canceled) }
}

// lostContact returns ErrLostLeader when cctx (from withLeaderContact)
// ended for that reason while its parent goes on, else err.
func lostContact(parent, cctx context.Context, err error) error {
	if err != nil && parent.Err() == nil && errors.Is(context.Cause(cctx), ErrLostLeader) {
		return ErrLostLeader
	}
	return err
}
