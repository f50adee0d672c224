package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/paddock/paddock/fsm"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// Elections and locks (contentions). The state machine keeps each line as
// znodes under /paddock (fsm/contend.go); this file is the node's side:
// the commands only the node builds (Contend, Withdraw, Proclaim), the
// waits of Campaign and Acquire, and Observe.
//
// Waits are herd-free: a waiting candidate registers with the lines hub,
// which on every applied batch that touched a line re-reads that line
// once and wakes only the waiters whose answer changed (a candidate that
// now holds, or whose znode went), not every waiter of the line; the
// wakeups are counted (paddock_election_wakeups_total). A candidate
// that sees itself hold in this node's state confirms it with a read
// index before answering, so a follower that fell behind or was cut off
// never elects anyone from stale state. While a candidate waits, the node
// renews its session as a keepalive would, and a node that loses contact
// with the leader ends the wait with ErrLostLeader (the client goes on at
// another node, where the same session finds the same place in line).

// ContendArgs is a Campaign, an Acquire or a TryAcquire.
type ContendArgs struct {
	Kind    raftv1.ContentionKind
	Name    string
	Session uint64
	Value   []byte
	// Limit is how many hold at once: 1 for an election.
	Limit uint32
	// Wait bounds the wait to hold; 0 waits until ctx ends.
	Wait time.Duration
	// TryOnly takes a lock only if it is free at once.
	TryOnly bool
}

// ContendResult is where a candidate stands.
type ContendResult struct {
	// Holds is true when the candidate leads or holds the lock.
	Holds bool
	// Candidate is the session's candidate; nil when TryOnly found the
	// lock busy.
	Candidate *paddockv1.Contender
	// Position is how many are ahead of it in line.
	Position int32
	// Limit is the line's holder limit.
	Limit uint32
	// LockDelay is how much longer a slot is held by no one (a holder's
	// session expired with a lock-delay).
	LockDelay time.Duration
	// Zxid is the state the answer reflects.
	Zxid uint64
}

// Line is an election's or lock's line as read at Zxid.
type Line struct {
	fsm.Contention
}

// Holders are the candidates that hold (placeholders excluded).
func (l Line) Holders() []*paddockv1.Contender {
	var out []*paddockv1.Contender
	for i, c := range l.Contention.Line {
		if uint32(i) >= l.Limit {
			break
		}
		if c.GetSessionId() != 0 {
			out = append(out, c.Contender)
		}
	}
	return out
}

// Waiters are the candidates in line behind the holders.
func (l Line) Waiters() []*paddockv1.Contender {
	var out []*paddockv1.Contender
	for i, c := range l.Contention.Line {
		if uint32(i) >= l.Limit {
			out = append(out, c.Contender)
		}
	}
	return out
}

// Leader is an election's leader, nil when there is none (no candidate,
// or a lock-delay placeholder first).
func (l Line) Leader() *paddockv1.Contender {
	if len(l.Contention.Line) == 0 || l.Contention.Line[0].GetSessionId() == 0 {
		return nil
	}
	return l.Contention.Line[0].Contender
}

// LockDelay is how much longer, by now, the longest lock-delay
// placeholder among the holders' slots lasts; a placeholder still there
// past its delay (the leader has not deleted it yet) counts as 1 ms.
func (l Line) LockDelay(now time.Time) time.Duration {
	var most time.Duration
	for i, c := range l.Contention.Line {
		if uint32(i) >= l.Limit {
			break
		}
		if c.GetSessionId() != 0 || c.DelayMs == 0 {
			continue
		}
		left := time.Duration(c.Mtime+c.DelayMs-now.UnixMilli()) * time.Millisecond
		most = max(most, left, time.Millisecond)
	}
	return most
}

// place returns the candidate with token and its position, or nil.
func (l Line) place(token uint64) (*fsm.Contended, int32) {
	for i := range l.Contention.Line {
		if l.Contention.Line[i].GetToken() == token {
			return &l.Contention.Line[i], int32(i)
		}
	}
	return nil, 0
}

