package rpc

import (
	"context"
	"fmt"
	"time"

	"github.com/paddock/paddock/fsm"
	"github.com/paddock/paddock/node"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

const (
	election = raftv1.ContentionKind_CONTENTION_KIND_ELECTION
	lock     = raftv1.ContentionKind_CONTENTION_KIND_LOCK
)

type electionServer struct {
	paddockv1.UnsafeElectionServiceServer
	n *node.Node
}

// waitTimeout converts a timeout_ms of Campaign or Acquire (0: as long
// as the call lasts).
func waitTimeout(ms int64) (time.Duration, error) {
	if ms < 0 || ms > node.MaxPollTimeout.Milliseconds() {
		return 0, fmt.Errorf("%w: timeout_ms %d is not in [0, %d]", fsm.ErrBadArgument, ms, node.MaxPollTimeout.Milliseconds())
	}
	return time.Duration(ms) * time.Millisecond, nil
}

func (s *electionServer) Campaign(ctx context.Context, req *paddockv1.CampaignRequest) (*paddockv1.CampaignResponse, error) {
	wait, err := waitTimeout(req.GetTimeoutMs())
	if err != nil {
		return nil, toStatus(err)
	}
	r, err := s.n.Contend(ctx, node.ContendArgs{
		Kind: election, Name: req.GetName(), Session: req.GetSessionId(), Value: req.GetValue(), Limit: 1, Wait: wait,
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &paddockv1.CampaignResponse{
		Header: s.n.Header(r.Zxid), Elected: r.Holds, Candidate: r.Candidate,
		Position: r.Position, LockDelayMs: r.LockDelay.Milliseconds(),
	}, nil
}

func (s *electionServer) Leader(ctx context.Context, req *paddockv1.LeaderRequest) (*paddockv1.LeaderResponse, error) {
	l, err := s.n.Line(ctx, election, req.GetName(), req.GetRead())
	if err != nil {
		return nil, toStatus(err)
	}
	return &paddockv1.LeaderResponse{
		Header: s.n.Header(l.Zxid), Leader: l.Leader(), Candidates: int32(len(l.Contention.Line)),
		LockDelayMs: l.LockDelay(time.Now()).Milliseconds(),
	}, nil
}

func (s *electionServer) Observe(req *paddockv1.ObserveRequest, stream paddockv1.ElectionService_ObserveServer) error {
	err := s.n.ObserveLeader(stream.Context(), req.GetName(), func(leader *paddockv1.Contender, zxid uint64) error {
		return stream.Send(&paddockv1.ObserveResponse{Header: s.n.Header(zxid), Leader: leader})
	})
	return toStatus(err)
}

func (s *electionServer) PollLeader(ctx context.Context, req *paddockv1.PollLeaderRequest) (*paddockv1.PollLeaderResponse, error) {
	wait, err := waitTimeout(req.GetTimeoutMs())
	if err != nil {
		return nil, toStatus(err)
	}
	if wait == 0 {
		wait = node.DefaultPollTimeout
	}
	leader, changed, zxid, err := s.n.PollLeader(ctx, req.GetName(), req.GetKnownToken(), req.GetKnownModZxid(), wait)
	if err != nil {
		return nil, toStatus(err)
	}
	return &paddockv1.PollLeaderResponse{Header: s.n.Header(zxid), Changed: changed, Leader: leader}, nil
}

func (s *electionServer) Proclaim(ctx context.Context, req *paddockv1.ProclaimRequest) (*paddockv1.ProclaimResponse, error) {
	leader, zxid, err := s.n.Proclaim(ctx, req.GetName(), req.GetToken(), req.GetValue())
	if err != nil {
		return nil, toStatus(err)
	}
	return &paddockv1.ProclaimResponse{Header: s.n.Header(zxid), Leader: leader}, nil
}

func (s *electionServer) Resign(ctx context.Context, req *paddockv1.ResignRequest) (*paddockv1.ResignResponse, error) {
	zxid, err := s.n.Withdraw(ctx, election, req.GetName(), req.GetToken())
	if err != nil {
		return nil, toStatus(err)
	}
	return &paddockv1.ResignResponse{Header: s.n.Header(zxid)}, nil
}
