package node

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/paddock/paddock/fsm"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// Delayed writes (WebSessionWriteMode DELAYED, Zend Session Clustering's
// "delayed write"). The leader answers such a write once it holds it in
// memory, in the term's wsDelayed table, and commits it in the
// background:
//
//   - A write is checked as the state machine would check it, against the
//     session as the leader serves it (its pending write, else the applied
//     state), under the session's lock. It gets the next version: pending
//     writes of a session carry versions v+1, v+2, ... over the committed
//     v.
//   - Every read, touch and validate of the session on the leader (which
//     serves them all) is served from the pending write until it commits;
//     a read of it needs no read index round (wsRead).
//   - The flusher commits a session's pending writes as one
//     WebSessionWrite{version: v, new_version: v+k} carrying the last data:
//     the versions acknowledged stay the session's, in order, and the
//     state machine's version check still holds. A session has at most one
//     commit in flight; writes acknowledged meanwhile wait for it to end.
//     The flusher starts a session's commit as soon as a write is pending
//     and the session has none in flight (after
//     Config.WebSessionFlushDelay, if set), at most delayedFlushers at
//     once, so the window from answer to commit is about one commit, or
//     two when the session's previous commit was in flight.
//   - A write-through write, a destroy and a touch that changes the
//     lifetime of a session with pending writes wait for them to commit
//     first (they hold the session's lock, so no delayed write slips in
//     between).
//   - Pending bytes are capped (Config.WebSessionDelayedMaxBytes; a
//     session's entry counts its id, its data and delayedEntryBytes): a
//     delayed write that does not fit goes through. So does one while the
//     leader has not applied its term's barrier (its state may lack
//     committed writes to check against), and one of a session with a
//     write-through write in flight (the state it would be checked
//     against is about to change). A delayed write that went through
//     is retried through (its request id is remembered): the state
//     machine answers the retry.
//
// A leader that gives its place up on purpose (Node.Close, handOver)
// first commits the table (flushStop): delayed writes go through from
// then on, and it waits for the pending ones, up to RequestTimeout. So a
// graceful stop or a leadership transfer loses nothing.
//
// The table belongs to one term: when leadership ends it is dropped, and
// what was acknowledged but not committed (a crash, a leader deposed
// without knowing it) is lost (the session stays at
// its last committed version; a writer that read the lost data is refused
// for its version). A commit in flight at that moment may still land. A
// commit the state machine refuses (it cannot be, as every write of the
// session passes here, but the check stays the safety net) drops the
// session's pending writes, logged.

// The leader remembers the request ids of delayed writes, so that a
// retry after a lost answer gets the first one: the last delayedRetries
// of them, and any younger than delayedRetryKeep, up to
// delayedRetriesMax (a request id is at most fsm's limit, a session id
// 256 bytes: some 20 MiB at most).
const (
	delayedRetries    = 8192
	delayedRetriesMax = 1 << 15
	delayedRetryKeep  = 30 * time.Second
)

// wsRetry is what the leader remembers of a delayed write's request id:
// the write it named (a retry must be the same write, else it is
// refused with fsm.ErrRequestIDReused, as the state machine does) and
// its answer.
type wsRetry struct {
	id string
	fp [sha256.Size]byte
	// version is the version answered; 0: the write went through (its
	// retry goes through too: the state machine answers it).
	version uint64
	at      time.Time
	// settled is open while the write's outcome is not known yet (its
	// backups not all holding it, nor committed): a retry waits for it.
	// nil once closed.
	settled chan struct{}
}

// retryFingerprint names a write's content for its retries: the version
// it read, its lifetime and data (the session id is kept apart).
func retryFingerprint(req *paddockv1.WriteWebSessionRequest) [sha256.Size]byte {
	h := sha256.New()
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], req.GetVersion())
	binary.BigEndian.PutUint64(b[8:], uint64(req.GetMaxLifetimeMs()))
	h.Write(b[:])
	h.Write(req.GetData())
	var fp [sha256.Size]byte
	h.Sum(fp[:0])
	return fp
}

