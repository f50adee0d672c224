package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/paddock/paddock/fsm"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// Backups of delayed writes (Zend Session Clustering's HA: "each session
// is saved twice, once on the master and once on its backup"). A leader
// answers a delayed write once every other voter holds it in memory
// (InternalService.HoldWebSessions), not only itself, so a leader crash
// loses nothing acknowledged; a crash of the leader and of another node
// within the window still may.
//
//   - The leader checks a write and gives it its version without making
//     it visible (wsDelayed.reserve), sends it to the backups labelled
//     with the term of the table that did, and once all of them hold it,
//     publishes it (read from then on, committed by the flusher) and
//     answers. So a backup takes every write it takes before the entry
//     that commits it applies, and no read sees a write before it is
//     answered. The hold runs to its end (holdTimeout), whether or not
//     the caller still waits. A backup refuses a hold whose caller gave
//     up (its deadline passed), under the lock the state machine's hook
//     takes, and one made before it took its own term's writes over.
//   - A write carries after_index, the leader's applied index when it
//     checked it, and seq, which grows with each write the leader's term
//     sends. A backup keeps each session's latest write, by (term, seq),
//     and lets go of it from the state machine's hook
//     (fsm.WithWebSessionHook, in log order on every node) when an entry
//     past after_index writes the session at its version or later or
//     deletes it, or an entry of a later term writes it (a later leader
//     decided the session's fate). Versions alone would not do: a session
//     deleted and written again starts them over. When the entry that
//     reached its version is the leader's own commit (a request id with
//     flushIDPrefix) or the write's own (it went through), it remembers
//     the write's request id (the last delayedRetries of them), so that a
//     new leader answers its retry as the old one would have.
//   - A backup that does not answer within holdTimeout (or one that failed
//     within holdDownFor: writes do not wait for it again and again)
//     makes the write go through: a write-through write with the
//     client's request id, answered once committed, whose retries the
//     state machine answers. A one-node cluster has no backup to wait
//     for: its delayed writes rest on its memory alone.
//   - A leader whose term ends keeps its own writes not yet committed as
//     backup copies (keepOwn): it may lead again before anyone writes
//     their sessions.
//   - A node that becomes leader, once its barrier is applied and before
//     it serves any web session call (they wait for ready), commits every
//     write it holds whose session is still in the chain the write was
//     built on (the session's version at or above the write's base,
//     below its version): WebSessionWrite{version: the session's,
//     new_version: the write's}, with a request id derived from the held
//     write (takeOverID), which every other backup recognises when it
//     applies it. It remembers each write's request id, and those of the
//     writes its backup copy saw committed, so that a retry whose first
//     answer was lost in the crash gets it. The takeover
//     tries until each is committed or refused, or leadership ends, and
//     the lock grace starts again when it is over.
//   - A backup remembers, for holdStale, the index of each session's
//     delete it applied; it refuses a write that creates the session
//     (base 0) checked before a later delete: a hold that arrives after
//     the commit of its write and the session's destroy must not bring
//     the session back.
//   - A snapshot installed on a backup drops the writes checked before
//     the snapshot's index (the state it brings may hold their commits,
//     unseen by the hook); so does a write of a term that ended more than
//     holdStale ago (its term's successor took it over or lost it), and
//     any held longer than holdStaleAny.
//
// Lock order: the state machine's lock, then wsBackup.mu (the hook); never
// the other way round.

// Limits of the backups.
const (
	// holdTimeout bounds a leader's wait for its backups.
	holdTimeout = 250 * time.Millisecond
	// holdDownFor is how long a backup that failed is not waited for.
	holdDownFor = time.Second
	// holdStale is how long after it was held a write of a term that
	// ended is kept, holdStaleAny any write.
	holdStale    = 30 * time.Second
	holdStaleAny = 5 * time.Minute
	// holdTakeOvers bounds a new leader's commits in flight at once.
	holdTakeOvers = 64
)

