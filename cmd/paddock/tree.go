package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock/paddock/client"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// newTreeCmd returns `paddock tree` and its subcommands, which read and
// write znodes the way zkCli does.
func newTreeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tree",
		Short: "Read and write znodes",
	}
	o := newClientOptions(cmd)
	cmd.AddCommand(
		newTreeCreateCmd(o),
		newTreeGetCmd(o),
		newTreeSetCmd(o),
		newTreeRmCmd(o),
		newTreeLsCmd(o),
		newTreeStatCmd(o),
		newTreeWatchCmd(o),
	)
	return cmd
}

// dataArg returns args[i] as znode data: "-" reads stdin, a missing
// argument is empty data.
func dataArg(cmd *cobra.Command, args []string, i int) ([]byte, error) {
	if len(args) <= i {
		return nil, nil
	}
	if args[i] == "-" {
		return io.ReadAll(cmd.InOrStdin())
	}
	return []byte(args[i]), nil
}

// versionFlag returns the --version value if it was given, else nil (any
// version).
func versionFlag(cmd *cobra.Command, v int32) *int32 {
	if !cmd.Flags().Changed("version") {
		return nil
	}
	return &v
}

func newTreeCreateCmd(o *clientOptions) *cobra.Command {
	var (
		ephemeral, sequential, container bool
		sessionID                        uint64
		sessionTimeout, ttl              time.Duration
	)
	cmd := &cobra.Command{
		Use:   "create [--ephemeral | --ttl D | --container] [--sequential] [--session ID] [--fence NAME:TOKEN] PATH [DATA]",
		Short: "Create a znode and print its path",
		Long: `Create a znode and print its path, with the sequential suffix if any.
DATA "-" reads stdin.

With --ephemeral and no --session, create opens a session, creates the znode
and then holds the session open until SIGINT or SIGTERM, when it closes the
session (deleting the znode) and exits 0. If the process is killed the
session expires after --session-timeout. While no node acknowledges its
keepalives it says so on stderr and keeps trying: only the cluster decides
that the session has expired, and then create fails.

With --ttl, the znode is deleted once it has gone that long without a
change to its data and has no children (ZooKeeper's TTL nodes). With
--container, it is deleted soon after its last child is; a container that
never had a child stays.`,
		Args: cobra.RangeArgs(1, 2),
	}
	cmd.Flags().BoolVar(&ephemeral, "ephemeral", false, "delete the znode when its session ends")
	cmd.Flags().BoolVar(&sequential, "sequential", false, "append the parent's counter (%010d) to PATH")
	cmd.Flags().Uint64Var(&sessionID, "session", 0, "id of the session owning the znode")
	cmd.Flags().DurationVar(&sessionTimeout, "session-timeout", 10*time.Second, "timeout of the session opened by --ephemeral without --session")
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "make a TTL znode: delete it after this long without a change (and no children)")
	cmd.Flags().BoolVar(&container, "container", false, "make a container znode: delete it once its last child is gone")
	cmd.MarkFlagsMutuallyExclusive("ephemeral", "ttl", "container")
	fenceFlag := addFenceFlag(cmd)
	cmd.RunE = runE(func(cmd *cobra.Command, args []string) error {
		fence, err := parseFence(*fenceFlag)
		if err != nil {
			return err
		}
		data, err := dataArg(cmd, args, 1)
		if err != nil {
			return err
		}
		req := &paddockv1.CreateRequest{Path: args[0], Data: data, Sequential: sequential, SessionId: sessionID, Fence: fence}
		switch {
		case ephemeral:
			req.Type = paddockv1.NodeType_NODE_TYPE_EPHEMERAL
		case cmd.Flags().Changed("ttl"):
			req.Type, req.TtlMs = paddockv1.NodeType_NODE_TYPE_TTL, ttl.Milliseconds()
		case container:
			req.Type = paddockv1.NodeType_NODE_TYPE_CONTAINER
		}
		c, err := o.dial(cmd)
		if err != nil {
			return err
		}
		defer c.Close()
		if ephemeral && sessionID == 0 {
			return createAndHold(cmd, o, c, req, sessionTimeout)
		}
		ctx, cancel := o.opContext(cmd)
		defer cancel()
		resp, err := c.Create(ctx, req)
		if err != nil {
			return err
		}
		return printCreated(cmd, o, resp)
	})
	return cmd
}

