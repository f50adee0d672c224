package rpc

import (
	"context"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/paddock/paddock/node"
)

// ServedByHTTPHeader names the node that answered, on every HTTP response.
const ServedByHTTPHeader = "Served-By"

// NewHTTPHandler serves /healthz (the process is up), /readyz (the node
// is a member of a cluster with a known leader), /metrics (Prometheus, the
// node's registry) and the JSON gateway under /v1/, which calls this
// node's own gRPC server at grpcAddr over one connection that is closed
// when ctx ends. Every response carries Served-By. See doc.go for the
// gateway's conventions.
func NewHTTPHandler(ctx context.Context, n *node.Node, grpcAddr string) (http.Handler, error) {
	return newHTTPHandler(ctx, httpNode{id: n.ID(), ready: n.Ready, metrics: n.Metrics()}, grpcAddr)
}

// httpNode is what the HTTP handler needs of a node, so that it can be
// tested against a fake gRPC server without a cluster.
type httpNode struct {
	id      string
	ready   func() bool
	metrics prometheus.Gatherer
}

func newHTTPHandler(ctx context.Context, n httpNode, grpcAddr string) (http.Handler, error) {
	gw, err := newGateway(ctx, grpcAddr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !n.ready() {
			http.Error(w, "not ready: no known leader", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.metrics, promhttp.HandlerOpts{
		// A collector failing must not hide every other series.
		ErrorHandling: promhttp.ContinueOnError,
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(ServedByHTTPHeader, n.id)
		switch r.URL.Path {
		case "/healthz", "/readyz", "/metrics":
			mux.ServeHTTP(w, r)
		default:
			// Everything else goes to the gateway, never through
			// http.ServeMux: it would answer /v1/tree/a//b with a
			// redirect to /v1/tree/a/b instead of the 400 a malformed
			// znode path gets, and its 404s are not JSON.
			gw.ServeHTTP(w, r)
		}
	}), nil
}
