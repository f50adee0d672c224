package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// DefaultDialTimeout is the Config.DialTimeout used when none is set.
const DefaultDialTimeout = 2 * time.Second

// reconnectBackoff paces reconnection to a failed endpoint. It is much
// shorter than gRPC's default (up to 120s) so that a node that comes back is
// used again within seconds.
var reconnectBackoff = backoff.Config{
	BaseDelay:  100 * time.Millisecond,
	Multiplier: 1.6,
	Jitter:     0.2,
	MaxDelay:   3 * time.Second,
}

// Config configures a Client.
type Config struct {
	// Endpoints are the gRPC addresses (host:port) of the cluster's nodes,
	// tried in this order.
	Endpoints []string
	// DialTimeout bounds one attempt to connect to one endpoint; a call
	// waiting for a connection longer than that fails over to the next
	// endpoint. Zero means DefaultDialTimeout.
	DialTimeout time.Duration
	// RetryTimeout bounds how long a call that keeps failing with
	// Unavailable is repeated (a leader election, a node restarting), in
	// any case never past the call's ctx. Zero means DefaultRetryTimeout.
	RetryTimeout time.Duration
	// ReadAttemptTimeout bounds one attempt of a tree read that answers
	// at once (Get, Exists, List): a node that took it and sends no
	// answer within it (its answers dropped, the process paused) is left
	// for the next endpoint, as a poll is after its timeout and a second.
	// Zero means none: such a read waits on that node for as long as the
	// call's ctx allows. The farm exporter sets it (farm.ReadAttempt), so
	// that a silent node holds it no longer than a poll does.
	ReadAttemptTimeout time.Duration
}

// Client calls a Paddock cluster, failing over between its endpoints. See
// the package documentation for which calls are retried.
type Client struct {
	conns []*grpc.ClientConn
	// addrs are the endpoints of conns, in the same order.
	addrs []string
	// cur is the index in conns of the endpoint that answered last.
	cur atomic.Int64
	// lastZxid is the highest zxid seen in a response (see LastZxid).
	lastZxid atomic.Uint64
	// retryTimeout is Config.RetryTimeout or its default.
	retryTimeout time.Duration
	// readAttempt is Config.ReadAttemptTimeout.
	readAttempt time.Duration
	// ctx is cancelled by Close; sessions' keepalive loops run under it.
	ctx    context.Context
	cancel context.CancelFunc
}

// flowWindow is the static HTTP/2 flow control window, per stream and per
// connection, of the client's connections: it holds the largest response
// a node sends at once.
const flowWindow = 4 << 20

// New returns a Client for cfg.Endpoints. It does not dial: each endpoint is
// connected on first use, in plaintext. ctx only bounds New itself.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	addrs, err := normalizeEndpoints(cfg.Endpoints)
	if err != nil {
		return nil, err
	}
	dialTimeout := cfg.DialTimeout
	if dialTimeout <= 0 {
		dialTimeout = DefaultDialTimeout
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithNoProxy(), // cluster endpoints are dialled directly
		// A connection's write buffer goes back to a pool between
		// flushes: a client keeps a connection per endpoint, mostly idle.
		grpc.WithSharedWriteBuffer(true),
		// Static flow control windows, as the server's (package rpc):
		// dynamic ones cost a ping and its ack about once per round trip,
		// once per call on a mostly idle connection.
		grpc.WithInitialWindowSize(flowWindow),
		grpc.WithInitialConnWindowSize(flowWindow),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           reconnectBackoff,
			MinConnectTimeout: dialTimeout,
		}),
	}
	c := &Client{retryTimeout: cfg.RetryTimeout, readAttempt: max(cfg.ReadAttemptTimeout, 0)}
	if c.retryTimeout <= 0 {
		c.retryTimeout = DefaultRetryTimeout
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	for _, addr := range addrs {
		conn, err := grpc.NewClient(addr, opts...)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("client: endpoint %s: %w", addr, err)
		}
		c.conns = append(c.conns, conn)
		c.addrs = append(c.addrs, addr)
	}
	return c, nil
}

// Close stops every session of the client and closes its connections.
func (c *Client) Close() error {
	c.cancel()
	var errs []error
	for _, conn := range c.conns {
		if err := conn.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("client: close: %w", err)
	}
	return nil
}

// current is the index of the endpoint to try first.
func (c *Client) current() int { return int(c.cur.Load()) }

// LastZxid is the highest zxid the client has seen in any response or
// watch event. Reads that leave ReadOptions.min_zxid at 0 are sent with it,
// so they reflect everything the client has written or seen, on any node.
func (c *Client) LastZxid() uint64 { return c.lastZxid.Load() }

// observe raises LastZxid to zxid.
func (c *Client) observe(zxid uint64) {
	for {
		cur := c.lastZxid.Load()
		if zxid <= cur || c.lastZxid.CompareAndSwap(cur, zxid) {
			return
		}
	}
}