// createAndHold creates req in a new session and keeps the session alive
// until a signal (close it, succeed) or its end (fail).
func createAndHold(cmd *cobra.Command, o *clientOptions, c *client.Client, req *paddockv1.CreateRequest, timeout time.Duration) error {
	held, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	ctx, cancel := context.WithTimeout(held, o.timeout)
	defer cancel()
	// Only the cluster expires the session; while no node answers, say so
	// on stderr and keep trying (the znode stays while the cluster holds
	// the session).
	stderr := cmd.ErrOrStderr()
	s, err := c.NewSession(ctx, timeout, client.OnConnectionState(func(cs client.ConnState) {
		switch cs.State {
		case client.StateDisconnected:
			fmt.Fprintf(stderr, "paddock: session disconnected since %s, retrying\n", cs.Since.Format(time.RFC3339))
		case client.StateConnected:
			fmt.Fprintln(stderr, "paddock: session connected again")
		}
	}))
	if err != nil {
		return err
	}
	closeSession := func() error {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(held), o.timeout)
		defer cancel()
		return s.Close(ctx)
	}
	req.SessionId = s.ID()
	resp, err := c.Create(ctx, req)
	if err != nil {
		closeSession()
		return err
	}
	if err := printCreated(cmd, o, resp); err != nil {
		closeSession()
		return err
	}

	select {
	case <-held.Done():
		return closeSession()
	case <-s.Done():
		return s.Err()
	}
}

func printCreated(cmd *cobra.Command, o *clientOptions, resp *paddockv1.CreateResponse) error {
	return o.emit(cmd, resp, func(w io.Writer) error {
		_, err := fmt.Fprintln(w, resp.Path)
		return err
	})
}

func newTreeGetCmd(o *clientOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get PATH",
		Short: "Print a znode's data, as is",
		Args:  cobra.ExactArgs(1),
	}
	read := addReadFlags(cmd)
	cmd.RunE = runE(func(cmd *cobra.Command, args []string) error {
		opts, err := read.options()
		if err != nil {
			return err
		}
		c, ctx, done, err := o.connect(cmd)
		if err != nil {
			return err
		}
		defer done()
		resp, err := c.Get(ctx, &paddockv1.GetRequest{Path: args[0], Read: opts})
		if err != nil {
			return err
		}
		return o.emit(cmd, resp, func(w io.Writer) error {
			_, err := w.Write(resp.Data)
			return err
		})
	})
	return cmd
}

func newTreeSetCmd(o *clientOptions) *cobra.Command {
	var version int32
	cmd := &cobra.Command{
		Use:   "set [--version N] [--fence NAME:TOKEN] PATH DATA",
		Short: `Set a znode's data (DATA "-" reads stdin)`,
		Args:  cobra.ExactArgs(2),
	}
	cmd.Flags().Int32Var(&version, "version", -1, "fail unless the znode is at this version (-1: any)")
	fenceFlag := addFenceFlag(cmd)
	cmd.RunE = runE(func(cmd *cobra.Command, args []string) error {
		fence, err := parseFence(*fenceFlag)
		if err != nil {
			return err
		}
		data, err := dataArg(cmd, args, 1)
		if err != nil {
			return err
		}
		c, ctx, done, err := o.connect(cmd)
		if err != nil {
			return err
		}
		defer done()
		resp, err := c.Set(ctx, &paddockv1.SetRequest{Path: args[0], Data: data, Version: versionFlag(cmd, version), Fence: fence})
		if err != nil {
			return err
		}
		return o.emit(cmd, resp, func(io.Writer) error { return nil })
	})
	return cmd
}

func newTreeRmCmd(o *clientOptions) *cobra.Command {
	var (
		version   int32
		recursive bool
	)
	cmd := &cobra.Command{
		Use:   "rm [--version N] [--recursive] [--fence NAME:TOKEN] PATH",
		Short: "Delete a znode, or with --recursive its whole subtree",
		Args:  cobra.ExactArgs(1),
	}
	cmd.Flags().Int32Var(&version, "version", -1, "fail unless the znode is at this version (-1: any)")
	cmd.Flags().BoolVar(&recursive, "recursive", false, "delete the znode's children too, in the same change")
	fenceFlag := addFenceFlag(cmd)
	cmd.RunE = runE(func(cmd *cobra.Command, args []string) error {
		fence, err := parseFence(*fenceFlag)
		if err != nil {
			return err
		}
		c, ctx, done, err := o.connect(cmd)
		if err != nil {
			return err
		}
		defer done()
		resp, err := c.Delete(ctx, &paddockv1.DeleteRequest{Path: args[0], Version: versionFlag(cmd, version), Recursive: recursive, Fence: fence})
		if err != nil {
			return err
		}
		return o.emit(cmd, resp, func(io.Writer) error { return nil })
	})
	return cmd
}

