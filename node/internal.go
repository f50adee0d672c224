package node

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock/paddock/fsm"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
)

// internalServer serves the leader's side of forwarding. It never forwards
// again: a node that is not the leader answers Unavailable, and the
// follower retries once it learns the new leader.
type internalServer struct {
	raftv1.UnsafeInternalServiceServer
	n *Node
}

func registerInternal(s *grpc.Server, n *Node) {
	raftv1.RegisterInternalServiceServer(s, &internalServer{n: n})
}

func (s *internalServer) Propose(ctx context.Context, req *raftv1.ProposeRequest) (*raftv1.ProposeResponse, error) {
	var cmd raftv1.Command
	if err := proto.Unmarshal(req.GetCommand(), &cmd); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "node: undecodable command: %v", err)
	}
	if !s.n.IsLeader() {
		return nil, peerStatus(ErrNotLeader)
	}
	if err := s.n.validate(&cmd); err != nil {
		return encodeResult(&fsm.Result{Err: err})
	}
	res, err := s.n.proposeLocal(ctx, &cmd)
	if err != nil {
		return nil, peerStatus(err)
	}
	return encodeResult(res)
}

func (s *internalServer) ReadIndex(ctx context.Context, _ *raftv1.ReadIndexRequest) (*raftv1.ReadIndexResponse, error) {
	idx, err := s.n.confirmedReadIndex(ctx)
	if err != nil {
		return nil, peerStatus(err)
	}
	return &raftv1.ReadIndexResponse{Index: idx}, nil
}

func (s *internalServer) Read(ctx context.Context, req *raftv1.ReadRequest) (*raftv1.ReadResponse, error) {
	results, err := s.n.readsForPeer(ctx, req.GetQueries())
	if err != nil {
		return nil, peerStatus(err)
	}
	return &raftv1.ReadResponse{Results: results}, nil
}

func (s *internalServer) KeepAlive(_ context.Context, req *raftv1.KeepAliveRequest) (*raftv1.KeepAliveResponse, error) {
	expired, err := s.n.KeepAliveForPeer(req.GetSessionIds())
	if err != nil {
		return nil, peerStatus(err)
	}
	return &raftv1.KeepAliveResponse{ExpiredIds: expired}, nil
}

// peerStatus maps node errors for a peer. "Not the leader" has a code of
// its own (FailedPrecondition, which no other internal error uses): it
// promises nothing was appended, so the follower may safely try again.
func peerStatus(err error) error {
	switch {
	case errors.Is(err, ErrNotLeader):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, ErrNoLeader), errors.Is(err, ErrShuttingDown):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, ErrUnknownOutcome):
		return status.Error(codes.Unknown, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}
