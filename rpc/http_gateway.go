package rpc

import (
	"context"
	"fmt"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/paddock/paddock/node"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// requestIDHeaders are the HTTP headers that carry a request id
// (canonical form); incomingHeader maps them to RequestIDMetadata. Idempotency-Key is the IETF draft's name, which HTTP
// client libraries know; Grpc-Metadata-Paddock-Request-Id is the gateway's
// generic spelling of the same metadata.
var requestIDHeaders = []string{"Idempotency-Key", "Paddock-Request-Id", runtime.MetadataHeaderPrefix + "Paddock-Request-Id"}

// jsonMarshaler is the gateway's one marshaler, for every content type:
// protojson with proto field names (snake_case, as PHP code spells them)
// and zero values present (version 0 is a version), rejecting unknown
// fields so a typo in a body is a 400, not a silently ignored field.
var jsonMarshaler = &runtime.JSONPb{
	MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true},
	UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
}

// newGateway returns the /v1/ handler: grpc-gateway's mux for every
// public service, behind the request rewrites of prepareGatewayRequest.
// It dials grpcAddr once; the connection closes when ctx ends.
func newGateway(ctx context.Context, grpcAddr string) (http.Handler, error) {
	conn, err := grpc.NewClient(grpcAddr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithNoProxy(),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(node.MaxMessageSize), grpc.MaxCallSendMsgSize(node.MaxMessageSize)),
		grpc.WithChainUnaryInterceptor(absolutePathUnary),
		grpc.WithChainStreamInterceptor(absolutePathStream),
	)
	if err != nil {
		return nil, fmt.Errorf("rpc: gateway: %w", err)
	}
	context.AfterFunc(ctx, func() { conn.Close() })

	mux := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, jsonMarshaler),
		runtime.WithErrorHandler(writeHTTPError),
		runtime.WithRoutingErrorHandler(writeRoutingError),
		runtime.WithStreamErrorHandler(recordStreamError),
		runtime.WithIncomingHeaderMatcher(incomingHeader),
		// A POST with a form content type (PHP curl's default) is a
		// create, never reinterpreted as a GET of the same path.
		runtime.WithDisablePathLengthFallback(),
	)
	for _, register := range []func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error{
		paddockv1.RegisterTreeServiceHandler,
		paddockv1.RegisterSessionServiceHandler,
		paddockv1.RegisterClusterServiceHandler,
		paddockv1.RegisterWatchServiceHandler,
	} {
		if err := register(ctx, mux, conn); err != nil {
			conn.Close()
			return nil, fmt.Errorf("rpc: gateway: %w", err)
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r, err := prepareGatewayRequest(r)
		if err != nil {
			runtime.HTTPError(r.Context(), mux, jsonMarshaler, w, r, err)
			return
		}
		sw := &streamStatusWriter{ResponseWriter: w}
		r = r.WithContext(context.WithValue(r.Context(), streamStatusKey{}, sw))
		mux.ServeHTTP(sw, r)
	}), nil
}

// incomingHeader forwards the request id headers as the request id
// metadata key, and the rest as grpc-gateway does by default.
func incomingHeader(key string) (string, bool) {
	switch textproto.CanonicalMIMEHeaderKey(key) {
	case "Idempotency-Key", "Paddock-Request-Id":
		return RequestIDMetadata, true
	}
	return runtime.DefaultHeaderMatcher(key)
}

// prepareGatewayRequest rejects a request whose request id headers
// disagree (which one would the server use?), and rewrites
// GET /v1/tree/X?children=BOOL: true to the List route /v1/children/X,
// keeping the other query parameters (page_size, page_token,
// read.consistency, ...); false to the plain Get. It returns a copy when
// it changes anything; r itself is never modified.
func prepareGatewayRequest(r *http.Request) (*http.Request, error) {
	var id string
	for _, h := range requestIDHeaders {
		for _, v := range r.Header.Values(h) {
			if id != "" && v != id {
				return r, status.Errorf(codes.InvalidArgument, "rpc: request id headers disagree: %q and %q", id, v)
			}
			id = v
		}
	}

	const treePrefix, childrenPrefix = "/v1/tree", "/v1/children"
	if r.Method != http.MethodGet {
		return r, nil
	}
	rest, ok := strings.CutPrefix(r.URL.Path, treePrefix)
	if !ok || (rest != "" && rest[0] != '/') {
		return r, nil
	}
	q := r.URL.Query()
	vals, ok := q["children"]
	if !ok {
		return r, nil
	}
	children, err := strconv.ParseBool(vals[0])
	if err != nil || len(vals) > 1 {
		return r, status.Errorf(codes.InvalidArgument, "rpc: children=%s: want one true or false", strings.Join(vals, ","))
	}
	q.Del("children")
	u := *r.URL
	u.RawQuery = q.Encode()
	if children {
		u.Path = childrenPrefix + rest
		if u.RawPath != "" {
			u.RawPath = childrenPrefix + strings.TrimPrefix(u.RawPath, treePrefix)
		}
	}
	out := r.Clone(r.Context())
	out.URL = &u
	return out, nil
}

// absolutePath turns the znode path the gateway took from a URL
// ({path=**}: "services/db" for /v1/tree/services/db, "" for /v1/tree) into
// the absolute path the services take, by prefixing "/". Prefixing always
// (never "only when missing") keeps the URL an exact image of the path:
// /v1/tree//a becomes "//a" and gets the same 400 as any malformed path.
// Only the requests whose HTTP rule binds {path=**} are touched.
func absolutePath(req any) {
	switch r := req.(type) {
	case *paddockv1.CreateRequest:
		r.Path = "/" + r.Path
	case *paddockv1.GetRequest:
		r.Path = "/" + r.Path
	case *paddockv1.SetRequest:
		r.Path = "/" + r.Path
	case *paddockv1.DeleteRequest:
		r.Path = "/" + r.Path
	case *paddockv1.ExistsRequest:
		r.Path = "/" + r.Path
	case *paddockv1.ListRequest:
		r.Path = "/" + r.Path
	case *paddockv1.WatchRequest:
		r.Path = "/" + r.Path
	case *paddockv1.PollRequest:
		r.Path = "/" + r.Path
	}
}

// absolutePathUnary applies absolutePath to the gateway's unary calls.
func absolutePathUnary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	absolutePath(req)
	return invoker(ctx, method, req, reply, cc, opts...)
}

// absolutePathStream applies absolutePath to the request of the gateway's
// server-streaming calls (Watch), which is sent with SendMsg.
func absolutePathStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, err
	}
	return absolutePathClientStream{s}, nil
}

type absolutePathClientStream struct{ grpc.ClientStream }

func (s absolutePathClientStream) SendMsg(m any) error {
	absolutePath(m)
	return s.ClientStream.SendMsg(m)
}
