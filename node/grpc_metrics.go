package node

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// GRPCServerMetrics is a node's gRPC server series, shared by every gRPC
// server of the node: the internal one on the raft address and rpc's client
// server. They are the series go-grpc-middleware's Prometheus provider
// exposes (names, help, labels, types and values alike, with the
// handling-time histogram on), under the paddock_ prefix:
//
//	paddock_grpc_server_started_total{grpc_type,grpc_service,grpc_method}
//	paddock_grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}
//	paddock_grpc_server_msg_received_total{grpc_type,grpc_service,grpc_method}
//	paddock_grpc_server_msg_sent_total{grpc_type,grpc_service,grpc_method}
//	paddock_grpc_server_handling_seconds{grpc_type,grpc_service,grpc_method}
//
// It exists because the provider resolves every series from its label
// values on every call (five label hashes and map look-ups, and their
// allocations, per call): here a method's series are resolved once, when
// its server registers it (Register), so a call costs one map look-up by
// its full method name.
type GRPCServerMetrics struct {
	started, handled, received, sent *prometheus.CounterVec
	handling                         *prometheus.HistogramVec

	// methods maps a full method name ("/pkg.Service/Method") to its
	// resolved series. It is copied on write (Register, or a call to a
	// method no server registered), so calls read it without a lock.
	methods atomic.Pointer[map[string]*grpcMethod]
	mu      sync.Mutex // serialises writers of methods
}

// grpcMethod is one method's resolved series. A method no server
// registered (never seen in practice: grpc-go runs no interceptor for an
// unknown method) has only started and handling resolved, and resolves
// the others per use, so that, as with the provider, its other series
// appear only once used.
type grpcMethod struct {
	started, received, sent prometheus.Counter
	handling                prometheus.Observer
	// handled is indexed by code; codes beyond it (never sent by grpc-go)
	// are resolved per use.
	handled              [codes.Unauthenticated + 1]prometheus.Counter
	typ, service, method string
	m                    *GRPCServerMetrics
}

// incReceived counts a message received.
func (gm *grpcMethod) incReceived() {
	if gm.received != nil {
		gm.received.Inc()
		return
	}
	gm.m.received.WithLabelValues(gm.typ, gm.service, gm.method).Inc()
}

// incSent counts a message sent.
func (gm *grpcMethod) incSent() {
	if gm.sent != nil {
		gm.sent.Inc()
		return
	}
	gm.m.sent.WithLabelValues(gm.typ, gm.service, gm.method).Inc()
}

// incHandled counts a call ended with code.
func (gm *grpcMethod) incHandled(code codes.Code) {
	if int(code) < len(gm.handled) && gm.handled[code] != nil {
		gm.handled[code].Inc()
		return
	}
	gm.m.handled.WithLabelValues(gm.typ, gm.service, gm.method, code.String()).Inc()
}

// Values of the grpc_type label.
const (
	grpcUnary        = "unary"
	grpcClientStream = "client_stream"
	grpcServerStream = "server_stream"
	grpcBidiStream   = "bidi_stream"
)

// newGRPCServerMetrics returns the series, with buckets for the handling
// time histogram.
func newGRPCServerMetrics(buckets []float64) *GRPCServerMetrics {
	labels := []string{"grpc_type", "grpc_service", "grpc_method"}
	m := &GRPCServerMetrics{
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paddock_grpc_server_started_total",
			Help: "Total number of RPCs started on the server.",
		}, labels),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paddock_grpc_server_handled_total",
			Help: "Total number of RPCs completed on the server, regardless of success or failure.",
		}, append(labels[:len(labels):len(labels)], "grpc_code")),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paddock_grpc_server_msg_received_total",
			Help: "Total number of RPC stream messages received on the server.",
		}, labels),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paddock_grpc_server_msg_sent_total",
			Help: "Total number of gRPC stream messages sent by the server.",
		}, labels),
		handling: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "paddock_grpc_server_handling_seconds",
			Help:    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
			Buckets: buckets,
		}, labels),
	}
	m.methods.Store(&map[string]*grpcMethod{})
	return m
}

// Describe sends the descriptors of the five series.
func (m *GRPCServerMetrics) Describe(ch chan<- *prometheus.Desc) {
	m.started.Describe(ch)
	m.handled.Describe(ch)
	m.received.Describe(ch)
	m.sent.Describe(ch)
	m.handling.Describe(ch)
}

// Collect sends the current values of the five series.
func (m *GRPCServerMetrics) Collect(ch chan<- prometheus.Metric) {
	m.started.Collect(ch)
	m.handled.Collect(ch)
	m.received.Collect(ch)
	m.sent.Collect(ch)
	m.handling.Collect(ch)
}

// ServiceInfoProvider is what Register needs of a server: *grpc.Server
// is one.
type ServiceInfoProvider interface {
	GetServiceInfo() map[string]grpc.ServiceInfo
}

