package rpc

import (
	"context"

	"github.com/paddock/paddock/node"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

type clusterServer struct {
	paddockv1.UnsafeClusterServiceServer
	n *node.Node
}

func (s *clusterServer) Status(_ context.Context, req *paddockv1.StatusRequest) (*paddockv1.StatusResponse, error) {
	return s.n.Status(req), nil
}

func (s *clusterServer) Members(ctx context.Context, _ *paddockv1.MembersRequest) (*paddockv1.MembersResponse, error) {
	members, err := s.n.Members(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &paddockv1.MembersResponse{Header: s.n.ReadHeader(), Members: members}, nil
}
