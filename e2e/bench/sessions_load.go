package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"
)

// The load generator of `bench sessions`: users with one session each,
// their cookie kept as a browser keeps it, and bursts on one session.

// sessionCookie is PHP's default session cookie.
const sessionCookie = "PHPSESSID"

// web sends page views to the web servers.
type web struct {
	hc      *http.Client
	servers []string // host:port
}

func newWeb(servers []string, timeout time.Duration) *web {
	return &web{
		hc: &http.Client{Timeout: timeout, Transport: &http.Transport{
			Proxy: nil, MaxIdleConns: 1024, MaxIdleConnsPerHost: 512,
		}},
		servers: servers,
	}
}

// view is one page view's answer.
type view struct {
	n      int    // the count the page printed, -1 if none
	sid    string // the session cookie the answer set, if any
	status int
	err    error // transport error or a body without a count
	took   time.Duration
	end    time.Time
}

func (v view) ok() bool { return v.err == nil && v.status == http.StatusOK }

var countLine = regexp.MustCompile(`(?m)^n=(\d+)$`)

// get requests the page on server i with session sid ("" for none); op
// is "inc" or "peek".
func (w *web) get(ctx context.Context, i int, op, sid string) view {
	start := time.Now()
	v := view{n: -1}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+w.servers[i%len(w.servers)]+"/?op="+op, nil)
	if err != nil {
		v.err = err
		return v
	}
	if sid != "" {
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: sid})
	}
	resp, err := w.hc.Do(req)
	if err != nil {
		v.err, v.end = err, time.Now()
		v.took = v.end.Sub(start)
		return v
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	v.end = time.Now()
	v.took, v.status, v.err = v.end.Sub(start), resp.StatusCode, err
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			v.sid = c.Value
		}
	}
	if m := countLine.FindSubmatch(body); m != nil {
		v.n, _ = strconv.Atoi(string(m[1]))
	} else if v.err == nil && v.status == http.StatusOK {
		v.err = fmt.Errorf("no count in %q", body)
	}
	return v
}

// user is one visitor: its session cookie and the last count it was shown.
type user struct {
	id   int
	sid  string
	last int
	// wentBack: an answer showed a count at or below one shown before;
	// renewed: the site set a new session cookie after the first.
	wentBack, renewed bool
	// skipped counts answers whose count jumped (an increment whose
	// answer was lost: a failed request that was stored after all).
	skipped int
}

// see applies a successful answer to u and reports whether its count was
// the next one.
func (u *user) see(v view) bool {
	if v.sid != "" && v.sid != u.sid {
		if u.sid != "" {
			u.renewed = true
		}
		u.sid = v.sid
	}
	next := v.n == u.last+1
	switch {
	case v.n <= u.last:
		u.wentBack = true
	case !next:
		u.skipped++
	}
	u.last = v.n
	return next
}

// lost reports whether u's session was lost: its count went back, it got
// a new session, or its count now (final, read after the run) is below
// the last one it was shown.
func (u *user) lost(final int) bool { return u.wentBack || u.renewed || final < u.last }

