package client

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
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
}

// Client calls a Paddock cluster, failing over between its endpoints. See
// the package documentation for which calls are retried.
type Client struct {
	conns []*grpc.ClientConn
	// cur is the index in conns of the endpoint that answered last.
	cur atomic.Int64
	// ctx is cancelled by Close; sessions' keepalive loops run under it.
	ctx    context.Context
	cancel context.CancelFunc
}

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
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           reconnectBackoff,
			MinConnectTimeout: dialTimeout,
		}),
	}
	c := &Client{}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	for _, addr := range addrs {
		conn, err := grpc.NewClient(addr, opts...)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("client: endpoint %s: %w", addr, err)
		}
		c.conns = append(c.conns, conn)
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

// retry says when a failed call may be repeated on another endpoint.
type retry int

const (
	// idempotent calls (reads, keepalives) fail over on any Unavailable.
	idempotent retry = iota
	// atMostOnce calls (writes) fail over only if never sent.
	atMostOnce
)

// failover reports whether a call that failed with err may be repeated on
// the next endpoint. sent is true when gRPC put the request on a
// connection, so a node may have received (and applied) it.
func failover(kind retry, err error, sent bool) bool {
	if status.Code(err) != codes.Unavailable {
		return false
	}
	return kind == idempotent || !sent
}

// call runs method on the service built by newService, starting at the
// endpoint that answered last and failing over as kind allows.
func call[S, Req, Resp any](
	ctx context.Context,
	c *Client,
	kind retry,
	newService func(grpc.ClientConnInterface) S,
	method func(S, context.Context, Req, ...grpc.CallOption) (Resp, error),
	req Req,
) (Resp, error) {
	start := c.current()
	var (
		resp Resp
		err  error
	)
	for i := range len(c.conns) {
		idx := (start + i) % len(c.conns)
		var p peer.Peer
		resp, err = method(newService(c.conns[idx]), ctx, req, grpc.Peer(&p))
		if err == nil {
			c.cur.Store(int64(idx))
			return resp, nil
		}
		if ctx.Err() != nil || !failover(kind, err, p.Addr != nil) {
			return resp, err
		}
	}
	return resp, err
}
