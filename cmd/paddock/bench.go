package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/paddock/paddock/bench"
	"github.com/paddock/paddock/client"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// fsyncDuration is how long `paddock bench` measures the disk's fdatasync
// rate.
const fsyncDuration = 2 * time.Second

func newBenchCmd() *cobra.Command {
	var (
		o                            bench.Options
		endpoints, jsonPath, dataDir string
		agentBin                     string
		agentArgs, agentEnv          []string
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmark a Paddock cluster (by default three agents it starts itself)",
		Long: `bench runs the benchmark workloads against a three-node Paddock cluster it
starts from its own executable on free loopback ports, or against the running
cluster at --endpoints (server CPU, memory and restart are then not measured),
and prints a markdown table. Progress goes to stderr. Every client talks to
one node: before each row bench asks the cluster for its leader and places
client i on node (leader + 1 + i) mod nodes, so one client is on a follower;
the table's footnote names the leader.

Workloads: ` + strings.Join(bench.Workloads, ", ") + `.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			ctx := cmd.Context()
			bin, err := os.Executable()
			if err != nil {
				return fmt.Errorf("paddock: bench: %w", err)
			}
			base := dataDir
			if base == "" {
				if base, err = os.MkdirTemp("", "paddock-bench-"); err != nil {
					return err
				}
				defer os.RemoveAll(base)
			}
			if agentBin != "" {
				bin = agentBin
			}
			var c bench.Cluster
			if endpoints != "" {
				eps, err := client.ParseEndpoints(endpoints)
				if err != nil {
					return err
				}
				c = bench.NewPaddockEndpoints(bin, eps)
			} else {
				if c, err = bench.NewPaddockCluster(ctx, bin, base, bench.AgentArgs(agentArgs...), bench.AgentEnv(agentEnv...)); err != nil {
					return err
				}
				defer func() { err = errors.Join(err, c.Close()) }()
			}
			o.Log = cmd.ErrOrStderr()
			fsync, err := bench.FsyncRate(base, fsyncDuration)
			if err != nil {
				return err
			}
			res, runErr := bench.Run(ctx, c, o)
			if res == nil {
				return runErr
			}
			rs := []*bench.Results{res}
			out := cmd.OutOrStdout()
			if err := bench.Markdown(out, rs); err != nil {
				return errors.Join(runErr, err)
			}
			fmt.Fprintf(out, "\nDisk: %.0f fdatasync/s (4 KiB appends, in %s).\n", fsync, base)
			if jsonPath != "" {
				if err := bench.WriteJSON(jsonPath, rs, fsync); err != nil {
					return errors.Join(runErr, err)
				}
			}
			return runErr
		},
	}
	fs := cmd.Flags()
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "measured time of each row")
	fs.DurationVar(&o.Warmup, "warmup", 2*time.Second, "unmeasured time before each row")
	fs.IntSliceVar(&o.Clients, "clients", []int{1, 16, 128}, "concurrency levels")
	fs.StringSliceVar(&o.Workloads, "workloads", bench.Workloads, "workloads to run")
	fs.IntVar(&o.Keys, "keys", 100000, "keys preloaded for the read, mixed, memory and restart workloads")
	fs.IntVar(&o.ValueSize, "value-size", 128, "bytes of every value written")
	fs.IntSliceVar(&o.Watchers, "watchers", []int{1, 1000}, "watcher counts of the watch workload")
	fs.DurationVar(&o.SessionTTL, "session-ttl", 2*time.Second, "session timeout of session churn, ephemeral cleanup and the election workloads' contenders")
	fs.IntSliceVar(&o.LockClients, "lock-clients", []int{1, 16}, "concurrency levels of the lock workload")
	fs.IntVar(&o.ElectionRounds, "election-rounds", 20, "leading contenders the election workload kills")
	fs.IntVar(&o.ServerKills, "server-kills", 3, "times election-server-kill kills the leader server")
	fs.StringVar(&endpoints, "endpoints", "", "benchmark this running cluster (comma-separated gRPC host:port) instead of starting one")
	fs.StringVar(&jsonPath, "json", "", "also write the results to this JSON file")
	fs.StringVar(&dataDir, "data-dir", "", "the started cluster's data and logs, and the fsync test's file (default: a temporary directory, removed on exit)")
	fs.StringVar(&agentBin, "agent-bin", "", "start the agents from this paddock executable instead of bench's own, so two builds are measured with one load generator")
	fs.StringArrayVar(&agentArgs, "agent-arg", nil, "extra flag for every agent the bench starts, repeatable (e.g. --agent-arg=--pprof); each agent's HTTP address is in its log under --data-dir")
	fs.StringArrayVar(&agentEnv, "agent-env", nil, "extra KEY=VALUE in every started agent's environment, repeatable; e.g. --agent-env=GOMAXPROCS=1 when three nodes share two cores (each Go runtime otherwise spins and wakes threads for CPUs the others are using)")
	cmd.AddCommand(newBenchHoldCmd(), newBenchContendCmd(), newBenchFarmCmd())
	return cmd
}

// newBenchFarmCmd is `paddock bench farm`: the farm benchmark, apart from
// the workloads because its figures are Paddock's alone (etcd and
// ZooKeeper have no farms to compare) and not rows of operations.
func newBenchFarmCmd() *cobra.Command {
	var (
		o        bench.FarmOptions
		dataDir  string
		agentEnv []string
	)
	cmd := &cobra.Command{
		Use:   "farm",
		Short: "Benchmark a farm: registration of many joiners, and an exporter following changes",
		Long: `farm starts a three-node Paddock cluster from its own executable and
measures a farm of --hosts hosts: their registration through the farm
package's join path (one session and one ephemeral znode each, in this
process), --joins real 'paddock farm join' processes (start to znode
visible), and a real 'paddock farm export FARM DEST.json' following
--changes changes made with farm.SetField one at a time (set to the file's
rename seen by fsnotify), with the exporter's CPU per change and, apart,
the CPU of serialising DEST for the whole farm. Progress goes to stderr.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			ctx := cmd.Context()
			bin, err := os.Executable()
			if err != nil {
				return fmt.Errorf("paddock: bench farm: %w", err)
			}
			base := dataDir
			if base == "" {
				if base, err = os.MkdirTemp("", "paddock-bench-farm-"); err != nil {
					return err
				}
				defer os.RemoveAll(base)
			}
			c, err := bench.NewPaddockCluster(ctx, bin, base, bench.AgentEnv(agentEnv...))
			if err != nil {
				return err
			}
			defer func() { err = errors.Join(err, c.Close()) }()
			fsync, err := bench.FsyncRate(base, fsyncDuration)
			if err != nil {
				return err
			}
			o.Log = cmd.ErrOrStderr()
			o.Dir = base
			res, err := bench.RunFarm(ctx, c, o)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if err := bench.FarmMarkdown(out, res); err != nil {
				return err
			}
			fmt.Fprintf(out, "\nDisk: %.0f fdatasync/s (4 KiB appends, in %s).\n", fsync, base)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.IntVar(&o.Hosts, "hosts", 1000, "hosts of the farm, registered by simulated joiners")
	fs.IntVar(&o.Changes, "changes", 300, "changes the exporter must reflect, made one at a time")
	fs.IntVar(&o.Concurrency, "concurrency", 50, "registrations in flight at once")
	fs.IntVar(&o.Joins, "joins", 3, "real farm join processes timed, one after the other")
	fs.IntVar(&o.Writes, "writes", 50, "in-process writes of DEST timed for the serialisation CPU")
	fs.DurationVar(&o.SessionTTL, "session-ttl", 10*time.Second, "session timeout of the joiners")
	fs.StringVar(&dataDir, "data-dir", "", "the cluster's data and logs, DEST, the exporter's and joins' logs (default: a temporary directory, removed on exit)")
	fs.StringArrayVar(&agentEnv, "agent-env", nil, "extra KEY=VALUE in every started agent's environment, repeatable")
	return cmd
}

