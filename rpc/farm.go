package rpc

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/paddock/paddock/farm"
	"github.com/paddock/paddock/fsm"
	"github.com/paddock/paddock/node"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// defaultMaxFailed is CheckFarm's max when the request has none, as
// `paddock farm check`.
const defaultMaxFailed = "10%"

// farmServer serves FarmService by running package farm inside the node,
// over nodeTree. Its writes are farm.SetField and farm.UnsetField:
// compare-and-set loops of a Get and a Set at the version read, which
// take several commands for one request. A client's request id is
// therefore not passed to them (one id names one command, see
// node.WithRequestID): a retried SetField is made safe by what it does,
// not by the id. Setting a field to the value it already has, or
// unsetting a field that is not there, writes nothing, so a retry after
// an applied but unanswered call finds its work done and returns the
// znode's Stat.
type farmServer struct {
	paddockv1.UnsafeFarmServiceServer
	n    *node.Node
	tree nodeTree
}

func newFarmServer(n *node.Node) *farmServer {
	return &farmServer{n: n, tree: nodeTree{treeServer: &treeServer{n: n}, watch: &watchServer{n: n}}}
}

// nodeTree is the node as a farm.Tree: the tree service's handlers, and
// the watch service's Poll, called in process with their status errors.
type nodeTree struct {
	*treeServer
	watch *watchServer
}

// Poll is WatchService.Poll.
func (t nodeTree) Poll(ctx context.Context, req *paddockv1.PollRequest) (*paddockv1.PollResponse, error) {
	return t.watch.Poll(ctx, req)
}

var _ farm.Tree = nodeTree{}

func (s *farmServer) GetFarm(ctx context.Context, req *paddockv1.GetFarmRequest) (*paddockv1.GetFarmResponse, error) {
	f, err := farm.ParseFilter(req.GetFilters())
	if err != nil {
		return nil, toStatus(err)
	}
	snap, err := farm.Read(ctx, s.tree, req.GetFarm(), req.GetRead())
	if err != nil {
		return nil, toStatus(err)
	}
	return &paddockv1.GetFarmResponse{Header: s.n.Header(snap.Zxid), Farm: farmMessage(snap, f)}, nil
}

// PollFarm polls the farm's subtree after after_zxid for one event and,
// when one came, reads the farm at a zxid at or after it: a serializable
// read on this node, whose watch hub has seen the event, so it never
// waits on the leader. A farm changed many times while the client was
// away is returned once, as it is now.
func (s *farmServer) PollFarm(ctx context.Context, req *paddockv1.PollFarmRequest) (*paddockv1.PollFarmResponse, error) {
	if ms := req.GetTimeoutMs(); ms < 0 || ms > node.MaxPollTimeout.Milliseconds() {
		return nil, toStatus(fmt.Errorf("%w: timeout_ms %d is not in [0, %d]", fsm.ErrBadArgument, ms, node.MaxPollTimeout.Milliseconds()))
	}
	f, err := farm.ParseFilter(req.GetFilters())
	if err != nil {
		return nil, toStatus(err)
	}
	var read *paddockv1.ReadOptions // linearizable: the first read
	if req.GetAfterZxid() != 0 {
		p, err := s.tree.Poll(ctx, &paddockv1.PollRequest{
			Path: req.GetFarm(), Recursive: true, AfterZxid: req.GetAfterZxid(), TimeoutMs: req.GetTimeoutMs(), MaxEvents: 1,
		})
		if err != nil {
			return nil, err
		}
		if len(p.GetEvents()) == 0 {
			return &paddockv1.PollFarmResponse{Header: p.GetHeader()}, nil
		}
		read = &paddockv1.ReadOptions{
			Consistency: paddockv1.ReadConsistency_READ_CONSISTENCY_SERIALIZABLE,
			MinZxid:     p.GetEvents()[0].GetZxid(),
		}
	}
	snap, err := farm.Read(ctx, s.tree, req.GetFarm(), read)
	if err != nil {
		return nil, toStatus(err)
	}
	return &paddockv1.PollFarmResponse{Header: s.n.Header(snap.Zxid), Changed: true, Farm: farmMessage(snap, f)}, nil
}

func (s *farmServer) SetField(ctx context.Context, req *paddockv1.SetFieldRequest) (*paddockv1.SetFieldResponse, error) {
	if req.GetValue() == nil || req.GetValue().Value == nil {
		return nil, toStatus(fmt.Errorf("%w: value is required (an HTTP body {\"value\": \"...\"})", fsm.ErrBadArgument))
	}
	st, err := farm.SetField(node.WithRequestID(ctx, nil), s.tree, req.GetHost(), req.GetField(), req.GetValue().GetValue())
	if err != nil {
		return nil, toStatus(err)
	}
	return &paddockv1.SetFieldResponse{Header: s.fieldHeader(st), Stat: st}, nil
}