// errHoldRefused: a backup refused or failed to hold writes.
var errHoldRefused = errors.New("node: a backup did not hold the delayed web session writes")

// wsBackup is what this node holds of leaders' delayed writes, as their
// backup, and the leader's side of sending them.
type wsBackup struct {
	n *Node

	mu    sync.Mutex
	m     map[string]*heldWrite
	bytes int
	swept time.Time
	// done are the request ids of held writes the log reached, the last
	// delayedRetries of them, oldest first in doneOrder.
	done      map[string]doneWrite
	doneOrder []string
	// deleted is the index of each session's last delete applied, kept
	// for holdStale (deletedAt).
	deleted      map[string]uint64
	deletedAt    map[string]time.Time
	deletesSwept time.Time
	// restoredAt is the index of the last snapshot installed: it may
	// hold deletes the hook did not see.
	restoredAt uint64
	count      atomic.Int64 // len(m): the hook skips the lock when there is none
	// maxBytes caps the held writes' bytes: twice
	// Config.WebSessionDelayedMaxBytes, the leader's cap on its pending
	// writes (a backup counts request ids too, and may hold a term that
	// ended).
	maxBytes int
	refuse   atomic.Bool // tests: refuse every hold

	// down is, by peer address, when a backup that failed may be waited
	// for again (the leader's side).
	downMu sync.Mutex
	down   map[string]time.Time
}

type heldWrite struct {
	term uint64
	at   time.Time
	w    *raftv1.HeldWebSession
}

// doneWrite is a committed held write's answer, for its retries.
type doneWrite struct {
	id      string
	fp      [sha256.Size]byte
	version uint64
}

// laterThanMe reports whether w, of term, is a later write than e's:
// of a later term, or of a later seq in the same.
func (e *heldWrite) laterThanMe(term uint64, w *raftv1.HeldWebSession) bool {
	if term != e.term {
		return term > e.term
	}
	return w.GetSeq() > e.w.GetSeq()
}

func newWSBackup(n *Node) *wsBackup {
	return &wsBackup{
		n: n, m: map[string]*heldWrite{}, done: map[string]doneWrite{}, down: map[string]time.Time{},
		deleted: map[string]uint64{}, deletedAt: map[string]time.Time{},
		maxBytes: 2 * n.cfg.WebSessionDelayedMaxBytes,
	}
}

func heldCost(w *raftv1.HeldWebSession) int {
	return pendingCost(w.GetId(), w.GetData()) + len(w.GetRequestId())
}

// hold keeps writes of the leader of term, unless this node's term
// (curTerm, read under b.mu: raft raises it before this node can lead and
// take its writes over) is later, its caller gave up (ctx), a write
// creates a session deleted since it was checked, or they would pass the
// memory cap; it then keeps none of them. A write older than the one it
// holds for the session is superseded by it: nothing to keep.
func (b *wsBackup) hold(ctx context.Context, term uint64, curTerm func() uint64, writes []*raftv1.HeldWebSession) error {
	if b.refuse.Load() {
		return fmt.Errorf("%w: refusing (a test)", errHoldRefused)
	}
	for _, w := range writes {
		if !fsm.ValidWebSessionID(w.GetId()) || w.GetVersion() <= w.GetBase() {
			return fmt.Errorf("%w: a bad write (session %q, base %d, version %d)", errHoldRefused, w.GetId(), w.GetBase(), w.GetVersion())
		}
	}
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	// Checked under mu, which the hook takes too: a hold whose leader
	// gave up (it may be committing the write as an ordinary one by now)
	// is not taken after the entry that commits it has applied.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %v", errHoldRefused, err)
	}
	cur := curTerm()
	if term < cur {
		return fmt.Errorf("%w: term %d is over (this node is at %d)", errHoldRefused, term, cur)
	}
	for _, w := range writes {
		if d, ok := b.deleted[w.GetId()]; w.GetBase() == 0 && ((ok && d > w.GetAfterIndex()) || b.restoredAt > w.GetAfterIndex()) {
			return fmt.Errorf("%w: session %s was deleted after the write that creates it was checked", errHoldRefused, w.GetId())
		}
	}
	if now.Sub(b.swept) > time.Second {
		b.sweep(now, cur)
	}
	size := b.bytes
	keep := make(map[string]*raftv1.HeldWebSession, len(writes))
	for _, w := range writes {
		id := w.GetId()
		if k := keep[id]; k != nil {
			if !(&heldWrite{term: term, w: k}).laterThanMe(term, w) {
				continue
			}
			size -= heldCost(k)
		} else if e := b.m[id]; e != nil {
			if !e.laterThanMe(term, w) {
				continue
			}
			size -= heldCost(e.w)
		}
		keep[id] = w
		size += heldCost(w)
	}
	if size > b.maxBytes {
		return fmt.Errorf("%w: held writes would pass the memory cap", errHoldRefused)
	}
	for id, w := range keep {
		b.m[id] = &heldWrite{term: term, at: now, w: w}
	}
	b.bytes = size
	b.count.Store(int64(len(b.m)))
	return nil
}

