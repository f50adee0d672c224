package client

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// Campaign enters req.session_id in the election and waits up to
// req.timeout_ms (0: as long as ctx allows) to lead
// (ElectionService.Campaign). The node renews the session while it waits.
// It is a write, retried on another endpoint with one request id; a
// retry finds the session's candidate, in the same place in line.
func (c *Client) Campaign(ctx context.Context, req *paddockv1.CampaignRequest) (*paddockv1.CampaignResponse, error) {
	return call(ctx, c, write, paddockv1.NewElectionServiceClient, bounded(req.GetTimeoutMs(), paddockv1.ElectionServiceClient.Campaign), req)
}

// Leader returns an election's leader, if any. Like every read, it is
// sent with min_zxid = LastZxid unless req sets one.
func (c *Client) Leader(ctx context.Context, req *paddockv1.LeaderRequest) (*paddockv1.LeaderResponse, error) {
	if o := c.ownWrites(req.GetRead()); o != nil {
		req = proto.CloneOf(req)
		req.Read = o
	}
	return call(ctx, c, read, paddockv1.NewElectionServiceClient, paddockv1.ElectionServiceClient.Leader, req)
}

// PollLeader waits up to req.timeout_ms for a leader other than the known
// one (ElectionService.PollLeader). ctx must outlast timeout_ms.
func (c *Client) PollLeader(ctx context.Context, req *paddockv1.PollLeaderRequest) (*paddockv1.PollLeaderResponse, error) {
	ms := req.GetTimeoutMs()
	if ms == 0 {
		ms = defaultPollTimeout.Milliseconds()
	}
	return call(ctx, c, read, paddockv1.NewElectionServiceClient, bounded(ms, paddockv1.ElectionServiceClient.PollLeader), req)
}

// observePoll is how long each of Observe's polls waits.
const observePoll = 30 * time.Second

// Observe calls fn with the election's leader (nil: none), first as it
// is and then after every change (a new leader, a proclaimed value, no
// leader), until ctx ends or fn returns an error, which Observe returns.
// It is a Leader read and then a chain of PollLeader calls, so it fails
// over between endpoints like any read; a change and its undoing between
// two polls may be missed, never the state after them.
func (c *Client) Observe(ctx context.Context, name string, fn func(*paddockv1.Contender) error) error {
	// The first answer is a read, not a poll: a poll that knows of no
	// leader waits its whole time when no one leads.
	lr, err := c.Leader(ctx, &paddockv1.LeaderRequest{Name: name})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	known := lr.GetLeader()
	if err := fn(known); err != nil {
		return err
	}
	for {
		pctx, cancel := context.WithTimeout(ctx, observePoll+5*time.Second)
		resp, err := c.PollLeader(pctx, &paddockv1.PollLeaderRequest{
			Name: name, KnownToken: known.GetToken(), KnownModZxid: known.GetModZxid(),
			TimeoutMs: observePoll.Milliseconds(),
		})
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		if resp.GetChanged() {
			known = resp.GetLeader()
			if err := fn(known); err != nil {
				return err
			}
		}
	}
}

// Proclaim sets the leader's value if req.token still leads. It is a
// write, retried with one request id.
func (c *Client) Proclaim(ctx context.Context, req *paddockv1.ProclaimRequest) (*paddockv1.ProclaimResponse, error) {
	return call(ctx, c, write, paddockv1.NewElectionServiceClient, paddockv1.ElectionServiceClient.Proclaim, req)
}

// Resign removes the candidate with req.token at once. It is a write,
// retried with one request id, so a retry of an applied Resign succeeds.
func (c *Client) Resign(ctx context.Context, req *paddockv1.ResignRequest) (*paddockv1.ResignResponse, error) {
	return call(ctx, c, write, paddockv1.NewElectionServiceClient, paddockv1.ElectionServiceClient.Resign, req)
}

// Acquire enters req.session_id in the lock's line and waits up to
// req.timeout_ms (0: as long as ctx allows) to hold it
// (LockService.Acquire). The node renews the session while it waits. It
// is a write, retried with one request id; a retry finds the session's
// place in line.
func (c *Client) Acquire(ctx context.Context, req *paddockv1.AcquireRequest) (*paddockv1.AcquireResponse, error) {
	return call(ctx, c, write, paddockv1.NewLockServiceClient, bounded(req.GetTimeoutMs(), paddockv1.LockServiceClient.Acquire), req)
}

// TryAcquire takes the lock only if it is free at once. It is a write,
// retried with one request id.
func (c *Client) TryAcquire(ctx context.Context, req *paddockv1.TryAcquireRequest) (*paddockv1.TryAcquireResponse, error) {
	return call(ctx, c, write, paddockv1.NewLockServiceClient, paddockv1.LockServiceClient.TryAcquire, req)
}

// Release removes the holder or waiter with req.token at once. It is a
// write, retried with one request id.
func (c *Client) Release(ctx context.Context, req *paddockv1.ReleaseRequest) (*paddockv1.ReleaseResponse, error) {
	return call(ctx, c, write, paddockv1.NewLockServiceClient, paddockv1.LockServiceClient.Release, req)
}

// GetLock lists a lock's holders and waiters. Like every read, it is sent
// with min_zxid = LastZxid unless req sets one.
func (c *Client) GetLock(ctx context.Context, req *paddockv1.GetLockRequest) (*paddockv1.GetLockResponse, error) {
	if o := c.ownWrites(req.GetRead()); o != nil {
		req = proto.CloneOf(req)
		req.Read = o
	}
	return call(ctx, c, read, paddockv1.NewLockServiceClient, paddockv1.LockServiceClient.GetLock, req)
}

// bounded gives each attempt of a call that waits up to timeoutMs on the
// server (Campaign, Acquire, PollLeader) a deadline of timeoutMs + 1 s, as
// Poll does: a node that took the call and never answers (its answers
// dropped, the process paused) does not hold the caller, who moves on to
// the next endpoint with the same request id. timeoutMs 0 (wait as long
// as ctx allows) sets none.
func bounded[S, Req, Resp any](timeoutMs int64, method func(S, context.Context, Req, ...grpc.CallOption) (Resp, error)) func(S, context.Context, Req, ...grpc.CallOption) (Resp, error) {
	if timeoutMs <= 0 {
		return method
	}
	return boundedBy(time.Duration(timeoutMs)*time.Millisecond+pollGrace, method)
}

// boundedBy gives each attempt of method a deadline of limit (none if
// limit is 0): an attempt not answered by then fails as Unavailable, and
// the call goes on at the next endpoint.
func boundedBy[S, Req, Resp any](limit time.Duration, method func(S, context.Context, Req, ...grpc.CallOption) (Resp, error)) func(S, context.Context, Req, ...grpc.CallOption) (Resp, error) {
	if limit <= 0 {
		return method
	}
	return func(s S, ctx context.Context, r Req, opts ...grpc.CallOption) (Resp, error) {
		actx, cancel := context.WithTimeout(ctx, limit)
		defer cancel()
		resp, err := method(s, actx, r, opts...)
		if err != nil && ctx.Err() == nil && (actx.Err() != nil || attemptTimedOut(ctx, actx, err)) {
			return resp, status.Errorf(codes.Unavailable, "client: call not answered within %v", limit)
		}
		return resp, err
	}
}
