package rpc

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// httpStatus is the HTTP status of a gRPC code: the one table, documented
// in doc.go. It follows grpc-gateway's mapping except where that mapping
// would hide something a PHP client must tell apart by status alone.
func httpStatus(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.InvalidArgument:
		return http.StatusBadRequest
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.FailedPrecondition:
		// Not grpc-gateway's 400: a version mismatch is a failed
		// precondition of a conditional write, like If-Match, and must not
		// look like a malformed request. 412 (not 409) so that it is also
		// distinct from AlreadyExists.
		return http.StatusPreconditionFailed
	case codes.OutOfRange:
		// A watch or poll from a zxid older than the history (or beyond
		// the cluster's latest): what was asked for is gone for good (or
		// never will be), re-read and start again.
		return http.StatusGone
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.Canceled:
		return 499 // client closed request (nginx's code, grpc-gateway's too)
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unimplemented:
		return http.StatusNotImplemented
	}
	return http.StatusInternalServerError // Internal, Unknown, DataLoss
}

// writeHTTPError is the gateway's error handler: the google.rpc.Status as
// JSON ({"code": <gRPC code number>, "message": ..., "details": [...]}),
// with the status from httpStatus. A routing error (no such route, wrong
// method) keeps the HTTP status grpc-gateway chose for it.
func writeHTTPError(_ context.Context, _ *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, _ *http.Request, err error) {
	code := 0
	if he, ok := errors.AsType[*runtime.HTTPStatusError](err); ok {
		code, err = he.HTTPStatus, he.Err
	}
	st := status.Convert(err)
	if code == 0 {
		code = httpStatus(st.Code())
	}
	body, merr := m.Marshal(st.Proto())
	if merr != nil {
		slog.Error("rpc: marshal HTTP error", "error", merr)
		code = http.StatusInternalServerError
		body = []byte(`{"code": 13, "message": "rpc: failed to marshal error"}`)
	}
	// A streamed response sets these before it knows it will fail.
	w.Header().Del("Trailer")
	w.Header().Del("Transfer-Encoding")
	w.Header().Set("Content-Type", m.ContentType(st.Proto()))
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// writeRoutingError answers a request no route takes: 404 NOT_FOUND for
// an unknown path, 405 UNIMPLEMENTED for a known path with another method
// (grpc-gateway would say 501 for that: the server does implement it).
func writeRoutingError(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	code := codes.Internal
	switch httpStatus {
	case http.StatusBadRequest:
		code = codes.InvalidArgument
	case http.StatusNotFound:
		code = codes.NotFound
	case http.StatusMethodNotAllowed:
		code = codes.Unimplemented
	}
	writeHTTPError(ctx, mux, m, w, r, &runtime.HTTPStatusError{
		HTTPStatus: httpStatus,
		Err:        status.Error(code, http.StatusText(httpStatus)),
	})
}

// streamStatusKey is the context key of a request's streamStatusWriter.
type streamStatusKey struct{}

// recordStreamError is the gateway's stream error handler. A stream that
// fails before its first message is answered by grpc-gateway itself, with
// its own code-to-status mapping and no hook; recording the code lets the
// request's streamStatusWriter correct the status to httpStatus's (a
// watch from a compacted zxid is then 410, as a poll is). The body stays
// grpc-gateway's: {"error": <google.rpc.Status>}.
func recordStreamError(ctx context.Context, err error) *status.Status {
	st := status.Convert(err)
	if sw, ok := ctx.Value(streamStatusKey{}).(*streamStatusWriter); ok {
		sw.failed, sw.code = true, st.Code()
	}
	return st
}

// streamStatusWriter is the ResponseWriter the gateway mux writes to. It
// changes nothing but the status of a stream that failed before its first
// message (see recordStreamError). It is only used on the request's own
// goroutine. Flush and Unwrap keep http.Flusher and
// http.ResponseController working through it: NDJSON watch streams flush
// after every message.
type streamStatusWriter struct {
	http.ResponseWriter
	failed bool
	code   codes.Code
}

// WriteHeader writes the status, corrected for a failed stream.
func (w *streamStatusWriter) WriteHeader(code int) {
	if w.failed && code == runtime.HTTPStatusFromCode(w.code) {
		code = httpStatus(w.code)
	}
	w.ResponseWriter.WriteHeader(code)
}

// Flush flushes the underlying writer, if it can.
func (w *streamStatusWriter) Flush() {
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap returns the underlying writer, for http.ResponseController.
func (w *streamStatusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var _ http.Flusher = (*streamStatusWriter)(nil)
