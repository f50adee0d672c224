package robust

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/paddock/paddock/client"
	"github.com/paddock/paddock/e2e/robust/check"
	"github.com/paddock/paddock/fsm"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// electionTimeout is the agents' raft election timeout (their default),
// which bounds how late an abandoned session's ephemerals may go.
const electionTimeout = time.Second

// The snapshot settings of every run: small, so that runs snapshot while
// they write and a cut follower soon needs a snapshot to catch up.
const (
	snapshotThreshold = 256
	trailingLogs      = 128
)

// RunConfig is one seeded run.
type RunConfig struct {
	Seed int64
	// Ops is how many register and sequential calls the run makes at
	// least (it also lasts until its faults are over).
	Ops int
	// Faults, when set, are the faults to inject instead of drawn ones.
	Faults []FaultKind
	// Bin is the paddock binary; Dir holds the run's data and logs.
	Bin, Dir string
	// ExtraArgs go to every agent.
	ExtraArgs []string
	Logf      func(format string, args ...any)
}

// Report is what a run did and what its checkers found.
type Report struct {
	Seed int64
	// Ops counts register and sequential calls, Unknown their calls whose
	// outcome the client never learned.
	Ops, Unknown int
	// Sessions, Ephemerals, Idle (TTL and container znodes) and Events
	// count what the run checked.
	Sessions, Ephemerals, Idle, Events int
	// IdleDeleted counts the TTL and container znodes seen deleted,
	// IdleUnknown those with a call of unknown outcome (no upper bound).
	IdleDeleted, IdleUnknown int
	// FarmJoins counts the farm workload's joiners, FarmChanges the
	// values it gave hosts' fields after they joined (locally and
	// remotely), FarmExports the exporter's writes of its file and
	// FarmViolations the farm checker's violations (in Violations too).
	FarmJoins, FarmChanges, FarmExports, FarmViolations int
	// Election is set when the run had the election workload:
	// ElectionElected counts the campaigns answered elected,
	// ElectionWrites the fenced creates acknowledged, ElectionFenceLost
	// those refused with "fence lost", ElectionUnknown those of unknown
	// outcome, ElectionApplied the fenced creates in the tree at the end;
	// ElectionJudged of ElectionEvents kills, resignations and fault ends
	// had their "leadership regained" bound judged; ElectionWorstRegain
	// is the longest a contender took to lead again after one, which had
	// ElectionWorstBound.
	Election                                                            bool
	ElectionElected, ElectionWrites, ElectionFenceLost, ElectionUnknown int
	ElectionApplied, ElectionJudged, ElectionEvents, ElectionViolations int
	ElectionWorstRegain, ElectionWorstBound                             time.Duration
	// WebSession is set when the run had the web session workload:
	// WebSessionViews counts its page views, WebSessionLocked their reads
	// refused for a held lock and WebSessionReadUnknown those of unknown
	// outcome; WebSessionReadRetried their reads sent to more than one
	// node (with the same request id), WebSessionReadLost those of them
	// with an attempt not answered in time (it may have been granted the
	// lock, which the next attempt gets back), WebSessionReadRetriedWrote
	// those of them whose page view's write was acknowledged;
	// WebSessionWrites their writes acknowledged (WebSessionRetried of
	// them after a retry with the same request id), WebSessionRefused
	// those refused (another version or lock holder), WebSessionUnknown
	// those of unknown outcome; WebSessionDelayed of the acknowledged
	// ones, those written in the delayed mode; WebSessionApplied the
	// increments in the sessions at the end.
	WebSession                                                                 bool
	WebSessionViews, WebSessionLocked, WebSessionReadUnknown, WebSessionWrites int
	WebSessionReadRetried, WebSessionReadLost, WebSessionReadRetriedWrote      int
	WebSessionRetried, WebSessionRefused, WebSessionUnknown, WebSessionApplied int
	WebSessionViolations, WebSessionDelayed                                    int
	// LeaderChanges counts the new terms' leaders seen during the run
	// (the first leader included).
	LeaderChanges int
	Faults        []string
	// SnapshotInstalls lists the nodes whose logs show they installed a
	// snapshot from the leader.
	SnapshotInstalls []string
	Violations       []check.Violation
	// Visualization is porcupine's HTML when the linearizability check
	// failed.
	Visualization string
	Duration      time.Duration
}

