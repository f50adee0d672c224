package node

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync"
	"time"
)

// wsLocks is the leader's table of web session locks for one term (see
// websession.go). Each session id with a holder or waiters has an entry:
// the holder's token and lease, and the requests waiting for it in
// arrival order. A release, or the end of the holder's lease, hands the
// lock to the first waiter at once (its channel is closed: no polling).
// Entries go when the lock is free and nobody waits, so the table holds
// only the sessions being used.
//
// The table starts in a grace period: a new leader does not know which
// locks its predecessor granted, so until the grace ends it grants none,
// and accepts writes, touches, releases and destroys from tokens it does
// not know (the holders from before the failover): one per session, the
// first to present itself (a second one is refused). Tokens are random, so
// a token of the previous leader never names a lock of this one.
//
// close, when leadership ends, fails every waiter with ErrNotLeader (the
// client tries again on the new leader) and the table grants nothing more.
type wsLocks struct {
	mu         sync.Mutex
	graceUntil time.Time
	graceTimer *time.Timer
	closed     bool
	m          map[string]*wsLock
	// adopted is, in the grace period, the token from before the
	// failover each session's lock was adopted for: one per session, so
	// that two old holders (one whose lease had run out) cannot both
	// write. Dropped when the grace ends.
	adopted map[string]uint64
	// pend is the term's delayed writes (websession_delayed.go), closed
	// with the table; nil in tests of the lock table alone.
	pend *wsDelayed
}

// wsLock is one session's lock.
type wsLock struct {
	held  bool
	token uint64
	// rid is the request id of the read the lock was granted to, if it
	// had one: a retry of that read (its answer lost) gets the same
	// token back instead of waiting behind its own lock until the lease
	// ends. shared counts the attempts given the token that way beyond
	// the first: an attempt that fails after the grant (its caller gone,
	// a read index refused) gives up its share instead of the lock, which
	// another attempt of the same read may have answered (drop).
	rid    string
	shared int
	lease  *time.Timer // ends the holder's lease
	// busy counts writes in flight under the holder's token: the lease
	// does not end under them (leaseOver is deferred to the last one's
	// end), so a write that passed the lock check is not overtaken by a
	// reader granted the lock before the write is applied.
	busy     int
	leaseDue bool
	waiters  []*wsWaiter
}

// wsWaiter is a request waiting for a lock. ch is closed when it is
// granted (token set) or the table closes (err set).
type wsWaiter struct {
	ch    chan struct{}
	ttl   time.Duration
	rid   string
	token uint64
	err   error
	done  bool
}

// newWSLocks is an empty table whose grace period lasts grace.
func newWSLocks(grace time.Duration) *wsLocks {
	l := &wsLocks{m: map[string]*wsLock{}, graceUntil: time.Now().Add(grace)}
	if grace > 0 {
		l.graceTimer = time.AfterFunc(grace, l.graceOver)
	}
	return l
}

// newLockToken is a random token, never 0, so that tokens of different
// leaders (and terms) do not collide.
func newLockToken() uint64 {
	var b [8]byte
	for {
		_, _ = rand.Read(b[:]) // never fails (crypto/rand)
		if t := binary.BigEndian.Uint64(b[:]); t != 0 {
			return t
		}
	}
}

func (l *wsLocks) inGrace() bool { return time.Now().Before(l.graceUntil) }

// restartGrace starts the grace period again, from now: a new leader's
// takeover of its backup copies (takeOver) may have taken some of it, or
// all, and no call was served meanwhile (they wait for it), so no lock
// was granted that the grace should have kept.
func (l *wsLocks) restartGrace(grace time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.graceTimer == nil {
		return
	}
	l.graceTimer.Stop()
	l.graceUntil = time.Now().Add(grace)
	l.graceTimer.Reset(grace)
}

