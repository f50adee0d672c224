package rpc

import (
	"context"
	"fmt"
	"net/http"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/paddock/paddock/node"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// NewHTTPHandler serves /healthz (the process is up), /readyz (the node
// is a member of a cluster with a known leader) and the JSON gateway,
// which calls this node's own gRPC server at grpcAddr. Every response
// carries Served-By.
func NewHTTPHandler(ctx context.Context, n *node.Node, grpcAddr string) (http.Handler, error) {
	gw := runtime.NewServeMux()
	dial := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithNoProxy()}
	if err := paddockv1.RegisterClusterServiceHandlerFromEndpoint(ctx, gw, grpcAddr, dial); err != nil {
		return nil, fmt.Errorf("rpc: gateway: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !n.Ready() {
			http.Error(w, "not ready: no known leader", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("/v1/", gw)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Served-By", n.ID())
		mux.ServeHTTP(w, r)
	}), nil
}