// Register resolves the series of every method s serves (every code of
// handled_total included) and so creates them at zero: a query need not
// handle absent series, and calls to these methods find their series
// with one map look-up. Call it once the services are registered on s.
func (m *GRPCServerMetrics) Register(s ServiceInfoProvider) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.methods.Load()
	next := make(map[string]*grpcMethod, len(old)+16)
	for k, v := range old {
		next[k] = v
	}
	for service, info := range s.GetServiceInfo() {
		for _, mi := range info.Methods {
			full := "/" + service + "/" + mi.Name
			if _, ok := next[full]; !ok {
				next[full] = m.resolve(streamType(mi.IsClientStream, mi.IsServerStream), service, mi.Name)
			}
		}
	}
	m.methods.Store(&next)
}

// method returns the series of fullMethod, resolving and remembering them
// on the first call to a method no server registered.
func (m *GRPCServerMetrics) method(fullMethod, typ string) *grpcMethod {
	if gm := (*m.methods.Load())[fullMethod]; gm != nil {
		return gm
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.methods.Load()
	if gm := old[fullMethod]; gm != nil {
		return gm
	}
	service, name := splitMethod(fullMethod)
	gm := &grpcMethod{
		started:  m.started.WithLabelValues(typ, service, name),
		handling: m.handling.WithLabelValues(typ, service, name),
		typ:      typ, service: service, method: name,
		m: m,
	}
	next := make(map[string]*grpcMethod, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[fullMethod] = gm
	m.methods.Store(&next)
	return gm
}

// resolve creates the series of a method a server registers.
func (m *GRPCServerMetrics) resolve(typ, service, name string) *grpcMethod {
	gm := &grpcMethod{
		started:  m.started.WithLabelValues(typ, service, name),
		received: m.received.WithLabelValues(typ, service, name),
		sent:     m.sent.WithLabelValues(typ, service, name),
		handling: m.handling.WithLabelValues(typ, service, name),
		typ:      typ, service: service, method: name,
		m: m,
	}
	for c := range gm.handled {
		gm.handled[c] = m.handled.WithLabelValues(typ, service, name, codes.Code(c).String())
	}
	return gm
}

// splitMethod splits "/pkg.Service/Method" as the provider does, into
// "unknown" twice when it has no second slash.
func splitMethod(fullMethod string) (service, method string) {
	fullMethod = strings.TrimPrefix(fullMethod, "/")
	if i := strings.Index(fullMethod, "/"); i >= 0 {
		return fullMethod[:i], fullMethod[i+1:]
	}
	return "unknown", "unknown"
}

// streamType is the grpc_type of a method whose sides stream or not
// (neither: a unary method).
func streamType(clientStreams, serverStreams bool) string {
	switch {
	case !clientStreams && !serverStreams:
		return grpcUnary
	case clientStreams && !serverStreams:
		return grpcClientStream
	case !clientStreams && serverStreams:
		return grpcServerStream
	}
	return grpcBidiStream
}

// GRPCCall is one call being recorded: StartUnary or StartStream began it,
// Done ends it.
type GRPCCall struct {
	gm    *grpcMethod
	start time.Time
	unary bool
}

// StartUnary counts a unary call of fullMethod as started, and its request
// as received.
func (m *GRPCServerMetrics) StartUnary(fullMethod string) GRPCCall {
	gm := m.method(fullMethod, grpcUnary)
	gm.started.Inc()
	gm.incReceived()
	return GRPCCall{gm: gm, start: time.Now(), unary: true}
}

// StartStream counts a streaming call as started and returns ss wrapped to
// count the messages it receives and sends.
func (m *GRPCServerMetrics) StartStream(ss grpc.ServerStream, info *grpc.StreamServerInfo) (GRPCCall, grpc.ServerStream) {
	gm := m.method(info.FullMethod, streamType(info.IsClientStream, info.IsServerStream))
	gm.started.Inc()
	return GRPCCall{gm: gm, start: time.Now()}, &countedStream{ServerStream: ss, gm: gm}
}

// Done records the call's end: its response as sent (a unary call that
// succeeded), its code, and how long it took.
func (c GRPCCall) Done(err error) {
	if c.unary && err == nil {
		c.gm.incSent()
	}
	c.gm.incHandled(errorCode(err))
	c.gm.handling.Observe(time.Since(c.start).Seconds())
}

// errorCode is the code the server sends for err, context errors included
// (as the provider reports them).
func errorCode(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	return status.FromContextError(err).Code()
}

// countedStream counts the messages of a streaming call.
type countedStream struct {
	grpc.ServerStream
	gm *grpcMethod
}

// SendMsg sends m, counting it when sent.
func (s *countedStream) SendMsg(m any) error {
	err := s.ServerStream.SendMsg(m)
	if err == nil {
		s.gm.incSent()
	}
	return err
}

// RecvMsg receives m, counting it when received.
func (s *countedStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil {
		s.gm.incReceived()
	}
	return err
}

// UnaryServerInterceptor records every unary call in m.
func (m *GRPCServerMetrics) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		call := m.StartUnary(info.FullMethod)
		resp, err := h(ctx, req)
		call.Done(err)
		return resp, err
	}
}

// StreamServerInterceptor records every streaming call in m.
func (m *GRPCServerMetrics) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		call, ss := m.StartStream(ss, info)
		err := h(srv, ss)
		call.Done(err)
		return err
	}
}