// Summary is a one-line description of r.
func (r *Report) Summary() string {
	election := "election not run"
	if r.Election {
		election = fmt.Sprintf("election %d elected, fenced writes %d ok %d fence lost %d unknown %d applied, %d/%d regains judged, the slowest %v of %v (%d violations)",
			r.ElectionElected, r.ElectionWrites, r.ElectionFenceLost, r.ElectionUnknown, r.ElectionApplied, r.ElectionJudged, r.ElectionEvents,
			r.ElectionWorstRegain.Round(10*time.Millisecond), r.ElectionWorstBound.Round(10*time.Millisecond), r.ElectionViolations)
	}
	websession := "web sessions not run"
	if r.WebSession {
		websession = fmt.Sprintf("web sessions %d page views (%d reads locked out, %d unknown, %d retried: %d with an attempt unanswered, %d then wrote), writes %d ok (%d delayed, %d after a retry) %d refused %d unknown, %d increments applied (%d violations)",
			r.WebSessionViews, r.WebSessionLocked, r.WebSessionReadUnknown, r.WebSessionReadRetried, r.WebSessionReadLost, r.WebSessionReadRetriedWrote,
			r.WebSessionWrites, r.WebSessionDelayed, r.WebSessionRetried, r.WebSessionRefused, r.WebSessionUnknown, r.WebSessionApplied, r.WebSessionViolations)
	}
	return fmt.Sprintf("seed %d: %d ops (%d unknown), %d sessions, %d ephemerals, %d TTL/container znodes (%d seen deleted, %d with unknown calls), %d events, farm %d joins %d changes %d exports (%d violations), %s, %s, faults [%s], %d leaders, snapshot installs %v, %d violations, %v",
		r.Seed, r.Ops, r.Unknown, r.Sessions, r.Ephemerals, r.Idle, r.IdleDeleted, r.IdleUnknown, r.Events, r.FarmJoins, r.FarmChanges, r.FarmExports, r.FarmViolations, election, websession, strings.Join(r.Faults, "; "), r.LeaderChanges, r.SnapshotInstalls, len(r.Violations), r.Duration.Round(100*time.Millisecond))
}

