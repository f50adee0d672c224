package rpc

import (
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// HTTPIdleTimeout is how long the HTTP server keeps a connection that
// waits for its next request. Clients keep connections between calls
// (the PHP client's option persistent keeps one per node in each PHP
// worker, from one PHP request to the next); an idle worker's connection
// is closed after this, and the client opens a new one when it calls
// again.
const HTTPIdleTimeout = 5 * time.Minute

// NewHTTPServer returns the HTTP server of an agent serving h, with its
// connections counted in reg:
//
//	paddock_http_connections_opened_total  connections accepted
//	paddock_http_connections               connections open now
//
// A client that keeps its connections opens few; one that connects for
// every call (PHP's curl between requests) opens one per call. It sets
// no WriteTimeout: that would cut watch streams and long polls.
func NewHTTPServer(h http.Handler, reg prometheus.Registerer) *http.Server {
	opened := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "paddock_http_connections_opened_total",
		Help: "HTTP connections accepted by the node's HTTP server.",
	})
	open := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "paddock_http_connections",
		Help: "HTTP connections open on the node's HTTP server.",
	})
	reg.MustRegister(opened, open)
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       HTTPIdleTimeout,
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				opened.Inc()
				open.Inc()
			case http.StateClosed, http.StateHijacked:
				open.Dec()
			}
		},
	}
}
