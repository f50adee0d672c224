package robust

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock/paddock/client"
	"github.com/paddock/paddock/e2e/robust/check"
	"github.com/paddock/paddock/fsm"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// The election workload's election and its fenced znodes.
const (
	electName = "robust"
	// electPath holds the fenced creates: sequential znodes named
	// CONTENDER-tTOKEN-SEQ, so the final listing tells each one's token.
	electPath = "/elect"
	// electContenders is how many contenders campaign at once.
	electContenders = 3
	// electWait is a campaign's timeout_ms: a contender not elected by
	// then campaigns again.
	electWait = time.Second
	// electMaxKills bounds the leading contenders killed (or paused) in one
	// run.
	electMaxKills = 2
)

// electDir is the election's line.
var electDir = fsm.ElectionsPath + "/" + electName

// electionRun says whether the seed's run has the election workload:
// seeds 1-8 of every 16. In CI's runs, where seed i injects fault kind i
// mod 8, that is seeds 1-8 (every kind once) and 17-20, and of the
// regression seeds 1009, 2120 and 5012: 15 of 25 runs.
// PADDOCK_ROBUST_ELECTION=1 or 0 puts it in every run or none.
func electionRun(seed int64) bool {
	if s := os.Getenv("PADDOCK_ROBUST_ELECTION"); s != "" {
		return s == "1"
	}
	return seed%16 >= 1 && seed%16 <= 8
}

// electLoad is the election workload: contenders (each with its own
// client and 2 s sessions, no lock-delay) campaign on one election
// through the Go client and, while they believe they lead, create
// znodes fenced with their token; a leader now and then resigns, is
// killed (its client closed, its session left to expire; a paused one
// writes once more with its old token later) or goes on.
// An observer reads the leader. It records what check.Election needs.
type electLoad struct {
	rec       *recorder
	endpoints []string
	dir       string

	mu        sync.Mutex
	campaigns []check.Campaign
	writes    []check.FencedWrite
	reads     []check.LeaderRead
	events    []check.ElectionEvent
	kills     int
	errs      []string
	end       time.Duration

	stopping chan struct{}
	haltOnce sync.Once
	wg       sync.WaitGroup
}

func newElectLoad(rec *recorder, endpoints []string, dir string) *electLoad {
	return &electLoad{rec: rec, endpoints: endpoints, dir: dir, stopping: make(chan struct{})}
}

func (el *electLoad) fail(format string, args ...any) {
	el.mu.Lock()
	el.errs = append(el.errs, fmt.Sprintf(format, args...))
	el.mu.Unlock()
}

func (el *electLoad) event(what string) {
	el.mu.Lock()
	el.events = append(el.events, check.ElectionEvent{At: el.rec.now(), What: what})
	el.mu.Unlock()
}

// start creates electPath and starts the contenders and the observer,
// which run until stop.
func (el *electLoad) start(ctx context.Context, seed int64) error {
	cl, err := newClient(ctx, el.endpoints, 0)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = cl.Create(cctx, &paddockv1.CreateRequest{Path: electPath})
	cancel()
	cl.Close()
	if err != nil {
		return fmt.Errorf("robust: create %s: %w", electPath, err)
	}
	for i := range electContenders {
		rng := rand.New(rand.NewPCG(uint64(seed), uint64(0xe1e0+i)))
		el.wg.Go(func() { el.contender(ctx, i, rng) })
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0xe1ef))
	el.wg.Go(func() { el.observer(ctx, rng) })
	return nil
}

func (el *electLoad) stopped(ctx context.Context) bool { return stopped(ctx, el.stopping) }

