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
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/paddock/paddock/client"
	"github.com/paddock/paddock/e2e/robust/check"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// The web session workload's shape.
const (
	// webSessions is how many sessions the page views spread over, and
	// webWorkers how many page views run at once.
	webSessions = 3
	webWorkers  = 4
	// webWait is how long a read waits for a held lock before it gives
	// up (ABORTED).
	webWait = 2 * time.Second
	// webReadMargin is a read attempt's time beyond the wait it asks the
	// node for: a round trip, forwarding included. An attempt not
	// answered by then (webReadAttemptTimeout: the answer lost, or the
	// node stopped) has an unknown outcome: it may have been granted the
	// lock.
	webReadMargin         = 500 * time.Millisecond
	webReadAttemptTimeout = webWait + webReadMargin
	// webReadTimeout bounds a read, all its attempts: one whose answer
	// was lost and a second, on the next node with the same request id,
	// with its full wait. An attempt asks the node to wait only for what
	// is left of it (as the PHP client does), and none is sent with no
	// more than webReadMargin left.
	webReadTimeout = webReadAttemptTimeout + webWait + webReadMargin
	// webLockTTL is the lease of a page view's lock (a killed request
	// frees it after that). It outlasts an attempt whose answer was lost,
	// by enough for the read sent again, which gets the same lock back,
	// and the write: a lease granted at once to the lost attempt has 1.5 s
	// left when it times out.
	webLockTTL = webReadAttemptTimeout + 1500*time.Millisecond
	// webWriteTimeout bounds one attempt of a write; attempts, on one
	// node after another with the same request id, 200 ms apart, are made
	// for webWriteBudget (a leader election and the new leader's grace
	// period) before its outcome is recorded as unknown.
	webWriteTimeout = 1500 * time.Millisecond
	webWriteBudget  = 5 * time.Second
	// webFinalTimeout bounds the final reads, once the cluster has healed.
	webFinalTimeout = 30 * time.Second
)

// webSessionRun says whether the seed's run has the web session
// workload: the seeds electionRun leaves out (9-16 of every 16), so that
// the heavier election and this share no run. In CI's runs, where seed
// i injects fault kind i mod 8, that is seeds 9-16 (every kind once),
// and of the regression seeds 2029 and 8060: 10 of 25 runs.
// PADDOCK_ROBUST_WEBSESSION=1 or 0 puts it in every run or none.
func webSessionRun(seed int64) bool {
	if s := os.Getenv("PADDOCK_ROBUST_WEBSESSION"); s != "" {
		return s == "1"
	}
	m := seed % 16
	return m == 0 || m >= 9
}

// webLoad is the web session workload: a few sessions made with
// CreateWebSession, and workers making page views on them through the
// WebSessionService, each a read with the lock on a node drawn at
// random, then a write of the counter it read plus one with the version
// and token read (data is a decimal counter, "" for 0). Each call has
// its own request id, the same on each of its attempts, as the clients
// do: a read goes to the next node while one cannot serve it (down, no
// leader) or its attempt's outcome is unknown (a retry of a read granted
// the lock gets it back at once), a write whose outcome is unknown is
// sent again to the next node, a few times. It records what
// check.WebSessions needs.
type webLoad struct {
	rec   *recorder
	dir   string
	names []string
	// conns are the workload's own connections, one per node: a call
	// goes to the node the workload chose, with no failover.
	conns []*grpc.ClientConn

	mu       sync.Mutex
	sessions []string
	views    []check.PageView
	final    []check.WebSessionFinal
	errs     []string // what no web session call should ever do

	wg       sync.WaitGroup
	quit     chan struct{} // closed by halt: the workers end
	haltOnce sync.Once
	stopOnce sync.Once
}

func newWebLoad(rec *recorder, endpoints []string, dir string) (*webLoad, error) {
	wl := &webLoad{rec: rec, dir: dir, quit: make(chan struct{})}
	for i, ep := range endpoints {
		conn, err := grpc.NewClient(ep,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
				MinConnectTimeout: time.Second,
			}))
		if err != nil {
			wl.close()
			return nil, fmt.Errorf("robust: web session client for %s: %w", ep, err)
		}
		wl.conns = append(wl.conns, conn)
		wl.names = append(wl.names, fmt.Sprintf("n%d", i+1))
	}
	return wl, nil
}

