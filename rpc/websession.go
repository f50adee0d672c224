package rpc

import (
	"context"

	"github.com/paddock/paddock/node"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// webSessionServer serves PHP's web sessions. The node does the work on
// any node (a follower hands each call to the leader, which holds the
// locks) and fills the response headers; these handlers only map its
// errors.
type webSessionServer struct {
	paddockv1.UnsafeWebSessionServiceServer
	n *node.Node
}

func (s *webSessionServer) ReadWebSession(ctx context.Context, req *paddockv1.ReadWebSessionRequest) (*paddockv1.ReadWebSessionResponse, error) {
	r, err := s.n.ReadWebSession(ctx, req)
	return r, toStatus(err)
}

func (s *webSessionServer) WriteWebSession(ctx context.Context, req *paddockv1.WriteWebSessionRequest) (*paddockv1.WriteWebSessionResponse, error) {
	r, err := s.n.WriteWebSession(ctx, req)
	return r, toStatus(err)
}

func (s *webSessionServer) ReleaseWebSession(ctx context.Context, req *paddockv1.ReleaseWebSessionRequest) (*paddockv1.ReleaseWebSessionResponse, error) {
	r, err := s.n.ReleaseWebSession(ctx, req)
	return r, toStatus(err)
}

func (s *webSessionServer) TouchWebSession(ctx context.Context, req *paddockv1.TouchWebSessionRequest) (*paddockv1.TouchWebSessionResponse, error) {
	r, err := s.n.TouchWebSession(ctx, req)
	return r, toStatus(err)
}

func (s *webSessionServer) DestroyWebSession(ctx context.Context, req *paddockv1.DestroyWebSessionRequest) (*paddockv1.DestroyWebSessionResponse, error) {
	r, err := s.n.DestroyWebSession(ctx, req)
	return r, toStatus(err)
}

func (s *webSessionServer) ValidateWebSession(ctx context.Context, req *paddockv1.ValidateWebSessionRequest) (*paddockv1.ValidateWebSessionResponse, error) {
	r, err := s.n.ValidateWebSession(ctx, req)
	return r, toStatus(err)
}

func (s *webSessionServer) CreateWebSession(ctx context.Context, req *paddockv1.CreateWebSessionRequest) (*paddockv1.CreateWebSessionResponse, error) {
	r, err := s.n.CreateWebSession(ctx, req)
	return r, toStatus(err)
}