// holds reports whether token holds the line.
func (l Line) holds(token uint64) bool {
	c, pos := l.place(token)
	return c != nil && c.GetSessionId() != 0 && uint32(pos) < l.Limit
}

// contendGrace is how much longer than its wait a Contend may take to
// enter the line and confirm a win.
const contendGrace = time.Second

// Contend enters a session in an election or lock (or finds its place)
// and, unless TryOnly, waits up to a.Wait for it to hold.
func (n *Node) Contend(ctx context.Context, a ContendArgs) (*ContendResult, error) {
	if a.Limit == 0 {
		a.Limit = 1
	}
	if a.Wait < 0 {
		return nil, &fsm.Error{Err: fsm.ErrBadArgument, Detail: "negative timeout"}
	}
	if _, err := fsm.ContentionDir(a.Kind, a.Name); err != nil {
		return nil, err
	}
	var cancel context.CancelFunc = func() {}
	waitCtx := ctx
	if a.Wait > 0 {
		waitCtx, cancel = context.WithTimeout(ctx, a.Wait)
	}
	defer cancel()
	// Entering the line and confirming a win are not cut short by the
	// wait's timeout (a timeout_ms shorter than a commit would time the
	// call out with the candidate created), but by a second more: the
	// call never takes longer than timeout_ms + contendGrace.
	opCtx := ctx
	if a.Wait > 0 {
		var opCancel context.CancelFunc
		opCtx, opCancel = context.WithTimeout(ctx, a.Wait+contendGrace)
		defer opCancel()
	}
	res, err := n.Propose(opCtx, &raftv1.Command{Op: &raftv1.Command_Contend{Contend: &raftv1.Contend{
		Kind: a.Kind, Name: a.Name, SessionId: a.Session, Value: a.Value, Limit: a.Limit, TryOnly: a.TryOnly,
	}}})
	if err != nil {
		return nil, err
	}
	cr := res.Resp.(*raftv1.ContendResponse)
	if cr.GetBusy() {
		return &ContendResult{Limit: cr.GetLimit(), Zxid: res.Index}, nil
	}
	token := cr.GetCandidate().GetToken()
	if cr.GetHolds() && !res.Replayed {
		// It held when the entry applied, on the leader's word: no need
		// to wait for this node to apply it or for a read index. (A
		// replayed answer is old: the line is read again below.)
		return &ContendResult{Holds: true, Candidate: cr.GetCandidate(), Position: cr.GetPosition(), Limit: cr.GetLimit(), Zxid: res.Index}, nil
	}
	if err := n.waiter.wait(opCtx, res.Index); err != nil {
		return nil, err
	}
	if a.TryOnly {
		line, err := n.line(a.Kind, a.Name)
		if err != nil {
			return nil, err
		}
		return n.standing(line, token, a.Session)
	}
	w := n.lines.add(a.Kind, a.Name, true, func(l Line) bool {
		c, _ := l.place(token)
		return c == nil || l.holds(token)
	})
	defer n.lines.remove(w)
	cctx, release := n.withLeaderContact(waitCtx)
	defer release()
	renew := n.renewEvery(a.Session)
	tick := time.NewTicker(renew)
	defer tick.Stop()
	// The session may have little time left when the wait begins (its
	// owner's last keepalive was long ago): renew it as the wait starts,
	// then every tick.
	renewed := false
	for {
		line, err := n.line(a.Kind, a.Name)
		if err != nil {
			return nil, err
		}
		if line.holds(token) {
			// Confirm with a read index: this node's state may be behind.
			// Like entering the line, not cut short by the wait's timeout.
			sctx, scancel := n.withTimeout(opCtx)
			err := n.syncRead(sctx)
			scancel()
			if err != nil {
				return n.endWait(ctx, waitCtx, cctx, err, a, token)
			}
			if line, err = n.line(a.Kind, a.Name); err != nil {
				return nil, err
			}
		}
		if c, _ := line.place(token); c == nil || line.holds(token) {
			return n.standing(line, token, a.Session)
		}
		if !renewed {
			renewed = true
			if _, err := n.KeepAlive(cctx, a.Session); err != nil {
				return n.endWait(ctx, waitCtx, cctx, err, a, token)
			}
			continue
		}
		select {
		case <-w.ch:
		case <-tick.C:
			if _, err := n.KeepAlive(cctx, a.Session); err != nil {
				return n.endWait(ctx, waitCtx, cctx, err, a, token)
			}
		case <-cctx.Done():
			return n.endWait(ctx, waitCtx, cctx, cctx.Err(), a, token)
		}
	}
}

