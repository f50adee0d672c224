package node

import "time"

// StallWatchHub makes n's watch hub wait, before it takes in each applied
// batch, until the returned release is called: the fsm has published the
// batch's index (AppliedIndex, reads) but the hub does not hold its events
// yet. Tests use it to hold that moment open.
func StallWatchHub(n *Node) (release func()) {
	ch := make(chan struct{})
	n.watch.stall.Store(&ch)
	return func() {
		n.watch.stall.Store(nil)
		close(ch)
	}
}

// WebSessionWaiters is the number of requests waiting, on leader n, for
// web session id's lock.
func WebSessionWaiters(n *Node, id string) int {
	l := n.ws.locks.Load()
	if l == nil {
		return 0
	}
	return l.waiting(id)
}

// WebSessionPending is the number of sessions with delayed writes not
// committed on leader n, and their bytes.
func WebSessionPending(n *Node) (sessions, bytes int) {
	l := n.ws.locks.Load()
	if l == nil || l.pend == nil {
		return 0, 0
	}
	return l.pend.size()
}

// HandOver is n's handOver: a leader gives its place to another member,
// as before it stops.
func HandOver(n *Node) { n.handOver() }

// SetWebSessionDelayedMax sets the cap on the pending delayed bytes of
// leader n's term.
func SetWebSessionDelayedMax(n *Node, max int) {
	l := n.ws.locks.Load()
	l.pend.mu.Lock()
	l.pend.max = max
	l.pend.mu.Unlock()
}

// SetWebSessionFlushDelay sets the flush delay of leader n's term,
// beyond the limit of Config.WebSessionFlushDelay (a test holding
// delayed writes pending).
func SetWebSessionFlushDelay(n *Node, delay time.Duration) {
	l := n.ws.locks.Load()
	l.pend.mu.Lock()
	l.pend.delay = delay
	l.pend.mu.Unlock()
}

// StallGroupCommit makes n's next group-commit rounds wait, before they
// hand their commands to raft, until the returned release is called.
func StallGroupCommit(n *Node) (release func()) {
	ch := make(chan struct{})
	n.groupStall.Store(&ch)
	return func() {
		n.groupStall.Store(nil)
		close(ch)
	}
}

// GroupCommitWaiting is the number of commands waiting on n for the next
// group-commit round.
func GroupCommitWaiting(n *Node) int {
	n.group.mu.Lock()
	defer n.group.mu.Unlock()
	return len(n.group.waiting)
}

// GroupCommitRunning says whether n has a group-commit round under way
// (or about to start).
func GroupCommitRunning(n *Node) bool {
	n.group.mu.Lock()
	defer n.group.mu.Unlock()
	return n.group.running
}

// HoldApplySlots takes n's free apply slots (applySlots) but free of them,
// as writes in flight would, until the returned giveBack is called.
func HoldApplySlots(n *Node, free int) (giveBack func()) {
	held := 0
	for len(n.applySlots) < cap(n.applySlots)-free {
		n.applySlots <- struct{}{}
		held++
	}
	return func() {
		for range held {
			<-n.applySlots
		}
	}
}

// WebSessionHeld is the number of delayed writes n holds as a backup.
func WebSessionHeld(n *Node) int {
	k, _ := n.wsBackup.held()
	return k
}

// RefuseWebSessionHolds makes n refuse (or take again) the leader's
// delayed writes as a backup.
func RefuseWebSessionHolds(n *Node, on bool) { n.wsBackup.refuse.Store(on) }

// StallWebSessionHolds makes n's hold runs wait until release is called.
func StallWebSessionHolds(n *Node) (release func()) {
	ch := make(chan struct{})
	n.holdStall.Store(&ch)
	return func() {
		n.holdStall.Store(nil)
		close(ch)
	}
}

// WebSessionReserved is the number of n's delayed writes being sent to
// its backups.
func WebSessionReserved(n *Node) int {
	l := n.ws.locks.Load()
	if l == nil || l.pend == nil {
		return 0
	}
	l.pend.mu.Lock()
	defer l.pend.mu.Unlock()
	return len(l.pend.reserved)
}

// NoHoldStreams makes n serve HoldWebSessionsStream as a version without
// it would (Unimplemented, nothing held), or as it does.
func NoHoldStreams(n *Node, on bool) { n.noHoldStream.Store(on) }

// HoldStreams is the number of hold streams leader n has open, and of the
// backups it calls with unary calls instead.
func HoldStreams(n *Node) (open, unary int) {
	h := n.holdStreams
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.m), len(h.noStream)
}

// LockWebSessionBackup blocks n's backup (its holds, its hook) until
// unlock is called.
func LockWebSessionBackup(n *Node) (unlock func()) {
	n.wsBackup.mu.Lock()
	return n.wsBackup.mu.Unlock
}

// WebSessionDrainers is the number of drains waiting for leader n's
// delayed writes.
func WebSessionDrainers(n *Node) int {
	l := n.ws.locks.Load()
	if l == nil || l.pend == nil {
		return 0
	}
	l.pend.mu.Lock()
	defer l.pend.mu.Unlock()
	return l.pend.drainers
}

// WebSessionCommitInFlight reports whether leader n is committing id's
// delayed writes.
func WebSessionCommitInFlight(n *Node, id string) bool {
	l := n.ws.locks.Load()
	if l == nil || l.pend == nil {
		return false
	}
	l.pend.mu.Lock()
	defer l.pend.mu.Unlock()
	e := l.pend.m[id]
	return e != nil && e.inflight
}