func (s *farmServer) UnsetField(ctx context.Context, req *paddockv1.UnsetFieldRequest) (*paddockv1.UnsetFieldResponse, error) {
	st, err := farm.UnsetField(node.WithRequestID(ctx, nil), s.tree, req.GetHost(), req.GetField())
	if err != nil {
		return nil, toStatus(err)
	}
	return &paddockv1.UnsetFieldResponse{Header: s.fieldHeader(st), Stat: st}, nil
}

// fieldHeader is the header of a field change whose znode is now at st:
// the zxid of the write, or, when nothing was written, of the znode's
// last change (or later), so that a read at min_zxid sees the value.
func (s *farmServer) fieldHeader(st *paddockv1.Stat) *paddockv1.ResponseHeader {
	return s.n.Header(max(st.GetMzxid(), s.n.ReadHeader().GetZxid()))
}

// CheckFarm refuses a threshold that cannot be parsed (INVALID_ARGUMENT):
// it is the caller's mistake, not the farm's state. The CLI, a Nagios
// plugin, reports it as UNKNOWN instead.
func (s *farmServer) CheckFarm(ctx context.Context, req *paddockv1.CheckFarmRequest) (*paddockv1.CheckFarmResponse, error) {
	maxFailed := req.GetMax()
	if maxFailed == "" {
		maxFailed = defaultMaxFailed
	}
	for _, t := range []string{maxFailed, req.GetWarn()} {
		if err := farm.ValidateThreshold(t); t != "" && err != nil {
			return nil, toStatus(err)
		}
	}
	snap, err := farm.Read(ctx, s.tree, req.GetFarm(), req.GetRead())
	if err != nil {
		return nil, toStatus(err)
	}
	r := snap.Check(maxFailed, req.GetWarn())
	return &paddockv1.CheckFarmResponse{
		Header:  s.n.Header(snap.Zxid),
		Status:  checkStatus(r.Status),
		Message: r.Message,
		Size:    int32(r.Size),
		Running: int32(r.Running),
		Failing: int32(r.Failing),
	}, nil
}

func checkStatus(st int) paddockv1.FarmCheckStatus {
	switch st {
	case farm.StatusOK:
		return paddockv1.FarmCheckStatus_FARM_CHECK_STATUS_OK
	case farm.StatusWarning:
		return paddockv1.FarmCheckStatus_FARM_CHECK_STATUS_WARNING
	case farm.StatusCritical:
		return paddockv1.FarmCheckStatus_FARM_CHECK_STATUS_CRITICAL
	}
	return paddockv1.FarmCheckStatus_FARM_CHECK_STATUS_UNKNOWN
}

// farmMessage is snap as the API returns it, its hosts those that pass f.
func farmMessage(snap *farm.Snapshot, f farm.Filter) *paddockv1.Farm {
	m := &paddockv1.Farm{
		Path:          snap.Path,
		Exists:        snap.Exists,
		Hosts:         map[string]*structpb.Struct{},
		InvalidHosts:  snap.Invalid,
		Properties:    confStruct(snap.Props),
		RunningFilter: snap.RunningFilter(),
	}
	for name, conf := range snap.Export(f) {
		m.Hosts[name] = confStruct(conf)
	}
	if c, ok := snap.Hosts[farm.CommonName]; ok {
		m.Common = confStruct(c.Conf)
	}
	if size, ok := snap.Size(); ok {
		m.Size = int32(size)
	}
	if running, err := snap.Running(); err != nil {
		m.RunningFilterError = status.Convert(toStatus(err)).Message()
	} else {
		m.Running = int32(running)
	}
	return m
}

// confStruct is c as a Struct. Values are strings as ZkFarmer stores
// them; a number (a size written by join) becomes a JSON number, exact up
// to 2^53.
func confStruct(c farm.Conf) *structpb.Struct {
	s := &structpb.Struct{Fields: make(map[string]*structpb.Value, len(c))}
	for k, v := range c {
		s.Fields[k] = confValue(v)
	}
	return s
}

func confValue(v any) *structpb.Value {
	switch v := v.(type) {
	case farm.Conf:
		return structpb.NewStructValue(confStruct(v))
	case []any:
		l := &structpb.ListValue{Values: make([]*structpb.Value, len(v))}
		for i, e := range v {
			l.Values[i] = confValue(e)
		}
		return structpb.NewListValue(l)
	case json.Number:
		f, err := strconv.ParseFloat(v.String(), 64)
		if err != nil {
			return structpb.NewStringValue(v.String())
		}
		return structpb.NewNumberValue(f)
	case string:
		return structpb.NewStringValue(v)
	case bool:
		return structpb.NewBoolValue(v)
	}
	return structpb.NewNullValue()
}
