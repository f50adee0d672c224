package rpc

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestHTTPServerConnections: calls on a kept connection open one
// connection; a client without keep-alive opens one per call; the gauge
// follows the connections open.
func TestHTTPServerConnections(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv := NewHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok")
	}), reg)
	if srv.IdleTimeout != HTTPIdleTimeout || srv.ReadHeaderTimeout == 0 || srv.WriteTimeout != 0 {
		t.Errorf("timeouts: idle %v, read header %v, write %v", srv.IdleTimeout, srv.ReadHeaderTimeout, srv.WriteTimeout)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	url := "http://" + l.Addr().String() + "/"
	get := func(c *http.Client) {
		t.Helper()
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	opened := func() float64 { return gathered(t, reg, "paddock_http_connections_opened_total") }
	open := func() float64 { return gathered(t, reg, "paddock_http_connections") }

	kept := &http.Client{Transport: &http.Transport{}}
	for range 3 {
		get(kept)
	}
	if got := opened(); got != 1 {
		t.Errorf("3 calls on a kept connection: %v connections opened, want 1", got)
	}
	once := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for range 2 {
		get(once)
	}
	if got := opened(); got != 3 {
		t.Errorf("then 2 calls without keep-alive: %v connections opened, want 3", got)
	}
	kept.CloseIdleConnections()
	deadline := time.Now().Add(10 * time.Second)
	for open() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%v connections open after every client closed its own, want 0", open())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// gathered is the value of the series name (a counter or a gauge
// without labels) in g.
func gathered(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			m := mf.GetMetric()[0]
			return m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no series %s", name)
	return 0
}
