package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/paddock/paddock/node"
)

// devNode is one node of `paddock dev`: n1 takes the default ports, so
// client commands work with no flags.
type devNode struct{ id, grpc, http, raft string }

var devNodes = []devNode{
	{"n1", "127.0.0.1:2281", "127.0.0.1:2282", "127.0.0.1:2283"},
	{"n2", "127.0.0.1:2291", "127.0.0.1:2292", "127.0.0.1:2293"},
	{"n3", "127.0.0.1:2301", "127.0.0.1:2302", "127.0.0.1:2303"},
}

func newDevCmd() *cobra.Command {
	var dataDir, logLevel string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a local three-node cluster in one process (Ctrl-C stops it)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			dir := dataDir
			if dir == "" {
				if dir, err = os.MkdirTemp("", "paddock-dev-"); err != nil {
					return err
				}
				defer os.RemoveAll(dir)
			}
			logger := func(id string) hclog.Logger {
				return hclog.New(&hclog.LoggerOptions{Name: id, Level: hclog.LevelFromString(logLevel), Output: os.Stderr})
			}
			return runDev(cmd.Context(), cmd.OutOrStdout(), dir, devNodes, logger, nil)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "keep data here (default: a temporary directory, removed on exit)")
	cmd.Flags().StringVar(&logLevel, "log-level", "warn", "log level")
	return cmd
}

// runDev runs an agent for each of nodes, their data under dir, until ctx
// ends or one of them halts (it met a log entry this binary cannot
// apply): then it stops them all and returns that node's error, naming
// the upgrade. started, if set, gets the agents once they all run.
func runDev(ctx context.Context, out io.Writer, dir string, nodes []devNode, logger func(id string) hclog.Logger, started func([]*agent)) error {
	var bootstrap string
	for i, d := range nodes {
		if i > 0 {
			bootstrap += ","
		}
		bootstrap += d.id + "=" + d.raft
	}
	voters, err := node.ParseBootstrap(bootstrap)
	if err != nil {
		return err
	}
	var agents []*agent
	for _, d := range nodes {
		a, err := startAgent(ctx, node.Config{
			ID: d.id, DataDir: filepath.Join(dir, d.id), RaftAddr: d.raft,
			GRPCAddr: d.grpc, HTTPAddr: d.http, Bootstrap: voters, Logger: logger(d.id),
			WebSessionFlushDelay: node.DefaultWebSessionFlushDelay,
		})
		if err != nil {
			for _, a := range agents {
				err = errors.Join(err, a.Close())
			}
			return err
		}
		agents = append(agents, a)
		fmt.Fprintf(out, "%s  grpc %s  http %s  raft %s\n", d.id, d.grpc, d.http, d.raft)
	}
	endpoints := make([]string, len(nodes))
	for i, d := range nodes {
		endpoints[i] = d.grpc
	}
	fmt.Fprintf(out, "data in %s\nPADDOCK_ENDPOINTS=%s\nCtrl-C to stop.\n", dir, strings.Join(endpoints, ","))
	if started != nil {
		started(agents)
	}
	// Each agent serves until ctx ends or its node halts; the first to
	// return stops the others.
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	errs := make(chan error, len(agents))
	for _, a := range agents {
		go func() {
			err := a.serve(ctx)
			stop()
			errs <- err
		}()
	}
	for range agents {
		err = errors.Join(err, <-errs)
	}
	fmt.Fprintln(out, "stopped")
	return err
}
