// Command bench compares Paddock with etcd and ZooKeeper side by side:
// it starts a three-node cluster of each system on loopback in turn, runs
// the workloads of package github.com/paddock/paddock/bench against it,
// stops it, and prints one markdown table with a JSON file of the results.
//
// It is its own module so that the etcd and ZooKeeper client libraries stay
// out of Paddock's go.mod; run it as `cd e2e/bench && go run . --help`, or
// through compare.sh, which installs the peers and builds paddock.
//
// Run as `bench hold ...` it is instead the child process of the ephemeral
// cleanup workload (see Cluster.HoldCommand), and as `bench contend ...` a
// contender process of the election workloads (see
// bench.ContenderCluster) for etcd or ZooKeeper.
//
// Run as `bench sessions ...` it compares PHP web session stores instead:
// Paddock, Redis and memcached behind the same php -S web servers (see
// sessions.go and compare-sessions.sh).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/paddock/paddock/bench"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "hold" {
		os.Exit(holdMain(os.Args[2:], os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "contend" {
		os.Exit(contendMain(os.Args[2:], os.Stdout, os.Stderr))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var code int
	if len(os.Args) > 1 && os.Args[1] == "sessions" {
		code = sessionsMain(ctx, os.Args[2:], os.Stdout, os.Stderr)
	} else {
		code = compareMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	}
	stop()
	os.Exit(code)
}

// systems are the systems the comparison knows, in report order.
var systems = []string{"paddock", "etcd", "zookeeper"}

// config is the parsed command line.
type config struct {
	systems     []string
	paddockBin  string
	dir         string
	jsonPath    string
	outPath     string
	fsyncFor    time.Duration
	opts        bench.Options
	keepDataDir bool
}

// errUsage marks a command-line error (exit code 2).
var errUsage = errors.New("bench: usage")

// parseFlags parses the comparison's command line.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	var (
		cfg              config
		sys, cl, wl, wt  string
		duration, warmup time.Duration
		ttl              time.Duration
		keys, valueSize  int
		lockClients      string
	)
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: bench [flags]\n       bench sessions [flags] (PHP web session stores: bench sessions --help)\n       bench hold --system etcd|zookeeper --endpoints a,b --key K --ttl 2s\n       bench contend --system etcd|zookeeper --endpoints a,b --election NAME --ttl 2s\n\nflags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&sys, "systems", strings.Join(systems, ","), "systems to compare, comma-separated")
	fs.StringVar(&cfg.paddockBin, "paddock-bin", "", "the paddock binary (required when paddock is compared)")
	fs.DurationVar(&duration, "duration", 10*time.Second, "measured time of each row")
	fs.DurationVar(&warmup, "warmup", 2*time.Second, "unmeasured warm-up before each row")
	fs.StringVar(&cl, "clients", "1,16,128", "concurrency levels, comma-separated")
	fs.StringVar(&wl, "workloads", "", "workloads, comma-separated (default all: "+strings.Join(bench.Workloads, ",")+")")
	fs.StringVar(&wt, "watchers", "1,1000", "watcher counts of the watch workload, comma-separated")
	fs.IntVar(&keys, "keys", 100000, "keys preloaded for the read, mixed, memory and restart workloads")
	fs.IntVar(&valueSize, "value-size", 128, "value size in bytes")
	fs.DurationVar(&ttl, "ttl", 2*time.Second, "session timeout of session churn, ephemeral cleanup and the election workloads' contenders")
	fs.StringVar(&lockClients, "lock-clients", "1,16", "concurrency levels of the lock workload, comma-separated")
	fs.IntVar(&cfg.opts.ElectionRounds, "election-rounds", 20, "leading contender processes the election workload kills")
	fs.IntVar(&cfg.opts.ServerKills, "server-kills", 3, "times election-server-kill kills the cluster's leader server")
	fs.StringVar(&cfg.dir, "dir", "", "directory for the clusters' data, on the disk to measure (default a new temporary directory)")
	fs.StringVar(&cfg.jsonPath, "json", "results.json", "JSON results file (empty: none)")
	fs.StringVar(&cfg.outPath, "out", "", "also write the markdown table to this file")
	fs.DurationVar(&cfg.fsyncFor, "fsync-duration", 3*time.Second, "how long to measure the disk's fdatasync rate")
	fs.BoolVar(&cfg.keepDataDir, "keep", false, "keep the data directories")
	if err := fs.Parse(args); err != nil {
		return cfg, fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() != 0 {
		return cfg, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	for _, s := range splitList(sys) {
		if !slices.Contains(systems, s) {
			return cfg, fmt.Errorf("%w: unknown system %q (want some of %v)", errUsage, s, systems)
		}
		if slices.Contains(cfg.systems, s) {
			return cfg, fmt.Errorf("%w: system %q named twice", errUsage, s)
		}
		cfg.systems = append(cfg.systems, s)
	}
	if len(cfg.systems) == 0 {
		return cfg, fmt.Errorf("%w: --systems is empty", errUsage)
	}
	if slices.Contains(cfg.systems, "paddock") && cfg.paddockBin == "" {
		return cfg, fmt.Errorf("%w: --paddock-bin is required to compare paddock", errUsage)
	}
	clients, err := intList("clients", cl)
	if err != nil {
		return cfg, err
	}
	watchers, err := intList("watchers", wt)
	if err != nil {
		return cfg, err
	}
	lockCl, err := intList("lock-clients", lockClients)
	if err != nil {
		return cfg, err
	}
	if cfg.opts.ElectionRounds <= 0 || cfg.opts.ServerKills <= 0 {
		return cfg, fmt.Errorf("%w: --election-rounds and --server-kills must be > 0", errUsage)
	}
	cfg.opts = bench.Options{
		Duration:       duration,
		Warmup:         warmup,
		Clients:        clients,
		Workloads:      splitList(wl),
		Keys:           keys,
		ValueSize:      valueSize,
		Watchers:       watchers,
		SessionTTL:     ttl,
		LockClients:    lockCl,
		ElectionRounds: cfg.opts.ElectionRounds,
		ServerKills:    cfg.opts.ServerKills,
	}
	return cfg, nil
}

// splitList splits a comma-separated flag, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// intList parses a comma-separated list of positive integers.
func intList(name, s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%w: --%s: %q is not a positive integer", errUsage, name, f)
		}
		out = append(out, n)
	}
	return out, nil
}