// keepOwn keeps a leader's own writes not committed when its term ended,
// whatever the cap (they were within the leader's).
func (b *wsBackup) keepOwn(term uint64, writes []*raftv1.HeldWebSession) {
	if len(writes) == 0 {
		return
	}
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, w := range writes {
		if e := b.m[w.GetId()]; e != nil {
			if !e.laterThanMe(term, w) {
				continue
			}
			b.bytes -= heldCost(e.w)
		}
		b.m[w.GetId()] = &heldWrite{term: term, at: now, w: w}
		b.bytes += heldCost(w)
	}
	b.count.Store(int64(len(b.m)))
}

// sweep drops the writes of terms that ended more than holdStale ago,
// and any older than holdStaleAny. b.mu is held.
func (b *wsBackup) sweep(now time.Time, cur uint64) {
	b.swept = now
	for id, e := range b.m {
		if age := now.Sub(e.at); (e.term < cur && age > holdStale) || age > holdStaleAny {
			b.drop(id, e)
		}
	}
	for id, at := range b.deletedAt {
		if now.Sub(at) > holdStale {
			delete(b.deleted, id)
			delete(b.deletedAt, id)
		}
	}
	b.deletesSwept = now
}

// drop forgets id's held write. b.mu is held.
func (b *wsBackup) drop(id string, e *heldWrite) {
	b.bytes -= heldCost(e.w)
	delete(b.m, id)
	b.count.Store(int64(len(b.m)))
}

// applied is the state machine's hook: an entry changed session c.ID.
func (b *wsBackup) applied(c fsm.WebSessionChange) {
	if b.count.Load() == 0 && c.Version != 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if c.Version == 0 {
		now := time.Now()
		b.deleted[c.ID], b.deletedAt[c.ID] = c.Index, now
		if now.Sub(b.deletesSwept) > time.Second {
			b.deletesSwept = now
			for id, at := range b.deletedAt {
				if now.Sub(at) > holdStale {
					delete(b.deleted, id)
					delete(b.deletedAt, id)
				}
			}
		}
	}
	e := b.m[c.ID]
	if e == nil {
		return
	}
	switch {
	case c.Term > e.term:
		if bytes.Equal(c.RequestID, takeOverID(e)) {
			b.remember(e.w) // a new leader's takeover of this very write
		}
	case c.Index <= e.w.GetAfterIndex():
		return // older than the write, whatever its version
	case c.Version == 0:
	case c.Version >= e.w.GetVersion():
		if bytes.HasPrefix(c.RequestID, []byte(flushIDPrefix)) || (len(c.RequestID) > 0 && bytes.Equal(c.RequestID, e.w.GetRequestId())) {
			b.remember(e.w)
		}
	default:
		return // an earlier write of its chain
	}
	b.drop(c.ID, e)
}