// Run starts a cluster, runs the workloads against it while injecting the
// seed's faults, heals it, and checks what was recorded. An error means
// the run itself could not be carried out (the harness, not the cluster
// under test, failed); violations are in the report.
func Run(ctx context.Context, cfg RunConfig) (*Report, error) {
	began := time.Now()
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 0x9e3779b97f4a7c15))
	rep := &Report{Seed: cfg.Seed}
	plan := planFaults(rng, cfg.Faults)
	logf("seed %d: faults %v", cfg.Seed, plan)

	c, err := Start(ctx, Options{
		Bin: cfg.Bin, Dir: cfg.Dir,
		SnapshotThreshold: snapshotThreshold, TrailingLogs: trailingLogs,
		// A delayed web session write is committed 100 ms after its
		// answer at the earliest: a leader killed or cut off in that
		// window leaves answered writes only in its backups' memory,
		// which the web session check then holds to account.
		ExtraArgs: append([]string{"--snapshot-interval=200ms", "--web-session-flush-delay=100ms"}, cfg.ExtraArgs...),
		Logf:      logf,
	})
	if err != nil {
		return nil, err
	}
	defer c.Close()

	rec := newRecorder()
	if err := setup(ctx, c); err != nil {
		return nil, err
	}
	lctx, stopLeaders := context.WithCancel(ctx)
	defer stopLeaders()
	leaders := watchLeaders(lctx, c, rec)

	// Watchers first, one starting on each node, so they see everything.
	wctx, stopWatchers := context.WithCancel(ctx)
	defer stopWatchers()
	var watchers []*watcher
	var wwg sync.WaitGroup
	for i := range c.N() {
		cl, err := newClient(ctx, c.Endpoints(), i)
		if err != nil {
			return nil, err
		}
		defer cl.Close()
		w := &watcher{name: fmt.Sprintf("watcher n%d", i+1), rec: rec, cl: cl}
		watchers = append(watchers, w)
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			w.run(wctx)
		}()
	}

	stop, release := make(chan struct{}), make(chan struct{})
	// Every way out lets the kept-alive sessions go.
	letGo := sync.OnceFunc(func() { close(release) })
	defer letGo()
	var wg, swg, ended sync.WaitGroup
	for i := range 6 {
		cl, err := newClient(ctx, c.Endpoints(), i)
		if err != nil {
			return nil, err
		}
		defer cl.Close()
		wrng := rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(i+1)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch i {
			case 3:
				sequentials(ctx, rec, cl, stop)
			case 4:
				sessions(ctx, rec, cl, wrng, stop, release, &swg, &ended)
			case 5:
				idles(ctx, rec, cl, wrng, stop, &ended)
			default:
				registers(ctx, rec, cl, wrng, i, stop)
			}
		}()
	}

	fl, err := newFarmLoad(rec, c.Endpoints(), cfg.Dir)
	if err != nil {
		return nil, err
	}
	defer fl.stop()
	if err := fl.start(ctx, cfg.Seed, stop); err != nil {
		return nil, err
	}

	var el *electLoad
	if electionRun(cfg.Seed) {
		el = newElectLoad(rec, c.Endpoints(), cfg.Dir)
		defer el.halt()
		if err := el.start(ctx, cfg.Seed); err != nil {
			return nil, err
		}
	}

	var wl *webLoad
	if webSessionRun(cfg.Seed) {
		if wl, err = newWebLoad(rec, c.Endpoints(), cfg.Dir); err != nil {
			return nil, err
		}
		defer wl.stop()
		// Its page views go on until its settle: through the faults,
		// then while the other workloads settle (the runs are short, and
		// each leader change, the first one included, grants no lock for
		// its grace period).
		if err := wl.start(ctx, cfg.Seed); err != nil {
			return nil, err
		}
	}

	in := &injector{c: c, logf: logf, snapshotEntries: snapshotThreshold + trailingLogs + 64, now: rec.now}
	var faultErr error
	for _, f := range plan {
		if !sleep(ctx, f.after) {
			break
		}
		if faultErr = in.inject(ctx, f); faultErr != nil {
			break
		}
	}
	rep.Faults = in.done
	for faultErr == nil && rec.ops.Load() < int64(cfg.Ops) && ctx.Err() == nil {
		sleep(ctx, 50*time.Millisecond)
	}
	close(stop)
	wg.Wait()
	ended.Wait()
	if el != nil && faultErr == nil {
		el.stop(ctx, in.spans)
	}
	if faultErr != nil {
		letGo()
		return nil, faultErr
	}
	logf("seed %d: workload done after %v, %d ops", cfg.Seed, rec.now().Round(time.Millisecond), rec.ops.Load())

	if err := settle(ctx, c, rec); err != nil {
		letGo()
		return nil, err
	}
	if err := fl.settle(ctx); err != nil {
		letGo()
		return nil, err
	}
	if el != nil {
		el.awaitGone(ctx)
	}
	if wl != nil {
		if err := wl.settle(ctx, c); err != nil {
			letGo()
			return nil, err
		}
	}
	fin, err := final(ctx, c, rec, watchers)
	if err != nil {
		letGo()
		return nil, err
	}
	fl.stop()
	stopWatchers()
	wwg.Wait()
	letGo()
	swg.Wait()
	streams := watchStreams(watchers, fin.zxid)
	var eh *check.ElectionHistory
	var eerrs []string
	if el != nil {
		h, errs, err := el.history(ctx, streams, fin, in.spans)
		if err != nil {
			return nil, err
		}
		eh, eerrs = &h, errs
	}

	hashes, err := converge(ctx, c)
	if err != nil {
		return nil, err
	}
	stopLeaders()
	changes := leaders.changes()
	rep.LeaderChanges = len(changes)
	rep.Violations = append(rep.Violations, judge(rep, cfg, rec, fl, watchers, streams, fin, hashes, changes, in.pauses)...)
	if eh != nil {
		rep.Violations = append(rep.Violations, judgeElection(rep, *eh, eerrs, changes)...)
	}
	if wl != nil {
		wh, werrs := wl.history()
		rep.Violations = append(rep.Violations, judgeWebSessions(rep, wh, werrs)...)
	}
	for i := range c.N() {
		if c.installedSnapshot(i) {
			rep.SnapshotInstalls = append(rep.SnapshotInstalls, fmt.Sprintf("n%d", i+1))
		}
	}
	rep.Duration = time.Since(began)
	return rep, nil
}

