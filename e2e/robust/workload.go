package robust

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock/paddock/client"
	"github.com/paddock/paddock/e2e/robust/check"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// The znodes the workloads use.
const (
	regParent = "/reg"
	seqParent = "/seq"
	ephParent = "/eph"
	// regKeys is how many register znodes the CAS workload spreads over.
	regKeys = 4
	// sessionTimeout is the timeout every workload session asks for.
	sessionTimeout = 2 * time.Second
)

// opTimeout bounds one workload call, retries included. It is shorter
// than the longest fault, so calls caught by one end with an unknown
// outcome instead of hanging the run.
const opTimeout = 3 * time.Second

// recorder is the run's clock and everything its workloads recorded.
type recorder struct {
	start time.Time
	// ops counts register and sequential calls that have ended.
	ops atomic.Int64
	// clientIDs hands out porcupine client ids.
	clientIDs atomic.Int64

	mu         sync.Mutex
	regs       []check.RegisterOp
	seqs       []check.SeqCreate
	sessions   []*check.Session
	idle       []*check.IdleNode
	unexpected []string // errors no workload call should ever get
	// deleted is when any watcher first saw each path deleted, and
	// deletedZxid the zxid of that deletion.
	deleted     map[string]time.Duration
	deletedZxid map[string]uint64
}

func newRecorder() *recorder {
	return &recorder{start: time.Now(), deleted: make(map[string]time.Duration), deletedZxid: make(map[string]uint64)}
}

// sawDeleted records that a watcher saw path deleted at seen, by the
// entry at zxid.
func (r *recorder) sawDeleted(path string, zxid uint64, seen time.Duration) {
	r.mu.Lock()
	if t, ok := r.deleted[path]; !ok || seen < t {
		r.deleted[path] = seen
	}
	r.deletedZxid[path] = zxid
	r.mu.Unlock()
}

// now is the time since the run's start.
func (r *recorder) now() time.Duration { return time.Since(r.start) }

func (r *recorder) addReg(op check.RegisterOp) {
	r.mu.Lock()
	r.regs = append(r.regs, op)
	r.mu.Unlock()
	r.ops.Add(1)
}

func (r *recorder) addSeq(op check.SeqCreate) {
	r.mu.Lock()
	r.seqs = append(r.seqs, op)
	r.mu.Unlock()
	r.ops.Add(1)
}

