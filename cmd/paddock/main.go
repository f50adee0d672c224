// Command paddock is Paddock's one binary: `agent` runs a node, `dev` a
// local three-node cluster, and the other commands are clients.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	var code exitCodeError
	switch {
	case errors.As(err, &code):
		os.Exit(int(code)) // the command printed its outcome
	case err != nil:
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "paddock",
		Short:         "Paddock: a coordination service for farms of web servers",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newAgentCmd(), newDevCmd(), newBenchCmd())
	addClientCommands(root)
	return root
}
