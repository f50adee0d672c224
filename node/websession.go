package node

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/paddock/paddock/fsm"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// PHP web sessions (DESIGN.md, "PHP web sessions"). The sessions' rows
// are an fsm table; everything else is the leader's, in memory:
//
//   - The locks (websession_locks.go): taking and releasing one writes
//     nothing to the log. A write carries the version its writer read and
//     the fsm applies it only at that version, so a lock lost in a
//     failover, or a lease that ran out, can cost a request its write but
//     never lose or double an update. A new leader grants no lock for a
//     grace period (Config.WebSessionLockGrace) and accepts the tokens of
//     its predecessor's holders meanwhile.
//   - The access times, as deadlines of the leader's tracker
//     (deadline.go): a session's deadline is its last access (a read, a
//     write, a touch) plus its max lifetime. A new leader gives every
//     session its full max lifetime from its takeover. When a deadline
//     passes and the session's lock is free, the leader takes the lock
//     itself (no reader is handed a session being deleted) and proposes
//     WebSessionDelete at the version it sees, so a write that races the
//     expiry wins.
//
// So a page view that changes nothing costs no raft write (read with
// lock, then touch or release), one that changes the session costs one.
// Every call works on any node: followers hand it to the leader whole
// (InternalService.WebSession), with the client's deadline and request
// id.

// Errors of the web session lock.
var (
	// ErrWebSessionLocked: a read's wait for the lock ran out while
	// another request held it; nothing was taken.
	ErrWebSessionLocked = errors.New("node: web session is locked by another request")
	// ErrWebSessionLockLost: a write or destroy while another token holds
	// the lock (the caller's lease ran out, or it never held it); nothing
	// was changed.
	ErrWebSessionLockLost = errors.New("node: web session lock is held by another request")
)

// Limits of the web session calls.
const (
	wsDefaultLockTTL = 30 * time.Second
	wsMaxLockTTL     = 10 * time.Minute
	// wsExpiryHold is the lease of the lock the leader takes while it
	// deletes an expired session.
	wsExpiryHold = 30 * time.Second
	// wsCreateAttempts bounds the draws of a new session id (a collision
	// of 128 random bits does not happen; the bound keeps a bug from
	// looping).
	wsCreateAttempts = 4
)

// DefaultWebSessionMaxBytes is the default of Config.WebSessionMaxBytes.
const DefaultWebSessionMaxBytes = 1 << 20

// errWSBusy makes the expiry try again at the next tick: the session's
// lock is held.
var errWSBusy = errors.New("node: web session lock held, expiry deferred")

// webSessions is the leader's side of the web sessions: the lock table of
// the current term and the idle expiry deadlines.
type webSessions struct {
	n     *Node
	locks atomic.Pointer[wsLocks] // nil while not leading
	d     *deadlines[string, struct{}]
}

func newWebSessions(n *Node) *webSessions {
	w := &webSessions{n: n}
	w.d = newDeadlines("web session", w.load, w.fire)
	return w
}

// startTerm gives a new term an empty lock table in its grace period,
// and no delayed write.
func (w *webSessions) startTerm() {
	l := newWSLocks(w.n.cfg.webSessionGrace())
	l.pend = newWSDelayed(w.n, w.n.raft.CurrentTerm())
	if old := w.locks.Swap(l); old != nil {
		old.close()
	}
}

// flushStop commits the term's delayed writes before this leader gives
// its place up on purpose (Close, handOver): delayed writes go through
// from now on, and it waits up to RequestTimeout for the pending ones.
// A node that does not lead, or whose state machine stopped (nothing can
// be committed), has nothing to wait for.
func (w *webSessions) flushStop() {
	l := w.locks.Load()
	if l == nil || l.pend == nil || w.n.fsm.Err() != nil {
		return
	}
	l.pend.flushStop(w.n.cfg.RequestTimeout)
}

// stopTerm drops the lock table: leadership ended.
func (w *webSessions) stopTerm() {
	if old := w.locks.Swap(nil); old != nil {
		old.close()
	}
}

// table is the current term's lock table, ErrNotLeader if none.
func (w *webSessions) table() (*wsLocks, error) {
	if l := w.locks.Load(); l != nil {
		return l, nil
	}
	return nil, ErrNotLeader
}

func lifetime(ms int64) time.Duration {
	if ms <= 0 {
		ms = fsm.DefaultWebSessionLifetimeMs
	}
	return time.Duration(ms) * time.Millisecond
}

// access records an access of id, which expires maxLifetimeMs later.
func (w *webSessions) access(id string, maxLifetimeMs int64) {
	w.d.set(id, time.Now().Add(lifetime(maxLifetimeMs)), struct{}{})
}