func (wl *webLoad) close() {
	for _, c := range wl.conns {
		c.Close()
	}
}

func (wl *webLoad) service(node int) paddockv1.WebSessionServiceClient {
	return paddockv1.NewWebSessionServiceClient(wl.conns[node])
}

func (wl *webLoad) fail(format string, args ...any) {
	wl.mu.Lock()
	wl.errs = append(wl.errs, fmt.Sprintf(format, args...))
	wl.mu.Unlock()
}

// webRetryable says whether a call's outcome is unknown and worth sending
// again elsewhere: its node did not answer in time or could not serve it.
func webRetryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return false
}

// start creates the sessions (before any fault) and starts the workers,
// which make page views until settle (or stop).
func (wl *webLoad) start(ctx context.Context, seed int64) error {
	for i := range webSessions {
		id, err := wl.create(ctx, i%len(wl.conns))
		if err != nil {
			return err
		}
		wl.sessions = append(wl.sessions, id)
	}
	for i := range webWorkers {
		rng := rand.New(rand.NewPCG(uint64(seed), uint64(0x3e50+i)))
		wl.wg.Go(func() { wl.worker(ctx, i, rng) })
	}
	return nil
}

// create makes a session, sending CreateWebSession again with the same
// request id while its outcome is unknown.
func (wl *webLoad) create(ctx context.Context, node int) (string, error) {
	rctx := client.WithRequestID(ctx, client.NewRequestID())
	var err error
	for attempt := range 10 {
		cctx, cancel := context.WithTimeout(rctx, 2*time.Second)
		var r *paddockv1.CreateWebSessionResponse
		r, err = wl.service((node+attempt)%len(wl.conns)).CreateWebSession(cctx, &paddockv1.CreateWebSessionRequest{})
		cancel()
		if err == nil {
			if r.GetVersion() != 1 {
				wl.fail("CreateWebSession returned version %d, want 1", r.GetVersion())
			}
			return r.GetId(), nil
		}
		if !webRetryable(err) || !sleep(ctx, 200*time.Millisecond) {
			break
		}
	}
	return "", fmt.Errorf("robust: create a web session: %w", err)
}

// worker makes page views until halt, 30-90 ms apart: about 15 a second
// each at most, enough to contend for the locks without loading the
// machine much (4 workers make fewer calls than the register clients).
func (wl *webLoad) worker(ctx context.Context, worker int, rng *rand.Rand) {
	for !stopped(ctx, wl.quit) {
		wl.view(ctx, worker, rng)
		select {
		case <-wl.quit:
			return
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(30+rng.IntN(60)) * time.Millisecond):
		}
	}
}

// webDelayed says whether worker writes in the delayed mode (odd ones).
func webDelayed(worker int) bool { return worker%2 == 1 }

