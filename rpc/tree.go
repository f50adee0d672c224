package rpc

import (
	"context"
	"encoding/base64"
	"fmt"

	"github.com/paddock/paddock/fsm"
	"github.com/paddock/paddock/node"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

const (
	defaultPageSize = 1000
	maxPageSize     = 10000
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
	if err := s.n.WaitRead(ctx, req.GetRead()); err != nil {
		return nil, toStatus(err)
	}
	hdr := s.n.ReadHeader()
	data, stat, err := s.n.FSM().Get(req.GetPath())
	if err != nil {
		return nil, toStatus(err)
	}
	return &paddockv1.GetResponse{Header: hdr, Data: data, Stat: stat}, nil
}

func (s *treeServer) Exists(ctx context.Context, req *paddockv1.ExistsRequest) (*paddockv1.ExistsResponse, error) {
	if err := fsm.ValidatePath(req.GetPath(), false); err != nil {
		return nil, toStatus(err)
	}
	if err := s.n.WaitRead(ctx, req.GetRead()); err != nil {
		return nil, toStatus(err)
	}
	hdr := s.n.ReadHeader()
	_, stat, err := s.n.FSM().Get(req.GetPath())
	if err != nil {
		return &paddockv1.ExistsResponse{Header: hdr}, nil
	}
	return &paddockv1.ExistsResponse{Header: hdr, Exists: true, Stat: stat}, nil
}

func (s *treeServer) List(ctx context.Context, req *paddockv1.ListRequest) (*paddockv1.ListResponse, error) {
	size := int(req.GetPageSize())
	switch {
	case size < 0 || size > maxPageSize:
		return nil, toStatus(fmt.Errorf("%w: page_size %d is not in [0, %d]", fsm.ErrBadArgument, size, maxPageSize))
	case size == 0:
		size = defaultPageSize
	}
	after, err := base64.RawURLEncoding.DecodeString(req.GetPageToken())
	if err != nil {
		return nil, toStatus(fmt.Errorf("%w: malformed page_token", fsm.ErrBadArgument))
	}
	if err := s.n.WaitRead(ctx, req.GetRead()); err != nil {
		return nil, toStatus(err)
	}
	hdr := s.n.ReadHeader()
	page, err := s.n.FSM().List(req.GetPath(), string(after), size)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &paddockv1.ListResponse{Header: hdr, Children: page.Children, Stat: page.Stat}
	if page.Next != "" {
		resp.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(page.Next))
	}
	return resp, nil
}
