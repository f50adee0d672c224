package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/paddock/paddock/fsm"
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
var jsonMarshaler = &strictJSONPb{JSONPb: &runtime.JSONPb{
	MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true},
	UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
}}

// MaxRequestSize is the largest request message the gRPC server accepts
// (and the gateway sends): well above the value limit, so that a value
// too large for the state machine reaches the handler and gets its typed
// INVALID_ARGUMENT "data too large" with the limit, instead of gRPC's
// RESOURCE_EXHAUSTED. Only a request larger than this is refused by gRPC.
const MaxRequestSize = 16 << 20

// maxBodySize bounds an HTTP request body: a request of MaxRequestSize
// with its bytes in base64 (4/3) and room for the JSON around them.
const maxBodySize = MaxRequestSize/3*4 + 1<<20

// strictJSONPb is the gateway's JSONPb with a stricter request decoder: a
// body is one JSON value and nothing after it but white space, and it is
// at most maxBodySize bytes. runtime.JSONPb's decoder reads the first
// value and ignores whatever follows it ({"data":"eA=="} xyz).
type strictJSONPb struct{ *runtime.JSONPb }

// NewDecoder returns the strict decoder of r.
func (j *strictJSONPb) NewDecoder(r io.Reader) runtime.Decoder {
	return strictDecoder{j.JSONPb.NewDecoder(&bodyLimit{r: r, left: maxBodySize}).(runtime.DecoderWrapper)}
}

// strictDecoder decodes one JSON value and refuses trailing data.
type strictDecoder struct{ runtime.DecoderWrapper }

// Decode decodes v, then checks that the body holds nothing else.
func (d strictDecoder) Decode(v any) error {
	if err := d.DecoderWrapper.Decode(v); err != nil {
		return err
	}
	if tok, err := d.Decoder.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return fmt.Errorf("data after the JSON body: %w", err)
		}
		return fmt.Errorf("data after the JSON body: %v", tok)
	}
	return nil
}

// bodyLimit reads at most left bytes of r, then fails with errBodyTooLarge.
type bodyLimit struct {
	r    io.Reader
	left int64
}

// errBodyTooLarge is the error of a body over maxBodySize; the gateway
// answers it 400 INVALID_ARGUMENT with this message, in the terms of the
// error table's "data too large".
var errBodyTooLarge = fmt.Errorf("data too large: request body over %d bytes, limit %d bytes of data", maxBodySize, fsm.MaxDataSize)

func (l *bodyLimit) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, errBodyTooLarge
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