// view is one page view: read with the lock, write the counter plus one.
func (wl *webLoad) view(ctx context.Context, worker int, rng *rand.Rand) {
	s := wl.sessions[rng.IntN(len(wl.sessions))]
	node := rng.IntN(len(wl.conns))
	v := check.PageView{Session: s, Worker: worker, ReadCall: wl.rec.now()}
	r, node, err := wl.read(ctx, &v, node)
	v.ReadReturn = wl.rec.now()
	switch code := status.Code(err); {
	case err == nil:
		v.Read, v.ReadVersion, v.ReadData = check.WebOK, r.GetVersion(), string(r.GetData())
		if !r.GetFound() {
			wl.fail("%s: read of session %s at %v: not found", wl.names[node], s, v.ReadCall)
		}
	case code == codes.Aborted:
		v.Read = check.WebRefused
	default:
		if unexpected(err) {
			wl.fail("%s: read of session %s: %v", wl.names[node], s, err)
		}
		v.Read = check.WebUnknown
	}
	if v.Read != check.WebOK {
		wl.add(v)
		return
	}
	n, err := strconv.ParseUint(string(r.GetData()), 10, 64)
	if len(r.GetData()) == 0 {
		n, err = 0, nil
	}
	if err != nil {
		// The checker reports the data; nothing sensible to write.
		wl.release(ctx, s, r.GetToken(), node)
		wl.add(v)
		return
	}
	v.WriteData = strconv.FormatUint(n+1, 10)
	v.Write = check.WebUnknown
	v.WriteCall = wl.rec.now()
	wctx := client.WithRequestID(ctx, client.NewRequestID())
	req := &paddockv1.WriteWebSessionRequest{Id: s, Data: []byte(v.WriteData), Version: r.GetVersion(), Token: r.GetToken()}
	// Half the workers write in the delayed mode: answered once the
	// leader and its backups hold the write, committed after. The same
	// rules hold: an answered write is never lost by one fault.
	if webDelayed(worker) {
		req.Mode = paddockv1.WebSessionWriteMode_WEB_SESSION_WRITE_MODE_DELAYED
		v.Delayed = true
	}
	// The write goes to another node than the read half of the time.
	wnode := (node + rng.IntN(2)) % len(wl.conns)
	giveUp := time.Now().Add(webWriteBudget)
	for attempt := 0; ; attempt++ {
		at := (wnode + attempt) % len(wl.conns)
		v.WriteNodes = append(v.WriteNodes, wl.names[at])
		cctx, cancel := context.WithTimeout(wctx, webWriteTimeout)
		w, err := wl.service(at).WriteWebSession(cctx, req)
		cancel()
		if err == nil {
			v.Write, v.WriteVersion = check.WebOK, w.GetVersion()
			break
		}
		v.WriteErr = err.Error()
		if status.Code(err) == codes.FailedPrecondition {
			v.Write = check.WebRefused
			break
		}
		if unexpected(err) {
			wl.fail("%s: write of session %s: %v", wl.names[at], s, err)
		}
		if !webRetryable(err) || time.Now().After(giveUp) || !sleep(ctx, 200*time.Millisecond) {
			break
		}
	}
	v.WriteReturn = wl.rec.now()
	if v.Write != check.WebOK {
		// A refused write may leave the lock held, an unknown one surely
		// does if it never arrived: let it go rather than wait out its
		// lease.
		wl.release(ctx, s, r.GetToken(), wnode)
	}
	wl.add(v)
}

// read is a page view's read of session v.Session with the lock, first
// on node, within webReadTimeout: it returns the answer and the node
// that gave it (or the last one tried), and fills v's read attempts. A
// node that cannot serve the read at once (down, no leader: Unavailable)
// is left for the next one, as the clients do; so is one that did not
// answer in time, whose attempt may have been granted the lock: the
// attempts carry one request id, and an attempt of the read the lock was
// granted to gets the same lock back instead of waiting behind it.
func (wl *webLoad) read(ctx context.Context, v *check.PageView, node int) (*paddockv1.ReadWebSessionResponse, int, error) {
	rctx, cancel := context.WithTimeout(client.WithRequestID(ctx, client.NewRequestID()), webReadTimeout)
	defer cancel()
	deadline, _ := rctx.Deadline()
	var r *paddockv1.ReadWebSessionResponse
	var err error
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			node = (node + 1) % len(wl.conns)
		}
		left := time.Until(deadline)
		if attempt > 0 && left <= webReadMargin {
			return nil, node, err
		}
		// The node waits only for what is left of the read's time: the
		// attempt then ends by the read's deadline.
		wait := min(webWait, left-webReadMargin).Milliseconds()
		v.ReadNodes = append(v.ReadNodes, wl.names[node])
		v.ReadSent = wl.rec.now()
		actx, acancel := context.WithTimeout(rctx, webReadAttemptTimeout)
		r, err = wl.service(node).ReadWebSession(actx, &paddockv1.ReadWebSessionRequest{
			Id: v.Session, Lock: true, LockTtlMs: webLockTTL.Milliseconds(), WaitMs: max(wait, 1),
		})
		acancel()
		if err == nil {
			return r, node, nil
		}
		v.ReadErr = err.Error()
		if status.Code(err) == codes.DeadlineExceeded {
			v.ReadTimeouts++
		}
		switch {
		case ctx.Err() != nil:
			return nil, node, err
		case status.Code(err) == codes.Unavailable:
			// Down or without a leader: a pause before the next.
			if !sleep(rctx, 100*time.Millisecond) {
				return nil, node, err
			}
		case !webRetryable(err):
			return nil, node, err
		}
	}
}