// compareMain runs the comparison and returns the process's exit code: 0,
// 1 when a system failed (the others are still reported), 2 for a usage
// error.
func compareMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if cfg.paddockBin != "" {
		if cfg.paddockBin, err = filepath.Abs(cfg.paddockBin); err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
	}
	cfg.opts.Log = stderr
	if err := run(ctx, cfg, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

// run measures the disk, then each system in turn, and reports.
func run(ctx context.Context, cfg config, stdout, stderr io.Writer) error {
	base := cfg.dir
	if base == "" {
		d, err := os.MkdirTemp("", "paddock-compare-")
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		base = d
	} else if err := os.MkdirAll(base, 0o755); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if !cfg.keepDataDir {
		defer os.RemoveAll(base)
	}
	fmt.Fprintf(stderr, "data under %s\n", base)

	// The disk first, while nothing else writes to it.
	fsyncDir := filepath.Join(base, "fsync")
	if err := os.MkdirAll(fsyncDir, 0o755); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	fsync, err := bench.FsyncRate(fsyncDir, cfg.fsyncFor)
	if err != nil {
		return fmt.Errorf("bench: fsync rate: %w", err)
	}
	fmt.Fprintf(stderr, "disk: %.0f fdatasync/s\n", fsync)

	var (
		results []*bench.Results
		failed  []error
	)
	for _, sys := range cfg.systems {
		if ctx.Err() != nil {
			failed = append(failed, ctx.Err())
			break
		}
		fmt.Fprintf(stderr, "== %s\n", sys)
		r, err := runSystem(ctx, cfg, sys, filepath.Join(base, sys))
		if r != nil {
			results = append(results, r)
		}
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", sys, err)
			failed = append(failed, fmt.Errorf("%s: %w", sys, err))
		}
	}

	var table bytes.Buffer
	if err := bench.Markdown(&table, results); err != nil {
		return fmt.Errorf("bench: markdown: %w", err)
	}
	fmt.Fprintf(&table, "\nDisk fsync rate (fdatasync/s, same disk, same run): %.0f\n", fsync)
	if _, err := stdout.Write(table.Bytes()); err != nil {
		return err
	}
	if cfg.outPath != "" {
		if err := os.WriteFile(cfg.outPath, table.Bytes(), 0o644); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	if cfg.jsonPath != "" {
		if err := bench.WriteJSON(cfg.jsonPath, results, fsync); err != nil {
			return fmt.Errorf("bench: json: %w", err)
		}
	}
	return errors.Join(failed...)
}

// runSystem starts sys's cluster under dir, runs the workloads against it
// and stops it.
func runSystem(ctx context.Context, cfg config, sys, dir string) (*bench.Results, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	startCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var (
		c   bench.Cluster
		err error
	)
	switch sys {
	case "paddock":
		c, err = bench.NewPaddockCluster(startCtx, cfg.paddockBin, dir)
	case "etcd":
		c, err = newEtcdCluster(startCtx, dir)
	case "zookeeper":
		c, err = newZKCluster(startCtx, dir)
	default:
		err = fmt.Errorf("bench: unknown system %q", sys)
	}
	if err != nil {
		return nil, fmt.Errorf("start cluster: %w", err)
	}
	r, runErr := bench.Run(ctx, c, cfg.opts)
	if err := c.Close(); err != nil && runErr == nil {
		runErr = fmt.Errorf("stop cluster: %w", err)
	}
	return r, runErr
}
