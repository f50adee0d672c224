package rpc

import (
	"context"
	"fmt"
	"net/http"
	"net/http/pprof"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/paddock/paddock/node"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// ServedByHTTPHeader names the node that answered, on every HTTP response.
const ServedByHTTPHeader = "Served-By"

// LeaderHTTPHeader gives the current leader's HTTP address (its
// registered --http-addr), on every HTTP response of a node that knows
// it. A client that has this address in its own list can send its next
// calls there: every write and every web-session call ends on the
// leader, and a follower only forwards them.
const LeaderHTTPHeader = "Paddock-Leader"

// NewHTTPHandler serves /healthz (the process is up), /readyz (the node
// is a member of a cluster with a known leader), /metrics (Prometheus, the
// node's registry) and the JSON gateway under /v1/, which calls this
// node's own gRPC server at grpcAddr over one connection that is closed
// when ctx ends, except for the web-session routes, which it serves in
// this process (localWebSession). Every response carries Served-By, and
// Paddock-Leader when the node knows the leader. See doc.go for the
// gateway's conventions. Options add opt-in endpoints (WithPprof).
func NewHTTPHandler(ctx context.Context, n *node.Node, grpcAddr string, opts ...HTTPOption) (http.Handler, error) {
	return newHTTPHandler(ctx, httpNode{id: n.ID(), ready: n.Ready, metrics: n.Metrics(), webSession: newLocalWebSession(n), leaderHTTP: n.LeaderHTTPAddr}, grpcAddr, opts...)
}

// HTTPOption changes what NewHTTPHandler serves.
type HTTPOption func(*httpOptions)

type httpOptions struct {
	pprof bool
}

// WithPprof also serves net/http/pprof's profiles under /debug/pprof/.
// It is off by default (as etcd's --enable-pprof): profiles cost CPU
// while they run and show internals, so an operator turns them on.
func WithPprof() HTTPOption {
	return func(o *httpOptions) { o.pprof = true }
}

// pprofPrefix is where WithPprof serves the profiles.
const pprofPrefix = "/debug/pprof/"

// httpNode is what the HTTP handler needs of a node, so that it can be
// tested against a fake gRPC server without a cluster.
type httpNode struct {
	id      string
	ready   func() bool
	metrics prometheus.Gatherer
	// webSession, when set, serves the web-session routes in this
	// process (see localWebSession); when nil they go through the
	// loopback gRPC connection like the others.
	webSession paddockv1.WebSessionServiceServer
	// leaderHTTP, when set, gives the leader's HTTP address for
	// LeaderHTTPHeader ("" when unknown).
	leaderHTTP func() string
}

func newHTTPHandler(ctx context.Context, n httpNode, grpcAddr string, opts ...HTTPOption) (http.Handler, error) {
	var o httpOptions
	for _, opt := range opts {
		opt(&o)
	}
	gw, err := newGateway(ctx, grpcAddr, n.webSession)
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
	if o.pprof {
		// pprof.Index serves the named profiles (heap, goroutine, ...)
		// under the prefix; the rest need their own handlers.
		mux.HandleFunc(pprofPrefix, pprof.Index)
		mux.HandleFunc(pprofPrefix+"cmdline", pprof.Cmdline)
		mux.HandleFunc(pprofPrefix+"profile", pprof.Profile)
		mux.HandleFunc(pprofPrefix+"symbol", pprof.Symbol)
		mux.HandleFunc(pprofPrefix+"trace", pprof.Trace)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(ServedByHTTPHeader, n.id)
		if n.leaderHTTP != nil {
			if addr := n.leaderHTTP(); addr != "" {
				w.Header().Set(LeaderHTTPHeader, addr)
			}
		}
		switch {
		case r.URL.Path == "/healthz", r.URL.Path == "/readyz", r.URL.Path == "/metrics",
			o.pprof && strings.HasPrefix(r.URL.Path, pprofPrefix):
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