func (r *recorder) addUnexpected(format string, args ...any) {
	r.mu.Lock()
	r.unexpected = append(r.unexpected, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

// outcome is what err tells a client of its call. Codes that only a bad
// request earns are reported as unexpected by the caller.
func outcome(err error) check.Outcome {
	switch status.Code(err) {
	case codes.OK:
		return check.OK
	case codes.NotFound:
		return check.NotFound
	case codes.AlreadyExists:
		return check.Exists
	case codes.FailedPrecondition:
		return check.BadVersion
	}
	return check.Unknown
}

// unexpected reports whether err is one no workload call should get: the
// workloads only send valid requests.
func unexpected(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.Unimplemented, codes.PermissionDenied, codes.OutOfRange, codes.Unauthenticated:
		return true
	}
	return false
}

// newClient is a client that tries node first, then the others in turn.
func newClient(ctx context.Context, endpoints []string, first int) (*client.Client, error) {
	return newClientWith(ctx, endpoints, first, client.Config{})
}

// newClientWith is newClient with cfg's other settings.
func newClientWith(ctx context.Context, endpoints []string, first int, cfg client.Config) (*client.Client, error) {
	n := len(endpoints)
	order := make([]string, 0, n)
	for i := range n {
		order = append(order, endpoints[(first+i)%n])
	}
	cfg.Endpoints, cfg.DialTimeout, cfg.RetryTimeout = order, time.Second, opTimeout
	return client.New(ctx, cfg)
}

func regKey(i int) string { return fmt.Sprintf("%s/k%d", regParent, i) }

// registers is one client's loop of creates, linearizable gets, sets and
// deletes with expected versions on the register znodes, until stop.
func registers(ctx context.Context, rec *recorder, cl *client.Client, rng *rand.Rand, worker int, stop <-chan struct{}) {
	id := int(rec.clientIDs.Add(1))
	versions := make(map[string]int64) // the last version this client saw
	for n := 0; ; n++ {
		if stopped(ctx, stop) {
			return
		}
		key := regKey(rng.IntN(regKeys))
		op := check.RegisterOp{Client: id, Key: key, ExpectVersion: -1}
		if v, ok := versions[key]; ok && rng.IntN(2) == 0 {
			op.ExpectVersion = v
		}
		value := fmt.Sprintf("w%d-%d", worker, n)
		cctx, cancel := context.WithTimeout(ctx, opTimeout)
		op.Call = rec.now()
		var err error
		switch p := rng.IntN(100); {
		case p < 20:
			op.Kind, op.Value = check.Create, value
			var r *paddockv1.CreateResponse
			r, err = cl.Create(cctx, &paddockv1.CreateRequest{Path: key, Data: []byte(value)})
			op.Version = int64(r.GetStat().GetVersion())
		case p < 55:
			op.Kind = check.Get
			var r *paddockv1.GetResponse
			r, err = cl.Get(cctx, &paddockv1.GetRequest{Path: key})
			op.Value, op.Version = string(r.GetData()), int64(r.GetStat().GetVersion())
		case p < 85:
			op.Kind, op.Value = check.Set, value
			var r *paddockv1.SetResponse
			r, err = cl.Set(cctx, &paddockv1.SetRequest{Path: key, Data: []byte(value), Version: expected(op.ExpectVersion)})
			op.Version = int64(r.GetStat().GetVersion())
		default:
			op.Kind = check.Delete
			_, err = cl.Delete(cctx, &paddockv1.DeleteRequest{Path: key, Version: expected(op.ExpectVersion)})
		}
		op.Return = rec.now()
		cancel()
		if ctx.Err() != nil && err != nil {
			return // the run is over; the call's fate is not part of it
		}
		if unexpected(err) {
			rec.addUnexpected("%s %s: %v", op.Kind, key, err)
			continue
		}
		op.Outcome = outcome(err)
		if op.Kind == check.Get && op.Outcome == check.BadVersion {
			op.Outcome = check.Unknown // a read has no version check
		}
		switch {
		case op.Outcome == check.OK && op.Kind == check.Delete:
			delete(versions, key)
		case op.Outcome == check.OK:
			versions[key] = op.Version
		case op.Outcome == check.NotFound:
			delete(versions, key)
		}
		rec.addReg(op)
		if op.Outcome == check.Unknown {
			// The call may still take effect: later calls get a fresh
			// client id so that no client's calls overlap.
			id = int(rec.clientIDs.Add(1))
		}
	}
}

// stopped reports whether the workload should stop: stop is closed or ctx
// has ended.
func stopped(ctx context.Context, stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	case <-ctx.Done():
		return true
	default:
		return false
	}
}

func expected(v int64) *int32 {
	if v < 0 {
		return nil
	}
	x := int32(v)
	return &x
}

// sequentials is one client's loop of sequential creates under seqParent.
func sequentials(ctx context.Context, rec *recorder, cl *client.Client, stop <-chan struct{}) {
	id := int(rec.clientIDs.Add(1))
	for {
		if stopped(ctx, stop) {
			return
		}
		cctx, cancel := context.WithTimeout(ctx, opTimeout)
		op := check.SeqCreate{Client: id, Call: rec.now()}
		r, err := cl.Create(cctx, &paddockv1.CreateRequest{Path: seqParent + "/n-", Sequential: true})
		op.Return = rec.now()
		cancel()
		if ctx.Err() != nil && err != nil {
			return
		}
		if err != nil && outcome(err) != check.Unknown {
			rec.addUnexpected("sequential create: %v", err)
			continue
		}
		op.Outcome = outcome(err)
		op.Path, op.Zxid = r.GetPath(), r.GetStat().GetCzxid()
		rec.addSeq(op)
	}
}

// sessionPlan is what the session workload does with one session.
type sessionPlan struct {
	fate check.Fate
	// ephemerals is how many it creates.
	ephemerals int
	// life is how long an Abandoned or Closed session is kept alive first.
	life time.Duration
}