// acquire takes id's lock with a lease of ttl, waiting up to wait for the
// holder and the waiters before it. It fails with ErrWebSessionLocked
// when the wait runs out, ErrNotLeader when the table closes, or ctx's
// error; it then holds nothing. A call with ctx's request id of the
// read the lock is held for is that read retried: it gets the holder's
// token at once (the lease goes on as it was).
func (l *wsLocks) acquire(ctx context.Context, id string, ttl, wait time.Duration) (uint64, error) {
	rid := string(RequestID(ctx))
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return 0, ErrNotLeader
	}
	e := l.m[id]
	if e == nil {
		e = &wsLock{}
		l.m[id] = e
	}
	if e.held && rid != "" && e.rid == rid {
		e.shared++
		t := e.token
		l.mu.Unlock()
		return t, nil
	}
	if !e.held && len(e.waiters) == 0 && !l.inGrace() {
		t := l.grant(id, e, ttl, rid)
		l.mu.Unlock()
		return t, nil
	}
	w := &wsWaiter{ch: make(chan struct{}), ttl: ttl, rid: rid}
	e.waiters = append(e.waiters, w)
	l.mu.Unlock()

	timer := time.NewTimer(wait)
	defer timer.Stop()
	var err error
	select {
	case <-w.ch:
		return w.token, w.err
	case <-timer.C:
		err = fmt.Errorf("%w: waited %v", ErrWebSessionLocked, wait)
	case <-ctx.Done():
		err = ctx.Err()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if w.done { // granted (or closed) as the wait ended
		if w.err != nil || ctx.Err() == nil {
			return w.token, w.err
		}
		l.dropLocked(id, w.token) // the caller is gone
		return 0, err
	}
	if e := l.m[id]; e != nil {
		for i, x := range e.waiters {
			if x == w {
				e.waiters = append(e.waiters[:i], e.waiters[i+1:]...)
				break
			}
		}
		l.handoff(id, e)
	}
	return 0, err
}

// grant gives e to a new token for ttl, for the read of request id rid
// ("" for none). l.mu is held.
func (l *wsLocks) grant(id string, e *wsLock, ttl time.Duration, rid string) uint64 {
	t := newLockToken()
	e.held, e.token, e.rid, e.shared, e.busy, e.leaseDue = true, t, rid, 0, 0, false
	e.lease = time.AfterFunc(ttl, func() { l.leaseOver(id, t) })
	return t
}

// handoff grants a free lock to its first waiter, or drops the entry if
// nobody waits. l.mu is held.
func (l *wsLocks) handoff(id string, e *wsLock) {
	if e.held || l.closed {
		return
	}
	if len(e.waiters) == 0 {
		delete(l.m, id)
		return
	}
	if l.inGrace() {
		return // graceOver hands it off
	}
	w := e.waiters[0]
	e.waiters[0] = nil
	e.waiters = e.waiters[1:]
	w.token, w.done = l.grant(id, e, w.ttl, w.rid), true
	close(w.ch)
	if w.rid == "" {
		return
	}
	// Attempts of the same read queued behind the first (it was waiting
	// when its answer's way was lost, and the retry queued too) get the
	// same token now, not when the lock comes round to them.
	kept := e.waiters[:0]
	for _, x := range e.waiters {
		if x.rid == w.rid {
			x.token, x.done = w.token, true
			e.shared++
			close(x.ch)
			continue
		}
		kept = append(kept, x)
	}
	clear(e.waiters[len(kept):])
	e.waiters = kept
}

// free ends the holder's hold. l.mu is held.
func (l *wsLocks) free(id string, e *wsLock) {
	if e.lease != nil {
		e.lease.Stop()
	}
	e.held, e.token, e.rid, e.shared, e.lease, e.busy, e.leaseDue = false, 0, "", 0, nil, 0, false
	l.handoff(id, e)
}

// leaseOver ends token's lease on id, unless a write under it is in
// flight (then the write's end does).
func (l *wsLocks) leaseOver(id string, token uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.m[id]
	if l.closed || e == nil || !e.held || e.token != token {
		return
	}
	if e.busy > 0 {
		e.leaseDue = true
		return
	}
	l.free(id, e)
}

// release frees id's lock if token holds it, and reports whether it did.
func (l *wsLocks) release(id string, token uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.releaseLocked(id, token)
}

func (l *wsLocks) releaseLocked(id string, token uint64) bool {
	e := l.m[id]
	// Token 0 names no lock: a write without a token holds the lock only
	// while in flight, and nobody may release that.
	if token == 0 || l.closed || e == nil || !e.held || e.token != token {
		return false
	}
	l.free(id, e)
	return true
}

// drop gives up one attempt's hold of id's lock under token after a
// failure: the lock is released unless another attempt of the same read
// was given the token too (wsLock.shared), and reports whether it was.
func (l *wsLocks) drop(id string, token uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dropLocked(id, token)
}

func (l *wsLocks) dropLocked(id string, token uint64) bool {
	if e := l.m[id]; e != nil && e.held && e.token == token && e.shared > 0 {
		e.shared--
		return false
	}
	return l.releaseLocked(id, token)
}