func (w *webSessions) load(now time.Time) map[string]deadline[struct{}] {
	out := map[string]deadline[struct{}]{}
	w.n.fsm.WebSessions(func(id string, _ uint64, maxLifetimeMs int64) bool {
		out[id] = deadline[struct{}]{At: now.Add(lifetime(maxLifetimeMs))}
		return true
	})
	return out
}

// fire deletes an idle session: under its lock, taken by the leader, and
// only at the version the leader sees (a write that raced wins).
func (w *webSessions) fire(ctx context.Context, id string, _ struct{}) error {
	l, err := w.table()
	if err != nil {
		return err
	}
	token, ok := l.tryHold(id, wsExpiryHold)
	if !ok {
		return errWSBusy
	}
	defer l.release(id, token)
	if dl, ok := w.d.get(id); ok && dl.At.After(time.Now()) {
		return nil // accessed since it was due: the new deadline stands
	}
	if l.pend != nil && l.pend.pending(id) {
		return errWSBusy // written, not committed yet
	}
	s, ok := w.n.fsm.WebSession(id)
	if !ok {
		return nil
	}
	l.beginChange(id)
	_, err = w.n.proposeLocal(ctx, &raftv1.Command{Op: &raftv1.Command_WebSessionDelete{
		WebSessionDelete: &raftv1.WebSessionDelete{Id: id, Version: s.Version, Expired: true},
	}})
	l.endChange(id, settled(err))
	if err != nil {
		if ctx.Err() == nil {
			w.n.log.Warn("web session expiry failed; will retry", "error", err)
		}
		return err
	}
	return nil
}

// Input checks, on the node that takes the call (and again on the
// leader): bad input fails with a typed error and changes nothing.

func checkWebSessionID(id string) error {
	if !fsm.ValidWebSessionID(id) {
		return &fsm.Error{Err: fsm.ErrBadArgument, Detail: fmt.Sprintf("web session id of %d bytes: want 1 to 256 characters of a-z, A-Z, 0-9, ',' and '-'", len(id))}
	}
	return nil
}

func checkMs(name string, v int64, limit time.Duration) error {
	if v < 0 {
		return &fsm.Error{Err: fsm.ErrBadArgument, Detail: fmt.Sprintf("%s %d is negative", name, v)}
	}
	if limit > 0 && v > limit.Milliseconds() { // in ms: v * time.Millisecond could overflow
		return &fsm.Error{Err: fsm.ErrBadArgument, Detail: fmt.Sprintf("%s %d is over the limit %d", name, v, limit.Milliseconds())}
	}
	return nil
}

// maxLifetimeLimit bounds max_lifetime_ms so that deadlines cannot
// overflow: ten years.
const maxLifetimeLimit = 10 * 365 * 24 * time.Hour

func (n *Node) checkWebSessionCall(call *raftv1.WebSessionRequest) error {
	switch c := call.GetCall().(type) {
	case *raftv1.WebSessionRequest_Read:
		r := c.Read
		if err := checkWebSessionID(r.GetId()); err != nil {
			return err
		}
		if err := checkMs("lock_ttl_ms", r.GetLockTtlMs(), wsMaxLockTTL); err != nil {
			return err
		}
		return checkMs("wait_ms", r.GetWaitMs(), wsMaxLockTTL)
	case *raftv1.WebSessionRequest_Write:
		r := c.Write
		if err := checkWebSessionID(r.GetId()); err != nil {
			return err
		}
		switch r.GetMode() {
		case paddockv1.WebSessionWriteMode_WEB_SESSION_WRITE_MODE_UNSPECIFIED,
			paddockv1.WebSessionWriteMode_WEB_SESSION_WRITE_MODE_WRITE_THROUGH,
			paddockv1.WebSessionWriteMode_WEB_SESSION_WRITE_MODE_DELAYED:
		default:
			return &fsm.Error{Err: fsm.ErrBadArgument, Detail: fmt.Sprintf("web session write mode %d: want 0 (unspecified: write-through), 1 (write-through) or 2 (delayed)", int32(r.GetMode()))}
		}
		if len(r.GetData()) > n.cfg.WebSessionMaxBytes {
			return &fsm.Error{Err: fsm.ErrTooLarge, Detail: fmt.Sprintf("web session data of %d bytes is over the limit of %d (--web-session-max-bytes)", len(r.GetData()), n.cfg.WebSessionMaxBytes)}
		}
		return checkMs("max_lifetime_ms", r.GetMaxLifetimeMs(), maxLifetimeLimit)
	case *raftv1.WebSessionRequest_Release:
		return checkWebSessionID(c.Release.GetId())
	case *raftv1.WebSessionRequest_Touch:
		if err := checkWebSessionID(c.Touch.GetId()); err != nil {
			return err
		}
		return checkMs("max_lifetime_ms", c.Touch.GetMaxLifetimeMs(), maxLifetimeLimit)
	case *raftv1.WebSessionRequest_Destroy:
		return checkWebSessionID(c.Destroy.GetId())
	case *raftv1.WebSessionRequest_Validate:
		return checkWebSessionID(c.Validate.GetId())
	case *raftv1.WebSessionRequest_Create:
		r := c.Create
		switch r.GetSidBitsPerCharacter() {
		case 0, 4, 5, 6:
		default:
			return &fsm.Error{Err: fsm.ErrBadArgument, Detail: fmt.Sprintf("sid_bits_per_character %d: want 4, 5 or 6", r.GetSidBitsPerCharacter())}
		}
		return checkMs("max_lifetime_ms", r.GetMaxLifetimeMs(), maxLifetimeLimit)
	}
	return &fsm.Error{Err: fsm.ErrBadArgument, Detail: "empty web session call"}
}