// contender runs one contender's incarnations until stop: each has its
// own client and sessions; a killed one is followed by a new one. A
// paused one (killed, but it comes back believing it still leads, as a
// process stopped with SIGSTOP would) first makes one more fenced write
// with its old token, 2.5-4 s later: past its session's timeout, so
// unless a fault kept the session alive, the fence must be lost.
func (el *electLoad) contender(ctx context.Context, i int, rng *rand.Rand) {
	name := fmt.Sprintf("c%d", i)
	var ghost uint64 // a paused incarnation's token
	for gen := 0; !el.stopped(ctx); gen++ {
		cl, err := newClient(ctx, el.endpoints, i+gen)
		if err != nil {
			el.fail("%s: client: %v", name, err)
			return
		}
		if ghost != 0 {
			el.fencedWrite(ctx, cl, name, ghost)
			ghost = 0
		}
		if killed := el.incarnation(ctx, cl, name, rng, &ghost); !killed {
			cl.Close()
			return
		}
		// Killed: its client is closed. The next one starts a little
		// later, or after the pause.
		pause := ms(rng, 100, 400)
		if ghost != 0 {
			pause = ms(rng, 2500, 4000)
		}
		select {
		case <-el.stopping:
			return
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
	}
}

// incarnation campaigns with one client until stop (false) or until it
// is killed (true), opening a new session whenever its session expires.
func (el *electLoad) incarnation(ctx context.Context, cl *client.Client, name string, rng *rand.Rand, ghost *uint64) (wasKilled bool) {
	for !el.stopped(ctx) {
		octx, cancel := context.WithTimeout(ctx, opTimeout)
		sess, err := cl.NewSession(octx, sessionTimeout)
		cancel()
		if err != nil {
			if unexpected(err) {
				el.fail("%s: open session: %v", name, err)
			}
			sleep(ctx, 200*time.Millisecond)
			continue
		}
		switch el.campaign(ctx, cl, sess, name, rng, ghost) {
		case killed:
			return true
		case stoppedNow:
			cctx, cancel := context.WithTimeout(ctx, opTimeout)
			sess.Close(cctx)
			cancel()
			return false
		}
		// The session expired: a new one.
		cctx, cancel := context.WithTimeout(ctx, opTimeout)
		sess.Close(cctx)
		cancel()
	}
	return false
}

// How a contender's turn ended.
type turnEnd int

const (
	lost       turnEnd = iota + 1 // the fence was lost: campaign again
	expired                       // the session is gone: a new one
	resigned                      // it resigned: campaign again
	killed                        // its client was closed while it led
	stoppedNow                    // the workload stopped
)

// campaign campaigns with sess until the session is gone, the contender
// is killed or the workload stops.
func (el *electLoad) campaign(ctx context.Context, cl *client.Client, sess *client.Session, name string, rng *rand.Rand, ghost *uint64) turnEnd {
	for {
		if el.stopped(ctx) {
			return stoppedNow
		}
		select {
		case <-sess.Done():
			return expired
		default:
		}
		c := check.Campaign{Contender: name, Session: sess.ID(), Call: el.rec.now()}
		cctx, cancel := context.WithTimeout(ctx, electWait+opTimeout)
		r, err := cl.Campaign(cctx, &paddockv1.CampaignRequest{Name: electName, Value: []byte(name), SessionId: sess.ID(), TimeoutMs: electWait.Milliseconds()})
		cancel()
		c.Return = el.rec.now()
		if ctx.Err() != nil {
			return stoppedNow
		}
		if err == nil {
			c.Answered, c.Elected = true, r.GetElected()
			c.Key, c.Token, c.Zxid = r.GetCandidate().GetKey(), r.GetCandidate().GetToken(), r.GetHeader().GetZxid()
		}
		el.mu.Lock()
		el.campaigns = append(el.campaigns, c)
		el.mu.Unlock()
		switch {
		case err != nil && unexpected(err):
			el.fail("%s: campaign: %v", name, err)
			sleep(ctx, 200*time.Millisecond)
			continue
		case status.Code(err) == codes.FailedPrecondition && strings.Contains(err.Error(), "session expired"):
			return expired
		case err != nil:
			// Unknown or not held: campaign again (idempotent).
			sleep(ctx, 50*time.Millisecond)
			continue
		case !c.Elected:
			continue
		}
		switch end := el.lead(ctx, cl, sess, name, c.Token, rng, ghost); end {
		case lost:
		case resigned:
			// Let another lead for a while.
			select {
			case <-el.stopping:
			case <-ctx.Done():
			case <-time.After(ms(rng, 200, 600)):
			}
		default:
			return end
		}
	}
}

// fencedWrite makes one fenced create with token and records it (not
// when ctx has ended: the run is over).
func (el *electLoad) fencedWrite(ctx context.Context, cl *client.Client, name string, token uint64) check.FencedWrite {
	w := check.FencedWrite{Contender: name, Token: token, Path: fmt.Sprintf("%s/%s-t%d-", electPath, name, token), Call: el.rec.now()}
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	r, err := cl.Create(cctx, &paddockv1.CreateRequest{
		Path: w.Path, Sequential: true,
		Fence: &paddockv1.Fence{Name: "elections/" + electName, Token: token},
	})
	cancel()
	w.Return = el.rec.now()
	if ctx.Err() != nil {
		return w
	}
	switch {
	case err == nil:
		w.Outcome, w.Path, w.Zxid = check.FenceOK, r.GetPath(), r.GetStat().GetCzxid()
	case status.Code(err) == codes.FailedPrecondition && strings.Contains(err.Error(), "fence lost"):
		w.Outcome = check.FenceLost
	case outcome(err) == check.Unknown:
		w.Outcome = check.FenceUnknown
	default:
		w.Outcome = check.FenceFailed
		if unexpected(err) {
			el.fail("%s: fenced create: %v", name, err)
		}
	}
	el.mu.Lock()
	el.writes = append(el.writes, w)
	el.mu.Unlock()
	return w
}

// lead makes fenced creates with token, at once and then every 100-250
// ms, until the fence is lost or the session is gone; after a tenure of
// 0.8-2.5 s it resigns, is killed or paused (its token left in ghost), or
// goes on.
func (el *electLoad) lead(ctx context.Context, cl *client.Client, sess *client.Session, name string, token uint64, rng *rand.Rand, ghost *uint64) turnEnd {
	tenure := time.After(ms(rng, 800, 2500))
	for {
		w := el.fencedWrite(ctx, cl, name, token)
		if ctx.Err() != nil {
			return stoppedNow
		}
		if w.Outcome == check.FenceLost || w.Outcome == check.FenceFailed {
			return lost
		}
		select {
		case <-el.stopping:
			return stoppedNow
		case <-ctx.Done():
			return stoppedNow
		case <-sess.Done():
			return expired
		case <-tenure:
			el.mu.Lock()
			kill := el.kills < electMaxKills && rng.IntN(3) == 0
			if kill {
				el.kills++
			}
			el.mu.Unlock()
			switch {
			case kill:
				// As kill -9 (or SIGSTOP) would: keepalives stop, nothing
				// is closed.
				what := "killed"
				if rng.IntN(2) == 0 {
					what, *ghost = "paused", token
				}
				el.event(fmt.Sprintf("%s %s leading with token %d", name, what, token))
				cl.Close()
				return killed
			case rng.IntN(2) == 0:
				cctx, cancel := context.WithTimeout(ctx, opTimeout)
				_, err := cl.Resign(cctx, &paddockv1.ResignRequest{Name: electName, Token: token})
				cancel()
				if err == nil {
					el.event(fmt.Sprintf("%s resigned token %d", name, token))
					return resigned
				}
				if unexpected(err) {
					el.fail("%s: resign: %v", name, err)
				}
				return lost // not held any more, or unknown: campaign again
			}
			tenure = time.After(ms(rng, 800, 2500))
		case <-time.After(ms(rng, 100, 250)):
		}
	}
}

// observer reads the leader every 100-300 ms until stop.
func (el *electLoad) observer(ctx context.Context, rng *rand.Rand) {
	cl, err := newClient(ctx, el.endpoints, rng.IntN(len(el.endpoints)))
	if err != nil {
		el.fail("observer: client: %v", err)
		return
	}
	defer cl.Close()
	for !el.stopped(ctx) {
		rd := check.LeaderRead{Call: el.rec.now()}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		r, err := cl.Leader(cctx, &paddockv1.LeaderRequest{Name: electName})
		cancel()
		rd.Return = el.rec.now()
		switch {
		case err == nil:
			rd.Zxid, rd.Token = r.GetHeader().GetZxid(), r.GetLeader().GetToken()
			el.mu.Lock()
			el.reads = append(el.reads, rd)
			el.mu.Unlock()
		case unexpected(err):
			el.fail("observer: leader: %v", err)
		}
		select {
		case <-el.stopping:
		case <-ctx.Done():
		case <-time.After(ms(rng, 100, 300)):
		}
	}
}

// stop lets a contender lead once more after the last event or fault
// (faults, the run's; at most until the bound of check.Election), then
// stops the contenders, which close their sessions.
func (el *electLoad) stop(ctx context.Context, faults []check.Span) {
	el.mu.Lock()
	last := time.Duration(0)
	for _, e := range el.events {
		last = max(last, e.At)
	}
	el.mu.Unlock()
	for _, f := range faults {
		last = max(last, f.End)
	}
	deadline := last + electBound() + 2*time.Second
	for el.rec.now() < deadline && !el.ledSince(last) && sleep(ctx, 50*time.Millisecond) {
	}
	el.halt()
}

// awaitGone waits (10 s at most) until the election's line has left
// the tree: the sessions of killed contenders expired, and the leader
// deleted the emptied line, so the final listing is not taken while
// they go.
func (el *electLoad) awaitGone(ctx context.Context) {
	cl, err := newClient(ctx, el.endpoints, 0)
	if err != nil {
		return
	}
	defer cl.Close()
	until := time.Now().Add(10 * time.Second)
	for time.Now().Before(until) {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := cl.Get(cctx, &paddockv1.GetRequest{Path: electDir})
		cancel()
		if client.IsNotFound(err) || !sleep(ctx, 100*time.Millisecond) {
			return
		}
	}
}

// halt stops the contenders and the observer and waits for them; the
// contenders close their sessions (a killed one's is left to expire).
func (el *electLoad) halt() {
	el.haltOnce.Do(func() {
		close(el.stopping)
		el.wg.Wait()
		el.mu.Lock()
		el.end = el.rec.now()
		el.mu.Unlock()
	})
}

// electBound is check.Election's bound for a new leader with the
// workload's sessions: session timeout + election timeout + lag + 1 s.
func electBound() time.Duration { return sessionTimeout + electionTimeout + electLag + time.Second }

// electLag is check.ElectionHistory.Lag: a contender in line learns
// that it leads when its waiting campaign is woken, or at the latest
// when the campaign's wait ends and it campaigns again.
const electLag = electWait

// ledSince reports whether a contender was elected or made a fenced
// write, sent at or after at, that has been answered.
func (el *electLoad) ledSince(at time.Duration) bool {
	el.mu.Lock()
	defer el.mu.Unlock()
	for _, w := range slices.Backward(el.writes) {
		if w.Call < at {
			break
		}
		if w.Outcome == check.FenceOK {
			return true
		}
	}
	for _, c := range slices.Backward(el.campaigns) {
		if c.Call < at {
			break
		}
		if c.Elected {
			return true
		}
	}
	return false
}

// history is what the workload recorded, for check.Election, with the
// fenced creates in electPath up to the final listing's zxid (a create
// whose outcome was unknown may apply later; it is not judged), the
// candidates from the watch streams (cut at that zxid) and the final
// tree, and the faults.
func (el *electLoad) history(ctx context.Context, streams []check.WatchStream, fin *finalState, faults []check.Span) (check.ElectionHistory, []string, error) {
	cl, err := newClient(ctx, el.endpoints, 0)
	if err != nil {
		return check.ElectionHistory{}, nil, err
	}
	defer cl.Close()
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	r, err := cl.ListAll(lctx, &paddockv1.ListRequest{Path: electPath})
	cancel()
	if err != nil {
		return check.ElectionHistory{}, nil, fmt.Errorf("robust: list %s: %w", electPath, err)
	}
	el.mu.Lock()
	defer el.mu.Unlock()
	h := check.ElectionHistory{
		Name: electName, Campaigns: slices.Clone(el.campaigns), Writes: slices.Clone(el.writes),
		Reads: slices.Clone(el.reads), Events: slices.Clone(el.events), Faults: faults,
		SessionTimeout: sessionTimeout, Lag: electLag, End: el.end,
	}
	errs := slices.Clone(el.errs)
	for _, ch := range r.GetChildren() {
		// CONTENDER-tTOKEN-SEQ
		parts := strings.Split(ch.GetName(), "-")
		var token uint64
		if len(parts) == 3 && strings.HasPrefix(parts[1], "t") {
			token, err = strconv.ParseUint(parts[1][1:], 10, 64)
		}
		if token == 0 || err != nil {
			errs = append(errs, fmt.Sprintf("%s/%s: not a fenced create's name", electPath, ch.GetName()))
			continue
		}
		if ch.GetStat().GetCzxid() > fin.zxid {
			continue
		}
		h.Applied = append(h.Applied, check.AppliedWrite{Path: electPath + "/" + ch.GetName(), Token: token, Zxid: ch.GetStat().GetCzxid()})
	}
	h.Candidates = check.ElectionCandidates(streams, electDir, h.Campaigns, fin.tree)
	if b, err := json.MarshalIndent(h, "", "  "); err == nil {
		// For a look at a failed run (PADDOCK_ROBUST_KEEP).
		os.WriteFile(filepath.Join(el.dir, "election.json"), b, 0o644)
	}
	return h, errs, nil
}