// endWait ends a Contend wait that stopped with err: when the wait's own
// timeout passed (and the caller's context goes on), the answer is where
// the candidate stands, not an error, and never that it holds.
func (n *Node) endWait(ctx, waitCtx, cctx context.Context, err error, a ContendArgs, token uint64) (*ContendResult, error) {
	if ctx.Err() == nil && waitCtx.Err() != nil {
		line, lerr := n.line(a.Kind, a.Name)
		if lerr != nil {
			return nil, lerr
		}
		r, serr := n.standing(line, token, a.Session)
		if r != nil {
			// Unconfirmed local state (the confirming read index may be
			// what failed): never "elected" from it. A caller that asks
			// again gets the leader's word.
			r.Holds = false
		}
		return r, serr
	}
	return nil, lostContact(ctx, cctx, err)
}

// standing answers where token stands in line: an error if it is gone.
func (n *Node) standing(line Line, token, session uint64) (*ContendResult, error) {
	c, pos := line.place(token)
	if c == nil {
		if _, ok := n.fsm.SessionTimer(session); !ok {
			return nil, &fsm.Error{Err: fsm.ErrSessionExpired, Detail: fmt.Sprintf("session %d", session)}
		}
		return nil, &fsm.Error{Err: fsm.ErrNotHeld, Detail: fmt.Sprintf("token %d left the line (resigned or released)", token)}
	}
	return &ContendResult{
		Holds: line.holds(token), Candidate: c.Contender, Position: pos,
		Limit: line.Limit, LockDelay: line.LockDelay(time.Now()), Zxid: line.Zxid,
	}, nil
}

// renewEvery is how often a waiting candidate's session is renewed: a
// third of its timeout, as the Go client's keepalive does.
func (n *Node) renewEvery(session uint64) time.Duration {
	t, ok := n.fsm.SessionTimer(session)
	if !ok || t.TimeoutMs <= 0 {
		return time.Second
	}
	return max(time.Duration(t.TimeoutMs)*time.Millisecond/3, 50*time.Millisecond)
}

// Withdraw removes the candidate with token (Resign, Release) and
// returns the zxid of the change.
func (n *Node) Withdraw(ctx context.Context, kind raftv1.ContentionKind, name string, token uint64) (uint64, error) {
	res, err := n.Propose(ctx, &raftv1.Command{Op: &raftv1.Command_Withdraw{Withdraw: &raftv1.Withdraw{
		Kind: kind, Name: name, Token: token,
	}}})
	if err != nil {
		return 0, err
	}
	return res.Index, nil
}

// Proclaim sets the leader's value if token leads.
func (n *Node) Proclaim(ctx context.Context, name string, token uint64, value []byte) (*paddockv1.Contender, uint64, error) {
	res, err := n.Propose(ctx, &raftv1.Command{Op: &raftv1.Command_Proclaim{Proclaim: &raftv1.Proclaim{
		Name: name, Token: token, Value: value,
	}}})
	if err != nil {
		return nil, 0, err
	}
	return res.Resp.(*paddockv1.ProclaimResponse).GetLeader(), res.Index, nil
}

// Line reads an election's or lock's line, linearizably unless opts asks
// for a serializable read.
func (n *Node) Line(ctx context.Context, kind raftv1.ContentionKind, name string, opts *paddockv1.ReadOptions) (Line, error) {
	if _, err := fsm.ContentionDir(kind, name); err != nil {
		return Line{}, err
	}
	ctx, cancel := n.withTimeout(ctx)
	defer cancel()
	if err := n.waitMinZxid(ctx, opts); err != nil {
		return Line{}, err
	}
	if linearizable(opts) && !n.cfg.UnsafeLocalReads {
		if err := n.syncRead(ctx); err != nil {
			return Line{}, err
		}
	} else if err := n.checkCaughtUp(); err != nil {
		return Line{}, err
	}
	return n.line(kind, name)
}