// The API. Every call works on any node; responses carry the header of
// the leader that served them.

// ReadWebSession reads a session, with its lock if req.Lock (waiting up
// to req.WaitMs for it: ErrWebSessionLocked).
func (n *Node) ReadWebSession(ctx context.Context, req *paddockv1.ReadWebSessionRequest) (*paddockv1.ReadWebSessionResponse, error) {
	var extra time.Duration
	if req.GetLock() {
		extra = wsWait(req)
	}
	r, err := n.webSession(ctx, &raftv1.WebSessionRequest{Call: &raftv1.WebSessionRequest_Read{Read: req}}, extra)
	return r.GetRead(), err
}

// WriteWebSession stores a session's data at the version read, if the
// lock is not held by another token, and releases the caller's lock
// unless req.KeepLock.
func (n *Node) WriteWebSession(ctx context.Context, req *paddockv1.WriteWebSessionRequest) (*paddockv1.WriteWebSessionResponse, error) {
	r, err := n.webSession(ctx, &raftv1.WebSessionRequest{Call: &raftv1.WebSessionRequest_Write{Write: req}}, 0)
	return r.GetWrite(), err
}

// ReleaseWebSession releases the lock held with req.Token.
func (n *Node) ReleaseWebSession(ctx context.Context, req *paddockv1.ReleaseWebSessionRequest) (*paddockv1.ReleaseWebSessionResponse, error) {
	r, err := n.webSession(ctx, &raftv1.WebSessionRequest{Call: &raftv1.WebSessionRequest_Release{Release: req}}, 0)
	return r.GetRelease(), err
}

// TouchWebSession counts an access (and releases the lock held with
// req.Token); a new max lifetime is a write.
func (n *Node) TouchWebSession(ctx context.Context, req *paddockv1.TouchWebSessionRequest) (*paddockv1.TouchWebSessionResponse, error) {
	r, err := n.webSession(ctx, &raftv1.WebSessionRequest{Call: &raftv1.WebSessionRequest_Touch{Touch: req}}, 0)
	return r.GetTouch(), err
}

// DestroyWebSession deletes a session and releases its lock.
func (n *Node) DestroyWebSession(ctx context.Context, req *paddockv1.DestroyWebSessionRequest) (*paddockv1.DestroyWebSessionResponse, error) {
	r, err := n.webSession(ctx, &raftv1.WebSessionRequest{Call: &raftv1.WebSessionRequest_Destroy{Destroy: req}}, 0)
	return r.GetDestroy(), err
}

// ValidateWebSession says whether a session exists (a linearizable read).
func (n *Node) ValidateWebSession(ctx context.Context, req *paddockv1.ValidateWebSessionRequest) (*paddockv1.ValidateWebSessionResponse, error) {
	r, err := n.webSession(ctx, &raftv1.WebSessionRequest{Call: &raftv1.WebSessionRequest_Validate{Validate: req}}, 0)
	return r.GetValidate(), err
}

// CreateWebSession stores a new empty session under a new id.
func (n *Node) CreateWebSession(ctx context.Context, req *paddockv1.CreateWebSessionRequest) (*paddockv1.CreateWebSessionResponse, error) {
	r, err := n.webSession(ctx, &raftv1.WebSessionRequest{Call: &raftv1.WebSessionRequest_Create{Create: req}}, 0)
	return r.GetCreate(), err
}

// wsTTL and wsWait are a read's lease and wait, defaults applied.
func wsTTL(r *paddockv1.ReadWebSessionRequest) time.Duration {
	if ms := r.GetLockTtlMs(); ms > 0 {
		return time.Duration(ms) * time.Millisecond
	}
	return wsDefaultLockTTL
}

func wsWait(r *paddockv1.ReadWebSessionRequest) time.Duration {
	if ms := r.GetWaitMs(); ms > 0 {
		return time.Duration(ms) * time.Millisecond
	}
	return wsTTL(r)
}