// remember keeps the answer of w, which the log reached, for its
// retries. b.mu is held.
func (b *wsBackup) remember(w *raftv1.HeldWebSession) {
	rid := string(w.GetRequestId())
	if rid == "" {
		return
	}
	if _, ok := b.done[rid]; !ok {
		if len(b.doneOrder) >= delayedRetries {
			delete(b.done, b.doneOrder[0])
			b.doneOrder[0] = ""
			b.doneOrder = b.doneOrder[1:]
		}
		b.doneOrder = append(b.doneOrder, rid)
	}
	req := &paddockv1.WriteWebSessionRequest{Version: w.GetVersion() - 1, MaxLifetimeMs: w.GetAskedLifetimeMs(), Data: w.GetData()}
	b.done[rid] = doneWrite{id: w.GetId(), fp: retryFingerprint(req), version: w.GetVersion()}
}

// Applied implements fsm.Sink: nothing to do (applied is the hook).
func (b *wsBackup) Applied(uint64, []fsm.Event) {}

// Restored implements fsm.Sink: a snapshot up to index replaced the
// state, and the hook saw none of the entries it stands for. The writes
// checked before index go (their commits may be in it); those checked at
// or after it stay (it predates them). The deletes it stands for are
// unknown: creations held from now on are checked against index.
func (b *wsBackup) Restored(index uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	dropped := 0
	for id, e := range b.m {
		if e.w.GetAfterIndex() < index {
			b.drop(id, e)
			dropped++
		}
	}
	if dropped > 0 {
		b.n.log.Warn("snapshot installed: dropping the held delayed web session writes it may hold", "sessions", dropped)
	}
	b.restoredAt = index
}

// taken is what a new leader takes over: the held writes (they stay held
// until an entry lets go of them, or dropTaken) and the answers of those
// the log reached.
func (b *wsBackup) taken() ([]*heldWrite, map[string]doneWrite) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]*heldWrite, 0, len(b.m))
	for _, e := range b.m {
		out = append(out, e)
	}
	done := make(map[string]doneWrite, len(b.done))
	for rid, d := range b.done {
		done[rid] = d
	}
	return out, done
}

// dropTaken forgets e, a write a new leader decided not to commit.
func (b *wsBackup) dropTaken(e *heldWrite) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m[e.w.GetId()] == e {
		b.drop(e.w.GetId(), e)
	}
}

// held is the number of held writes and their bytes (tests).
func (b *wsBackup) held() (int, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.m), b.bytes
}

// HoldWebSessions keeps a leader's delayed writes (a backup's side).
func (s *internalServer) HoldWebSessions(ctx context.Context, req *raftv1.HoldWebSessionsRequest) (*raftv1.HoldWebSessionsResponse, error) {
	if err := s.n.errIfHalted(); err != nil {
		return nil, peerStatus(err)
	}
	if s.n.IsLeader() {
		return nil, peerStatus(fmt.Errorf("%w: %w: this node leads", ErrNotLeader, errHoldRefused))
	}
	if err := s.n.wsBackup.hold(ctx, req.GetTerm(), s.n.raft.CurrentTerm, req.GetWrites()); err != nil {
		return nil, peerStatus(fmt.Errorf("%w: %v", ErrNotLeader, err))
	}
	return &raftv1.HoldWebSessionsResponse{}, nil
}

// holdIn is a write to hold and the term of the table that gave it its
// version.
type holdIn struct {
	term uint64
	w    *raftv1.HeldWebSession
}

