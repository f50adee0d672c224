package rpc

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"

	"github.com/paddock/paddock/node"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// ServedByHeader names the node that answered, on every response.
const ServedByHeader = "served-by"

// NewServer returns a gRPC server with Paddock's client services of n
// registered and reflection on. The nodes' internal service is not among
// them: a node serves it on its raft address only (package node), so a
// client cannot propose raw commands. Every call is counted and timed in
// n.Metrics() (paddock_grpc_server_*).
func NewServer(n *node.Node, opts ...grpc.ServerOption) *grpc.Server {
	ic := newInterceptors(n)
	opts = append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxRequestSize),
		grpc.MaxSendMsgSize(node.MaxMessageSize),
		grpc.NumStreamWorkers(streamWorkers),
		// A connection's write buffer goes back to a pool between
		// flushes: a load generator or a PHP farm keeps many connections
		// open, mostly idle.
		grpc.SharedWriteBuffer(true),
		// Static flow control windows: grpc-go's dynamic ones (BDP
		// estimation) send a window update and a ping, and handle the
		// ping's ack, about once per round trip on every connection, which
		// for a client's mostly idle connection is once per call. 4 MiB
		// holds the largest message (node.MaxMessageSize) at once; the
		// estimator's windows would grow up to 16 MiB, which only a
		// faraway bulk sender needs.
		grpc.InitialWindowSize(flowWindow),
		grpc.InitialConnWindowSize(flowWindow),
		// One interceptor each, not three: grpc-go builds a closure per
		// call and link of a chain of more than one.
		grpc.ChainUnaryInterceptor(ic.unary),
		grpc.ChainStreamInterceptor(ic.stream),
	}, opts...)
	s := grpc.NewServer(opts...)
	Register(s, n)
	reflection.Register(s)
	// Every method's series exist from the start, at zero.
	ic.m.Register(s)
	return s
}

// streamWorkers is the client server's pool of goroutines that serve
// calls. A call served by a pooled goroutine runs on a stack already grown
// by earlier calls, where a goroutine per call grows a fresh stack, copying
// it each time (runtime.newstack was ~5% of a loaded node's CPU). Calls in
// flight beyond the pool (writes waiting for their commit, long-lived
// watch streams) get a goroutine of their own, as without a pool, so the
// size bounds only the idle goroutines kept, each with a small stack: it
// covers the 128 clients of the benchmarks.
const streamWorkers = 128

// flowWindow is the static HTTP/2 flow control window, per stream and per
// connection, of the client server; the Go client's connections use the
// same (package client).
const flowWindow = 4 << 20

// interceptors is what every call of the client server goes through:
// metrics (first, so the time measured includes the rest), the served-by
// header, and for a write its request id.
type interceptors struct {
	m      *node.GRPCServerMetrics
	served metadata.MD
}

// newInterceptors returns the interceptors of n's client calls, shared by
// the gRPC server and the gateway's in-process routes.
func newInterceptors(n *node.Node) *interceptors {
	return &interceptors{m: n.GRPCMetrics(), served: metadata.Pairs(ServedByHeader, n.ID())}
}

func (ic *interceptors) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	call := ic.m.StartUnary(info.FullMethod)
	_ = grpc.SetHeader(ctx, ic.served)
	resp, err := withRequestID(ctx, req, info, h)
	call.Done(err)
	return resp, err
}

func (ic *interceptors) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	call, ss := ic.m.StartStream(ss, info)
	_ = ss.SetHeader(ic.served)
	err := h(srv, ss)
	call.Done(err)
	return err
}

// Register registers Paddock's client services of n on s.
func Register(s *grpc.Server, n *node.Node) {
	paddockv1.RegisterTreeServiceServer(s, &treeServer{n: n})
	paddockv1.RegisterSessionServiceServer(s, &sessionServer{n: n})
	paddockv1.RegisterClusterServiceServer(s, &clusterServer{n: n})
	paddockv1.RegisterWatchServiceServer(s, &watchServer{n: n})
	paddockv1.RegisterFarmServiceServer(s, newFarmServer(n))
	paddockv1.RegisterElectionServiceServer(s, &electionServer{n: n})
	paddockv1.RegisterLockServiceServer(s, &lockServer{n: n})
	paddockv1.RegisterWebSessionServiceServer(s, &webSessionServer{n: n})
}