// DefaultRetryTimeout is the Config.RetryTimeout used when none is set:
// long enough to ride out a leader election after a leader is killed
// (the election timeout plus a pre-vote and a vote round, a few seconds),
// short enough that a dead cluster is reported in bounded time.
const DefaultRetryTimeout = 15 * time.Second

// Retry policy of unary calls: passes over the endpoints, pausing between
// passes from retryPause, doubling up to maxRetryPause, until the retry
// timeout; the first connection of a watch makes up to maxRounds passes.
const (
	maxRounds     = 5
	retryPause    = 100 * time.Millisecond
	maxRetryPause = time.Second
)

// kind says how a call may be retried.
type kind int

const (
	// read calls (reads, keepalives) are idempotent: repeat them freely.
	read kind = iota
	// write calls carry a request id, the same on every attempt, so the
	// server applies the write at most once however often it is sent.
	write
)

// retryable reports whether a call that failed with err may be repeated on
// the next endpoint: only when the node could not serve it (down,
// unreachable, shutting down, no leader, connection broken mid-call).
// Everything else is the cluster's answer and is returned as is.
func retryable(err error) bool { return status.Code(err) == codes.Unavailable }

// answered reports whether err is a node's answer to the call (the
// call reached it and it decided), not a failure to get one.
func answered(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.PermissionDenied,
		codes.ResourceExhausted, codes.FailedPrecondition, codes.Aborted, codes.OutOfRange:
		return true
	}
	return false
}

// pacer paces attempts that go round n endpoints in turn, one attempt per
// endpoint: before every pass after the first it pauses, from first,
// doubling up to most, so that a cluster that is down is not called in a
// busy loop. Unary calls, watches and keepalives all go round this way.
type pacer struct {
	n           int // endpoints in a pass
	tries       int // attempts made since the start or the last reset
	first, most time.Duration
	pause       time.Duration // the next pause; 0 means first
}

// next is called before every attempt. At the start of every pass but the
// first it pauses, and it reports false instead of pausing when ctx has
// ended or the pause would end after deadline (zero: no deadline).
func (p *pacer) next(ctx context.Context, deadline time.Time) bool {
	p.tries++
	if p.tries == 1 || (p.tries-1)%p.n != 0 {
		return true
	}
	if p.pause == 0 {
		p.pause = p.first
	}
	if !deadline.IsZero() && time.Now().Add(p.pause).After(deadline) {
		return false
	}
	if !sleep(ctx, p.pause) {
		return false
	}
	p.pause = min(2*p.pause, p.most)
	return true
}

// reset starts over after progress: the next attempt begins a first pass,
// with no pause before it.
func (p *pacer) reset() { p.tries, p.pause = 0, 0 }

// sleep waits d or until ctx ends, reporting whether the full d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// headered is every response with a ResponseHeader.
type headered interface {
	GetHeader() *paddockv1.ResponseHeader
}

// call runs method on the service built by newService, starting at the
// endpoint that answered last and moving to the next one while the error is
// retryable, within the retry policy and ctx. A write gets its request id
// once, before the first attempt, so every attempt carries the same one.
func call[S, Req, Resp any](
	ctx context.Context,
	c *Client,
	k kind,
	newService func(grpc.ClientConnInterface) S,
	method func(S, context.Context, Req, ...grpc.CallOption) (Resp, error),
	req Req,
) (Resp, error) {
	if k == write {
		ctx = withRequestID(ctx)
	}
	n := len(c.conns)
	start := c.current()
	pace := pacer{n: n, first: retryPause, most: maxRetryPause}
	var (
		resp Resp
		err  error
	)
	giveUp := time.Now().Add(c.retryTimeout)
	// unreached counts the endpoints in a row whose connection was down
	// when their attempt failed.
	unreached := 0
	for attempt := 0; pace.next(ctx, giveUp); attempt++ {
		idx := (start + attempt) % n
		resp, err = method(newService(c.conns[idx]), ctx, req)
		if err != nil && c.conns[idx].GetState() != connectivity.Ready {
			unreached++
		} else {
			unreached = 0
		}
		if err == nil {
			c.cur.Store(int64(idx))
			if h, ok := any(resp).(headered); ok {
				c.observe(h.GetHeader().GetZxid())
			}
			return resp, nil
		}
		if answered(err) {
			// The node answered (NotFound, a version that did not
			// match, ...): the next call starts there too, not at an
			// endpoint this one moved away from.
			c.cur.Store(int64(idx))
		}
		if ctx.Err() != nil || !retryable(err) {
			break
		}
	}
	if unreached >= n && retryable(err) {
		err = c.unreachable(err)
	}
	return resp, err
}

// unreachable is the error of a call no endpoint could be connected for:
// still Unavailable, with a message that names the endpoints and the
// cause instead of gRPC's dial error ("connection error: desc = ...").
func (c *Client) unreachable(err error) error {
	cause := "unreachable"
	if strings.Contains(status.Convert(err).Message(), "connection refused") {
		cause = "connection refused"
	}
	return status.Errorf(codes.Unavailable, "no node reachable: %s (%s)", strings.Join(c.addrs, ", "), cause)
}
