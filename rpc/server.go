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
	served := metadata.Pairs(ServedByHeader, n.ID())
	m := n.GRPCMetrics()
	opts = append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxRequestSize),
		grpc.MaxSendMsgSize(node.MaxMessageSize),
		// Metrics first, so the time measured includes the other
		// interceptors.
		grpc.ChainUnaryInterceptor(m.UnaryServerInterceptor(), func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			_ = grpc.SetHeader(ctx, served)
			return h(ctx, req)
		}, requestIDInterceptor),
		grpc.ChainStreamInterceptor(m.StreamServerInterceptor(), func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			_ = ss.SetHeader(served)
			return h(srv, ss)
		}),
	}, opts...)
	s := grpc.NewServer(opts...)
	Register(s, n)
	reflection.Register(s)
	// Every method's series exist from the start, at zero.
	m.InitializeMetrics(s)
	return s
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
}
