package fsm

import (
	"fmt"

	"github.com/google/btree"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// PHP web sessions (WebSessionService): one row per session id, written
// by WebSessionWrite and removed by WebSessionDelete. The table holds
// only what must survive a leader change: the data, its version (the
// safety net under the leader's in-memory lock), the idle timeout and the
// times of creation and of the last write. Locks and access times live
// in the leader's memory (node), and expiry is a WebSessionDelete the
// leader proposes: the state machine decides nothing by itself. Neither
// command emits an event: web sessions change on every page view and must
// not flood the watch history.

// DefaultWebSessionLifetimeMs is the idle timeout of a session created
// without one: PHP's session.gc_maxlifetime default, 24 minutes.
const DefaultWebSessionLifetimeMs = 24 * 60 * 1000

// MaxWebSessionIDLength is the longest web session id PHP accepts.
const MaxWebSessionIDLength = 256

// WebSession is one PHP web session as the state holds it.
type WebSession struct {
	// ID is the session id (ValidWebSessionID).
	ID string
	// Data is the session's data (PHP's serialized $_SESSION), nil when
	// empty (the decoder gives an empty bytes field as nil, so a restored
	// row equals the one apply stored). It is shared with the state:
	// never modify it.
	Data []byte
	// Version counts the session's writes, from 1; 0 means the session
	// does not exist.
	Version uint64
	// MaxLifetimeMs is the idle time after which the leader expires it.
	MaxLifetimeMs int64
	// CtimeMs is when it was created, MtimeMs when it was last written
	// (the commands' times, Unix milliseconds).
	CtimeMs, MtimeMs int64
}

// ValidWebSessionID reports whether id is a session id PHP's grammar
// allows: 1 to 256 characters of a-z, A-Z, 0-9, ',' and '-'.
func ValidWebSessionID(id string) bool {
	if len(id) == 0 || len(id) > MaxWebSessionIDLength {
		return false
	}
	for i := range len(id) {
		switch c := id[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == ',', c == '-':
		default:
			return false
		}
	}
	return true
}

// webSessionTable is the web sessions in id order. Rows are values in a
// copy-on-write B-tree: a row costs its id, its data and 72 bytes in a
// tree node, no allocation of its own, and a snapshot clones the table in
// O(1) (as the znode tree). Its snapshot records are WebSessionRecords,
// in id order.
type webSessionTable struct {
	rows *btree.BTreeG[WebSession]
}

func newWebSessionTable() *webSessionTable {
	return &webSessionTable{rows: btree.NewG(32, func(a, b WebSession) bool { return a.ID < b.ID })}
}

// get returns the row of id; its Version is 0 if there is none.
func (t *webSessionTable) get(id string) WebSession {
	ws, _ := t.rows.Get(WebSession{ID: id})
	return ws
}

// webSessionView is a copy-on-write clone of the table.
type webSessionView struct{ rows *btree.BTreeG[WebSession] }

// capture clones the table in O(1); as for the tree, the caller holds the
// FSM's lock for writing (Clone writes to the original).
func (t *webSessionTable) capture() tableView { return webSessionView{rows: t.rows.Clone()} }

func (v webSessionView) records() uint64 { return uint64(v.rows.Len()) }

// write writes the rows in id order, refilling one record for each.
func (v webSessionView) write(rw *recordWriter) error {
	r := &raftv1.WebSessionRecord{}
	rec := &raftv1.SnapshotRecord{Record: &raftv1.SnapshotRecord_WebSession{WebSession: r}}
	var err error
	v.rows.Ascend(func(ws WebSession) bool {
		*r = raftv1.WebSessionRecord{
			Id: ws.ID, Data: ws.Data, Version: ws.Version, MaxLifetimeMs: ws.MaxLifetimeMs,
			CtimeUnixMs: ws.CtimeMs, MtimeUnixMs: ws.MtimeMs,
		}
		err = rw.write(rec)
		return err == nil
	})
	return err
}

// restore loads a WebSessionRecord, checked as apply would have left it.
func (t *webSessionTable) restore(rec *raftv1.SnapshotRecord) (bool, error) {
	r := rec.GetWebSession()
	if r == nil {
		return false, nil
	}
	switch {
	case !ValidWebSessionID(r.GetId()):
		return true, fmt.Errorf("fsm: snapshot: web session with a bad id %q", r.GetId())
	case r.GetVersion() == 0:
		return true, fmt.Errorf("fsm: snapshot: web session %s has version 0", r.GetId())
	case r.GetMaxLifetimeMs() < 0:
		return true, fmt.Errorf("fsm: snapshot: web session %s has max lifetime %dms", r.GetId(), r.GetMaxLifetimeMs())
	case len(r.GetData()) > MaxDataSize:
		return true, fmt.Errorf("fsm: snapshot: web session %s holds %d bytes, limit %d", r.GetId(), len(r.GetData()), MaxDataSize)
	}
	ws := WebSession{
		ID: r.GetId(), Data: r.GetData(), Version: r.GetVersion(), MaxLifetimeMs: r.GetMaxLifetimeMs(),
		CtimeMs: r.GetCtimeUnixMs(), MtimeMs: r.GetMtimeUnixMs(),
	}
	if _, dup := t.rows.ReplaceOrInsert(ws); dup {
		return true, fmt.Errorf("fsm: snapshot: web session %s appears twice", r.GetId())
	}
	return true, nil
}

func (t *webSessionTable) restored() error { return nil }

// checkWebSessionID refuses an id outside PHP's grammar.
func checkWebSessionID(id string) error {
	if !ValidWebSessionID(id) {
		if len(id) > MaxWebSessionIDLength {
			return errorf(ErrBadArgument, "web session id of %d characters, limit %d", len(id), MaxWebSessionIDLength)
		}
		return errorf(ErrBadArgument, "web session id: want 1 to %d characters of a-z, A-Z, 0-9, ',' and '-'", MaxWebSessionIDLength)
	}
	return nil
}

// checkWebSessionWrite runs the checks of a write that need no state.
func checkWebSessionWrite(op *raftv1.WebSessionWrite) error {
	if err := checkWebSessionID(op.GetId()); err != nil {
		return err
	}
	if op.GetMaxLifetimeMs() < 0 {
		return errorf(ErrBadArgument, "web session %s: max lifetime %dms", op.GetId(), op.GetMaxLifetimeMs())
	}
	if nv := op.GetNewVersion(); nv != 0 && nv <= op.GetVersion() {
		return errorf(ErrBadArgument, "web session %s: new version %d is not above version %d", op.GetId(), nv, op.GetVersion())
	}
	// The agent's limit (--web-session-max-bytes) is the node's to check;
	// this is the ceiling every record of the state keeps to (a snapshot
	// reader accepts nothing larger).
	return checkData(op.GetData())
}

// applyWebSessionWrite stores a session's data if the session is at the
// version the writer read (0: it must not exist), and its version goes up
// by one, or to new_version when set (the leader's coalesced delayed
// writes). The data is the decoded command's: the decoder allocated it for
// this entry alone (FSM.decode reuses no web session message), so the row
// may keep it.
func (s *state) applyWebSessionWrite(c *applyCtx, op *raftv1.WebSessionWrite) (proto.Message, error) {
	if err := checkWebSessionWrite(op); err != nil {
		return nil, err
	}
	id := op.GetId()
	old := s.webSessions.get(id)
	switch {
	case op.GetVersion() == 0 && old.Version != 0:
		return nil, errorf(ErrBadVersion, "web session exists (version %d), want a new one", old.Version)
	case op.GetVersion() != 0 && old.Version == 0:
		return nil, errorf(ErrBadVersion, "web session does not exist, want version %d", op.GetVersion())
	case old.Version != op.GetVersion():
		return nil, errorf(ErrBadVersion, "web session is at version %d, want %d", old.Version, op.GetVersion())
	}
	ws := old
	if old.Version == 0 {
		ws = WebSession{ID: id, MaxLifetimeMs: DefaultWebSessionLifetimeMs, CtimeMs: c.now}
	}
	ws.Version++
	if nv := op.GetNewVersion(); nv != 0 {
		ws.Version = nv // above op's version: checkWebSessionWrite
	}
	ws.MtimeMs = c.now
	if op.GetMaxLifetimeMs() != 0 {
		ws.MaxLifetimeMs = op.GetMaxLifetimeMs()
	}
	if !op.GetKeepData() {
		ws.Data = op.GetData()
	}
	s.webSessions.rows.ReplaceOrInsert(ws)
	if c.webSessionApplied != nil {
		c.webSessionApplied(WebSessionChange{ID: id, Index: c.index, Term: c.term, Version: ws.Version, RequestID: c.requestID})
	}
	return &paddockv1.WriteWebSessionResponse{Version: ws.Version}, nil
}

// applyWebSessionDelete deletes a session, if its version is op's when op
// names one. A missing session or another version is not an error: the
// response says whether it deleted.
func (s *state) applyWebSessionDelete(c *applyCtx, op *raftv1.WebSessionDelete) (proto.Message, error) {
	if err := checkWebSessionID(op.GetId()); err != nil {
		return nil, err
	}
	old := s.webSessions.get(op.GetId())
	if old.Version == 0 || (op.GetVersion() != 0 && op.GetVersion() != old.Version) {
		return &paddockv1.DestroyWebSessionResponse{}, nil
	}
	s.webSessions.rows.Delete(old)
	if c.webSessionApplied != nil {
		c.webSessionApplied(WebSessionChange{ID: op.GetId(), Index: c.index, Term: c.term, RequestID: c.requestID})
	}
	return &paddockv1.DestroyWebSessionResponse{Destroyed: true}, nil
}

// WebSession returns the session id as last applied, and false if there
// is none. Its Data is the state's: never modify it.
func (f *FSM) WebSession(id string) (WebSession, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	ws, ok := f.state.webSessions.rows.Get(WebSession{ID: id})
	return ws, ok
}

// WebSessions calls fn for every session, in id order, until fn returns
// false: what a new leader rebuilds its expiry deadlines from. It walks a
// copy-on-write clone taken under the lock, so fn runs without it (it may
// call the state machine) and sees one applied state throughout.
func (f *FSM) WebSessions(fn func(id string, version uint64, maxLifetimeMs int64) bool) {
	f.mu.Lock() // Clone writes to the original
	rows := f.state.webSessions.rows.Clone()
	f.mu.Unlock()
	rows.Ascend(func(ws WebSession) bool { return fn(ws.ID, ws.Version, ws.MaxLifetimeMs) })
}

// WebSessionCount is the number of web sessions.
func (f *FSM) WebSessionCount() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.webSessions.rows.Len()
}

// WebSessionChange is a web session row an entry changed.
type WebSessionChange struct {
	ID string
	// Index and Term are the entry's.
	Index, Term uint64
	// Version is the row's new version, 0 if the entry deleted it.
	Version uint64
	// RequestID is the command's request id (nil if none): the state
	// machine's, never modify it.
	RequestID []byte
}

// WithWebSessionHook has the state machine call fn for every web session
// row an entry changes, as it applies the entry (under the state
// machine's lock: fn must be quick and must not call the state machine).
// Commands refused change nothing and call nothing. The node's backups of
// delayed writes use it to let go of the writes the log now holds.
func WithWebSessionHook(fn func(WebSessionChange)) Option {
	return func(f *FSM) { f.webSessionApplied = fn }
}