// sessions opens sessions one after another until stop, each with its own
// goroutine that keeps it alive, abandons it or closes it. Sessions to be
// abandoned or closed are, at the latest when stop closes; ended is done
// when they all have been. Kept-alive sessions stay alive until release
// is closed, and wg is done when their goroutines have returned.
func sessions(ctx context.Context, rec *recorder, cl *client.Client, rng *rand.Rand, stop, release <-chan struct{}, wg, ended *sync.WaitGroup) {
	for k := 0; k < maxSessions; k++ {
		plan := sessionPlan{ephemerals: 1 + rng.IntN(2), life: time.Duration(rng.IntN(1500)) * time.Millisecond}
		switch p := rng.IntN(100); {
		case p < 40:
			plan.fate = check.KeptAlive
		case p < 75:
			plan.fate = check.Abandoned
		default:
			plan.fate = check.Closed
		}
		wg.Add(1)
		if plan.fate != check.KeptAlive {
			ended.Add(1)
		}
		go func() {
			defer wg.Done()
			if plan.fate != check.KeptAlive {
				defer ended.Done()
			}
			runSession(ctx, rec, cl, plan, stop, release)
		}()
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(200+rng.IntN(400)) * time.Millisecond):
		}
	}
}

// maxSessions bounds the sessions one run opens.
const maxSessions = 12

func runSession(ctx context.Context, rec *recorder, cl *client.Client, plan sessionPlan, stop, release <-chan struct{}) {
	s := &check.Session{Timeout: sessionTimeout, Fate: plan.fate, Opened: rec.now()}
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	r, err := cl.OpenSession(cctx, &paddockv1.OpenSessionRequest{TimeoutMs: sessionTimeout.Milliseconds()})
	cancel()
	if err != nil {
		if unexpected(err) {
			rec.addUnexpected("open session: %v", err)
		}
		return // an unknown open has no ephemerals to check
	}
	if got := time.Duration(r.GetTimeoutMs()) * time.Millisecond; got != sessionTimeout {
		rec.addUnexpected("open session: granted %v, asked %v", got, sessionTimeout)
		s.Timeout = got
	}
	id := r.GetSessionId()
	s.ID = fmt.Sprint(id)
	rec.mu.Lock()
	rec.sessions = append(rec.sessions, s)
	rec.mu.Unlock()

	for k := range plan.ephemerals {
		path := fmt.Sprintf("%s/s%d-%d", ephParent, id, k)
		call := rec.now()
		cctx, cancel := context.WithTimeout(ctx, opTimeout)
		_, err := cl.Create(cctx, &paddockv1.CreateRequest{Path: path, Type: paddockv1.NodeType_NODE_TYPE_EPHEMERAL, SessionId: id})
		cancel()
		if err == nil {
			rec.mu.Lock()
			s.Ephemerals = append(s.Ephemerals, check.Ephemeral{Path: path, Call: call})
			rec.mu.Unlock()
		} else if unexpected(err) {
			rec.addUnexpected("create ephemeral %s: %v", path, err)
		}
	}

	var until <-chan time.Time
	var stopped <-chan struct{}
	if plan.fate != check.KeptAlive {
		until, stopped = time.After(plan.life), stop
	}
	tick := time.NewTicker(sessionTimeout / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-release:
			if plan.fate == check.KeptAlive {
				return
			}
		case <-until:
			endSession(ctx, rec, cl, s, id)
			return
		case <-stopped:
			endSession(ctx, rec, cl, s, id)
			return
		case <-tick.C:
			sent := rec.now()
			cctx, cancel := context.WithTimeout(ctx, sessionTimeout/3)
			_, err := cl.KeepAlive(cctx, &paddockv1.KeepAliveRequest{SessionId: id})
			cancel()
			switch {
			case err == nil:
				rec.mu.Lock()
				s.KeepAlives = append(s.KeepAlives, sent)
				rec.mu.Unlock()
			case status.Code(err) == codes.FailedPrecondition || status.Code(err) == codes.NotFound:
				// Expired: nothing more to keep alive. A session that was
				// to end anyway counts as abandoned from here.
				if plan.fate != check.KeptAlive {
					rec.mu.Lock()
					s.Fate, s.AbandonedAt = check.Abandoned, sent
					rec.mu.Unlock()
				}
				return
			case unexpected(err):
				rec.addUnexpected("keepalive %d: %v", id, err)
			}
		}
	}
}