// DefaultWebSessionDelayedMaxBytes is the default of
// Config.WebSessionDelayedMaxBytes.
const DefaultWebSessionDelayedMaxBytes = 64 << 20

// DefaultWebSessionFlushDelay is the agent's default of
// Config.WebSessionFlushDelay (whose zero value commits at once): the
// leader gathers 100 ms of delayed writes per round, so that a busy
// session's writes coalesce into one commit and many sessions' commits
// share a log sync. Every other voter holds each write from its answer on
// (websession_backup.go), so the window is what two nodes failing at
// once lose, not what a leader crash loses.
const DefaultWebSessionFlushDelay = 100 * time.Millisecond

// delayedEntryBytes is what the cap on pending bytes charges a session's
// entry beyond its id and data (the entry, its map slot, its commit), so
// that writes of little or no data to many sessions are bounded too.
const delayedEntryBytes = 256

// pendingCost is what id's pending data counts against the cap.
func pendingCost(id string, data []byte) int {
	return len(id) + len(data) + delayedEntryBytes
}

// delayedFlushers bounds the delayed commits in flight at once.
const delayedFlushers = 64

// wsDelayed is one term's table of pending delayed writes.
type wsDelayed struct {
	n      *Node
	term   uint64 // the raft term it belongs to
	max    int
	delay  time.Duration
	ctx    context.Context // ends with the term
	cancel context.CancelFunc
	kick   chan struct{}
	done   chan struct{}
	// sem bounds the commits in flight (delayedFlushers); commits counts
	// them, for close.
	sem     chan struct{}
	commits sync.WaitGroup

	// hurry is closed by flushStop: the flusher stops waiting
	// Config.WebSessionFlushDelay.
	hurry chan struct{}
	// urgent ends the flusher's current wait (drain): a change of a
	// session waits for its pending writes and should not wait out the
	// delay.
	urgent chan struct{}

	mu     sync.Mutex
	closed bool
	// draining: flushStop was called; no write is held any more (they go
	// through), the pending ones are being committed.
	draining bool
	// drainers counts the drains waiting: while there are, the flusher
	// does not wait the delay at all (a drain may need two rounds: the
	// session's commit in flight, then its writes since).
	drainers int
	m        map[string]*wsPending
	bytes    int
	// reserved are the sessions with a write being sent to the backups
	// (reserve): not visible, nor committed, until publish, so that every
	// backup holds a write before the entry that commits it. The channel
	// is closed when the reservation ends (drain waits for it).
	reserved map[string]chan struct{}
	// retries maps the request ids of recent delayed writes to what the
	// leader remembers of them; order is their arrival, to evict the
	// oldest.
	retries map[string]*wsRetry
	order   []string
	// through counts the write-through writes of a session in flight:
	// while there is one, a delayed write of the session goes through
	// too, ordered in the log after it, because the state the delayed
	// write would be checked against is about to change. A write-through
	// whose outcome is unknown (timeout) stays counted for the term: its
	// entry may still apply.
	through map[string]int
}

// wsPending is one session's delayed writes not yet committed.
type wsPending struct {
	// base is the committed version the next commit writes over (0: it
	// creates the session); version the last acknowledged.
	base, version uint64
	data          []byte
	// lifetimeMs is the last lifetime a write asked for (0: keep);
	// readLifetimeMs the session's lifetime as reads report it.
	lifetimeMs, readLifetimeMs int64
	// dirty: writes acknowledged since the last commit began; since: when
	// the first of them was.
	dirty bool
	since time.Time
	// inflight: a commit of this session is in flight.
	inflight bool
	// afterIndex is the applied index when the last write was checked;
	// rid and askedLifetimeMs its request id and asked lifetime: what a
	// backup copy of the entry needs (HeldWebSession).
	afterIndex      uint64
	rid             []byte
	askedLifetimeMs int64
	seq             uint64
	// drained is closed when the entry goes (all committed, or dropped).
	drained chan struct{}
}

