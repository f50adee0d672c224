package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/paddock/paddock/client"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// defaultEndpoints is used when neither --endpoints nor PADDOCK_ENDPOINTS
// is set.
const defaultEndpoints = "127.0.0.1:2281"

// addClientCommands adds the commands that talk to a running cluster
// (status, tree, farm) to root.
//
// They report a failed operation by returning an error whose text is the
// whole line to print, `paddock: <grpc code>: <message>`, with cobra's own
// "Error:" printing and usage turned off: main prints the error as is on
// stderr and exits non-zero. An exitCodeError (farm check's Nagios status)
// is an exit status only: the command has printed its outcome.
func addClientCommands(root *cobra.Command) {
	root.AddCommand(newStatusCmd(), newTreeCmd(), newFarmCmd(), newElectCmd(), newLockCmd())
}

// clientOptions are the flags of every client command: set as persistent
// flags on each top-level client command, so they go anywhere on the line.
type clientOptions struct {
	endpoints string
	output    string
	timeout   time.Duration
}

// newClientOptions registers the client flags on cmd and its subcommands.
func newClientOptions(cmd *cobra.Command) *clientOptions {
	o := &clientOptions{}
	endpoints := os.Getenv("PADDOCK_ENDPOINTS")
	if endpoints == "" {
		endpoints = defaultEndpoints
	}
	fs := cmd.PersistentFlags()
	fs.StringVar(&o.endpoints, "endpoints", endpoints, "comma-separated gRPC endpoints, host:port (env PADDOCK_ENDPOINTS)")
	fs.StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "time limit of each operation")
	return o
}

// dial checks the flags and returns a client of --endpoints.
func (o *clientOptions) dial(cmd *cobra.Command) (*client.Client, error) {
	return o.dialWith(cmd, client.Config{})
}

// dialWith is dial with cfg's other settings (its endpoints and dial
// timeout are the options').
func (o *clientOptions) dialWith(cmd *cobra.Command, cfg client.Config) (*client.Client, error) {
	if o.output != "text" && o.output != "json" {
		return nil, fmt.Errorf("bad --output %q: want text or json", o.output)
	}
	if o.timeout <= 0 {
		return nil, fmt.Errorf("bad --timeout %v: want > 0", o.timeout)
	}
	endpoints, err := client.ParseEndpoints(o.endpoints)
	if err != nil {
		return nil, err
	}
	cfg.Endpoints, cfg.DialTimeout = endpoints, min(client.DefaultDialTimeout, o.timeout)
	return client.New(cmd.Context(), cfg)
}

// connect dials and bounds the operation by --timeout; done releases both.
func (o *clientOptions) connect(cmd *cobra.Command) (*client.Client, context.Context, func(), error) {
	c, err := o.dial(cmd)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := o.opContext(cmd)
	return c, ctx, func() { cancel(); c.Close() }, nil
}

// opContext bounds one operation by --timeout.
func (o *clientOptions) opContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), o.timeout)
}

// emit prints resp as one JSON document with -o json, else calls text.
func (o *clientOptions) emit(cmd *cobra.Command, resp proto.Message, text func(w io.Writer) error) error {
	if o.output == "json" {
		return writeJSON(cmd.OutOrStdout(), resp)
	}
	return text(cmd.OutOrStdout())
}

// jsonOptions render responses the way the HTTP gateway does: proto field
// names (ephemeral_owner, next_page_token), every field present.
var jsonOptions = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

// writeJSON writes m as indented protojson and a newline.
func writeJSON(w io.Writer, m proto.Message) error {
	b, err := jsonOptions.Marshal(m)
	if err != nil {
		return err
	}
	return writeIndented(w, b)
}

// writeIndented re-indents JSON: protojson's own spacing is deliberately
// unstable, this output is not.
func writeIndented(w io.Writer, b []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

// runE adapts the body of a client command. Arguments and flags have been
// parsed by then, so a failure is the operation's: no usage, and the error
// becomes the line main prints (see addClientCommands).
func runE(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		cmd.SilenceUsage = true
		err := fn(cmd, args)
		if err == nil {
			return nil
		}
		cmd.SilenceErrors = true
		return cliError(err)
	}
}

// cliError formats err for stderr: `paddock: <grpc code>: <message>` for a
// status error from the cluster, `paddock: <error>` for anything else.
func cliError(err error) error {
	if st, ok := status.FromError(err); ok {
		return fmt.Errorf("paddock: %s: %s", st.Code(), st.Message())
	}
	return fmt.Errorf("paddock: %w", err)
}

// readFlags are the consistency flags of read commands.
type readFlags struct {
	consistency string
	minZxid     uint64
}

// addReadFlags registers --consistency and --min-zxid on cmd.
func addReadFlags(cmd *cobra.Command) *readFlags {
	r := &readFlags{}
	cmd.Flags().StringVar(&r.consistency, "consistency", "linearizable", "linearizable or serializable (local, may be stale)")
	cmd.Flags().Uint64Var(&r.minZxid, "min-zxid", 0, "serve only once the node has applied this zxid")
	return r
}

// options returns the ReadOptions the flags ask for.
func (r *readFlags) options() (*paddockv1.ReadOptions, error) {
	opts := &paddockv1.ReadOptions{MinZxid: r.minZxid}
	switch r.consistency {
	case "linearizable":
		opts.Consistency = paddockv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE
	case "serializable":
		opts.Consistency = paddockv1.ReadConsistency_READ_CONSISTENCY_SERIALIZABLE
	default:
		return nil, fmt.Errorf("bad --consistency %q: want linearizable or serializable", r.consistency)
	}
	return opts, nil
}
