package client

import (
	"context"

	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// ReadWebSession reads a PHP web session, with its lock when req.lock is
// set, waiting up to req.wait_ms (0: the lock's lease, lock_ttl_ms, 30 s
// by default) for the request that holds it; a wait that runs out is
// ABORTED. A locked read carries a fresh request id of its own (never one
// WithRequestID put in ctx: that id names a write), the same on each
// attempt, so that an attempt retried after its answer was lost gets the
// lock it was granted back instead of waiting behind it.
func (c *Client) ReadWebSession(ctx context.Context, req *paddockv1.ReadWebSessionRequest) (*paddockv1.ReadWebSessionResponse, error) {
	var wait int64
	if req.GetLock() {
		wait = req.GetWaitMs()
		if wait == 0 {
			wait = req.GetLockTtlMs()
		}
		if wait == 0 {
			wait = 30000
		}
	}
	k := read
	if req.GetLock() {
		k = write // call keeps the fresh id on every attempt
		ctx = withFreshRequestID(ctx)
	}
	return call(ctx, c, k, paddockv1.NewWebSessionServiceClient, bounded(wait, paddockv1.WebSessionServiceClient.ReadWebSession), req)
}

// WriteWebSession stores a web session's data if it is still at
// req.version and no other token holds its lock. It is a write, retried
// with one request id: see the package documentation.
func (c *Client) WriteWebSession(ctx context.Context, req *paddockv1.WriteWebSessionRequest) (*paddockv1.WriteWebSessionResponse, error) {
	return call(ctx, c, write, paddockv1.NewWebSessionServiceClient, paddockv1.WebSessionServiceClient.WriteWebSession, req)
}

// ReleaseWebSession gives up a web session's lock.
func (c *Client) ReleaseWebSession(ctx context.Context, req *paddockv1.ReleaseWebSessionRequest) (*paddockv1.ReleaseWebSessionResponse, error) {
	return call(ctx, c, write, paddockv1.NewWebSessionServiceClient, paddockv1.WebSessionServiceClient.ReleaseWebSession, req)
}

// TouchWebSession counts an access of a web session and releases the lock
// held with req.token, if any.
func (c *Client) TouchWebSession(ctx context.Context, req *paddockv1.TouchWebSessionRequest) (*paddockv1.TouchWebSessionResponse, error) {
	return call(ctx, c, write, paddockv1.NewWebSessionServiceClient, paddockv1.WebSessionServiceClient.TouchWebSession, req)
}

// DestroyWebSession deletes a web session. It is a write, retried with
// one request id: see the package documentation.
func (c *Client) DestroyWebSession(ctx context.Context, req *paddockv1.DestroyWebSessionRequest) (*paddockv1.DestroyWebSessionResponse, error) {
	return call(ctx, c, write, paddockv1.NewWebSessionServiceClient, paddockv1.WebSessionServiceClient.DestroyWebSession, req)
}

// ValidateWebSession says whether a web session exists.
func (c *Client) ValidateWebSession(ctx context.Context, req *paddockv1.ValidateWebSessionRequest) (*paddockv1.ValidateWebSessionResponse, error) {
	return call(ctx, c, read, paddockv1.NewWebSessionServiceClient, paddockv1.WebSessionServiceClient.ValidateWebSession, req)
}

// CreateWebSession issues a new web session id, stored as an empty
// session. It is a write, retried with one request id.
func (c *Client) CreateWebSession(ctx context.Context, req *paddockv1.CreateWebSessionRequest) (*paddockv1.CreateWebSessionResponse, error) {
	return call(ctx, c, write, paddockv1.NewWebSessionServiceClient, paddockv1.WebSessionServiceClient.CreateWebSession, req)
}