func newWSDelayed(n *Node, term uint64) *wsDelayed {
	ctx, cancel := context.WithCancel(context.Background())
	d := &wsDelayed{
		n: n, term: term, max: n.cfg.WebSessionDelayedMaxBytes, delay: n.cfg.WebSessionFlushDelay,
		ctx: ctx, cancel: cancel, kick: make(chan struct{}, 1), done: make(chan struct{}), hurry: make(chan struct{}), urgent: make(chan struct{}, 1),
		sem: make(chan struct{}, delayedFlushers),
		m:   map[string]*wsPending{}, reserved: map[string]chan struct{}{}, retries: map[string]*wsRetry{}, through: map[string]int{},
	}
	go d.run()
	return d
}

// close drops the table: leadership ended. The writes not committed
// are kept as this node's own backup copy (wsBackup.keepOwn): should it
// lead again before another leader writes their sessions, it commits
// them then.
func (d *wsDelayed) close() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.closed = true
	lost := 0
	var own []*raftv1.HeldWebSession
	for id, e := range d.m {
		if e.dirty || e.inflight {
			lost++
			own = append(own, e.held(id))
		}
		close(e.drained)
	}
	d.m, d.bytes, d.through = nil, 0, nil
	d.mu.Unlock()
	d.n.wsBackup.keepOwn(d.term, own)
	d.cancel()
	<-d.done
	d.commits.Wait()
	if lost > 0 {
		d.n.metrics.wsDelayed.WithLabelValues(wsDelayedDropped).Add(float64(lost))
		d.n.log.Warn("leadership ended with delayed web session writes not committed: the next leader commits those its backup copy holds, the rest are lost", "sessions", lost)
	}
}

// flushStop commits the pending writes before leadership is given up
// (a graceful stop, a leadership transfer): from now on delayed writes go
// through, and it waits until every pending write is committed (or
// dropped), or timeout passes. It reports whether the table is empty.
func (d *wsDelayed) flushStop(timeout time.Duration) bool {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return true
	}
	if !d.draining {
		d.draining = true
		close(d.hurry)
	}
	d.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	// No write is reserved once draining, but those reserved before may
	// still be published: until there is neither a pending write nor a
	// reservation.
	for {
		d.mu.Lock()
		var waits []chan struct{}
		for _, e := range d.m {
			waits = append(waits, e.drained)
		}
		for _, ch := range d.reserved {
			waits = append(waits, ch)
		}
		d.mu.Unlock()
		if len(waits) == 0 {
			return true
		}
		select {
		case d.kick <- struct{}{}:
		default:
		}
		for _, ch := range waits {
			select {
			case <-ch:
			case <-t.C:
				k, _ := d.size()
				d.n.log.Warn("delayed web session writes not committed before giving up leadership", "sessions", k)
				return false
			}
		}
	}
}

// current is id as the leader serves it: its pending write, else the
// applied state. d.mu is held.
func (d *wsDelayed) current(id string) (fsm.WebSession, bool) {
	if e := d.m[id]; e != nil {
		return fsm.WebSession{ID: id, Data: e.data, Version: e.version, MaxLifetimeMs: e.readLifetimeMs}, true
	}
	return d.n.fsm.WebSession(id)
}

// get is current for callers without d.mu; a closed table serves the
// applied state.
func (d *wsDelayed) get(id string) (fsm.WebSession, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.current(id)
}

// getPending is id's pending write, if it has one.
func (d *wsDelayed) getPending(id string) (fsm.WebSession, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m[id] == nil {
		return fsm.WebSession{}, false
	}
	return d.current(id)
}

// pending reports whether id has writes not committed.
func (d *wsDelayed) pending(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.m[id] != nil || d.reserved[id] != nil
}

