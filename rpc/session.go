package rpc

import (
	"context"
	"errors"
	"io"
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
	resp, idx, err := s.n.OpenSession(ctx, time.Duration(req.GetTimeoutMs())*time.Millisecond)
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
