package rpc

import (
	"errors"
	"log/slog"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
)

// grpcMetrics returns the gRPC server series (paddock_grpc_server_*:
// started and handled counts by method and code, handling time by method,
// stream messages) registered in reg, the node's registry. A second server
// for the same node shares the series already registered rather than
// failing: they describe the node, not one grpc.Server.
func grpcMetrics(reg prometheus.Registerer) *grpcprom.ServerMetrics {
	m := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
		// 250µs to ~8s: reads answer in well under a millisecond, writes
		// wait for a quorum fsync, Poll waits up to its timeout.
		grpcprom.WithHistogramBuckets(prometheus.ExponentialBuckets(250e-6, 2, 16)),
	))
	err := prometheus.WrapRegistererWithPrefix("paddock_", reg).Register(m)
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if existing, ok := are.ExistingCollector.(*grpcprom.ServerMetrics); ok {
			return existing
		}
	}
	if err != nil {
		// Only a clash with another collector's series gets here: serve
		// without gRPC series rather than refuse to start.
		slog.Error("rpc: gRPC server metrics not registered", "error", err)
	}
	return m
}