// retried returns the version a delayed write with request id rid was
// answered with, 0 if it went through. A request id remembered for
// another write (another session, version read, lifetime or data) is
// refused with fsm.ErrRequestIDReused. While the first attempt's
// outcome is not known (its backups not all holding it yet, nor
// committed), it waits, within ctx.
func (d *wsDelayed) retried(ctx context.Context, rid []byte, req *paddockv1.WriteWebSessionRequest) (uint64, bool, error) {
	if len(rid) == 0 {
		return 0, false, nil
	}
	for {
		d.mu.Lock()
		r := d.retries[string(rid)]
		if r == nil {
			d.mu.Unlock()
			return 0, false, nil
		}
		if r.id != req.GetId() || r.fp != retryFingerprint(req) {
			d.mu.Unlock()
			return 0, false, &fsm.Error{Err: fsm.ErrRequestIDReused, Detail: fmt.Sprintf(
				"request id %x was used for another write (of web session %s); use a new id for each request", rid, r.id)}
		}
		ch, v := r.settled, r.version
		d.mu.Unlock()
		if ch == nil {
			return v, true, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, false, ctx.Err()
		}
	}
}

// settleLocked records that the outcome of the write of request id rid
// is known: its retries stop waiting. d.mu is held.
func (d *wsDelayed) settleLocked(rid []byte) {
	if r := d.retries[string(rid)]; r != nil && len(rid) > 0 && r.settled != nil {
		close(r.settled)
		r.settled = nil
	}
}

// errDelayedFull makes a delayed write go through: the pending bytes
// would pass the cap.
var errDelayedFull = errors.New("node: delayed web session writes are at their memory cap")

// errRetryKnown: a delayed write's request id is already the table's
// (an attempt of it is in flight): the caller asks retried again.
var errRetryKnown = errors.New("node: an attempt of this delayed web session write is in flight")

// reserve checks req as id's next delayed write, as the state machine
// would (fsm.ErrBadVersion), and gives it its version, without making it
// visible: it returns the write as the backups are to hold it. It fails
// with errDelayedFull when the write must go through instead (it does
// not fit, the session has a write-through write or another reserved
// write in flight, the leader is stopping), errRetryKnown, or
// ErrNotLeader. publish or unreserve ends it. The caller holds id's lock.
func (d *wsDelayed) reserve(id string, req *paddockv1.WriteWebSessionRequest, rid []byte) (*raftv1.HeldWebSession, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, ErrNotLeader
	}
	if len(rid) > 0 && d.retries[string(rid)] != nil {
		return nil, errRetryKnown
	}
	if d.draining || d.through[id] > 0 || d.reserved[id] != nil {
		// Leadership is being given up, or a write-through write of
		// the session is in flight: write through.
		return nil, errDelayedFull
	}
	cur, ok := d.current(id)
	if !ok {
		cur.Version = 0
	}
	switch want := req.GetVersion(); {
	case want == 0 && cur.Version != 0:
		return nil, &fsm.Error{Err: fsm.ErrBadVersion, Detail: fmt.Sprintf("web session %s exists (version %d), want a new one", id, cur.Version)}
	case want != 0 && cur.Version == 0:
		return nil, &fsm.Error{Err: fsm.ErrBadVersion, Detail: fmt.Sprintf("web session %s does not exist, want version %d", id, want)}
	case want != cur.Version:
		return nil, &fsm.Error{Err: fsm.ErrBadVersion, Detail: fmt.Sprintf("web session %s is at version %d, want %d", id, cur.Version, want)}
	}
	data := req.GetData()
	e := d.m[id]
	size := d.bytes + pendingCost(id, data)
	if e != nil {
		size -= pendingCost(id, e.data)
	}
	if size > d.max {
		return nil, errDelayedFull
	}
	base, life := cur.Version, req.GetMaxLifetimeMs()
	if e != nil {
		base = e.base
		if life == 0 {
			life = e.lifetimeMs
		}
	}
	d.reserved[id] = make(chan struct{})
	seq := d.n.holdSeq.Add(1)
	d.remember(rid, id, req, cur.Version+1)
	if r := d.retries[string(rid)]; r != nil && len(rid) > 0 {
		r.settled = make(chan struct{})
	}
	return &raftv1.HeldWebSession{
		Id: id, Base: base, Version: cur.Version + 1, Data: data, MaxLifetimeMs: life,
		RequestId: rid, AskedLifetimeMs: req.GetMaxLifetimeMs(), Seq: seq,
		// Read after the state the write was checked against: at or
		// past the index that state holds.
		AfterIndex: d.n.fsm.AppliedIndex(),
	}, nil
}