func (n *Node) line(kind raftv1.ContentionKind, name string) (Line, error) {
	c, err := n.fsm.Contention(kind, name)
	return Line{c}, err
}

// syncRead waits until this node has applied a read index confirmed
// after the call began: its state is then linearizable.
func (n *Node) syncRead(ctx context.Context) error {
	for {
		var err error
		if n.IsLeader() {
			err = n.waitReadIndex(ctx)
		} else {
			var idx uint64
			idx, err = n.fwdReadIndex.do(ctx, struct{}{})
			if err == nil {
				err = n.waiter.wait(ctx, idx)
			}
		}
		if (errors.Is(err, ErrNotLeader) || errors.Is(err, ErrNoLeader)) && sleepCtx(ctx, 20*time.Millisecond) {
			continue
		}
		if err != nil {
			return err
		}
		return n.errIfHalted()
	}
}

// sameLeader reports whether two leaders (nil: none) are the same
// candidate with the same value.
func sameLeader(a, b *paddockv1.Contender) bool {
	return a.GetToken() == b.GetToken() && a.GetModZxid() == b.GetModZxid()
}

// PollLeader waits up to wait for the election's leader to differ from
// the known one (token and mod_zxid, 0 and 0 for none) and returns the
// leader, whether it changed, and the zxid the answer reflects.
func (n *Node) PollLeader(ctx context.Context, name string, knownToken, knownMod uint64, wait time.Duration) (*paddockv1.Contender, bool, uint64, error) {
	kind := raftv1.ContentionKind_CONTENTION_KIND_ELECTION
	known := &paddockv1.Contender{Token: knownToken, ModZxid: knownMod}
	if knownToken == 0 {
		known = nil
	}
	line, err := n.Line(ctx, kind, name, nil)
	if err != nil {
		return nil, false, 0, err
	}
	if !sameLeader(line.Leader(), known) {
		return line.Leader(), true, line.Zxid, nil
	}
	w := n.lines.add(kind, name, false, func(l Line) bool { return !sameLeader(l.Leader(), known) })
	defer n.lines.remove(w)
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	cctx, release := n.withLeaderContact(wctx)
	defer release()
	for {
		if line, err = n.line(kind, name); err != nil {
			return nil, false, 0, err
		}
		if !sameLeader(line.Leader(), known) {
			return line.Leader(), true, line.Zxid, nil
		}
		select {
		case <-w.ch:
		case <-cctx.Done():
			if ctx.Err() == nil && wctx.Err() != nil {
				return line.Leader(), false, line.Zxid, nil
			}
			return nil, false, 0, lostContact(ctx, cctx, cctx.Err())
		}
	}
}

// ObserveLeader calls send with the election's leader (nil: none) now and
// after every change, until ctx ends or send fails.
func (n *Node) ObserveLeader(ctx context.Context, name string, send func(leader *paddockv1.Contender, zxid uint64) error) error {
	line, err := n.Line(ctx, raftv1.ContentionKind_CONTENTION_KIND_ELECTION, name, nil)
	if err != nil {
		return err
	}
	known := proto.CloneOf(line.Leader())
	if err := send(known, line.Zxid); err != nil {
		return err
	}
	for {
		leader, _, zxid, err := n.PollLeader(ctx, name, known.GetToken(), known.GetModZxid(), MaxPollTimeout)
		if err != nil {
			return err
		}
		if !sameLeader(leader, known) {
			known = proto.CloneOf(leader)
			if err := send(leader, zxid); err != nil {
				return err
			}
		}
	}
}