// release gives up a lock, once, whatever the outcome.
func (wl *webLoad) release(ctx context.Context, s string, token uint64, node int) {
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	_, err := wl.service(node).ReleaseWebSession(cctx, &paddockv1.ReleaseWebSessionRequest{Id: s, Token: token})
	cancel()
	if unexpected(err) {
		wl.fail("%s: release of session %s: %v", wl.names[node], s, err)
	}
}

func (wl *webLoad) add(v check.PageView) {
	wl.mu.Lock()
	wl.views = append(wl.views, v)
	wl.mu.Unlock()
}

// settle stops the workers, waits for them, and reads every session
// without the lock, from the leader first, until the cluster answers.
func (wl *webLoad) settle(ctx context.Context, c *Cluster) error {
	wl.halt()
	wl.wg.Wait()
	deadline := time.Now().Add(webFinalTimeout)
	for _, s := range wl.sessions {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		node, err := c.Leader(lctx)
		cancel()
		if err != nil {
			node = 0
		}
		for attempt := 0; ; attempt++ {
			at := wl.rec.now()
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			r, err := wl.service((node+attempt)%len(wl.conns)).ReadWebSession(rctx, &paddockv1.ReadWebSessionRequest{Id: s})
			cancel()
			if err == nil {
				wl.mu.Lock()
				wl.final = append(wl.final, check.WebSessionFinal{Session: s, Found: r.GetFound(), Version: r.GetVersion(), Data: string(r.GetData()), At: at})
				wl.mu.Unlock()
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("robust: final read of web session %s: %w", s, err)
			}
			if !sleep(ctx, 200*time.Millisecond) {
				return ctx.Err()
			}
		}
	}
	return nil
}

// halt tells the workers to stop after their page view.
func (wl *webLoad) halt() { wl.haltOnce.Do(func() { close(wl.quit) }) }

// stop ends the workers, waits for them and closes the connections.
func (wl *webLoad) stop() {
	wl.stopOnce.Do(func() {
		wl.halt()
		wl.wg.Wait()
		wl.close()
	})
}

// history is what the workload recorded (call it after settle), and the
// errors no call should have had.
func (wl *webLoad) history() (check.WebSessionHistory, []string) {
	wl.mu.Lock()
	defer wl.mu.Unlock()
	h := check.WebSessionHistory{Sessions: slices.Clone(wl.sessions), Views: slices.Clone(wl.views), Final: slices.Clone(wl.final)}
	if b, err := json.MarshalIndent(h, "", "  "); err == nil {
		// For a look at a failed run (PADDOCK_ROBUST_KEEP).
		os.WriteFile(filepath.Join(wl.dir, "websession-history.json"), b, 0o644)
	}
	return h, slices.Clone(wl.errs)
}

// judgeWebSessions runs the web session checker and fills the report's
// figures.
func judgeWebSessions(rep *Report, h check.WebSessionHistory, errs []string) []check.Violation {
	var vs []check.Violation
	for _, e := range errs {
		vs = append(vs, check.Violation{Check: "websession", Detail: e})
	}
	vs = append(vs, check.WebSessions(h)...)
	rep.WebSession = true
	rep.WebSessionViews = len(h.Views)
	for _, v := range h.Views {
		switch v.Read {
		case check.WebRefused:
			rep.WebSessionLocked++
		case check.WebUnknown:
			rep.WebSessionReadUnknown++
		}
		if len(v.ReadNodes) > 1 {
			rep.WebSessionReadRetried++
			if v.ReadTimeouts > 0 {
				rep.WebSessionReadLost++
			}
			if v.Write == check.WebOK {
				rep.WebSessionReadRetriedWrote++
			}
		}
		switch v.Write {
		case check.WebOK:
			rep.WebSessionWrites++
			if v.Delayed {
				rep.WebSessionDelayed++
			}
			if len(v.WriteNodes) > 1 {
				rep.WebSessionRetried++
			}
		case check.WebRefused:
			rep.WebSessionRefused++
		case check.WebUnknown:
			rep.WebSessionUnknown++
		}
	}
	for _, f := range h.Final {
		if f.Version > 0 {
			rep.WebSessionApplied += int(f.Version - 1)
		}
	}
	rep.WebSessionViolations = len(vs)
	return vs
}