// publish makes id's reserved write w, which every backup holds, its
// next pending write: read from now on, and committed by the flusher.
// Its retries get its version. On a table closed meanwhile (leadership
// ended) it is kept as this node's own backup copy, as close keeps the
// others, and publish reports false: its outcome is not known.
func (d *wsDelayed) publish(w *raftv1.HeldWebSession) bool {
	d.mu.Lock()
	id := w.GetId()
	d.endReservation(id)
	if d.closed {
		d.mu.Unlock()
		d.n.wsBackup.keepOwn(d.term, []*raftv1.HeldWebSession{w})
		return false
	}
	d.settleLocked(w.GetRequestId())
	defer d.mu.Unlock()
	e := d.m[id]
	if e == nil {
		// The session's commits in flight at reserve may have ended
		// since: the next commit writes over the applied version.
		base, life := uint64(0), int64(fsm.DefaultWebSessionLifetimeMs)
		if s, ok := d.n.fsm.WebSession(id); ok {
			base, life = s.Version, s.MaxLifetimeMs
		}
		e = &wsPending{base: base, readLifetimeMs: life, drained: make(chan struct{})}
		d.m[id] = e
	} else {
		d.bytes -= pendingCost(id, e.data)
	}
	d.bytes += pendingCost(id, w.GetData())
	e.version, e.data = w.GetVersion(), w.GetData()
	if ml := w.GetAskedLifetimeMs(); ml != 0 {
		e.readLifetimeMs = ml
	}
	e.lifetimeMs = w.GetMaxLifetimeMs()
	if !e.dirty {
		e.dirty, e.since = true, time.Now()
	}
	e.afterIndex, e.rid, e.askedLifetimeMs, e.seq = w.GetAfterIndex(), w.GetRequestId(), w.GetAskedLifetimeMs(), w.GetSeq()
	select {
	case d.kick <- struct{}{}:
	default:
	}
	return true
}

// unreserve ends id's reservation without publishing it: a backup did
// not hold it, so it goes through (its retries too: the state machine
// answers them).
func (d *wsDelayed) unreserve(id string, rid []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.endReservation(id)
	if r := d.retries[string(rid)]; r != nil && len(rid) > 0 {
		r.version = 0
		d.settleLocked(rid)
	}
}

// endReservation ends id's reservation. d.mu is held.
func (d *wsDelayed) endReservation(id string) {
	if ch := d.reserved[id]; ch != nil {
		close(ch)
		delete(d.reserved, id)
	}
}

// held is e as a backup holds it.
func (e *wsPending) held(id string) *raftv1.HeldWebSession {
	return &raftv1.HeldWebSession{
		Id: id, Base: e.base, Version: e.version, Data: e.data, MaxLifetimeMs: e.lifetimeMs,
		RequestId: e.rid, AskedLifetimeMs: e.askedLifetimeMs, AfterIndex: e.afterIndex, Seq: e.seq,
	}
}

// remember records that req, with request id rid, was answered with
// version (0: it went through). d.mu is held.
func (d *wsDelayed) remember(rid []byte, id string, req *paddockv1.WriteWebSessionRequest, version uint64) {
	if len(rid) == 0 {
		return
	}
	d.rememberFP(rid, id, retryFingerprint(req), version)
}

// rememberFP is remember with the write's fingerprint. d.mu is held.
func (d *wsDelayed) rememberFP(rid []byte, id string, fp [sha256.Size]byte, version uint64) {
	now := time.Now()
	if r := d.retries[string(rid)]; r != nil {
		r.version = version // a retry of one that went through
		return
	}
	for len(d.order) > 0 && (len(d.order) >= delayedRetriesMax ||
		len(d.order) >= delayedRetries && now.Sub(d.retries[d.order[0]].at) > delayedRetryKeep) {
		if d.retries[d.order[0]].settled != nil {
			break // its write is being held: its retries wait for it
		}
		delete(d.retries, d.order[0])
		d.order[0] = ""
		d.order = d.order[1:]
	}
	d.order = append(d.order, string(rid))
	d.retries[string(rid)] = &wsRetry{id: id, fp: fp, version: version, at: now}
}

