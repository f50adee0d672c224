package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/paddock/paddock/fsm"
	"github.com/paddock/paddock/node"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

type sessionServer struct {
	paddockv1.UnsafeSessionServiceServer
	n *node.Node
}

func (s *sessionServer) OpenSession(ctx context.Context, req *paddockv1.OpenSessionRequest) (*paddockv1.OpenSessionResponse, error) {
	timeout, err := sessionTimeout(req.GetTimeoutMs())
	if err != nil {
		return nil, toStatus(err)
	}
	lockDelay, err := lockDelay(req.GetLockDelayMs())
	if err != nil {
		return nil, toStatus(err)
	}
	resp, idx, err := s.n.OpenSessionWithDelay(ctx, timeout, lockDelay)
	if err != nil {
		return nil, toStatus(err)
	}
	resp.Header = s.n.Header(idx)
	return resp, nil
}

func (s *sessionServer) KeepAlive(ctx context.Context, req *paddockv1.KeepAliveRequest) (*paddockv1.KeepAliveResponse, error) {
	timeout, err := s.n.KeepAlive(ctx, req.GetSessionId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &paddockv1.KeepAliveResponse{
		Header: s.n.ReadHeader(), SessionId: req.GetSessionId(), TimeoutMs: timeout.Milliseconds(),
	}, nil
}

func (s *sessionServer) KeepAliveStream(stream paddockv1.SessionService_KeepAliveStreamServer) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		resp := &paddockv1.KeepAliveStreamResponse{SessionId: req.GetSessionId()}
		timeout, err := s.n.KeepAlive(stream.Context(), req.GetSessionId())
		switch {
		case errors.Is(err, fsm.ErrSessionExpired):
			resp.Expired = true
		case err != nil:
			return toStatus(err)
		}
		resp.TimeoutMs = timeout.Milliseconds()
		resp.Header = s.n.ReadHeader()
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

func (s *sessionServer) CloseSession(ctx context.Context, req *paddockv1.CloseSessionRequest) (*paddockv1.CloseSessionResponse, error) {
	resp, idx, err := s.n.CloseSession(ctx, req.GetSessionId())
	if err != nil {
		return nil, toStatus(err)
	}
	resp.Header = s.n.Header(idx)
	return resp, nil
}

func (s *sessionServer) GetSession(ctx context.Context, req *paddockv1.GetSessionRequest) (*paddockv1.GetSessionResponse, error) {
	resp, err := s.n.GetSession(ctx, req)
	return resp, toStatus(err)
}

func (s *sessionServer) ListSessions(ctx context.Context, req *paddockv1.ListSessionsRequest) (*paddockv1.ListSessionsResponse, error) {
	resp, err := s.n.ListSessions(ctx, req)
	return resp, toStatus(err)
}

// sessionTimeout converts a requested timeout_ms to a Duration, checking
// its range before any arithmetic: a negative one is a bad argument (the
// product with time.Millisecond would wrap int64 min to 0, the default,
// and int64 max to a negative), one too long for a Duration is the
// longest Duration, which the node clamps to its maximum like any other
// over-long timeout. 0 asks for the default.
func sessionTimeout(ms int64) (time.Duration, error) {
	if ms < 0 {
		return 0, fmt.Errorf("%w: negative session timeout %dms", fsm.ErrBadArgument, ms)
	}
	if ms > int64(math.MaxInt64/time.Millisecond) {
		return math.MaxInt64, nil
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// lockDelay converts OpenSessionRequest.lock_delay_ms: 0 takes the
// agent's default, -1 asks for none.
func lockDelay(ms int64) (time.Duration, error) {
	switch {
	case ms == -1:
		return -1, nil
	case ms < 0 || ms > fsm.MaxTTL.Milliseconds():
		return 0, fmt.Errorf("%w: lock_delay_ms %d: want -1 (none), 0 (the agent's default) or up to %d", fsm.ErrBadArgument, ms, fsm.MaxTTL.Milliseconds())
	}
	return time.Duration(ms) * time.Millisecond, nil
}
