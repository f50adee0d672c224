package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock/paddock/client"
)

// farmOptions are the flags shared by every `paddock farm` command: the
// client's (--endpoints, -o, --timeout) and ZkFarmer's globals (-H, -r,
// -q, -v), all persistent flags of `farm`, so they go anywhere on the line
// (`paddock farm -H h:2281 ls /x` as `zkfarmer -H h:2181 ls /x`).
type farmOptions struct {
	*clientOptions
	host    string
	retries int
	quiet   bool
	verbose int
	// source is where dial found the endpoints, for notGRPCError.
	source endpointSource
}

// newFarmOptions registers the farm flags on cmd and its subcommands.
func newFarmOptions(cmd *cobra.Command) *farmOptions {
	o := &farmOptions{clientOptions: newClientOptions(cmd)}
	fs := cmd.PersistentFlags()
	// The farm commands resolve --endpoints themselves (resolveEndpoints):
	// its default is not PADDOCK_ENDPOINTS, which comes after -H.
	ep := fs.Lookup("endpoints")
	ep.DefValue, o.endpoints = "", ""
	ep.Usage = "comma-separated gRPC endpoints, host:port (first found: --endpoints, -H, $PADDOCK_ENDPOINTS, $ZKHOST, " + defaultEndpoints + ")"
	fs.StringVarP(&o.host, "host", "H", "", "endpoints as ZkFarmer's -H (--endpoints wins over it)")
	fs.IntVarP(&o.retries, "retries", "r", 0, "repeat a one-shot command N more times while no node is reachable (join and export retry forever)")
	fs.BoolVarP(&o.quiet, "quiet", "q", false, "log warnings and errors only")
	fs.CountVarP(&o.verbose, "verbose", "v", "log more (repeatable: -v info for one-shot commands, -vv debug)")
	return o
}

// endpointSource names where resolveEndpoints found the endpoints, in the
// user's words.
type endpointSource string

// Where endpoints come from, first found wins.
const (
	fromEndpointsFlag endpointSource = "--endpoints"
	fromHostFlag      endpointSource = "-H"
	fromPaddockEnv    endpointSource = "PADDOCK_ENDPOINTS"
	fromZKHOST        endpointSource = "ZKHOST"
	fromDefault       endpointSource = "the default"
)

// resolveEndpoints picks the endpoints of a farm command, first found
// wins: --endpoints, -H/--host, $PADDOCK_ENDPOINTS, $ZKHOST, the default.
// A flag counts when given (even empty, which then fails to parse); an
// empty environment variable does not.
func resolveEndpoints(endpoints string, endpointsSet bool, host string, hostSet bool, getenv func(string) string) (string, endpointSource) {
	switch {
	case endpointsSet:
		return endpoints, fromEndpointsFlag
	case hostSet:
		return host, fromHostFlag
	}
	if v := getenv("PADDOCK_ENDPOINTS"); v != "" {
		return v, fromPaddockEnv
	}
	if v := getenv("ZKHOST"); v != "" {
		return v, fromZKHOST
	}
	return defaultEndpoints, fromDefault
}

// logger is the slog logger of a farm command on stderr. Like zkfarmer,
// join, import and export log at info by default and the one-shot
// commands at warn; each -v raises one step (info, then debug); -q keeps
// warnings and errors only.
func (o *farmOptions) logger(cmd *cobra.Command, longRunning bool) (*slog.Logger, error) {
	if o.quiet && o.verbose > 0 {
		return nil, errors.New("-q and -v cannot be used together")
	}
	step := o.verbose
	if longRunning {
		step++
	}
	level := slog.LevelWarn
	switch {
	case o.quiet:
	case step == 1:
		level = slog.LevelInfo
	case step >= 2:
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level})), nil
}

// dial resolves the endpoints, checks that they speak Paddock's gRPC and
// returns a client.
func (o *farmOptions) dial(cmd *cobra.Command) (*client.Client, error) {
	return o.dialWith(cmd, client.Config{})
}

// dialWith is dial with cfg's other settings (its endpoints and dial
// timeout are the options').
func (o *farmOptions) dialWith(cmd *cobra.Command, cfg client.Config) (*client.Client, error) {
	if o.retries < 0 {
		return nil, fmt.Errorf("bad --retries %d: want >= 0", o.retries)
	}
	fs := cmd.Flags()
	value, source := resolveEndpoints(o.endpoints, fs.Changed("endpoints"), o.host, fs.Changed("host"), os.Getenv)
	endpoints, err := client.ParseEndpoints(value)
	if err != nil {
		return nil, fmt.Errorf("endpoints from %s: %w", source, err)
	}
	if err := probeGRPC(cmd.Context(), endpoints, source, min(client.DefaultDialTimeout, o.timeout)); err != nil {
		return nil, err
	}
	o.source = source
	o.clientOptions.endpoints = strings.Join(endpoints, ",")
	return o.clientOptions.dialWith(cmd, cfg)
}