func newTreeLsCmd(o *clientOptions) *cobra.Command {
	var long, data bool
	cmd := &cobra.Command{
		Use:   "ls [-l] [-d] PATH",
		Short: "List a znode's children, one per line",
		Long: `List a znode's children, one per line.

With --data each line is the child's name, a tab and its data: as is, or
as a Go-quoted string when it holds control characters (a newline, a tab)
or is not UTF-8. The children and their data are listed as they were at
one zxid (listing_zxid in -o json), read a page of up to 1 MiB at a time;
if they change while the pages are read, the listing starts over (a few
times, then it fails with OUT_OF_RANGE).`,
		Args: cobra.ExactArgs(1),
	}
	cmd.Flags().BoolVarP(&long, "long", "l", false, "show version, data length, children and ephemeral owner")
	cmd.Flags().BoolVarP(&data, "data", "d", false, "show each child's data, all read at one zxid")
	read := addReadFlags(cmd)
	cmd.RunE = runE(func(cmd *cobra.Command, args []string) error {
		opts, err := read.options()
		if err != nil {
			return err
		}
		c, ctx, done, err := o.connect(cmd)
		if err != nil {
			return err
		}
		defer done()
		req := &paddockv1.ListRequest{Path: args[0], Read: opts}
		list := c.ListAll
		if data {
			list = func(ctx context.Context, req *paddockv1.ListRequest) (*paddockv1.ListResponse, error) {
				return listAllData(ctx, c, req)
			}
		}
		resp, err := list(ctx, req)
		if err != nil {
			return err
		}
		return o.emit(cmd, resp, func(w io.Writer) error {
			if data {
				return writeChildrenData(w, resp.Children, long)
			}
			if !long {
				for _, ch := range resp.Children {
					fmt.Fprintln(w, ch.Name)
				}
				return nil
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tVERSION\tDATA_LENGTH\tNUM_CHILDREN\tEPHEMERAL_OWNER")
			for _, ch := range resp.Children {
				st := ch.GetStat()
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", ch.Name, st.GetVersion(), st.GetDataLength(), st.GetNumChildren(), st.GetEphemeralOwner())
			}
			return tw.Flush()
		})
	})
	return cmd
}

func newTreeStatCmd(o *clientOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stat PATH",
		Short: "Print a znode's Stat, one field per line",
		Args:  cobra.ExactArgs(1),
	}
	read := addReadFlags(cmd)
	cmd.RunE = runE(func(cmd *cobra.Command, args []string) error {
		opts, err := read.options()
		if err != nil {
			return err
		}
		c, ctx, done, err := o.connect(cmd)
		if err != nil {
			return err
		}
		defer done()
		resp, err := c.Exists(ctx, &paddockv1.ExistsRequest{Path: args[0], Read: opts})
		if err != nil {
			return err
		}
		if !resp.Exists {
			return status.Errorf(codes.NotFound, "node does not exist: %s", args[0]) // the words of the error table (rpc)
		}
		return o.emit(cmd, resp, func(w io.Writer) error { return writeStat(w, resp.Stat) })
	})
	return cmd
}

// writeStat writes a Stat zkCli-style, `name = value` one per line, with
// times in UTC.
func writeStat(w io.Writer, st *paddockv1.Stat) error {
	ms := func(v int64) string { return time.UnixMilli(v).UTC().Format("2006-01-02T15:04:05.000Z") }
	_, err := fmt.Fprintf(w, "czxid = %d\nmzxid = %d\npzxid = %d\nctime = %s\nmtime = %s\n"+
		"version = %d\ncversion = %d\nephemeral_owner = %d\ndata_length = %d\nnum_children = %d\n",
		st.GetCzxid(), st.GetMzxid(), st.GetPzxid(), ms(st.GetCtime()), ms(st.GetMtime()),
		st.GetVersion(), st.GetCversion(), st.GetEphemeralOwner(), st.GetDataLength(), st.GetNumChildren())
	if err == nil && st.GetTtlMs() != 0 {
		_, err = fmt.Fprintf(w, "ttl_ms = %d\n", st.GetTtlMs())
	}
	if err == nil && st.GetContainer() {
		_, err = fmt.Fprintln(w, "container = true")
	}
	return err
}