// newBenchHoldCmd is `paddock bench hold`, hidden: the child process the
// ephemeral cleanup workload kills. It opens a session, creates --key as
// its ephemeral, prints "ready" and waits to be killed.
func newBenchHoldCmd() *cobra.Command {
	var (
		endpoints, key string
		ttl            time.Duration
	)
	cmd := &cobra.Command{
		Use:    "hold",
		Short:  "Hold an ephemeral znode in a session until killed (used by bench)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if key == "" {
				return errors.New("paddock: bench hold: --key is required")
			}
			eps, err := client.ParseEndpoints(endpoints)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			c, err := client.New(ctx, client.Config{Endpoints: eps})
			if err != nil {
				return err
			}
			defer c.Close()
			s, err := c.NewSession(ctx, ttl)
			if err != nil {
				return fmt.Errorf("paddock: bench hold: open session: %w", err)
			}
			defer s.Close(context.WithoutCancel(ctx))
			if _, err := c.Create(ctx, &paddockv1.CreateRequest{
				Path: key, Type: paddockv1.NodeType_NODE_TYPE_EPHEMERAL, SessionId: s.ID(),
			}); err != nil {
				return fmt.Errorf("paddock: bench hold: create %s: %w", key, err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "ready")
			select {
			case <-ctx.Done():
				return nil
			case <-s.Done():
				return fmt.Errorf("paddock: bench hold: session ended: %w", s.Err())
			}
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&endpoints, "endpoints", defaultEndpoints, "comma-separated gRPC endpoints")
	fs.StringVar(&key, "key", "", "path of the ephemeral znode")
	fs.DurationVar(&ttl, "ttl", 2*time.Second, "session timeout")
	return cmd
}

// newBenchContendCmd is `paddock bench contend`, hidden: a contender
// process of the election workloads (bench.Contend), which they kill.
func newBenchContendCmd() *cobra.Command {
	var (
		endpoints, election string
		ttl                 time.Duration
	)
	cmd := &cobra.Command{
		Use:    "contend",
		Short:  "Campaign in an election and report as the election benchmark expects (used by bench)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if election == "" {
				return errors.New("paddock: bench contend: --election is required")
			}
			eps, err := client.ParseEndpoints(endpoints)
			if err != nil {
				return err
			}
			return bench.Contend(cmd.Context(), eps, election, ttl, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&endpoints, "endpoints", defaultEndpoints, "comma-separated gRPC endpoints")
	fs.StringVar(&election, "election", "", "name of the election")
	fs.DurationVar(&ttl, "ttl", 2*time.Second, "session timeout")
	return cmd
}
