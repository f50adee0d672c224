package rpc

import (
	"context"

	"github.com/paddock/paddock/fsm"
	"github.com/paddock/paddock/node"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

type treeServer struct {
	paddockv1.UnsafeTreeServiceServer
	n *node.Node
}

func (s *treeServer) propose(ctx context.Context, cmd *raftv1.Command) (*fsm.Result, error) {
	res, err := s.n.Propose(ctx, cmd)
	return res, toStatus(err)
}

func (s *treeServer) Create(ctx context.Context, req *paddockv1.CreateRequest) (*paddockv1.CreateResponse, error) {
	res, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_Create{Create: req}})
	if err != nil {
		return nil, err
	}
	resp := res.Resp.(*paddockv1.CreateResponse)
	resp.Header = s.n.Header(res.Index)
	return resp, nil
}

func (s *treeServer) Set(ctx context.Context, req *paddockv1.SetRequest) (*paddockv1.SetResponse, error) {
	res, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_Set{Set: req}})
	if err != nil {
		return nil, err
	}
	resp := res.Resp.(*paddockv1.SetResponse)
	resp.Header = s.n.Header(res.Index)
	return resp, nil
}

func (s *treeServer) Delete(ctx context.Context, req *paddockv1.DeleteRequest) (*paddockv1.DeleteResponse, error) {
	res, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_Delete{Delete: req}})
	if err != nil {
		return nil, err
	}
	resp := res.Resp.(*paddockv1.DeleteResponse)
	resp.Header = s.n.Header(res.Index)
	return resp, nil
}

func (s *treeServer) Multi(ctx context.Context, req *paddockv1.MultiRequest) (*paddockv1.MultiResponse, error) {
	res, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_Multi{Multi: req}})
	if err != nil {
		return nil, err
	}
	resp := res.Resp.(*paddockv1.MultiResponse)
	resp.Header = s.n.Header(res.Index)
	return resp, nil
}

func (s *treeServer) Get(ctx context.Context, req *paddockv1.GetRequest) (*paddockv1.GetResponse, error) {
	resp, err := s.n.Get(ctx, req)
	return resp, toStatus(err)
}

func (s *treeServer) Exists(ctx context.Context, req *paddockv1.ExistsRequest) (*paddockv1.ExistsResponse, error) {
	resp, err := s.n.Exists(ctx, req)
	return resp, toStatus(err)
}

func (s *treeServer) List(ctx context.Context, req *paddockv1.ListRequest) (*paddockv1.ListResponse, error) {
	resp, err := s.n.List(ctx, req)
	return resp, toStatus(err)
}