// newUsers makes n users and gives each its session with a first page
// view (not measured), on the servers in turn.
func newUsers(ctx context.Context, w *web, n int) ([]*user, error) {
	us := make([]*user, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			u := &user{id: i}
			us[i] = u
			v := w.get(ctx, i, "inc", "")
			if !v.ok() || v.sid == "" || v.n != 1 {
				errs[i] = fmt.Errorf("bench: first page view of user %d: HTTP %d, n=%d, cookie %q: %v", i, v.status, v.n, v.sid, v.err)
				return
			}
			u.see(v)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return us, nil
}

// loadStats is one run of users.
type loadStats struct {
	Views     int64         `json:"views"`  // answered 200 with the next count
	Failed    int64         `json:"failed"` // errors and non-200 answers
	Wrong     int64         `json:"wrong_counts"`
	PerSecond float64       `json:"views_per_second"`
	P50       time.Duration `json:"p50_ns"`
	P99       time.Duration `json:"p99_ns"`
	// LongestGap is the longest time in the run without a successful
	// page view (from the start, between two, or until the end).
	LongestGap time.Duration `json:"longest_gap_ns"`
	FirstError string        `json:"first_error,omitempty"`
}

// failPause is how long a user waits after a failed page view before the
// next.
const failPause = 100 * time.Millisecond

// runUsers has every user view the page in a loop for d, each request on
// the next server, and calls during (if any) in its own goroutine at the
// start.
func runUsers(ctx context.Context, w *web, us []*user, d time.Duration, during func()) loadStats {
	type rec struct {
		lat               []time.Duration
		ends              []time.Time
		views, failed, wr int64
		firstErr          string
	}
	recs := make([]*rec, len(us))
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for i, u := range us {
		r := &rec{}
		recs[i] = r
		wg.Go(func() {
			for k := 1; time.Now().Before(deadline) && ctx.Err() == nil; k++ {
				v := w.get(ctx, u.id+k, "inc", u.sid)
				r.lat = append(r.lat, v.took)
				if !v.ok() {
					r.failed++
					if r.firstErr == "" {
						r.firstErr = describe(v)
					}
					// A visitor whose page failed reloads it a
					// moment later, not at once.
					select {
					case <-time.After(failPause):
					case <-ctx.Done():
					}
					continue
				}
				r.ends = append(r.ends, v.end)
				if u.see(v) {
					r.views++
				} else {
					r.wr++
				}
			}
		})
	}
	if during != nil {
		wg.Go(during)
	}
	wg.Wait()
	end := time.Now()
	var st loadStats
	var lat []time.Duration
	ends := []time.Time{start, end}
	for _, r := range recs {
		st.Views += r.views
		st.Failed += r.failed
		st.Wrong += r.wr
		lat = append(lat, r.lat...)
		ends = append(ends, r.ends...)
		if st.FirstError == "" {
			st.FirstError = r.firstErr
		}
	}
	slices.Sort(lat)
	st.P50, st.P99 = quantile(lat, 0.50), quantile(lat, 0.99)
	st.PerSecond = float64(st.Views) / d.Seconds()
	slices.SortFunc(ends, func(a, b time.Time) int { return a.Compare(b) })
	for i := 1; i < len(ends); i++ {
		st.LongestGap = max(st.LongestGap, ends[i].Sub(ends[i-1]))
	}
	return st
}

// describe is a failed view, for the report's first error.
func describe(v view) string {
	if v.err != nil && v.status == 0 {
		return v.err.Error()
	}
	return fmt.Sprintf("HTTP %d", v.status)
}

// quantile is the q-quantile of sorted (nearest rank), 0 for none.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// burstStats are the rounds of one burst size.
type burstStats struct {
	Size   int `json:"size"`
	Rounds int `json:"rounds"`
	// Expected is the sum over rounds of 1 + the answers that said OK;
	// Final the sum of the counts read afterwards; Lost the acknowledged
	// increments missing from them.
	Expected int   `json:"expected"`
	Final    int   `json:"final"`
	Lost     int   `json:"lost"`
	Failed   int   `json:"failed"`
	Times    []int `json:"times_ms"`
	// Median is the median time of a round, from the requests' release
	// to the last answer.
	Median     time.Duration `json:"median_ns"`
	FirstError string        `json:"first_error,omitempty"`
}

// burst creates a session and sends size concurrent increments of it,
// spread over the servers, rounds times.
func burst(ctx context.Context, w *web, size, rounds int) (burstStats, error) {
	st := burstStats{Size: size, Rounds: rounds}
	var times []time.Duration
	for range rounds {
		first := w.get(ctx, 0, "inc", "")
		if !first.ok() || first.sid == "" || first.n != 1 {
			return st, fmt.Errorf("bench: new session for a burst: %s, n=%d, cookie %q", describe(first), first.n, first.sid)
		}
		views := make([]view, size)
		release := make(chan struct{})
		var wg sync.WaitGroup
		for i := range size {
			wg.Go(func() {
				<-release
				views[i] = w.get(ctx, i, "inc", first.sid)
			})
		}
		start := time.Now()
		close(release)
		wg.Wait()
		var last time.Time
		ok := 0
		for _, v := range views {
			last = later(last, v.end)
			if v.ok() {
				ok++
				continue
			}
			st.Failed++
			if st.FirstError == "" {
				st.FirstError = describe(v)
			}
		}
		times = append(times, last.Sub(start))
		peek := w.get(ctx, 0, "peek", first.sid)
		if !peek.ok() {
			return st, fmt.Errorf("bench: read the count after a burst: %s", describe(peek))
		}
		st.Expected += 1 + ok
		st.Final += peek.n
		st.Lost += max(0, 1+ok-peek.n)
	}
	slices.Sort(times)
	st.Median = times[len(times)/2]
	for _, t := range times {
		st.Times = append(st.Times, int(t.Milliseconds()))
	}
	return st, nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// killStats is the run during which a store node was killed.
type killStats struct {
	loadStats
	Users int `json:"users"`
	// Victim is what was killed; KilledAfter and RestartedAfter are
	// times from the run's start.
	Victim         string        `json:"victim"`
	KilledAfter    time.Duration `json:"killed_after_ns"`
	RestartedAfter time.Duration `json:"restarted_after_ns"`
	// SessionsLost are users whose session was lost (see user.lost);
	// Unread those whose session could not be read after the run.
	SessionsLost int    `json:"sessions_lost"`
	Unread       int    `json:"sessions_unread"`
	KillError    string `json:"kill_error,omitempty"`
}

// killRun has users view the page for d while the store's victim is
// killed with SIGKILL at d/3 and started again restart later, then reads
// every user's session.
func killRun(ctx context.Context, w *web, s *sessionStore, users int, d, restart time.Duration) (killStats, error) {
	ks := killStats{Users: users, Victim: s.what}
	us, err := newUsers(ctx, w, users)
	if err != nil {
		return ks, err
	}
	start := time.Now()
	var killErr error
	during := func() {
		select {
		case <-time.After(d / 3):
		case <-ctx.Done():
			return
		}
		node, err := s.victim(ctx)
		if err != nil {
			killErr = err
			return
		}
		if err := s.procs.Kill(node); err != nil {
			killErr = err
			return
		}
		ks.KilledAfter = time.Since(start)
		select {
		case <-time.After(restart):
		case <-ctx.Done():
			return
		}
		if err := s.procs.Start(node); err != nil {
			killErr = err
			return
		}
		ks.RestartedAfter = time.Since(start)
	}
	ks.loadStats = runUsers(ctx, w, us, d, during)
	if killErr != nil {
		ks.KillError = killErr.Error()
	}
	for _, u := range us {
		v := w.get(ctx, u.id, "peek", u.sid)
		if !v.ok() {
			ks.Unread++
			continue
		}
		if u.lost(v.n) {
			ks.SessionsLost++
		}
	}
	return ks, nil
}
