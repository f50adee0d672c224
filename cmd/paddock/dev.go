package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

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
			var bootstrap string
			for i, d := range devNodes {
				if i > 0 {
					bootstrap += ","
				}
				bootstrap += d.id + "=" + d.raft
			}
			voters, err := node.ParseBootstrap(bootstrap)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			var agents []*agent
			defer func() {
				for _, a := range agents {
					err = errors.Join(err, a.Close())
				}
			}()
			for _, d := range devNodes {
				a, err := startAgent(cmd.Context(), node.Config{
					ID: d.id, DataDir: filepath.Join(dir, d.id), RaftAddr: d.raft,
					GRPCAddr: d.grpc, HTTPAddr: d.http, Bootstrap: voters,
					Logger: hclog.New(&hclog.LoggerOptions{Name: d.id, Level: hclog.LevelFromString(logLevel), Output: os.Stderr}),
				})
				if err != nil {
					return err
				}
				agents = append(agents, a)
				fmt.Fprintf(out, "%s  grpc %s  http %s  raft %s\n", d.id, d.grpc, d.http, d.raft)
			}
			fmt.Fprintf(out, "data in %s\nPADDOCK_ENDPOINTS=%s,%s,%s\nCtrl-C to stop.\n",
				dir, devNodes[0].grpc, devNodes[1].grpc, devNodes[2].grpc)
			<-cmd.Context().Done()
			fmt.Fprintln(out, "stopping")
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "keep data here (default: a temporary directory, removed on exit)")
	cmd.Flags().StringVar(&logLevel, "log-level", "warn", "log level")
	return cmd
}
