package rpc

import (
	"context"
	"time"

	"github.com/paddock/paddock/node"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

type lockServer struct {
	paddockv1.UnsafeLockServiceServer
	n *node.Node
}

func (s *lockServer) Acquire(ctx context.Context, req *paddockv1.AcquireRequest) (*paddockv1.AcquireResponse, error) {
	wait, err := waitTimeout(req.GetTimeoutMs())
	if err != nil {
		return nil, toStatus(err)
	}
	r, err := s.n.Contend(ctx, node.ContendArgs{
		Kind: lock, Name: req.GetName(), Session: req.GetSessionId(), Value: req.GetValue(),
		Limit: max(req.GetLimit(), 1), Wait: wait,
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &paddockv1.AcquireResponse{
		Header: s.n.Header(r.Zxid), Acquired: r.Holds, Holder: r.Candidate, Position: r.Position,
		Limit: r.Limit, LockDelayMs: r.LockDelay.Milliseconds(),
	}, nil
}

func (s *lockServer) TryAcquire(ctx context.Context, req *paddockv1.TryAcquireRequest) (*paddockv1.TryAcquireResponse, error) {
	r, err := s.n.Contend(ctx, node.ContendArgs{
		Kind: lock, Name: req.GetName(), Session: req.GetSessionId(), Value: req.GetValue(),
		Limit: max(req.GetLimit(), 1), TryOnly: true,
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &paddockv1.TryAcquireResponse{
		Header: s.n.Header(r.Zxid), Acquired: r.Holds, Holder: r.Candidate, Position: r.Position, Limit: r.Limit,
	}, nil
}

func (s *lockServer) Release(ctx context.Context, req *paddockv1.ReleaseRequest) (*paddockv1.ReleaseResponse, error) {
	zxid, err := s.n.Withdraw(ctx, lock, req.GetName(), req.GetToken())
	if err != nil {
		return nil, toStatus(err)
	}
	return &paddockv1.ReleaseResponse{Header: s.n.Header(zxid)}, nil
}

func (s *lockServer) GetLock(ctx context.Context, req *paddockv1.GetLockRequest) (*paddockv1.GetLockResponse, error) {
	l, err := s.n.Line(ctx, lock, req.GetName(), req.GetRead())
	if err != nil {
		return nil, toStatus(err)
	}
	return &paddockv1.GetLockResponse{
		Header: s.n.Header(l.Zxid), Limit: l.Limit, Holders: l.Holders(), Waiters: l.Waiters(),
		LockDelayMs: l.LockDelay(time.Now()).Milliseconds(),
	}, nil
}
