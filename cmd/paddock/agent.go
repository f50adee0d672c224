package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/paddock/paddock/node"
	"github.com/paddock/paddock/rpc"
)

// agentFlags are the flags of `paddock agent`.
type agentFlags struct {
	id, dataDir, raftAddr, grpcAddr, httpAddr, bootstrap, logLevel string
	snapshotThreshold, trailingLogs                                uint64
	minSession, maxSession, snapshotInterval                       time.Duration
	lockDelay                                                      time.Duration
	watchHistory, watchSlowLag                                     int
	webSessionMaxBytes                                             int
	webSessionDelayedMaxBytes                                      int
	webSessionFlushDelay                                           time.Duration
	watchHistoryBytes                                              int64
	watchProgress                                                  time.Duration
	pprof, unsafeLocalReads                                        bool
	gc                                                             gcFlags
}

func (f *agentFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	d := node.DefaultConfig()
	fs.StringVar(&f.id, "id", "", "node id (required), e.g. n1")
	fs.StringVar(&f.dataDir, "data-dir", "", "data directory (default ./paddock-data/<id>)")
	fs.StringVar(&f.raftAddr, "raft-addr", "127.0.0.1:2283", "raft address")
	fs.StringVar(&f.grpcAddr, "grpc-addr", "127.0.0.1:2281", "gRPC address")
	fs.StringVar(&f.httpAddr, "http-addr", "127.0.0.1:2282", "HTTP address (health, JSON gateway)")
	fs.StringVar(&f.bootstrap, "bootstrap", "", "initial voters, id=raft-addr,... (ignored when the data dir has state)")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.Uint64Var(&f.snapshotThreshold, "snapshot-threshold", 8192, "log entries between snapshots")
	fs.Uint64Var(&f.trailingLogs, "trailing-logs", 10240, "log entries kept after a snapshot")
	fs.DurationVar(&f.snapshotInterval, "snapshot-interval", d.SnapshotInterval, "how often to check whether --snapshot-threshold entries have accumulated (randomized up to twice this)")
	fs.DurationVar(&f.minSession, "min-session-timeout", 2*time.Second, "shortest session timeout granted")
	fs.DurationVar(&f.maxSession, "max-session-timeout", 60*time.Second, "longest session timeout granted")
	fs.DurationVar(&f.lockDelay, "lock-delay", 0, "lock-delay of sessions opened without one: after such a session expires leading an election or holding a lock, no one gets it for this long (0: none)")
	fs.IntVar(&f.watchHistory, "watch-history", d.WatchHistory, "recent events kept for watches to start or resume from")
	fs.Int64Var(&f.watchHistoryBytes, "watch-history-bytes", d.WatchHistoryBytes, "bytes of paths and previous data the watch history may keep")
	fs.IntVar(&f.watchSlowLag, "watch-slow-lag", 0, "events a blocked watcher may fall behind before it is dropped (default half the history)")
	fs.BoolVar(&f.pprof, "pprof", false, "serve Go runtime profiles (net/http/pprof) under /debug/pprof/ on the HTTP address; off by default: they cost CPU while they run and expose internals")
	fs.DurationVar(&f.watchProgress, "watch-progress-interval", d.WatchProgressInterval, "how often idle watches get a progress response (negative: never)")
	fs.IntVar(&f.webSessionMaxBytes, "web-session-max-bytes", d.WebSessionMaxBytes, "largest PHP web session's data accepted, in bytes (at most 1 MiB)")
	fs.IntVar(&f.webSessionDelayedMaxBytes, "web-session-delayed-max-bytes", d.WebSessionDelayedMaxBytes, "bytes of delayed PHP web session writes the leader holds not yet committed (id and data, plus 256 per session); a delayed write beyond them goes through")
	fs.DurationVar(&f.webSessionFlushDelay, "web-session-flush-delay", d.WebSessionFlushDelay, "how long the leader gathers delayed PHP web session writes before committing them; every other node holds them meanwhile (0: at once; at most 1s)")
	f.gc.register(fs)
	// Robustness tests only (node.Config.UnsafeLocalReads): hidden from
	// the help, so that nobody picks it up by browsing the flags.
	fs.BoolVar(&f.unsafeLocalReads, "unsafe-local-reads", false, "TESTING ONLY: serve linearizable reads from local state, possibly stale")
	_ = fs.MarkHidden("unsafe-local-reads")
}

