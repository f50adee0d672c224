package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// `bench sessions` puts PHP's web sessions in Paddock, Redis (phpredis,
// locking on and off) and memcached (php-memcached) in turn, behind the
// same page on the same php -S web servers, and measures page views per
// second, bursts on one session and a store process killed mid-run. See
// compare-sessions.sh, which installs the stores and builds paddock.

// sessionsConfig is the parsed command line of `bench sessions`.
type sessionsConfig struct {
	stores                 []string
	paddockBin, paddockPHP string
	agentArgs              []string
	php                    string
	duration, killDuration time.Duration
	restartAfter, timeout  time.Duration
	users, bursts          []int
	burstRounds, killUsers int
	workers, webServers    int
	dir, jsonPath, outPath string
}

func parseSessionsFlags(args []string, stderr io.Writer) (sessionsConfig, error) {
	var (
		cfg                 sessionsConfig
		stores, users, brst string
	)
	fs := flag.NewFlagSet("bench sessions", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: bench sessions [flags]\n\nflags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&stores, "stores", strings.Join(sessionStores, ","), "session stores, comma-separated")
	fs.StringVar(&cfg.paddockBin, "paddock-bin", "", "the paddock binary (required for the paddock store)")
	fs.StringVar(&cfg.paddockPHP, "paddock-php", "", "php/paddock-session.php of the repository (required for the paddock store)")
	fs.Func("agent-arg", "extra flag for every paddock agent, repeatable (e.g. --agent-arg=--pprof); the agents' HTTP addresses are in DIR/STORE/http-addrs", func(v string) error {
		cfg.agentArgs = append(cfg.agentArgs, v)
		return nil
	})
	fs.StringVar(&cfg.php, "php", "php", "the PHP CLI binary")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "measured time of each users row")
	fs.StringVar(&users, "users", "16,128", "concurrent users of the page-view rows (one session each), comma-separated")
	fs.StringVar(&brst, "bursts", "16,64", "sizes of the bursts of concurrent requests on one session, comma-separated")
	fs.IntVar(&cfg.burstRounds, "burst-rounds", 3, "bursts of each size (each on a new session)")
	fs.IntVar(&cfg.killUsers, "kill-users", 16, "users of the run during which a store process is killed")
	fs.DurationVar(&cfg.killDuration, "kill-duration", 10*time.Second, "length of that run (the kill comes at a third of it)")
	fs.DurationVar(&cfg.restartAfter, "restart-after", 2*time.Second, "time after the kill at which the killed process is started again")
	fs.DurationVar(&cfg.timeout, "timeout", time.Minute, "timeout of one page view")
	fs.IntVar(&cfg.workers, "workers", 8, "PHP_CLI_SERVER_WORKERS of each web server")
	fs.IntVar(&cfg.webServers, "web-servers", 3, "php -S web servers")
	fs.StringVar(&cfg.dir, "dir", "", "directory for the stores' data and every log (default a new temporary directory, removed at the end)")
	fs.StringVar(&cfg.jsonPath, "json", "sessions.json", "JSON results file (empty: none)")
	fs.StringVar(&cfg.outPath, "out", "", "also write the markdown tables to this file")
	if err := fs.Parse(args); err != nil {
		return cfg, fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() != 0 {
		return cfg, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	for _, s := range splitList(stores) {
		if !slices.Contains(sessionStores, s) {
			return cfg, fmt.Errorf("%w: unknown store %q (want some of %v)", errUsage, s, sessionStores)
		}
		if slices.Contains(cfg.stores, s) {
			return cfg, fmt.Errorf("%w: store %q named twice", errUsage, s)
		}
		cfg.stores = append(cfg.stores, s)
	}
	if len(cfg.stores) == 0 {
		return cfg, fmt.Errorf("%w: --stores is empty", errUsage)
	}
	if slices.ContainsFunc(cfg.stores, func(s string) bool { return strings.HasPrefix(s, storePaddock) }) && (cfg.paddockBin == "" || cfg.paddockPHP == "") {
		return cfg, fmt.Errorf("%w: --paddock-bin and --paddock-php are required for the paddock store", errUsage)
	}
	var err error
	if cfg.users, err = intList("users", users); err != nil {
		return cfg, err
	}
	if cfg.bursts, err = intList("bursts", brst); err != nil {
		return cfg, err
	}
	if cfg.burstRounds <= 0 || cfg.killUsers < 0 || cfg.workers <= 0 || cfg.webServers <= 0 {
		return cfg, fmt.Errorf("%w: --burst-rounds, --workers and --web-servers must be > 0, --kill-users >= 0", errUsage)
	}
	if cfg.duration <= 0 || cfg.killDuration <= 0 || cfg.timeout <= 0 || cfg.restartAfter < 0 {
		return cfg, fmt.Errorf("%w: --duration, --kill-duration and --timeout must be > 0", errUsage)
	}
	return cfg, nil
}

// sessionsMain runs `bench sessions` and returns the exit code: 0, 1 when
// a store failed (the others are still reported), 2 for a usage error.
func sessionsMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseSessionsFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	for _, p := range []*string{&cfg.paddockBin, &cfg.paddockPHP} {
		if *p != "" {
			if *p, err = filepath.Abs(*p); err != nil {
				fmt.Fprintln(stderr, err)
				return 2
			}
		}
	}
	if err := runSessions(ctx, cfg, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

// usersRow is one page-view row.
type usersRow struct {
	Users int `json:"users"`
	loadStats
	// AppliedPerView is the raft commands the leader applied per page
	// view (Paddock only).
	AppliedPerView float64 `json:"applied_commands_per_view,omitempty"`
	// CPU milliseconds per page view of the store's servers, the PHP web
	// servers (and their workers) and the load generator.
	StoreCPU  float64 `json:"store_cpu_ms_per_view"`
	WebCPU    float64 `json:"web_cpu_ms_per_view"`
	ClientCPU float64 `json:"client_cpu_ms_per_view"`
}

// storeResult is everything measured with one store.
type storeResult struct {
	Store  string       `json:"store"`
	Label  string       `json:"label"`
	Rows   []usersRow   `json:"users_rows"`
	Bursts []burstStats `json:"bursts"`
	Kill   *killStats   `json:"kill,omitempty"`
	Error  string       `json:"error,omitempty"`
}

// sessionsReport is the JSON file.
type sessionsReport struct {
	Date         time.Time     `json:"date"`
	Duration     time.Duration `json:"duration_ns"`
	KillDuration time.Duration `json:"kill_duration_ns"`
	RestartAfter time.Duration `json:"restart_after_ns"`
	WebServers   int           `json:"web_servers"`
	Workers      int           `json:"workers_per_server"`
	Stores       []storeResult `json:"stores"`
}

func runSessions(ctx context.Context, cfg sessionsConfig, stdout, stderr io.Writer) error {
	base := cfg.dir
	if base == "" {
		d, err := os.MkdirTemp("", "paddock-sessions-")
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		base = d
		defer os.RemoveAll(base)
	} else if err := os.MkdirAll(base, 0o755); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	docroot := filepath.Join(base, "docroot")
	if err := os.MkdirAll(docroot, 0o755); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if err := os.WriteFile(filepath.Join(docroot, "index.php"), []byte(sessionPage), 0o644); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	fmt.Fprintf(stderr, "data and logs under %s\n", base)
	rep := sessionsReport{Date: time.Now().UTC(), Duration: cfg.duration, KillDuration: cfg.killDuration,
		RestartAfter: cfg.restartAfter, WebServers: cfg.webServers, Workers: cfg.workers}
	var failed []error
	for _, key := range cfg.stores {
		if ctx.Err() != nil {
			failed = append(failed, ctx.Err())
			break
		}
		fmt.Fprintf(stderr, "== %s\n", storeLabels[key])
		r, err := runStore(ctx, cfg, key, docroot, filepath.Join(base, key), stderr)
		if err != nil {
			r.Error = err.Error()
			fmt.Fprintf(stderr, "%s: %v\n", key, err)
			failed = append(failed, fmt.Errorf("%s: %w", key, err))
		}
		rep.Stores = append(rep.Stores, r)
	}
	var table bytes.Buffer
	sessionsMarkdown(&table, cfg, rep.Stores)
	if _, err := stdout.Write(table.Bytes()); err != nil {
		return err
	}
	if cfg.outPath != "" {
		if err := os.WriteFile(cfg.outPath, table.Bytes(), 0o644); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	if cfg.jsonPath != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		if err := os.WriteFile(cfg.jsonPath, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	return errors.Join(failed...)
}

// runStore starts store key and its web servers, runs every row, and stops
// them all.
func runStore(ctx context.Context, cfg sessionsConfig, key, docroot, dir string, stderr io.Writer) (r storeResult, err error) {
	r = storeResult{Store: key, Label: storeLabels[key]}
	s, err := startStore(ctx, key, storeConfig{paddockBin: cfg.paddockBin, paddockPHP: cfg.paddockPHP, agentArgs: cfg.agentArgs}, dir)
	if err != nil {
		return r, fmt.Errorf("start: %w", err)
	}
	defer func() {
		if cerr := s.procs.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("stop: %w", cerr)
		}
	}()
	ws, err := startWebServers(ctx, cfg.php, docroot, dir, cfg.webServers, cfg.workers, s)
	if err != nil {
		return r, err
	}
	defer stopWebServers(ws)
	var addrs []string
	var pgids []int
	for _, w := range ws {
		addrs = append(addrs, w.addr)
		pgids = append(pgids, w.p.Pid())
	}
	w := newWeb(addrs, cfg.timeout)
	for _, n := range cfg.users {
		us, err := newUsers(ctx, w, n)
		if err != nil {
			return r, err
		}
		var before float64
		if s.applied != nil {
			if before, err = s.applied(ctx); err != nil {
				return r, err
			}
		}
		storeCPU, webCPU, clientCPU := snapshotPIDs(s.procs.PIDs()), snapshotGroups(pgids), selfCPU()
		row := usersRow{Users: n, loadStats: runUsers(ctx, w, us, cfg.duration, nil)}
		if row.Views > 0 {
			perView := 1000 / float64(row.Views)
			row.StoreCPU = snapshotPIDs(s.procs.PIDs()).since(storeCPU) * perView
			row.WebCPU = snapshotGroups(pgids).since(webCPU) * perView
			row.ClientCPU = (selfCPU() - clientCPU) * perView
		}
		if s.applied != nil && row.Views > 0 {
			after, err := s.applied(ctx)
			if err != nil {
				return r, err
			}
			row.AppliedPerView = (after - before) / float64(row.Views)
		}
		fmt.Fprintf(stderr, "%d users: %.0f views/s, p50 %v, p99 %v, %d failed, %d wrong counts; CPU ms per view: store %.3f, web %.3f, load generator %.3f",
			n, row.PerSecond, row.P50.Round(time.Microsecond*100), row.P99.Round(time.Microsecond*100), row.Failed, row.Wrong,
			row.StoreCPU, row.WebCPU, row.ClientCPU)
		if row.AppliedPerView > 0 {
			fmt.Fprintf(stderr, ", %.2f raft commands applied per page view", row.AppliedPerView)
		}
		fmt.Fprintln(stderr)
		r.Rows = append(r.Rows, row)
	}
	for _, size := range cfg.bursts {
		b, err := burst(ctx, w, size, cfg.burstRounds)
		if err != nil {
			return r, err
		}
		fmt.Fprintf(stderr, "bursts of %d: %d of %d increments lost, %d requests failed, %v ms\n",
			size, b.Lost, b.Expected, b.Failed, b.Times)
		r.Bursts = append(r.Bursts, b)
	}
	if cfg.killUsers > 0 {
		k, err := killRun(ctx, w, s, cfg.killUsers, cfg.killDuration, cfg.restartAfter)
		if err != nil {
			return r, err
		}
		fmt.Fprintf(stderr, "%s killed at %v: %d requests failed, %d of %d sessions lost (%d unread), longest gap %v\n",
			k.Victim, k.KilledAfter.Round(time.Millisecond), k.Failed, k.SessionsLost, k.Users, k.Unread, k.LongestGap.Round(time.Millisecond))
		r.Kill = &k
		if k.KillError != "" {
			return r, fmt.Errorf("kill: %s", k.KillError)
		}
	}
	return r, nil
}

// sessionsMarkdown writes the two tables: page views, then one session's
// bursts and the kill.
func sessionsMarkdown(w io.Writer, cfg sessionsConfig, rs []storeResult) {
	fmt.Fprintf(w, "Page views per second and latency (%d php -S servers x %d workers, one session per user, %v per row):\n\n",
		cfg.webServers, cfg.workers, cfg.duration)
	fmt.Fprint(w, "| store |")
	for _, n := range cfg.users {
		fmt.Fprintf(w, " %d users: views/s | p50 / p99 ms |", n)
	}
	fmt.Fprint(w, "\n|---|")
	for range cfg.users {
		fmt.Fprint(w, "---:|---:|")
	}
	fmt.Fprintln(w)
	for _, r := range rs {
		fmt.Fprintf(w, "| %s |", r.Label)
		for _, n := range cfg.users {
			i := slices.IndexFunc(r.Rows, func(u usersRow) bool { return u.Users == n })
			if i < 0 {
				fmt.Fprint(w, " - | - |")
				continue
			}
			u := r.Rows[i]
			fmt.Fprintf(w, " %.0f%s | %s / %s |", u.PerSecond, failNote(u.Failed+u.Wrong), ms(u.P50), ms(u.P99))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "\nCPU milliseconds per page view (the store's servers / the PHP web servers / the load generator; all share the machine's %d cores):\n\n| store |", runtime.NumCPU())
	for _, n := range cfg.users {
		fmt.Fprintf(w, " %d users |", n)
	}
	fmt.Fprint(w, "\n|---|")
	for range cfg.users {
		fmt.Fprint(w, "---:|")
	}
	fmt.Fprintln(w)
	for _, r := range rs {
		fmt.Fprintf(w, "| %s |", r.Label)
		for _, n := range cfg.users {
			i := slices.IndexFunc(r.Rows, func(u usersRow) bool { return u.Users == n })
			if i < 0 {
				fmt.Fprint(w, " - |")
				continue
			}
			u := r.Rows[i]
			fmt.Fprintf(w, " %.2f / %.2f / %.2f |", u.StoreCPU, u.WebCPU, u.ClientCPU)
		}
		fmt.Fprintln(w)
	}
	for _, r := range rs {
		var per []string
		for _, u := range r.Rows {
			if u.AppliedPerView > 0 {
				per = append(per, fmt.Sprintf("%.2f at %d users", u.AppliedPerView, u.Users))
			}
		}
		if per != nil {
			fmt.Fprintf(w, "\n%s: raft commands applied per page view %s.\n", r.Label, strings.Join(per, ", "))
		}
	}
	fmt.Fprintf(w, "\nOne session: bursts of concurrent requests (rounds of each: %d; lost = answered increments missing from the count read afterwards, of the answered ones; time = median round, release to last answer)", cfg.burstRounds)
	if cfg.killUsers > 0 {
		fmt.Fprintf(w, "; a store process killed with SIGKILL during a %d-user run of %v, at a third of it, and started again %v later (sessions lost: count went back or vanished)",
			cfg.killUsers, cfg.killDuration, cfg.restartAfter)
	}
	fmt.Fprint(w, ":\n\n")
	fmt.Fprint(w, "| store |")
	for _, n := range cfg.bursts {
		fmt.Fprintf(w, " burst %d: lost / failed | time |", n)
	}
	fmt.Fprint(w, " killed | failed requests | sessions lost | longest gap |\n|---|")
	for range cfg.bursts {
		fmt.Fprint(w, "---:|---:|")
	}
	fmt.Fprintln(w, "---|---:|---:|---:|")
	for _, r := range rs {
		fmt.Fprintf(w, "| %s |", r.Label)
		for _, n := range cfg.bursts {
			i := slices.IndexFunc(r.Bursts, func(b burstStats) bool { return b.Size == n })
			if i < 0 {
				fmt.Fprint(w, " - | - |")
				continue
			}
			b := r.Bursts[i]
			fmt.Fprintf(w, " %d of %d / %d | %s ms |", b.Lost, b.Expected, b.Failed, ms(b.Median))
		}
		if k := r.Kill; k != nil {
			lost := fmt.Sprintf("%d of %d", k.SessionsLost, k.Users)
			if k.Unread > 0 {
				lost += fmt.Sprintf(" (%d unreadable)", k.Unread)
			}
			fmt.Fprintf(w, " %s | %d | %s | %.1f s |", k.Victim, k.Failed, lost, k.LongestGap.Seconds())
		} else {
			fmt.Fprint(w, " - | - | - | - |")
		}
		fmt.Fprintln(w)
	}
	for _, r := range rs {
		if r.Error != "" {
			fmt.Fprintf(w, "\n%s: %s\n", r.Label, r.Error)
		}
	}
}

// failNote marks a row with failed or miscounted page views.
func failNote(n int64) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d failed)", n)
}

// ms formats d in milliseconds, with a decimal below 10 ms.
func ms(d time.Duration) string {
	f := float64(d) / float64(time.Millisecond)
	if f < 10 {
		return fmt.Sprintf("%.1f", f)
	}
	return fmt.Sprintf("%.0f", f)
}