// oneShot runs op, bounded by --timeout, and runs it again up to --retries
// more times, each with a fresh --timeout, while it fails with
// Unavailable (no node reachable after the client's own failover). The
// farm operations retried are idempotent (reads, compare-and-set writes).
func (o *farmOptions) oneShot(cmd *cobra.Command, op func(ctx context.Context) error) error {
	log, err := o.logger(cmd, false)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		ctx, cancel := o.opContext(cmd)
		err := op(ctx)
		cancel()
		if err == nil || status.Code(err) != codes.Unavailable || attempt >= o.retries || cmd.Context().Err() != nil {
			return err
		}
		log.Info("retrying", "retry", attempt+1, "of", o.retries, "err", status.Convert(err).Message())
	}
}

// notGRPCError is an endpoint that accepts TCP connections but does not
// answer HTTP/2, so not Paddock's gRPC: most likely a ZooKeeper server
// left in -H or ZKHOST when switching from zkfarmer.
type notGRPCError struct {
	addr   string
	cause  string
	source endpointSource
}

func (e *notGRPCError) Error() string {
	hint := fmt.Sprintf("does %s still name a ZooKeeper server?", e.source)
	if e.source == fromDefault {
		hint = "is another server (ZooKeeper?) listening on Paddock's port?"
	}
	return fmt.Sprintf("%s does not speak Paddock's gRPC (%s): %s Paddock's gRPC port is 2281 by default", e.addr, e.cause, hint)
}

// http2Preface is what an HTTP/2 client sends first: the connection
// preface and an empty SETTINGS frame. A gRPC server answers with its own
// SETTINGS frame; ZooKeeper reads the first four bytes as a length far
// above its limit and closes the connection.
var http2Preface = append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0, 0, 0, 4, 0, 0, 0, 0, 0)

// probeResult is the outcome of probing one endpoint.
type probeResult struct {
	addr  string
	grpc  bool   // answered an HTTP/2 SETTINGS frame
	cause string // when not empty: it accepted TCP and positively did not speak HTTP/2
}

// probeGRPC fails when no endpoint speaks HTTP/2 and at least one
// accepted a TCP connection and then answered otherwise (closed it, reset
// it, or sent something that is not an HTTP/2 frame). It returns as soon
// as one endpoint speaks HTTP/2. Endpoints that cannot be connected to,
// or stay silent, prove nothing: the client reports those itself.
func probeGRPC(ctx context.Context, endpoints []string, source endpointSource, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	results := make(chan probeResult, len(endpoints))
	for _, addr := range endpoints {
		go func() { results <- probeOne(ctx, addr) }()
	}
	var wrong *probeResult
	for range endpoints {
		r := <-results
		if r.grpc {
			return nil
		}
		if r.cause != "" && wrong == nil {
			wrong = &r
		}
	}
	if wrong != nil {
		return &notGRPCError{addr: wrong.addr, cause: wrong.cause, source: source}
	}
	return nil
}

// probeOne sends the HTTP/2 preface to addr and reads the first frame
// header of the answer.
func probeOne(ctx context.Context, addr string) probeResult {
	r := probeResult{addr: addr}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return r
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	if _, err := conn.Write(http2Preface); err != nil {
		r.cause = "it closed the connection"
		return r
	}
	var head [9]byte
	n, err := io.ReadFull(conn, head[:])
	var nerr net.Error
	switch {
	case errors.As(err, &nerr) && nerr.Timeout():
		// Silent: a slow node proves nothing.
	case err != nil && n == 0:
		r.cause = "it closed the connection on the HTTP/2 preface"
	case err != nil || head[3] != 4:
		// A server's first frame is SETTINGS (type 4).
		r.cause = fmt.Sprintf("it answered %q instead of an HTTP/2 SETTINGS frame", head[:n])
	default:
		r.grpc = true
	}
	return r
}

// notGRPCMessages are gRPC's transport errors for a server that does not
// speak HTTP/2, should one get past probeGRPC (an endpoint that changed
// since).
var notGRPCMessages = []string{"server preface", "frame too large"}

// explain turns those errors into the question of notGRPCError.
func (o *farmOptions) explain(err error) error {
	if status.Code(err) != codes.Unavailable {
		return err
	}
	msg := status.Convert(err).Message()
	for _, m := range notGRPCMessages {
		if strings.Contains(msg, m) {
			return &notGRPCError{addr: o.clientOptions.endpoints, cause: msg, source: o.source}
		}
	}
	return err
}