func (f *agentFlags) config() (node.Config, error) {
	if f.id == "" {
		return node.Config{}, errors.New("paddock: --id is required")
	}
	voters, err := node.ParseBootstrap(f.bootstrap)
	if err != nil {
		return node.Config{}, err
	}
	dir := f.dataDir
	if dir == "" {
		dir = filepath.Join("paddock-data", f.id)
	}
	return node.Config{
		ID: f.id, DataDir: dir, RaftAddr: f.raftAddr,
		GRPCAddr: f.grpcAddr, HTTPAddr: f.httpAddr, Bootstrap: voters,
		SnapshotThreshold: f.snapshotThreshold, SnapshotInterval: f.snapshotInterval, TrailingLogs: f.trailingLogs,
		MinSessionTimeout: f.minSession, MaxSessionTimeout: f.maxSession, LockDelay: f.lockDelay,
		WatchHistory: f.watchHistory, WatchHistoryBytes: f.watchHistoryBytes, WatchSlowLag: f.watchSlowLag, WatchProgressInterval: f.watchProgress,
		WebSessionMaxBytes:        f.webSessionMaxBytes,
		WebSessionDelayedMaxBytes: f.webSessionDelayedMaxBytes, WebSessionFlushDelay: f.webSessionFlushDelay,
		UnsafeLocalReads: f.unsafeLocalReads,
		Logger: hclog.New(&hclog.LoggerOptions{
			Name: f.id, Level: hclog.LevelFromString(f.logLevel), Output: os.Stderr,
		}),
	}, nil
}

func newAgentCmd() *cobra.Command {
	f := &agentFlags{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run one Paddock node",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.config()
			if err != nil {
				return err
			}
			if cfg.UnsafeLocalReads {
				cfg.Logger.Warn("UNSAFE: --unsafe-local-reads is set: linearizable reads are served from this node's local state " +
					"without a read index and may return stale data; this breaks Paddock's guarantees on purpose, " +
					"for robustness testing only, never in production")
			}
			if tuner := f.gc.apply(cmd.Flags()); tuner != nil {
				tuner.start()
				defer tuner.stop()
			}
			var opts []rpc.HTTPOption
			if f.pprof {
				opts = append(opts, rpc.WithPprof())
			}
			a, err := startAgent(cmd.Context(), cfg, opts...)
			if err != nil {
				return err
			}
			cfg.Logger.Info("serving", "grpc", cfg.GRPCAddr, "http", cfg.HTTPAddr, "raft", cfg.RaftAddr)
			return a.serve(cmd.Context())
		},
	}
	f.register(cmd)
	return cmd
}

// agent is one running node with its gRPC and HTTP servers.
type agent struct {
	node     *node.Node
	gwCancel context.CancelFunc // closes the gateway's gRPC connection
	grpc     *grpc.Server
	http     *http.Server
	done     chan error
}

// startAgent listens first (so a busy port fails fast), then starts the
// node and serves. opts go to the HTTP handler.
func startAgent(ctx context.Context, cfg node.Config, opts ...rpc.HTTPOption) (*agent, error) {
	gl, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return nil, fmt.Errorf("paddock: grpc listen: %w", err)
	}
	hl, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		gl.Close()
		return nil, fmt.Errorf("paddock: http listen: %w", err)
	}
	n, err := node.New(cfg)
	if err != nil {
		gl.Close()
		hl.Close()
		return nil, err
	}
	// The gateway's connection to the gRPC server lives until Close, not
	// until ctx ends: Close shuts the HTTP server down gracefully first.
	gwCtx, gwCancel := context.WithCancel(context.WithoutCancel(ctx))
	h, err := rpc.NewHTTPHandler(gwCtx, n, cfg.GRPCAddr, opts...)
	if err != nil {
		gwCancel()
		gl.Close()
		hl.Close()
		n.Close()
		return nil, err
	}
	a := &agent{
		node:     n,
		gwCancel: gwCancel,
		grpc:     rpc.NewServer(n),
		http:     rpc.NewHTTPServer(h, n.Metrics()),
		done:     make(chan error, 2),
	}
	go func() { a.done <- a.grpc.Serve(gl) }()
	go func() { a.done <- a.http.Serve(hl) }()
	return a, nil
}

// serve runs until ctx ends or the node halts, and then closes the agent.
// A node halts when it meets a log entry this binary cannot apply: serve
// returns that error, naming the upgrade, so the process exits non-zero
// rather than serve a state that no longer follows the cluster's.
func (a *agent) serve(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return a.Close()
	case <-a.node.Halted():
		_ = a.Close()
		return fmt.Errorf("paddock: node %s stopped: %w", a.node.ID(), a.node.Err())
	}
}

// Close stops serving clients, then stops the node, which serves its peers
// on the raft address until then. Watches end first (telling their clients
// where to resume), and followers' propose streams once their writes are
// answered: they would hold the graceful stops until the timeout.
func (a *agent) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a.node.CloseStreams()
	if err := a.http.Shutdown(ctx); err != nil {
		// Calls still running (a web session read waiting for a lock)
		// are cancelled by closing their connections, as grpc.Stop does
		// below for the gRPC server's.
		_ = a.http.Close()
	}
	a.gwCancel()
	stopped := make(chan struct{})
	go func() { a.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-ctx.Done():
		a.grpc.Stop()
	}
	return a.node.Close()
}