// webSession serves call on the leader, here or forwarded. A call whose
// context has no deadline ends RequestTimeout (plus extra, a lock's wait)
// after it began.
func (n *Node) webSession(ctx context.Context, call *raftv1.WebSessionRequest, extra time.Duration) (*raftv1.WebSessionResponse, error) {
	if err := n.checkWebSessionCall(call); err != nil {
		return nil, err
	}
	if err := n.errIfHalted(); err != nil {
		return nil, err
	}
	call.RequestId = RequestID(ctx)
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.cfg.RequestTimeout+extra)
		defer cancel()
	}
	for {
		var resp *raftv1.WebSessionResponse
		var err error
		if n.IsLeader() {
			resp, err = n.serveWebSession(ctx, call)
		} else {
			resp, err = n.forwardWebSession(ctx, call)
		}
		// ErrNotLeader: nothing was done; leadership moved. Try again.
		if errors.Is(err, ErrNotLeader) && sleepCtx(ctx, 10*time.Millisecond) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return resp, nil
	}
}

// forwardWebSession hands call to the leader.
func (n *Node) forwardWebSession(ctx context.Context, call *raftv1.WebSessionRequest) (*raftv1.WebSessionResponse, error) {
	n.metrics.forwarded.WithLabelValues(fwdWebSession).Inc()
	conn, err := n.leaderConn(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := raftv1.NewInternalServiceClient(conn).WebSession(ctx, call)
	if err != nil {
		return nil, fromPeer(err)
	}
	if err := wsReplyError(resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// wsReplyError rebuilds the error a leader's reply carries.
func wsReplyError(r *raftv1.WebSessionResponse) error {
	switch r.GetLockError() {
	case raftv1.WebSessionLockError_WEB_SESSION_LOCK_ERROR_LOCKED:
		return wsLockError(ErrWebSessionLocked, r.GetErrorMessage())
	case raftv1.WebSessionLockError_WEB_SESSION_LOCK_ERROR_LOCK_LOST:
		return wsLockError(ErrWebSessionLockLost, r.GetErrorMessage())
	}
	return fsm.DecodeError(r.GetErrorCode(), r.GetErrorMessage(), -1)
}

// wsLockError is sentinel with the detail of the leader's message.
func wsLockError(sentinel error, msg string) error {
	if d, ok := strings.CutPrefix(msg, sentinel.Error()+": "); ok {
		return fmt.Errorf("%w: %s", sentinel, d)
	}
	return sentinel
}

// WebSession serves a follower's web session call (the leader's side).
func (s *internalServer) WebSession(ctx context.Context, call *raftv1.WebSessionRequest) (*raftv1.WebSessionResponse, error) {
	if err := s.n.checkWebSessionCall(call); err != nil {
		return &raftv1.WebSessionResponse{ErrorCode: fsm.ErrorCode(err), ErrorMessage: err.Error()}, nil
	}
	if !s.n.IsLeader() {
		return nil, peerStatus(ErrNotLeader)
	}
	resp, err := s.n.serveWebSession(ctx, call)
	if err == nil {
		return resp, nil
	}
	switch {
	case errors.Is(err, ErrWebSessionLocked):
		return &raftv1.WebSessionResponse{LockError: raftv1.WebSessionLockError_WEB_SESSION_LOCK_ERROR_LOCKED, ErrorMessage: err.Error()}, nil
	case errors.Is(err, ErrWebSessionLockLost):
		return &raftv1.WebSessionResponse{LockError: raftv1.WebSessionLockError_WEB_SESSION_LOCK_ERROR_LOCK_LOST, ErrorMessage: err.Error()}, nil
	}
	if code := fsm.ErrorCode(err); code != raftv1.ErrorCode_ERROR_CODE_UNSPECIFIED {
		msg := err.Error()
		if e, ok := fsm.AsError(err); ok {
			msg = e.Error()
		}
		return &raftv1.WebSessionResponse{ErrorCode: code, ErrorMessage: msg}, nil
	}
	return nil, peerStatus(err)
}

// serveWebSession serves call on this node, which must lead.
func (n *Node) serveWebSession(ctx context.Context, call *raftv1.WebSessionRequest) (*raftv1.WebSessionResponse, error) {
	// After the barrier and the takeover of the writes this node held as
	// a backup (leadTerm): the state then holds every write acknowledged.
	if err := n.awaitReady(ctx); err != nil {
		return nil, err
	}
	l, err := n.ws.table()
	if err != nil {
		return nil, err
	}
	if id := call.GetRequestId(); len(id) > 0 {
		ctx = WithRequestID(ctx, id)
	}
	switch c := call.GetCall().(type) {
	case *raftv1.WebSessionRequest_Read:
		r, err := n.wsRead(ctx, l, c.Read)
		return &raftv1.WebSessionResponse{Reply: &raftv1.WebSessionResponse_Read{Read: r}}, err
	case *raftv1.WebSessionRequest_Write:
		r, err := n.wsWrite(ctx, l, c.Write)
		return &raftv1.WebSessionResponse{Reply: &raftv1.WebSessionResponse_Write{Write: r}}, err
	case *raftv1.WebSessionRequest_Release:
		r := &paddockv1.ReleaseWebSessionResponse{Released: l.release(c.Release.GetId(), c.Release.GetToken())}
		r.Header = n.ReadHeader()
		return &raftv1.WebSessionResponse{Reply: &raftv1.WebSessionResponse_Release{Release: r}}, nil
	case *raftv1.WebSessionRequest_Touch:
		r, err := n.wsTouch(ctx, l, c.Touch)
		return &raftv1.WebSessionResponse{Reply: &raftv1.WebSessionResponse_Touch{Touch: r}}, err
	case *raftv1.WebSessionRequest_Destroy:
		r, err := n.wsDestroy(ctx, l, c.Destroy)
		return &raftv1.WebSessionResponse{Reply: &raftv1.WebSessionResponse_Destroy{Destroy: r}}, err
	case *raftv1.WebSessionRequest_Validate:
		if err := n.waitReadIndex(ctx); err != nil {
			return nil, err
		}
		_, ok := l.get(n, c.Validate.GetId())
		r := &paddockv1.ValidateWebSessionResponse{Header: n.ReadHeader(), Valid: ok}
		return &raftv1.WebSessionResponse{Reply: &raftv1.WebSessionResponse_Validate{Validate: r}}, nil
	case *raftv1.WebSessionRequest_Create:
		r, err := n.wsCreate(ctx, l, c.Create)
		return &raftv1.WebSessionResponse{Reply: &raftv1.WebSessionResponse_Create{Create: r}}, err
	}
	return nil, &fsm.Error{Err: fsm.ErrBadArgument, Detail: "empty web session call"}
}

// wsRead takes the lock if asked, then reads the session linearizably:
// with a read index confirmed after the grant, so every write committed
// before it (the previous holder's included) is in the state read. A
// session with delayed writes not committed yet is read from them at
// once, without that round: they are newer than anything committed for
// it (every write of the session passes this leader's lock table, in
// this term), and they are the delayed model's to lose (were this leader
// deposed without knowing it yet, the read shows what its loss loses,
// and a write at that version is refused by the next leader).
func (n *Node) wsRead(ctx context.Context, l *wsLocks, req *paddockv1.ReadWebSessionRequest) (*paddockv1.ReadWebSessionResponse, error) {
	id := req.GetId()
	var token uint64
	if req.GetLock() {
		t, err := l.acquire(ctx, id, wsTTL(req), wsWait(req))
		if err != nil {
			return nil, err
		}
		token = t
	}
	s, ok := fsm.WebSession{}, false
	pending := false
	if l.pend != nil {
		s, pending = l.pend.getPending(id)
		ok = pending
	}
	if !pending {
		if err := n.waitReadIndex(ctx); err != nil {
			if token != 0 {
				l.drop(id, token)
			}
			return nil, err
		}
		s, ok = l.get(n, id)
	}
	if ok {
		n.ws.access(id, s.MaxLifetimeMs)
	}
	return &paddockv1.ReadWebSessionResponse{
		Header: n.ReadHeader(), Found: ok, Data: s.Data, Version: s.Version, Token: token, MaxLifetimeMs: s.MaxLifetimeMs,
	}, nil
}

// knownRetry reports whether ctx's request id is one the state machine
// remembers: the call is a retry of a change already applied, whose
// proposal only gets the first result back, so the lock need not be
// checked (it may be someone else's by now).
func (n *Node) knownRetry(ctx context.Context) bool {
	id := RequestID(ctx)
	return len(id) > 0 && n.fsm.HasRequestID(id)
}

// get is id as the leader serves it: its delayed write not yet
// committed, else the applied state.
func (l *wsLocks) get(n *Node, id string) (fsm.WebSession, bool) {
	if l.pend != nil {
		return l.pend.get(id)
	}
	return n.fsm.WebSession(id)
}

// beginChange marks a change of id other than a write in flight (a
// destroy, an expiry, a new lifetime) until endChange: meanwhile, and
// for the term if its outcome is unknown (not settled), the session's
// delayed writes go through, checked by the state machine after it,
// rather than against a state it may be about to change.
func (l *wsLocks) beginChange(id string) {
	if l.pend != nil {
		l.pend.beginThrough(id, nil, nil, false)
	}
}

func (l *wsLocks) endChange(id string, settled bool) {
	if l.pend != nil {
		l.pend.endThrough(id, settled)
	}
}

// drain waits for id's delayed writes to commit: a change that goes
// through the log orders after them. The caller holds id's lock.
func (l *wsLocks) drain(ctx context.Context, id string) error {
	if l.pend != nil {
		return l.pend.drain(ctx, id)
	}
	return nil
}

func (n *Node) wsWrite(ctx context.Context, l *wsLocks, req *paddockv1.WriteWebSessionRequest) (*paddockv1.WriteWebSessionResponse, error) {
	id := req.GetId()
	delayed := req.GetMode() == paddockv1.WebSessionWriteMode_WEB_SESSION_WRITE_MODE_DELAYED && l.pend != nil
	if delayed {
		// A retry of a delayed write answered before (the answer was
		// lost): the first answer, whoever holds the lock now.
		// One that went through is retried through: the state machine
		// answers it.
		v, ok, err := l.pend.retried(ctx, RequestID(ctx), req)
		if err != nil {
			return nil, err
		}
		if ok {
			if v != 0 {
				return &paddockv1.WriteWebSessionResponse{Header: n.ReadHeader(), Version: v}, nil
			}
			delayed = false
		}
	}
	retry := n.knownRetry(ctx)
	h, err := l.beginWrite(id, req.GetToken(), retry)
	if err != nil {
		return nil, err
	}
	if delayed && !retry {
		r, err := n.wsWriteDelayed(ctx, l, req)
		if errors.Is(err, errRetryKnown) {
			// Another attempt of it is in flight: its outcome, once
			// known (retried waits for it).
			l.endWrite(h, req.GetToken() == 0)
			return n.wsWrite(ctx, l, req)
		}
		if r != nil || err != nil {
			l.endWrite(h, req.GetToken() == 0 || (!req.GetKeepLock() && settled(err)))
			return r, err
		}
	}
	if l.pend != nil {
		l.pend.beginThrough(id, RequestID(ctx), req, req.GetMode() == paddockv1.WebSessionWriteMode_WEB_SESSION_WRITE_MODE_DELAYED)
	}
	// After the session's delayed writes, if any (a retry of a write
	// already applied only gets its first result back).
	if !retry {
		if err := l.drain(ctx, id); err != nil {
			if l.pend != nil {
				l.pend.endThrough(id, true) // nothing proposed
			}
			l.endWrite(h, req.GetToken() == 0)
			return nil, err
		}
	}
	res, err := n.proposeLeaderGrouped(ctx, &raftv1.Command{Op: &raftv1.Command_WebSessionWrite{WebSessionWrite: &raftv1.WebSessionWrite{
		Id: id, Data: req.GetData(), Version: req.GetVersion(), MaxLifetimeMs: req.GetMaxLifetimeMs(),
	}}})
	if l.pend != nil {
		l.pend.endThrough(id, settled(err))
	}
	// keep_lock keeps a token's lock; a write without one (token 0)
	// holds the lock only while it is in flight (nobody retries under it).
	if err == nil {
		// Before the lock is released: an expiry already due must not
		// take the lock in between and delete what was just written.
		if s, ok := n.fsm.WebSession(id); ok {
			n.ws.access(id, s.MaxLifetimeMs)
		}
	}
	l.endWrite(h, req.GetToken() == 0 || (!req.GetKeepLock() && settled(err)))
	if err != nil {
		return nil, err
	}
	r, _ := res.Resp.(*paddockv1.WriteWebSessionResponse)
	return &paddockv1.WriteWebSessionResponse{Header: n.Header(res.Index), Version: r.GetVersion()}, nil
}

// wsWriteDelayed holds req in the leader's memory as a delayed write,
// answered once every backup holds it too (websession_backup.go). It
// returns nil and no error when the write must go through instead
// (answered once committed, with its request id, which the state
// machine then answers retries with): the leader has not applied its
// term's barrier (its state may lack committed writes to check the
// version against), the members do not all support the command yet, the
// pending memory is full, or a backup did not hold it.
func (n *Node) wsWriteDelayed(ctx context.Context, l *wsLocks, req *paddockv1.WriteWebSessionRequest) (*paddockv1.WriteWebSessionResponse, error) {
	through := func() (*paddockv1.WriteWebSessionResponse, error) {
		n.metrics.wsDelayed.WithLabelValues(wsDelayedThrough).Inc()
		return nil, nil
	}
	if !n.leaderBarrierApplied() {
		return through()
	}
	cmd := &raftv1.Command{Op: &raftv1.Command_WebSessionWrite{WebSessionWrite: &raftv1.WebSessionWrite{
		Id: req.GetId(), Data: req.GetData(), Version: req.GetVersion(), MaxLifetimeMs: req.GetMaxLifetimeMs(),
	}}}
	if err := n.validate(cmd); err != nil {
		return nil, err
	}
	if n.checkFeatureLevel(cmd) != nil {
		return through() // the proposal waits for registrations, or says why not
	}
	rid := RequestID(ctx)
	held, err := l.pend.reserve(req.GetId(), req, rid)
	if errors.Is(err, errDelayedFull) {
		return through()
	}
	if err != nil {
		return nil, err
	}
	// The hold runs to its end even if the caller gives up (it is
	// bounded by holdTimeout): whether the write is published or goes
	// through must not depend on when the caller left.
	if _, err := n.holds.do(context.WithoutCancel(ctx), holdIn{term: l.pend.term, w: held}); err != nil {
		l.pend.unreserve(req.GetId(), rid)
		n.metrics.wsDelayed.WithLabelValues(wsDelayedNotBackedUp).Inc()
		return nil, nil
	}
	if !l.pend.publish(held) {
		// Leadership ended during the hold: the backups, and this node,
		// hold it for whoever leads next, who may or may not be in time
		// to commit it.
		return nil, fmt.Errorf("%w: leadership ended while the delayed write of web session %s was being backed up", ErrUnknownOutcome, req.GetId())
	}
	n.metrics.wsDelayed.WithLabelValues(wsDelayedAcked).Inc()
	if s, ok := l.get(n, req.GetId()); ok {
		n.ws.access(req.GetId(), s.MaxLifetimeMs)
	}
	return &paddockv1.WriteWebSessionResponse{Header: n.ReadHeader(), Version: held.GetVersion()}, nil
}

func (n *Node) wsTouch(ctx context.Context, l *wsLocks, req *paddockv1.TouchWebSessionRequest) (*paddockv1.TouchWebSessionResponse, error) {
	id, token := req.GetId(), req.GetToken()
	s, ok := l.get(n, id)
	if ok && req.GetMaxLifetimeMs() != 0 && req.GetMaxLifetimeMs() != s.MaxLifetimeMs {
		// A new lifetime is a write (the version goes up), under the
		// lock's rules, after the session's delayed writes.
		h, err := l.beginWrite(id, token, n.knownRetry(ctx))
		if err != nil {
			return nil, err
		}
		// Marked before the drain: no delayed write of the session is
		// reserved after it (one let in with the same token, or none).
		l.beginChange(id)
		if err := l.drain(ctx, id); err != nil {
			l.endChange(id, true)
			l.endWrite(h, false)
			return nil, err
		}
		s, ok = n.fsm.WebSession(id) // as of now that the lock is taken
		var res *fsm.Result
		if ok {
			res, err = n.proposeLeader(ctx, &raftv1.Command{Op: &raftv1.Command_WebSessionWrite{WebSessionWrite: &raftv1.WebSessionWrite{
				Id: id, Version: s.Version, MaxLifetimeMs: req.GetMaxLifetimeMs(), KeepData: true,
			}}})
		}
		l.endChange(id, !ok || settled(err))
		if err == nil && ok {
			n.ws.access(id, req.GetMaxLifetimeMs()) // before the release, as in wsWrite
		}
		l.endWrite(h, settled(err))
		if err != nil {
			return nil, err
		}
		if ok {
			return &paddockv1.TouchWebSessionResponse{Header: n.Header(res.Index), Found: true}, nil
		}
		return &paddockv1.TouchWebSessionResponse{Header: n.ReadHeader()}, nil
	}
	if ok {
		n.ws.access(id, s.MaxLifetimeMs) // before the release, as in wsWrite
	}
	if token != 0 {
		l.release(id, token)
	}
	return &paddockv1.TouchWebSessionResponse{Header: n.ReadHeader(), Found: ok}, nil
}

func (n *Node) wsDestroy(ctx context.Context, l *wsLocks, req *paddockv1.DestroyWebSessionRequest) (*paddockv1.DestroyWebSessionResponse, error) {
	id := req.GetId()
	h, err := l.beginWrite(id, req.GetToken(), n.knownRetry(ctx))
	if err != nil {
		return nil, err
	}
	// After the session's delayed writes, if any; marked first, so that
	// none is reserved after the drain (one let in with the same token,
	// or none).
	l.beginChange(id)
	if err := l.drain(ctx, id); err != nil {
		l.endChange(id, true)
		l.endWrite(h, false)
		return nil, err
	}
	res, err := n.proposeLeader(ctx, &raftv1.Command{Op: &raftv1.Command_WebSessionDelete{WebSessionDelete: &raftv1.WebSessionDelete{Id: id}}})
	l.endChange(id, settled(err))
	if err == nil {
		n.ws.d.remove(id)
	}
	l.endWrite(h, settled(err))
	if err != nil {
		return nil, err
	}
	r, _ := res.Resp.(*paddockv1.DestroyWebSessionResponse)
	return &paddockv1.DestroyWebSessionResponse{Header: n.Header(res.Index), Destroyed: r.GetDestroyed()}, nil
}

// settled reports whether a change's outcome is known: it was applied,
// or the state machine refused it. Only then does the change release the
// lock. After a failure of the cluster (the outcome unknown, leadership
// lost or moving, a timeout) the holder keeps it until its lease ends:
// it retries the same change with its token and request id, and a
// reader granted the lock in between would read a version the retry then
// changes under it (or the retry would find the lock taken).
func settled(err error) bool {
	return err == nil || fsm.ErrorCode(err) != raftv1.ErrorCode_ERROR_CODE_UNSPECIFIED
}

// wsCreate stores an empty session under a new id. With a request id,
// the first id drawn is derived from it (SHA-256, 128 bits), so a retry
// of the call proposes the same command and gets the first result back;
// the client's request ids are random (PHP's Client: 16 random bytes),
// so the session ids are too. Without one, or after a collision, the id
// is random.
func (n *Node) wsCreate(ctx context.Context, l *wsLocks, req *paddockv1.CreateWebSessionRequest) (*paddockv1.CreateWebSessionResponse, error) {
	bits := int(req.GetSidBitsPerCharacter())
	if bits == 0 {
		bits = 4
	}
	for attempt := 0; ; attempt++ {
		var raw [16]byte
		if rid := RequestID(ctx); attempt == 0 && len(rid) > 0 {
			sum := sha256.Sum256(append([]byte("paddock web session id\x00"), rid...))
			copy(raw[:], sum[:16])
		} else {
			_, _ = rand.Read(raw[:])
		}
		pctx := ctx
		if attempt > 0 {
			pctx = WithRequestID(ctx, nil) // another command: not the request's retry
		}
		id := encodeSessionID(raw[:], bits)
		if l.pend != nil && l.pend.pending(id) && attempt+1 < wsCreateAttempts {
			continue // a delayed write created it, not committed yet
		}
		res, err := n.proposeLeader(pctx, &raftv1.Command{Op: &raftv1.Command_WebSessionWrite{WebSessionWrite: &raftv1.WebSessionWrite{
			Id: id, MaxLifetimeMs: req.GetMaxLifetimeMs(),
		}}})
		if errors.Is(err, fsm.ErrBadVersion) && attempt+1 < wsCreateAttempts {
			continue // the id exists: draw another
		}
		if err != nil {
			return nil, err
		}
		n.ws.access(id, req.GetMaxLifetimeMs())
		r, _ := res.Resp.(*paddockv1.WriteWebSessionResponse)
		return &paddockv1.CreateWebSessionResponse{Header: n.Header(res.Index), Id: id, Version: r.GetVersion()}, nil
	}
}

// Session id alphabets by bits per character (PHP's
// session.sid_bits_per_character).
const (
	sidAlphabet4 = "0123456789abcdef"
	sidAlphabet5 = "0123456789abcdefghijklmnopqrstuv"
	sidAlphabet6 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ,-"
)

// encodeSessionID writes raw's bits, bits at a time (the last group
// padded with zero bits), in the alphabet of bits: 128 bits make 32, 26
// or 22 characters.
func encodeSessionID(raw []byte, bits int) string {
	alphabet := sidAlphabet4
	switch bits {
	case 5:
		alphabet = sidAlphabet5
	case 6:
		alphabet = sidAlphabet6
	}
	total := len(raw) * 8
	out := make([]byte, 0, (total+bits-1)/bits)
	for pos := 0; pos < total; pos += bits {
		v := 0
		for b := pos; b < pos+bits; b++ {
			v <<= 1
			if b < total && raw[b/8]&(0x80>>(b%8)) != 0 {
				v |= 1
			}
		}
		out = append(out, alphabet[v])
	}
	return string(out)
}

// proposeLeader applies cmd on this node, which must lead, never
// forwarding it: a leader that lost its place answers ErrNotLeader
// (nothing appended) and the whole call goes to the new leader, whose
// locks decide. The request id of ctx goes into cmd.
func (n *Node) proposeLeader(ctx context.Context, cmd *raftv1.Command) (*fsm.Result, error) {
	return n.propose(ctx, cmd, proposeLeader)
}

// proposeLeaderGrouped is proposeLeader through the leader's group
// commit (group.go).
func (n *Node) proposeLeaderGrouped(ctx context.Context, cmd *raftv1.Command) (*fsm.Result, error) {
	return n.propose(ctx, cmd, proposeGrouped)
}
