package rpc

import (
	"context"

	"github.com/paddock/paddock/node"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

type watchServer struct {
	paddockv1.UnsafeWatchServiceServer
	n *node.Node
}

// Watch ends with the status of the node's error: a canceled watch
// carries a WatchCanceled detail (see toStatus).
func (s *watchServer) Watch(req *paddockv1.WatchRequest, stream paddockv1.WatchService_WatchServer) error {
	return toStatus(s.n.Watch(stream.Context(), req, stream.Send))
}

func (s *watchServer) Poll(ctx context.Context, req *paddockv1.PollRequest) (*paddockv1.PollResponse, error) {
	resp, err := s.n.Poll(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	return resp, nil
}
