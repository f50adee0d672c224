package node

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/paddock/paddock/fsm"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// The reads of the public API take and return its messages, so that a
// follower can hand a whole request to the leader (read.go) and both run
// the same code on their own state (query). Each read honours the
// request's ReadOptions; its response header names the node whose state
// answered it, which is the leader when the read was forwarded.

const (
	// DefaultPageSize is List's page size when the request sets none.
	DefaultPageSize = 1000
	// MaxPageSize is the largest page_size List accepts.
	MaxPageSize = 10000
)

// Get reads one znode's data and stat.
func (n *Node) Get(ctx context.Context, req *paddockv1.GetRequest) (*paddockv1.GetResponse, error) {
	q := &getQuery{get: raftv1.Query_Get{Get: req}}
	q.q.Query = &q.get
	r, err := n.read(ctx, req.GetRead(), &q.q)
	return r.GetGet(), err
}

// getQuery and getResult are a Get's query and its result, each with the
// messages it holds in one allocation: Get is the most frequent read, and
// these live and die together.
type getQuery struct {
	q   raftv1.Query
	get raftv1.Query_Get
}

type getResult struct {
	res  raftv1.QueryResult
	get  raftv1.QueryResult_Get
	resp paddockv1.GetResponse
	stat paddockv1.Stat
}

// Exists reports whether a znode exists, with its stat if it does.
func (n *Node) Exists(ctx context.Context, req *paddockv1.ExistsRequest) (*paddockv1.ExistsResponse, error) {
	r, err := n.read(ctx, req.GetRead(), &raftv1.Query{Query: &raftv1.Query_Exists{Exists: req}})
	return r.GetExists(), err
}

// List returns one page of a znode's children, in name order.
func (n *Node) List(ctx context.Context, req *paddockv1.ListRequest) (*paddockv1.ListResponse, error) {
	r, err := n.read(ctx, listOptions(req), &raftv1.Query{Query: &raftv1.Query_List{List: req}})
	return r.GetList(), err
}

// GetSession describes one session.
func (n *Node) GetSession(ctx context.Context, req *paddockv1.GetSessionRequest) (*paddockv1.GetSessionResponse, error) {
	r, err := n.read(ctx, req.GetRead(), &raftv1.Query{Query: &raftv1.Query_GetSession{GetSession: req}})
	return r.GetGetSession(), err
}

// ListSessions describes every session.
func (n *Node) ListSessions(ctx context.Context, req *paddockv1.ListSessionsRequest) (*paddockv1.ListSessionsResponse, error) {
	r, err := n.read(ctx, req.GetRead(), &raftv1.Query{Query: &raftv1.Query_ListSessions{ListSessions: req}})
	return r.GetListSessions(), err
}

// checkQuery rejects a query that no state could answer (bad path, page
// size or page token) before it waits for a read index or is forwarded.
// query checks the same again, for the reads peers forward.
func checkQuery(q *raftv1.Query) error {
	switch q := q.GetQuery().(type) {
	case *raftv1.Query_Get:
		return fsm.ValidatePath(q.Get.GetPath(), false)
	case *raftv1.Query_Exists:
		return fsm.ValidatePath(q.Exists.GetPath(), false)
	case *raftv1.Query_List:
		return checkList(q.List)
	case nil:
		return errEmptyQuery
	}
	return nil
}

var errEmptyQuery = fmt.Errorf("%w: empty read request", fsm.ErrBadArgument)

// query answers q from this node's state, which the caller has made
// fresh enough.
func (n *Node) query(q *raftv1.Query) (*raftv1.QueryResult, error) {
	hdr := n.ReadHeader()
	switch q := q.GetQuery().(type) {
	case *raftv1.Query_Get:
		r := &getResult{}
		data, err := n.fsm.GetInto(q.Get.GetPath(), &r.stat)
		if err != nil {
			return nil, err
		}
		r.resp.Header, r.resp.Data, r.resp.Stat = hdr, data, &r.stat
		r.get.Get = &r.resp
		r.res.Result = &r.get
		return &r.res, nil
	case *raftv1.Query_Exists:
		resp := &paddockv1.ExistsResponse{Header: hdr}
		_, stat, err := n.fsm.Get(q.Exists.GetPath())
		switch {
		case err == nil:
			resp.Exists, resp.Stat = true, stat
		case !errors.Is(err, fsm.ErrNoNode):
			return nil, err
		}
		return &raftv1.QueryResult{Result: &raftv1.QueryResult_Exists{Exists: resp}}, nil
	case *raftv1.Query_List:
		if q.List.GetWithData() {
			resp, err := n.listData(q.List, hdr)
			if err != nil {
				return nil, err
			}
			return &raftv1.QueryResult{Result: &raftv1.QueryResult_List{List: resp}}, nil
		}
		resp, err := n.list(q.List)
		if err != nil {
			return nil, err
		}
		resp.Header = hdr
		return &raftv1.QueryResult{Result: &raftv1.QueryResult_List{List: resp}}, nil
	case *raftv1.Query_GetSession:
		sess, err := n.fsm.Session(q.GetSession.GetSessionId())
		if err != nil {
			return nil, err
		}
		return &raftv1.QueryResult{Result: &raftv1.QueryResult_GetSession{GetSession: &paddockv1.GetSessionResponse{Header: hdr, Session: sess}}}, nil
	case *raftv1.Query_ListSessions:
		resp := &paddockv1.ListSessionsResponse{Header: hdr, Sessions: n.fsm.Sessions()}
		return &raftv1.QueryResult{Result: &raftv1.QueryResult_ListSessions{ListSessions: resp}}, nil
	}
	return nil, errEmptyQuery
}

// list reads one page of children. A page token is the last name of the
// previous page, base64url without padding.
func (n *Node) list(req *paddockv1.ListRequest) (*paddockv1.ListResponse, error) {
	size, after, err := listPage(req)
	if err != nil {
		return nil, err
	}
	page, err := n.fsm.List(req.GetPath(), after, size)
	if err != nil {
		return nil, err
	}
	resp := &paddockv1.ListResponse{Children: page.Children, Stat: page.Stat}
	if page.Next != "" {
		resp.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(page.Next))
	}
	return resp, nil
}

// listPage returns a List request's page size and the name it lists after.
func listPage(req *paddockv1.ListRequest) (size int, after string, err error) {
	if size, err = pageSize(req); err != nil {
		return 0, "", err
	}
	b, err := base64.RawURLEncoding.DecodeString(req.GetPageToken())
	if err != nil {
		return 0, "", fmt.Errorf("%w: malformed page_token", fsm.ErrBadArgument)
	}
	return size, string(b), nil
}

// pageSize returns a List request's page size.
func pageSize(req *paddockv1.ListRequest) (int, error) {
	size := int(req.GetPageSize())
	switch {
	case size < 0 || size > MaxPageSize:
		return 0, fmt.Errorf("%w: page_size %d is not in [0, %d]", fsm.ErrBadArgument, size, MaxPageSize)
	case size == 0:
		size = DefaultPageSize
	}
	return size, nil
}
