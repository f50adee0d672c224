package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// serviceInfo is a server's registered services, for Register.
type serviceInfo map[string]grpc.ServiceInfo

func (s serviceInfo) GetServiceInfo() map[string]grpc.ServiceInfo { return s }

// scriptedStream is a server stream whose RecvMsg succeeds recvOK times
// and whose SendMsg succeeds sendOK times, failing after.
type scriptedStream struct {
	grpc.ServerStream
	recvOK, sendOK int
}

func (s *scriptedStream) RecvMsg(any) error {
	if s.recvOK == 0 {
		return errors.New("recv failed")
	}
	s.recvOK--
	return nil
}

func (s *scriptedStream) SendMsg(any) error {
	if s.sendOK == 0 {
		return errors.New("send failed")
	}
	s.sendOK--
	return nil
}

// gatherSeries gathers reg into "name{k=v,...}" -> value (a histogram's
// value is its sample count, its type is in types).
func gatherSeries(t *testing.T, reg prometheus.Gatherer) (values map[string]float64, types map[string]dto.MetricType, help map[string]string) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	values, types, help = map[string]float64{}, map[string]dto.MetricType{}, map[string]string{}
	for _, mf := range families {
		types[mf.GetName()] = mf.GetType()
		help[mf.GetName()] = mf.GetHelp()
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			key := mf.GetName() + "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.GetCounter() != nil:
				values[key] = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				values[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return values, types, help
}

// TestGRPCServerMetrics: the series are go-grpc-middleware's Prometheus
// provider's (which docs/operations.md lists and dashboards query): names,
// help, types, labels, every code of a registered method at zero from the
// start, and what a unary and a streaming call count.
func TestGRPCServerMetrics(t *testing.T) {
	m := newGRPCServerMetrics(prometheus.ExponentialBuckets(250e-6, 2, 16))
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	m.Register(serviceInfo{"p.S": {Methods: []grpc.MethodInfo{
		{Name: "U"},
		{Name: "Down", IsServerStream: true},
		{Name: "Up", IsClientStream: true},
		{Name: "Both", IsClientStream: true, IsServerStream: true},
	}}})
	unary, stream := m.UnaryServerInterceptor(), m.StreamServerInterceptor()

	const (
		u    = "grpc_method=U,grpc_service=p.S,grpc_type=unary"
		down = "grpc_method=Down,grpc_service=p.S,grpc_type=server_stream"
		up   = "grpc_method=Up,grpc_service=p.S,grpc_type=client_stream"
		both = "grpc_method=Both,grpc_service=p.S,grpc_type=bidi_stream"
		// A method no server registered.
		other = "grpc_method=X,grpc_service=q.T,grpc_type=unary"
	)
	got, types, help := gatherSeries(t, reg)
	for _, labels := range []string{u, down, up, both} {
		for _, name := range []string{"paddock_grpc_server_started_total", "paddock_grpc_server_msg_received_total", "paddock_grpc_server_msg_sent_total", "paddock_grpc_server_handling_seconds"} {
			if v, ok := got[name+"{"+labels+"}"]; !ok || v != 0 {
				t.Errorf("before any call: %s{%s} = %v (present %v), want 0", name, labels, v, ok)
			}
		}
		for c := codes.OK; c <= codes.Unauthenticated; c++ {
			key := fmt.Sprintf("paddock_grpc_server_handled_total{grpc_code=%s,%s}", c, labels)
			if v, ok := got[key]; !ok || v != 0 {
				t.Errorf("before any call: %s = %v (present %v), want 0", key, v, ok)
			}
		}
	}
	wantTypes := map[string]dto.MetricType{
		"paddock_grpc_server_started_total":      dto.MetricType_COUNTER,
		"paddock_grpc_server_handled_total":      dto.MetricType_COUNTER,
		"paddock_grpc_server_msg_received_total": dto.MetricType_COUNTER,
		"paddock_grpc_server_msg_sent_total":     dto.MetricType_COUNTER,
		"paddock_grpc_server_handling_seconds":   dto.MetricType_HISTOGRAM,
	}
	for name, typ := range wantTypes {
		if types[name] != typ {
			t.Errorf("%s is a %v, want a %v", name, types[name], typ)
		}
	}
	if h := help["paddock_grpc_server_handled_total"]; h != "Total number of RPCs completed on the server, regardless of success or failure." {
		t.Errorf("paddock_grpc_server_handled_total help = %q, want the provider's", h)
	}

	ctx := context.Background()
	for _, err := range []error{nil, nil, status.Error(codes.NotFound, "no"), context.Canceled, errors.New("plain")} {
		h := func(context.Context, any) (any, error) { return "resp", err }
		if resp, gotErr := unary(ctx, "req", &grpc.UnaryServerInfo{FullMethod: "/p.S/U"}, h); resp != "resp" || gotErr != err {
			t.Fatalf("interceptor = %v, %v, want the handler's resp, %v", resp, gotErr, err)
		}
	}
	_, _ = unary(ctx, "req", &grpc.UnaryServerInfo{FullMethod: "/q.T/X"}, func(context.Context, any) (any, error) { return nil, status.Error(codes.Internal, "x") })
	// Three receives of which two succeed, four sends of which three do.
	err := stream(nil, &scriptedStream{recvOK: 2, sendOK: 3}, &grpc.StreamServerInfo{FullMethod: "/p.S/Both", IsClientStream: true, IsServerStream: true},
		func(_ any, ss grpc.ServerStream) error {
			for range 3 {
				_ = ss.RecvMsg(nil)
			}
			for range 4 {
				_ = ss.SendMsg(nil)
			}
			return status.Error(codes.Unavailable, "gone")
		})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("stream interceptor = %v, want the handler's Unavailable", err)
	}

	got, _, _ = gatherSeries(t, reg)
	want := map[string]float64{
		"paddock_grpc_server_started_total{" + u + "}":                          5,
		"paddock_grpc_server_msg_received_total{" + u + "}":                     5,
		"paddock_grpc_server_msg_sent_total{" + u + "}":                         2,
		"paddock_grpc_server_handling_seconds{" + u + "}":                       5,
		"paddock_grpc_server_handled_total{grpc_code=OK," + u + "}":             2,
		"paddock_grpc_server_handled_total{grpc_code=NotFound," + u + "}":       1,
		"paddock_grpc_server_handled_total{grpc_code=Canceled," + u + "}":       1,
		"paddock_grpc_server_handled_total{grpc_code=Unknown," + u + "}":        1,
		"paddock_grpc_server_started_total{" + both + "}":                       1,
		"paddock_grpc_server_msg_received_total{" + both + "}":                  2,
		"paddock_grpc_server_msg_sent_total{" + both + "}":                      3,
		"paddock_grpc_server_handling_seconds{" + both + "}":                    1,
		"paddock_grpc_server_handled_total{grpc_code=Unavailable," + both + "}": 1,
		"paddock_grpc_server_handled_total{grpc_code=OK," + both + "}":          0,
		"paddock_grpc_server_started_total{" + down + "}":                       0,
		"paddock_grpc_server_started_total{" + other + "}":                      1,
		"paddock_grpc_server_msg_received_total{" + other + "}":                 1,
		"paddock_grpc_server_handling_seconds{" + other + "}":                   1,
		"paddock_grpc_server_handled_total{grpc_code=Internal," + other + "}":   1,
	}
	for key, w := range want {
		if v, ok := got[key]; !ok || v != w {
			t.Errorf("%s = %v (present %v), want %v", key, v, ok, w)
		}
	}
	// A method no server registered has only the series its calls made.
	for _, key := range []string{
		"paddock_grpc_server_msg_sent_total{" + other + "}",
		"paddock_grpc_server_handled_total{grpc_code=OK," + other + "}",
	} {
		if v, ok := got[key]; ok {
			t.Errorf("%s = %v, want no such series", key, v)
		}
	}
}