// beginThrough marks a write-through write of id in flight, until
// endThrough; asked is whether it was asked delayed: its request id rid
// is remembered, so that a retry goes through too instead of being held
// at the version the first attempt is about to change.
func (d *wsDelayed) beginThrough(id string, rid []byte, req *paddockv1.WriteWebSessionRequest, asked bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	d.through[id]++
	if asked {
		d.remember(rid, id, req, 0)
	}
}

// endThrough ends beginThrough's mark; a write whose outcome is unknown
// (not settled) leaves it for the term.
func (d *wsDelayed) endThrough(id string, settled bool) {
	if !settled {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	if d.through[id]--; d.through[id] <= 0 {
		delete(d.through, id)
	}
}

// drain waits until id has no pending write (committed, or dropped),
// hurrying the flusher. The caller holds id's lock, so none is added.
func (d *wsDelayed) drain(ctx context.Context, id string) error {
	// Until one look sees neither a reserved write of the session (a
	// change with the same token, or none, let in meanwhile) nor a
	// pending one.
	d.mu.Lock()
	d.drainers++
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.drainers--
		d.mu.Unlock()
	}()
	for {
		d.mu.Lock()
		e, res, closed := d.m[id], d.reserved[id], d.closed
		d.mu.Unlock()
		if closed {
			return ErrNotLeader
		}
		var ch chan struct{}
		switch {
		case res != nil:
			ch = res
		case e != nil:
			ch = e.drained
			select {
			case d.urgent <- struct{}{}:
			default:
			}
		default:
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// run is the flusher: a round whenever writes are pending.
func (d *wsDelayed) run() {
	defer close(d.done)
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-d.kick:
		}
		// A hurry left from a drain before this round is spent: the
		// drains waiting now are counted.
		select {
		case <-d.urgent:
		default:
		}
		d.mu.Lock()
		delay := d.delay // tests change it
		if d.drainers > 0 {
			delay = 0
		}
		d.mu.Unlock()
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-d.ctx.Done():
				t.Stop()
				return
			case <-d.hurry:
			case <-d.urgent:
			case <-t.C:
			}
			t.Stop()
		}
		d.flushRound()
	}
}

// wsFlush is one session's commit of a round.
type wsFlush struct {
	id    string
	e     *wsPending
	cmd   *raftv1.Command
	rid   []byte
	since time.Time
}

// flushRound starts the commit of every session with writes acknowledged
// and no commit in flight, at most delayedFlushers at once (raft batches
// them), and returns once all are started: a session's next commit is
// started as soon as its own previous one is done, without waiting for
// the other sessions'.
func (d *wsDelayed) flushRound() {
	d.mu.Lock()
	var round []wsFlush
	for id, e := range d.m {
		if !e.dirty || e.inflight {
			continue
		}
		w := &raftv1.WebSessionWrite{Id: id, Data: e.data, Version: e.base, MaxLifetimeMs: e.lifetimeMs}
		if e.version > e.base+1 {
			w.NewVersion = e.version
		}
		e.dirty, e.inflight = false, true
		round = append(round, wsFlush{
			id: id, e: e, since: e.since, rid: newFlushID(),
			cmd: &raftv1.Command{Op: &raftv1.Command_WebSessionWrite{WebSessionWrite: w}},
		})
	}
	d.mu.Unlock()
	for _, f := range round {
		select {
		case d.sem <- struct{}{}:
		case <-d.ctx.Done():
			return // the term ended: close drops the entries
		}
		d.commits.Add(1)
		go func() {
			defer d.commits.Done()
			defer func() { <-d.sem }()
			d.commit(f)
		}()
	}
}