// lineWaiter is one wait on a line.
type lineWaiter struct {
	key lineKey
	// candidate counts its wakeups (herd-freedom's measure).
	candidate bool
	// ready says whether the waiter's answer may have changed.
	ready func(Line) bool
	ch    chan struct{}
}

type lineKey struct {
	kind raftv1.ContentionKind
	name string
}

// lines wakes the waiters of lines that changed: the node's event sink
// for /paddock/elections and /paddock/locks.
type lines struct {
	n       *Node
	count   atomic.Int64
	mu      sync.Mutex
	waiters map[lineKey]map[*lineWaiter]struct{}
	wakeups *prometheus.CounterVec
}

func newLines(n *Node) *lines {
	l := &lines{n: n, waiters: map[lineKey]map[*lineWaiter]struct{}{}}
	l.wakeups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "paddock_election_wakeups_total",
		Help: "Waiting candidates (Campaign, kind election) and lock waiters (Acquire, kind lock) this node woke because their turn may have come: one per change of holder when waits are herd-free.",
	}, []string{"kind"})
	l.wakeups.WithLabelValues("election")
	l.wakeups.WithLabelValues("lock")
	return l
}

func (l *lines) add(kind raftv1.ContentionKind, name string, candidate bool, ready func(Line) bool) *lineWaiter {
	w := &lineWaiter{key: lineKey{kind, name}, candidate: candidate, ready: ready, ch: make(chan struct{}, 1)}
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.waiters[w.key]
	if m == nil {
		m = map[*lineWaiter]struct{}{}
		l.waiters[w.key] = m
	}
	m[w] = struct{}{}
	l.count.Add(1)
	return w
}

func (l *lines) remove(w *lineWaiter) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.waiters[w.key]
	delete(m, w)
	if len(m) == 0 {
		delete(l.waiters, w.key)
	}
	l.count.Add(-1)
}

// lineOf returns the line an event's path belongs to.
func lineOf(path string) (lineKey, bool) {
	var kind raftv1.ContentionKind
	var rest string
	var ok bool
	if rest, ok = strings.CutPrefix(path, fsm.ElectionsPath+"/"); ok {
		kind = raftv1.ContentionKind_CONTENTION_KIND_ELECTION
	} else if rest, ok = strings.CutPrefix(path, fsm.LocksPath+"/"); ok {
		kind = raftv1.ContentionKind_CONTENTION_KIND_LOCK
	} else {
		return lineKey{}, false
	}
	name, _, _ := strings.Cut(rest, "/")
	return lineKey{kind, name}, true
}

// Applied re-reads each line the batch changed that has waiters, once,
// and wakes the waiters whose answer may have changed.
func (l *lines) Applied(_ uint64, events []fsm.Event) {
	if l.count.Load() == 0 {
		return
	}
	var touched map[lineKey]bool
	for i := range events {
		if !strings.HasPrefix(events[i].Path, fsm.ReservedPath+"/") {
			continue
		}
		if k, ok := lineOf(events[i].Path); ok {
			if touched == nil {
				touched = map[lineKey]bool{}
			}
			touched[k] = true
		}
	}
	for k := range touched {
		l.mu.Lock()
		ws := make([]*lineWaiter, 0, len(l.waiters[k]))
		for w := range l.waiters[k] {
			ws = append(ws, w)
		}
		l.mu.Unlock()
		if len(ws) == 0 {
			continue
		}
		line, err := l.n.line(k.kind, k.name)
		if err != nil {
			continue
		}
		for _, w := range ws {
			if w.ready(line) {
				l.wake(w)
			}
		}
	}
}

func (l *lines) wake(w *lineWaiter) {
	select {
	case w.ch <- struct{}{}:
		if w.candidate {
			kind := "election"
			if w.key.kind == raftv1.ContentionKind_CONTENTION_KIND_LOCK {
				kind = "lock"
			}
			l.wakeups.WithLabelValues(kind).Inc()
		}
	default:
	}
}

// Restored wakes every waiter: the whole state changed.
func (l *lines) Restored(uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.waiters {
		for w := range m {
			select {
			case w.ch <- struct{}{}:
			default:
			}
		}
	}
}