// sendHolds has every other voter hold ins (the holds batcher's run): nil
// once all of them do. It fails if this node no longer leads the term of
// any of them.
func (n *Node) sendHolds(ctx context.Context, ins []holdIn) ([]struct{}, error) {
	if ch := n.holdStall.Load(); ch != nil {
		<-*ch
	}
	out := make([]struct{}, len(ins))
	term := n.raft.CurrentTerm()
	if n.raft.State() != raft.Leader {
		return nil, ErrNotLeader
	}
	ws := make([]*raftv1.HeldWebSession, len(ins))
	for i, in := range ins {
		if in.term != term {
			return nil, fmt.Errorf("%w: a write of term %d, this node leads term %d", ErrNotLeader, in.term, term)
		}
		ws[i] = in.w
	}
	cfg := n.raft.GetConfiguration()
	if err := cfg.Error(); err != nil {
		return nil, err
	}
	var addrs []string
	for _, s := range cfg.Configuration().Servers {
		if s.Suffrage == raft.Voter && string(s.ID) != n.cfg.ID {
			addrs = append(addrs, string(s.Address))
		}
	}
	if len(addrs) == 0 {
		return out, nil
	}
	now := time.Now()
	n.wsBackup.downMu.Lock()
	for _, a := range addrs {
		if now.Before(n.wsBackup.down[a]) {
			n.wsBackup.downMu.Unlock()
			return nil, fmt.Errorf("%w: backup %s failed less than %v ago", errHoldRefused, a, holdDownFor)
		}
	}
	n.wsBackup.downMu.Unlock()
	reqs := holdRequests(term, ws)
	// Every call runs to its end or its deadline: none is cancelled when
	// another fails, so that a backup never takes a write after this
	// leader went on to commit it as an ordinary one.
	ctx, cancel := context.WithTimeout(ctx, holdTimeout)
	defer cancel()
	errs := make(chan error, len(addrs))
	for _, a := range addrs {
		go func() {
			err := n.holdAt(ctx, a, reqs)
			if err != nil {
				n.wsBackup.downMu.Lock()
				n.wsBackup.down[a] = time.Now().Add(holdDownFor)
				n.wsBackup.downMu.Unlock()
				n.log.Warn("a backup did not hold delayed web session writes: they are answered once committed", "peer", a, "error", err)
			}
			errs <- err
		}()
	}
	var first error
	for range addrs {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		return nil, fmt.Errorf("%w: %v", errHoldRefused, first)
	}
	return out, nil
}

// holdRequests splits ws into requests that fit a message.
func holdRequests(term uint64, ws []*raftv1.HeldWebSession) []*raftv1.HoldWebSessionsRequest {
	var out []*raftv1.HoldWebSessionsRequest
	cur := &raftv1.HoldWebSessionsRequest{Term: term}
	size := 0
	for _, w := range ws {
		s := proto.Size(w) + 16
		if len(cur.Writes) > 0 && size+s > MaxMessageSize/2 {
			out = append(out, cur)
			cur, size = &raftv1.HoldWebSessionsRequest{Term: term}, 0
		}
		cur.Writes = append(cur.Writes, w)
		size += s
	}
	return append(out, cur)
}

// holdAt sends reqs to the backup at raft address addr.
func (n *Node) holdAt(ctx context.Context, addr string, reqs []*raftv1.HoldWebSessionsRequest) error {
	conn, err := n.peers.get(addr)
	if err != nil {
		return err
	}
	if err := n.holdStreams.hold(ctx, addr, conn, reqs); !errors.Is(err, errNoHoldStream) {
		return err
	}
	// A backup of an older version: a unary call per request.
	c := raftv1.NewInternalServiceClient(conn)
	for _, r := range reqs {
		if _, err := c.HoldWebSessions(ctx, r); err != nil {
			return fromPeer(err)
		}
	}
	return nil
}