// newFlushID is a commit's request id: a retry of the commit after an
// unknown outcome gets the first result back instead of failing its
// version check.
func newFlushID() []byte {
	b := make([]byte, len(flushIDPrefix)+16)
	copy(b, flushIDPrefix)
	_, _ = rand.Read(b[len(flushIDPrefix):])
	return b
}

// flushIDPrefix starts the request ids of the leader's own commits of
// delayed writes (the flusher's, a takeover's): a backup that sees one
// commit a session's write it holds knows the commit carried that write
// (wsBackup.applied).
const flushIDPrefix = "paddock-flush:"

// commit proposes f until it is applied, refused, or the term ends.
func (d *wsDelayed) commit(f wsFlush) {
	ctx := WithRequestID(d.ctx, f.rid)
	for {
		pctx, cancel := context.WithTimeout(ctx, d.n.cfg.RequestTimeout)
		// proposeLeader takes the command's request id from the context
		// and stamps the feature level: a fresh copy each attempt.
		_, err := d.n.proposeLeader(pctx, cloneCommand(f.cmd))
		cancel()
		if err == nil {
			d.committed(f)
			return
		}
		if d.ctx.Err() != nil || errors.Is(err, ErrNotLeader) {
			return // the term ended: close drops the entry
		}
		// A refused feature level appended nothing and may pass (a
		// member registering): tried again, like a failure.
		if settled(err) && !errors.Is(err, fsm.ErrFeatureLevel) {
			d.refused(f, err)
			return
		}
		d.n.log.Warn("delayed web session write: commit failed, retrying", "error", err)
		if !sleepCtx(d.ctx, 50*time.Millisecond) {
			return
		}
	}
}

func cloneCommand(c *raftv1.Command) *raftv1.Command {
	w := c.GetWebSessionWrite()
	return &raftv1.Command{Op: &raftv1.Command_WebSessionWrite{WebSessionWrite: &raftv1.WebSessionWrite{
		Id: w.GetId(), Data: w.GetData(), Version: w.GetVersion(), MaxLifetimeMs: w.GetMaxLifetimeMs(), NewVersion: w.GetNewVersion(),
	}}}
}

// committed records f's commit: the entry goes unless writes came after.
func (d *wsDelayed) committed(f wsFlush) {
	d.n.metrics.wsDelayWindow.Observe(time.Since(f.since).Seconds())
	w := f.cmd.GetWebSessionWrite()
	newVersion := w.GetNewVersion()
	if newVersion == 0 {
		newVersion = w.GetVersion() + 1
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || d.m[f.id] != f.e {
		return
	}
	e := f.e
	e.inflight, e.base = false, newVersion
	if e.dirty {
		select {
		case d.kick <- struct{}{}:
		default:
		}
		return
	}
	d.bytes -= pendingCost(f.id, e.data)
	delete(d.m, f.id)
	close(e.drained)
}

// refused drops f's session's pending writes: the state machine refused
// the commit.
func (d *wsDelayed) refused(f wsFlush, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || d.m[f.id] != f.e {
		return
	}
	d.bytes -= pendingCost(f.id, f.e.data)
	delete(d.m, f.id)
	close(f.e.drained)
	d.n.metrics.wsDelayed.WithLabelValues(wsDelayedDropped).Inc()
	d.n.log.Error("delayed web session write refused at commit: its pending writes are dropped", "error", err)
}

// size is the number of sessions with pending writes and their bytes
// (tests).
func (d *wsDelayed) size() (int, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.m), d.bytes
}

// Values of paddock_web_session_delayed_writes_total's outcome label.
const (
	wsDelayedAcked   = "acked"         // held in memory and answered
	wsDelayedThrough = "write_through" // asked delayed, written through (memory cap, leader catching up)
	wsDelayedDropped = "dropped"       // sessions whose pending writes were lost (leadership ended) or refused
	// not_backed_up: a backup did not hold it; answered once committed.
	wsDelayedNotBackedUp = "not_backed_up"
	// taken_over: sessions whose held writes a new leader committed.
	wsDelayedTakenOver = "taken_over"
)