// holds reports whether token holds id's lock.
func (l *wsLocks) holds(id string, token uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.m[id]
	return e != nil && e.held && e.token == token
}

// wsWrite is a change of a session under its lock (write, destroy, a
// touch that changes the lifetime), between beginWrite and endWrite.
type wsWrite struct {
	id    string
	token uint64
	held  bool // counted in the entry's busy
}

// wsAdoptTTL is the lease of a lock a write takes for a token the table
// does not know (the holder from before a failover, which keeps it with
// keep_lock): the default lease.
const wsAdoptTTL = 30 * time.Second

// beginWrite checks that a change of id under token may go ahead: the
// lock is token's, or free. A free lock is taken for token until
// endWrite (a token the table does not know is the holder from before a
// failover, or a request that wrote without the lock), so that nobody is
// granted it while the change is in flight. While another token holds it
// the change is refused with ErrWebSessionLockLost, unless retry (the
// request id of a change already applied: its proposal only gets the
// first result back).
func (l *wsLocks) beginWrite(id string, token uint64, retry bool) (wsWrite, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return wsWrite{}, ErrNotLeader
	}
	w := wsWrite{id: id, token: token}
	e := l.m[id]
	switch {
	case e != nil && e.held && e.token != token:
		if retry {
			return w, nil
		}
		return wsWrite{}, ErrWebSessionLockLost
	case e != nil && e.held:
		e.busy++
	case retry:
		// A retry of a change already applied: its proposal only gets
		// the first result back, so it needs no lock, whoever holds it.
		return w, nil
	case token != 0 && !l.inGrace():
		// A token this leader did not grant, or whose lease ran out
		// (another request may have held the lock since, and even
		// destroyed and re-created the session, whose versions then
		// start again): refused. In the grace period such a token is
		// the holder from before the failover, adopted below.
		return wsWrite{}, fmt.Errorf("%w: its lease ran out, or it was granted by an earlier leader", ErrWebSessionLockLost)
	default:
		if token != 0 && !retry {
			// In the grace period: the holder from before the
			// failover. Only one per session: a second token, of a
			// holder whose lease had run out, is refused.
			if a, ok := l.adopted[id]; ok && a != token {
				return wsWrite{}, fmt.Errorf("%w: another holder from before the leader change presented itself first", ErrWebSessionLockLost)
			}
			if l.adopted == nil {
				l.adopted = map[string]uint64{}
			}
			l.adopted[id] = token
		}
		if e == nil {
			e = &wsLock{}
			l.m[id] = e
		}
		e.held, e.token, e.rid, e.busy, e.leaseDue = true, token, "", 1, false
		e.lease = time.AfterFunc(wsAdoptTTL, func() { l.leaseOver(id, token) })
	}
	w.held = true
	return w, nil
}

// endWrite ends a change begun by beginWrite: it releases the lock if
// release, or if its lease ran out meanwhile.
func (l *wsLocks) endWrite(w wsWrite, release bool) {
	if !w.held {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.m[w.id]
	if l.closed || e == nil || !e.held || e.token != w.token {
		return
	}
	e.busy--
	if release || (e.busy == 0 && e.leaseDue) {
		l.free(w.id, e)
	}
}

// tryHold takes id's lock for the leader itself (an expiry in flight) if
// it is free, nobody waits and the grace period is over.
func (l *wsLocks) tryHold(id string, ttl time.Duration) (uint64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.inGrace() {
		return 0, false
	}
	e := l.m[id]
	if e != nil && (e.held || len(e.waiters) > 0) {
		return 0, false
	}
	if e == nil {
		e = &wsLock{}
		l.m[id] = e
	}
	return l.grant(id, e, ttl, ""), true
}

// graceOver grants the locks waited for during the grace period.
func (l *wsLocks) graceOver() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.adopted = nil
	for id, e := range l.m {
		l.handoff(id, e)
	}
}

// close drops the table: leadership ended. Waiters fail with
// ErrNotLeader.
func (l *wsLocks) close() {
	if l.pend != nil {
		l.pend.close()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	if l.graceTimer != nil {
		l.graceTimer.Stop()
	}
	for _, e := range l.m {
		if e.lease != nil {
			e.lease.Stop()
		}
		for _, w := range e.waiters {
			w.err, w.done = ErrNotLeader, true
			close(w.ch)
		}
	}
	l.m = nil
}

// size is the number of entries (tests).
func (l *wsLocks) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}