// endSession abandons or closes s. A close whose outcome is unknown counts
// as abandoning it then: the session ends either way, by close or expiry.
func endSession(ctx context.Context, rec *recorder, cl *client.Client, s *check.Session, id uint64) {
	at := rec.now()
	if s.Fate == check.Closed {
		cctx, cancel := context.WithTimeout(ctx, opTimeout)
		_, err := cl.CloseSession(cctx, &paddockv1.CloseSessionRequest{SessionId: id})
		cancel()
		if c := status.Code(err); c == codes.OK || c == codes.FailedPrecondition || c == codes.NotFound {
			// Closed now, or expired before: gone either way.
			rec.mu.Lock()
			s.ClosedAt = at
			rec.mu.Unlock()
			return
		}
	}
	rec.mu.Lock()
	if s.Fate == check.Closed {
		s.ClosedAt = at // the close's outcome is unknown: it may have taken effect
	}
	s.Fate, s.AbandonedAt = check.Abandoned, at
	rec.mu.Unlock()
}

// watcher records every event under "/" that one client, starting on
// node, receives, from zxid 1 on. A watch that ends with ErrCompacted is
// started again from the oldest zxid the node still has, as a new stream.
type watcher struct {
	name    string
	rec     *recorder
	cl      *client.Client
	mu      sync.Mutex
	streams []check.WatchStream
	zxid    atomic.Uint64 // what the current stream is up to date with
	// lastEvent is the zxid of the newest event received.
	lastEvent atomic.Uint64
	errs      []string
}

func (w *watcher) run(ctx context.Context) {
	start := uint64(1)
	for ctx.Err() == nil {
		wt, err := w.cl.Watch(ctx, "/", client.WatchOptions{
			Recursive:        true,
			StartZxid:        start,
			ProgressInterval: 200 * time.Millisecond,
			Kinds: []paddockv1.EventKind{
				paddockv1.EventKind_EVENT_KIND_CREATED,
				paddockv1.EventKind_EVENT_KIND_DATA_CHANGED,
				paddockv1.EventKind_EVENT_KIND_DELETED,
			},
		})
		if err != nil {
			if ctx.Err() == nil {
				w.fail("watch from %d: %v", start, err)
				sleep(ctx, 200*time.Millisecond)
			}
			continue
		}
		// The new stream owes nothing before start: it is up to date with
		// start-1 already. (After a COMPACTED or SNAPSHOT_RESTORED restart
		// with no write since, no response would ever say so: the client
		// delivers only progress that moves past its start.)
		st := check.WatchStream{Name: w.name, Prefix: "/", Start: start, End: start - 1}
		w.zxid.Store(max(w.zxid.Load(), start-1))
		w.follow(ctx, wt, &st)
		wt.Close()
		w.mu.Lock()
		w.streams = append(w.streams, st)
		w.mu.Unlock()
		var ce *client.CompactedError
		switch err := wt.Err(); {
		case ctx.Err() != nil:
			return
		case errors.As(err, &ce):
			start = ce.CompactZxid
		default:
			w.fail("watch from %d ended: %v", start, err)
			start = st.End + 1
		}
	}
}

func (w *watcher) follow(ctx context.Context, wt *client.Watcher, st *check.WatchStream) {
	for {
		select {
		case <-ctx.Done():
			return
		case r, ok := <-wt.Responses():
			if !ok { // the watch ended; Err says why
				var ce *client.CompactedError
				st.Compacted = errors.As(wt.Err(), &ce)
				return
			}
			w.add(st, r)
		}
	}
}

func (w *watcher) add(st *check.WatchStream, r client.WatchResponse) {
	seen := w.rec.now()
	for _, e := range r.Events {
		ev := check.WatchEvent{Zxid: e.GetZxid(), Path: e.GetPath(), Seen: seen}
		switch e.GetKind() {
		case paddockv1.EventKind_EVENT_KIND_CREATED:
			ev.Type = check.Created
		case paddockv1.EventKind_EVENT_KIND_DATA_CHANGED:
			ev.Type = check.Changed
		case paddockv1.EventKind_EVENT_KIND_DELETED:
			ev.Type = check.Deleted
			w.rec.sawDeleted(ev.Path, ev.Zxid, seen)
		default:
			continue
		}
		st.Events = append(st.Events, ev)
		w.lastEvent.Store(max(w.lastEvent.Load(), ev.Zxid))
	}
	st.End = r.Zxid
	w.zxid.Store(r.Zxid)
}

func (w *watcher) fail(format string, args ...any) {
	w.mu.Lock()
	w.errs = append(w.errs, fmt.Sprintf(w.name+": "+format, args...))
	w.mu.Unlock()
}