// leaderLog records when a leader of a new term was first seen.
type leaderLog struct {
	mu   sync.Mutex
	term uint64
	at   []time.Duration
	wg   sync.WaitGroup
}

// watchLeaders asks every node for its status every 50 ms until ctx ends
// (a node down or paused just does not answer), recording each new term's
// leader as soon as one reports it.
func watchLeaders(ctx context.Context, c *Cluster, rec *recorder) *leaderLog {
	l := &leaderLog{}
	for i := range c.N() {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for sleep(ctx, 50*time.Millisecond) {
				sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
				st, err := c.Status(sctx, i)
				cancel()
				if err != nil || st.GetRole() != paddockv1.Role_ROLE_LEADER {
					continue
				}
				l.mu.Lock()
				if st.GetTerm() > l.term {
					l.term = st.GetTerm()
					l.at = append(l.at, rec.now())
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

// changes waits for the pollers to stop (their ctx must be done) and
// returns the times of the leader changes, in order.
func (l *leaderLog) changes() []time.Duration {
	l.wg.Wait()
	return l.at
}

// setup creates the workloads' parents.
func setup(ctx context.Context, c *Cluster) error {
	cl, err := newClient(ctx, c.Endpoints(), 0)
	if err != nil {
		return err
	}
	defer cl.Close()
	for _, p := range []string{regParent, seqParent, ephParent, ttlParent, ctrParent} {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := cl.Create(cctx, &paddockv1.CreateRequest{Path: p})
		cancel()
		if err != nil {
			return fmt.Errorf("robust: create %s: %w", p, err)
		}
	}
	return nil
}

// settle waits until every node is running and the cluster has a leader,
// and until the watchers have seen every ephemeral of an abandoned or
// closed session, and every TTL or emptied container znode, deleted, or
// its deadline has passed (the checker then tells which).
func settle(ctx context.Context, c *Cluster, rec *recorder) error {
	for i := range c.N() {
		if !c.Running(i) {
			return fmt.Errorf("robust: n%d is not running after the faults", i+1)
		}
	}
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := c.Leader(lctx); err != nil {
		return fmt.Errorf("robust: no leader after the faults: %w", err)
	}
	for {
		pending, last := ending(rec)
		if pending == 0 || rec.now() > last {
			return nil
		}
		if !sleep(ctx, 50*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// ending counts the ephemerals of abandoned and closed sessions, and the
// TTL and container znodes due to go, that no watcher has yet seen
// deleted, and the latest deadline among them.
func ending(rec *recorder) (pending int, last time.Duration) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, n := range rec.idle {
		if d, due := idleDeadline(n); due {
			if _, ok := rec.deleted[n.Path]; !ok {
				pending++
				last = max(last, d)
			}
		}
	}
	for _, s := range rec.sessions {
		if s.Fate == check.KeptAlive {
			continue
		}
		at := max(s.AbandonedAt, s.ClosedAt)
		for _, e := range s.Ephemerals {
			if _, ok := rec.deleted[e.Path]; !ok {
				pending++
				last = max(last, at+2*s.Timeout+electionTimeout+time.Second)
			}
		}
	}
	return pending, last
}

// finalState is what the cluster holds once the workloads have stopped.
type finalState struct {
	// zxid is the zxid the listing of the tree holds the state of.
	zxid     uint64
	seq      []check.Child
	present  map[string]bool
	tree     map[string]string
	end      time.Duration
	regReads int
}

// final reads every register key (recorded, so a lost write fails the
// linearizability check) and lists the tree, at a zxid the watchers have
// all reached.
func final(ctx context.Context, c *Cluster, rec *recorder, ws []*watcher) (*finalState, error) {
	cl, err := newClient(ctx, c.Endpoints(), 0)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	id := int(rec.clientIDs.Add(1))
	fin := &finalState{}
	for k := range regKeys {
		key := regKey(k)
		op := check.RegisterOp{Client: id, Key: key, Kind: check.Get, ExpectVersion: -1, Call: rec.now()}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		r, err := cl.Get(cctx, &paddockv1.GetRequest{Path: key})
		cancel()
		op.Return, op.Outcome = rec.now(), outcome(err)
		if op.Outcome != check.OK && op.Outcome != check.NotFound {
			return nil, fmt.Errorf("robust: final read of %s: %w", key, err)
		}
		op.Value, op.Version = string(r.GetData()), int64(r.GetStat().GetVersion())
		rec.mu.Lock()
		rec.regs = append(rec.regs, op)
		rec.mu.Unlock()
		fin.regReads++
	}
	// The listing must be the state at a known zxid, for the watch streams
	// to be replayed to: a write whose caller gave up may still be applied
	// late (queued behind a healed partition). A listing is taken at zxid
	// a when, once every watcher has caught up with a, no watcher has seen
	// an event past the zxid h at which the listing began.
	for attempt := 0; ; attempt++ {
		tree, h, err := listTree(ctx, cl)
		if err != nil {
			return nil, err
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		r, err := cl.Get(cctx, &paddockv1.GetRequest{Path: "/"})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("robust: read after the listing: %w", err)
		}
		a := r.GetHeader().GetZxid()
		if err := caughtUp(ctx, ws, a); err != nil {
			return nil, fmt.Errorf("%w; nodes: %s", err, applied(ctx, c))
		}
		if lastEvent(ws) <= h {
			fin.tree, fin.zxid = tree, a
			break
		}
		if attempt == 10 {
			return nil, errors.New("robust: the tree kept changing after the workloads stopped")
		}
		sleep(ctx, 300*time.Millisecond)
	}
	fin.end = rec.now()
	fin.present = make(map[string]bool)
	for p := range fin.tree {
		if strings.HasPrefix(p, ephParent+"/") || strings.HasPrefix(p, ttlParent+"/") || strings.HasPrefix(p, ctrParent+"/") {
			fin.present[p] = true
		}
	}
	r, err := cl.ListAll(ctx, &paddockv1.ListRequest{Path: seqParent})
	if err != nil {
		return nil, fmt.Errorf("robust: list %s: %w", seqParent, err)
	}
	for _, ch := range r.GetChildren() {
		fin.seq = append(fin.seq, check.Child{Name: ch.GetName(), Czxid: ch.GetStat().GetCzxid()})
	}
	return fin, nil
}

// truncate cuts st at zxid, the zxid of the final listing: what came
// later (a late write, an expiry) is not in the listing.
func truncate(st check.WatchStream, zxid uint64) check.WatchStream {
	i := len(st.Events)
	for i > 0 && st.Events[i-1].Zxid > zxid {
		i--
	}
	st.Events = st.Events[:i]
	if st.End > zxid {
		st.End = zxid
		st.Compacted = false // it went on past the listing
	}
	return st
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// listTree lists every znode but the root and /paddock itself (its children, the
// elections and locks, are listed), with "" for its data (watch
// events carry no data), and the zxid of the root's listing.
func listTree(ctx context.Context, cl *client.Client) (map[string]string, uint64, error) {
	tree := make(map[string]string)
	var zxid uint64
	todo := []string{"/"}
	for len(todo) > 0 {
		p := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		r, err := cl.ListAll(cctx, &paddockv1.ListRequest{Path: p})
		cancel()
		if err != nil {
			if client.IsNotFound(err) {
				continue // deleted since its parent was listed
			}
			return nil, 0, fmt.Errorf("robust: list %s: %w", p, err)
		}
		if zxid == 0 {
			zxid = r.GetHeader().GetZxid()
		}
		for _, ch := range r.GetChildren() {
			cp := strings.TrimSuffix(p, "/") + "/" + ch.GetName()
			if cp != fsm.ReservedPath {
				// The system's, made with the tree, never by an event;
				// elections live below it.
				tree[cp] = ""
			}
			if ch.GetStat().GetNumChildren() > 0 {
				todo = append(todo, cp)
			}
		}
	}
	return tree, zxid, nil
}

// applied describes every node's role and applied index, for errors.
func applied(ctx context.Context, c *Cluster) string {
	var s []string
	for i := range c.N() {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := c.Status(sctx, i)
		cancel()
		if err != nil {
			s = append(s, fmt.Sprintf("n%d: %v", i+1, err))
			continue
		}
		s = append(s, fmt.Sprintf("n%d %s applied %d", i+1, st.GetRole(), st.GetAppliedIndex()))
	}
	return strings.Join(s, ", ")
}

// lastEvent is the zxid of the newest event any watcher has received.
func lastEvent(ws []*watcher) uint64 {
	var last uint64
	for _, w := range ws {
		last = max(last, w.lastEvent.Load())
	}
	return last
}

// caughtUp waits until every watcher is up to date with zxid.
func caughtUp(ctx context.Context, ws []*watcher, zxid uint64) error {
	deadline := time.Now().Add(20 * time.Second)
	for _, w := range ws {
		for w.zxid.Load() < zxid {
			if time.Now().After(deadline) || !sleep(ctx, 50*time.Millisecond) {
				w.mu.Lock()
				defer w.mu.Unlock()
				return fmt.Errorf("%s is at zxid %d, not up to the final zxid %d after 20s (%d streams ended before this one; errors: %q)", w.name, w.zxid.Load(), zxid, len(w.streams), w.errs)
			}
		}
	}
	return nil
}

// converge waits until the three nodes report the same state hash at the
// same applied index (raft may still be committing a session checkpoint).
func converge(ctx context.Context, c *Cluster) ([]check.NodeState, error) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		var states []check.NodeState
		var err error
		for i := range c.N() {
			var st *paddockv1.StatusResponse
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			st, err = c.StatusHash(sctx, i)
			cancel()
			if err != nil {
				break
			}
			states = append(states, check.NodeState{Name: fmt.Sprintf("n%d", i+1), AppliedIndex: st.GetStateHashIndex(), Hash: st.GetStateHash()})
		}
		if err == nil && len(check.SameState(states)) == 0 {
			return states, nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return nil, fmt.Errorf("robust: state hashes: %w", err)
			}
			return states, nil // the checker reports the difference
		}
		sleep(ctx, 200*time.Millisecond)
	}
}

// judge runs every checker on what the run recorded.
func judge(rep *Report, cfg RunConfig, rec *recorder, fl *farmLoad, ws []*watcher, streams []check.WatchStream, fin *finalState, hashes []check.NodeState, leaders []time.Duration, pauses []check.Span) []check.Violation {
	var vs []check.Violation
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, u := range rec.unexpected {
		vs = append(vs, check.Violation{Check: "workload", Detail: u})
	}
	rep.Ops = len(rec.regs) + len(rec.seqs) - fin.regReads
	for _, op := range rec.regs {
		if op.Outcome == check.Unknown {
			rep.Unknown++
		}
	}
	for _, op := range rec.seqs {
		if op.Outcome == check.Unknown {
			rep.Unknown++
		}
	}

	vis := filepath.Join(cfg.Dir, "linearizability.html")
	ok, lv, err := check.Linearizable(rec.regs, 30*time.Second, vis)
	switch {
	case err != nil:
		vs = append(vs, check.Violation{Check: "linearizable", Detail: err.Error()})
	case !ok:
		vs = append(vs, lv...)
		rep.Visualization = vis
	}
	vs = append(vs, check.Sequential(seqParent, rec.seqs, fin.seq)...)

	for _, w := range ws {
		w.mu.Lock()
		for _, e := range w.errs {
			vs = append(vs, check.Violation{Check: "watches", Detail: e})
		}
		w.mu.Unlock()
	}
	for _, st := range streams {
		rep.Events += len(st.Events)
	}
	var sessions []check.Session
	for _, s := range rec.sessions {
		sessions = append(sessions, *s)
		rep.Ephemerals += len(s.Ephemerals)
	}
	rep.Sessions = len(sessions)
	vs = append(vs, check.Sessions(sessions, rec.deleted, fin.present, fin.end, electionTimeout, leaders, pauses)...)
	var idle []check.IdleNode
	for _, n := range rec.idle {
		idle = append(idle, *n)
		if _, ok := rec.deleted[n.Path]; ok {
			rep.IdleDeleted++
		}
		calls := append(append(append([]check.Call{n.Created}, n.Sets...), n.ChildCreates...), n.ChildDeletes...)
		if slices.ContainsFunc(calls, func(c check.Call) bool { return c.Outcome == check.Unknown }) {
			rep.IdleUnknown++
		}
	}
	rep.Idle = len(idle)
	var writes []check.Call
	for _, op := range rec.regs {
		if op.Kind != check.Get {
			writes = append(writes, check.Call{Path: op.Key, Outcome: op.Outcome, Call: op.Call, Return: op.Return})
		}
	}
	for _, op := range rec.seqs {
		writes = append(writes, check.Call{Path: op.Path, Outcome: op.Outcome, Call: op.Call, Return: op.Return})
	}
	vs = append(vs, check.IdleNodes(idle, deletedBy(rec, idle), fin.present, fin.end, electionTimeout, leaders, pauses, writes)...)
	fh, ferrs := fl.history()
	rep.FarmJoins, rep.FarmExports = len(fh.Joiners), len(fh.Files)
	rep.FarmChanges = len(fh.Writes) - len(fh.Joiners) // less each joiner's first value
	// The exporter polls for 2 s (farm's exportPollTimeout) and the Go
	// client gives a poll a second more before trying another node.
	fh.ExporterLag = 3 * time.Second
	fvs := check.Farm(fh, electionTimeout, leaders, pauses, writes)
	for _, e := range ferrs {
		fvs = append(fvs, check.Violation{Check: "farm", Detail: e})
	}
	rep.FarmViolations = len(fvs)
	vs = append(vs, fvs...)
	vs = append(vs, check.Watches(streams, fin.tree)...)
	vs = append(vs, check.SameState(hashes)...)
	slices.SortStableFunc(vs, func(a, b check.Violation) int { return strings.Compare(a.Check, b.Check) })
	return vs
}

// watchStreams are the watchers' streams cut at zxid, the final
// listing's (call it once the watchers have stopped).
func watchStreams(ws []*watcher, zxid uint64) []check.WatchStream {
	var streams []check.WatchStream
	for _, w := range ws {
		w.mu.Lock()
		for _, st := range w.streams {
			streams = append(streams, truncate(st, zxid))
		}
		w.mu.Unlock()
	}
	return streams
}

// judgeElection runs the election checker, when the run had the
// election workload.
func judgeElection(rep *Report, h check.ElectionHistory, errs []string, leaders []time.Duration) []check.Violation {
	var vs []check.Violation
	for _, e := range errs {
		vs = append(vs, check.Violation{Check: "election", Detail: e})
	}
	vs = append(vs, check.Election(h, electionTimeout, leaders)...)
	rep.Election = true
	for _, c := range h.Campaigns {
		if c.Elected {
			rep.ElectionElected++
		}
	}
	for _, w := range h.Writes {
		switch w.Outcome {
		case check.FenceOK:
			rep.ElectionWrites++
		case check.FenceLost:
			rep.ElectionFenceLost++
		case check.FenceUnknown:
			rep.ElectionUnknown++
		}
	}
	rep.ElectionApplied = len(h.Applied)
	for _, g := range check.ElectionRegains(h, electionTimeout, leaders) {
		rep.ElectionEvents++
		if g.Judged {
			rep.ElectionJudged++
		}
		if g.Led >= 0 && g.Led-g.At > rep.ElectionWorstRegain {
			rep.ElectionWorstRegain, rep.ElectionWorstBound = g.Led-g.At, g.Bound-g.At
		}
	}
	rep.ElectionViolations = len(vs)
	return vs
}

// deletedBy is, for each TTL or container znode seen deleted, a time by
// which the deletion had happened: when a watcher first saw it, or
// earlier, when a sequential create of a later zxid was acknowledged
// (the leader applies in log order before it answers). Watchers that
// resumed after a fault may see a deletion late; the acknowledgements
// bound it without them.
func deletedBy(rec *recorder, idle []check.IdleNode) map[string]time.Duration {
	var acks []check.SeqCreate
	for _, op := range rec.seqs {
		if op.Outcome == check.OK {
			acks = append(acks, op)
		}
	}
	slices.SortFunc(acks, func(a, b check.SeqCreate) int { return cmp.Compare(a.Zxid, b.Zxid) })
	// firstAfter[i] is the earliest return among acks[i:].
	firstAfter := make([]time.Duration, len(acks)+1)
	firstAfter[len(acks)] = math.MaxInt64
	for i := len(acks) - 1; i >= 0; i-- {
		firstAfter[i] = min(firstAfter[i+1], acks[i].Return)
	}
	out := make(map[string]time.Duration, len(idle))
	for _, n := range idle {
		seen, ok := rec.deleted[n.Path]
		if !ok {
			continue
		}
		z := rec.deletedZxid[n.Path]
		i, _ := slices.BinarySearchFunc(acks, z+1, func(a check.SeqCreate, t uint64) int { return cmp.Compare(a.Zxid, t) })
		out[n.Path] = min(seen, firstAfter[i])
	}
	return out
}