// newGateway returns the /v1/ handler: grpc-gateway's mux for every
// public service, behind the request rewrites of prepareGatewayRequest.
// It dials grpcAddr once; the connection closes when ctx ends. With
// webSession set, the web-session routes call it in this process instead
// of going through that connection.
func newGateway(ctx context.Context, grpcAddr string, webSession paddockv1.WebSessionServiceServer) (http.Handler, error) {
	conn, err := grpc.NewClient(grpcAddr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithNoProxy(),
		grpc.WithSharedWriteBuffer(true),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(node.MaxMessageSize), grpc.MaxCallSendMsgSize(MaxRequestSize)),
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
		paddockv1.RegisterFarmServiceHandler,
		paddockv1.RegisterElectionServiceHandler,
		paddockv1.RegisterLockServiceHandler,
	} {
		if err := register(ctx, mux, conn); err != nil {
			conn.Close()
			return nil, fmt.Errorf("rpc: gateway: %w", err)
		}
	}
	register := func() error { return paddockv1.RegisterWebSessionServiceHandler(ctx, mux, conn) }
	if webSession != nil {
		register = func() error { return paddockv1.RegisterWebSessionServiceHandlerServer(ctx, mux, webSession) }
	}
	if err := register(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("rpc: gateway: %w", err)
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
// disagree (which one would the server use?), sends one id for headers
// that agree, and rewrites
// GET /v1/tree/X?children=BOOL: true to the List route /v1/children/X,
// keeping the other query parameters (page_size, page_token,
// read.consistency, ...); false to the plain Get. It returns a copy when
// it changes anything; r itself is never modified.
func prepareGatewayRequest(r *http.Request) (*http.Request, error) {
	var id string
	ids := 0
	for _, h := range requestIDHeaders {
		for _, v := range r.Header.Values(h) {
			if id != "" && v != id {
				return r, status.Errorf(codes.InvalidArgument, "rpc: request id headers disagree: %q and %q", id, v)
			}
			id = v
			ids++
		}
	}
	if ids > 1 {
		// The same id twice (Idempotency-Key and Paddock-Request-Id, or a
		// header repeated) is one id: each would be a value of the
		// metadata key, and the server takes exactly one.
		out := r.Clone(r.Context())
		for _, h := range requestIDHeaders {
			out.Header.Del(h)
		}
		out.Header.Set("Idempotency-Key", id)
		r = out
	}

	const treePrefix, childrenPrefix = "/v1/tree", "/v1/children"
	if r.Method != http.MethodGet {
		return r, nil
	}
	r, err := eventKindParams(r)
	if err != nil {
		return r, err
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

// eventKindParams rewrites the kinds= query parameters of a watch or
// poll to the enum names the gateway parses (EVENT_KIND_DELETED), so that
// the CLI's spelling (deleted, data-changed, any case) is accepted too,
// as are several kinds in one comma-separated value. Unknown names are
// left for the gateway to refuse. It returns r itself when there is
// nothing to rewrite.
func eventKindParams(r *http.Request) (*http.Request, error) {
	if !strings.HasPrefix(r.URL.Path, "/v1/watch") && !strings.HasPrefix(r.URL.Path, "/v1/poll") {
		return r, nil
	}
	q := r.URL.Query()
	vals, ok := q["kinds"]
	if !ok {
		return r, nil
	}
	var kinds []string
	for _, v := range vals {
		for k := range strings.SplitSeq(v, ",") {
			kinds = append(kinds, eventKindName(k))
		}
	}
	q["kinds"] = kinds
	u := *r.URL
	u.RawQuery = q.Encode()
	out := r.Clone(r.Context())
	out.URL = &u
	return out, nil
}

// eventKindName is the enum name of an event kind spelled either way:
// "deleted", "DATA-CHANGED" or "EVENT_KIND_DELETED" (and numbers, which
// the gateway takes as they are).
func eventKindName(k string) string {
	name := strings.ReplaceAll(strings.ToUpper(strings.TrimSpace(k)), "-", "_")
	if _, ok := paddockv1.EventKind_value["EVENT_KIND_"+name]; ok && name != "UNSPECIFIED" {
		return "EVENT_KIND_" + name
	}
	return name
}

// absolutePath turns the znode path the gateway took from a URL
// ({path=**}: "services/db" for /v1/tree/services/db, "" for /v1/tree) into
// the absolute path the services take, by prefixing "/". Prefixing always
// (never "only when missing") keeps the URL an exact image of the path:
// /v1/tree//a becomes "//a" and gets the same 400 as any malformed path.
// Only the requests whose HTTP rule binds {path=**} are touched, and the
// farm routes' {farm=**} and {host=**}, which are znode paths the same way.
//
// A path that is not valid UTF-8 (/v1/tree/bad%FFutf) cannot be sent in a
// proto string: it is refused here as the bad path it is (400), before
// gRPC would fail to marshal it (500). So is a request over
// MaxRequestSize, with the "data too large" the server would answer.
func absolutePath(req any) error {
	if p, ok := req.(interface{ GetPath() string }); ok && !utf8.ValidString(p.GetPath()) {
		return toStatus(fsm.ValidatePath("/"+p.GetPath(), false))
	}
	if p, ok := req.(interface{ GetFarm() string }); ok && !utf8.ValidString(p.GetFarm()) {
		return toStatus(fsm.ValidatePath("/"+p.GetFarm(), false))
	}
	if p, ok := req.(interface{ GetHost() string }); ok && !utf8.ValidString(p.GetHost()) {
		return toStatus(fsm.ValidatePath("/"+p.GetHost(), false))
	}
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
	case *paddockv1.GetFarmRequest:
		r.Farm = "/" + r.Farm
	case *paddockv1.PollFarmRequest:
		r.Farm = "/" + r.Farm
	case *paddockv1.CheckFarmRequest:
		r.Farm = "/" + r.Farm
	case *paddockv1.SetFieldRequest:
		r.Host = "/" + r.Host
	case *paddockv1.UnsetFieldRequest:
		r.Host = "/" + r.Host
	}
	if m, ok := req.(proto.Message); ok {
		if size := proto.Size(m); size > MaxRequestSize {
			return toStatus(fmt.Errorf("%w: request of %d bytes, limit %d bytes of data", fsm.ErrTooLarge, size, fsm.MaxDataSize))
		}
	}
	return nil
}

// absolutePathUnary applies absolutePath to the gateway's unary calls.
func absolutePathUnary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if err := absolutePath(req); err != nil {
		return err
	}
	return unreachable(cc, invoker(ctx, method, req, reply, cc, opts...))
}

// absolutePathStream applies absolutePath to the request of the gateway's
// server-streaming calls (Watch), which is sent with SendMsg.
func absolutePathStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, unreachable(cc, err)
	}
	return absolutePathClientStream{s}, nil
}

// unreachable replaces the dial error of a call the gateway could not
// connect to its node for ("connection error: desc = ...", a 503) with
// the message a user reads for it, "no node reachable: <addr> (<cause>)".
// Any other error, UNAVAILABLE from the node included, is returned as is.
func unreachable(cc *grpc.ClientConn, err error) error {
	if status.Code(err) != codes.Unavailable || cc.GetState() == connectivity.Ready {
		return err
	}
	cause := "unreachable"
	if strings.Contains(status.Convert(err).Message(), "connection refused") {
		cause = "connection refused"
	}
	return status.Errorf(codes.Unavailable, "no node reachable: %s (%s)", cc.Target(), cause)
}

type absolutePathClientStream struct{ grpc.ClientStream }

func (s absolutePathClientStream) SendMsg(m any) error {
	if err := absolutePath(m); err != nil {
		return err
	}
	return s.ClientStream.SendMsg(m)
}