// takeOver commits, as a new leader whose barrier is applied, the
// delayed writes this node holds as a backup that the log does not hold,
// and remembers the request ids of those it holds and of those its
// backup copy saw committed, in the term's table. It returns once each
// is committed or refused; an error when leadership ended first (ctx).
func (n *Node) takeOver(ctx context.Context) error {
	held, done := n.wsBackup.taken()
	l := n.ws.locks.Load()
	if l == nil || l.pend == nil {
		return ErrNotLeader
	}
	if len(done) > 0 {
		l.pend.mu.Lock()
		for rid, d := range done {
			l.pend.rememberFP([]byte(rid), d.id, d.fp, d.version)
		}
		l.pend.mu.Unlock()
	}
	if len(held) == 0 {
		return nil
	}
	sem := make(chan struct{}, holdTakeOvers)
	var wg sync.WaitGroup
	var committed, dropped atomic.Int64
	for _, e := range held {
		w := e.w
		s, ok := n.fsm.WebSession(w.GetId())
		cur := s.Version
		if !ok {
			cur = 0
		}
		if cur >= w.GetVersion() || cur < w.GetBase() {
			n.wsBackup.dropTaken(e) // committed already, or not the chain it was built on
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if n.takeOverOne(ctx, l.pend, e, cur) {
				committed.Add(1)
			} else {
				dropped.Add(1)
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil || n.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	c, d := committed.Load(), dropped.Load()
	n.log.Info("took over the delayed web session writes the leader before had not committed", "committed", c, "refused", d)
	n.metrics.wsDelayed.WithLabelValues(wsDelayedTakenOver).Add(float64(c))
	// The holders from before the change get their grace from now.
	l.restartGrace(n.cfg.webSessionGrace())
	return nil
}

// takeOverID is the request id of a new leader's commit of held write
// e: the same on every node that holds it, so that every backup knows
// the commit for e's (and remembers e's request id), and two takeovers
// of it apply it once.
func takeOverID(e *heldWrite) []byte {
	h := sha256.New()
	var b [24]byte
	binary.BigEndian.PutUint64(b[:8], e.term)
	binary.BigEndian.PutUint64(b[8:16], e.w.GetSeq())
	binary.BigEndian.PutUint64(b[16:], e.w.GetVersion())
	h.Write(b[:])
	h.Write([]byte(e.w.GetId()))
	return append([]byte(flushIDPrefix+"take:"), h.Sum(nil)[:16]...)
}

// takeOverOne commits w over the session's version cur, trying again
// (with one request id) while the outcome is unknown, and remembers its
// request id in pend; it reports whether it was committed. One whose
// commit is refused stays held until an entry lets go of it.
func (n *Node) takeOverOne(ctx context.Context, pend *wsDelayed, e *heldWrite, cur uint64) bool {
	w := e.w
	op := &raftv1.WebSessionWrite{Id: w.GetId(), Data: w.GetData(), Version: cur, MaxLifetimeMs: w.GetMaxLifetimeMs()}
	if w.GetVersion() > cur+1 {
		op.NewVersion = w.GetVersion()
	}
	cmd := &raftv1.Command{Op: &raftv1.Command_WebSessionWrite{WebSessionWrite: op}}
	wctx := WithRequestID(ctx, takeOverID(e))
	for {
		_, err := n.proposeLeader(wctx, cloneCommand(cmd))
		if err == nil {
			break
		}
		if ctx.Err() != nil || errors.Is(err, ErrNotLeader) {
			return false
		}
		if settled(err) && !errors.Is(err, fsm.ErrFeatureLevel) {
			n.log.Warn("a held delayed web session write was refused at takeover", "error", err)
			return false
		}
		if !sleepCtx(ctx, 50*time.Millisecond) {
			return false
		}
	}
	if len(w.GetRequestId()) > 0 {
		req := &paddockv1.WriteWebSessionRequest{Version: w.GetVersion() - 1, MaxLifetimeMs: w.GetAskedLifetimeMs(), Data: w.GetData()}
		pend.mu.Lock()
		pend.rememberFP(w.GetRequestId(), w.GetId(), retryFingerprint(req), w.GetVersion())
		pend.mu.Unlock()
	}
	return true
}
