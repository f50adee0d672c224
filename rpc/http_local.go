package rpc

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"

	"google.golang.org/grpc"

	"github.com/paddock/paddock/node"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// localWebSession serves the gateway's web-session routes in this process
// (grpc-gateway's RegisterWebSessionServiceHandlerServer), without the
// loopback gRPC connection the other routes go through: a PHP page view
// is two of these calls, and the loopback hop (an HTTP/2 client and
// server, their frames and goroutines, in the same process) cost the
// nodes about as much CPU as serving the call. Each call goes through the
// same interceptors as on the gRPC server (metrics under its gRPC method
// name, the served-by header, the request id of a write) and the same
// request checks as the loopback calls (absolutePath's size limit), so an
// HTTP client sees the same answers, headers and errors either way, but
// for two: no Grpc-Metadata-Content-Type header (the loopback's gRPC
// content type), and an id that is not UTF-8 gets the 400 of a bad id
// instead of the gRPC client's 500.
//
// A panic in a call ends the process, as it does in a gRPC handler:
// net/http would recover it and keep the node serving with whatever it
// was doing half done (a lock's mutex held).
type localWebSession struct {
	paddockv1.UnsafeWebSessionServiceServer
	srv *webSessionServer
	ic  *interceptors
}

// newLocalWebSession returns n's in-process web-session server for the
// gateway.
func newLocalWebSession(n *node.Node) *localWebSession {
	return &localWebSession{
		srv: &webSessionServer{n: n},
		ic:  newInterceptors(n),
	}
}

// localUnary calls h as the gRPC server would call method with req: the
// gateway's request checks first, then the server's interceptors.
func localUnary[Req, Resp any](ctx context.Context, ic *interceptors, method string, req Req, h func(context.Context, Req) (Resp, error)) (Resp, error) {
	defer crashOnPanic()
	var zero Resp
	if err := absolutePath(req); err != nil {
		return zero, err
	}
	resp, err := ic.unary(ctx, req, &grpc.UnaryServerInfo{FullMethod: method}, func(ctx context.Context, r any) (any, error) {
		return h(ctx, r.(Req))
	})
	if err != nil {
		return zero, err
	}
	return resp.(Resp), nil
}

// crashOnPanic ends the process on a panic, with its value and stack, the
// way an unrecovered panic does (exit status 2).
func crashOnPanic() {
	if r := recover(); r != nil {
		fmt.Fprintf(os.Stderr, "panic: %v\n\n%s", r, debug.Stack())
		os.Exit(2)
	}
}

func (s *localWebSession) ReadWebSession(ctx context.Context, req *paddockv1.ReadWebSessionRequest) (*paddockv1.ReadWebSessionResponse, error) {
	return localUnary(ctx, s.ic, paddockv1.WebSessionService_ReadWebSession_FullMethodName, req, s.srv.ReadWebSession)
}

func (s *localWebSession) WriteWebSession(ctx context.Context, req *paddockv1.WriteWebSessionRequest) (*paddockv1.WriteWebSessionResponse, error) {
	return localUnary(ctx, s.ic, paddockv1.WebSessionService_WriteWebSession_FullMethodName, req, s.srv.WriteWebSession)
}

func (s *localWebSession) ReleaseWebSession(ctx context.Context, req *paddockv1.ReleaseWebSessionRequest) (*paddockv1.ReleaseWebSessionResponse, error) {
	return localUnary(ctx, s.ic, paddockv1.WebSessionService_ReleaseWebSession_FullMethodName, req, s.srv.ReleaseWebSession)
}

func (s *localWebSession) TouchWebSession(ctx context.Context, req *paddockv1.TouchWebSessionRequest) (*paddockv1.TouchWebSessionResponse, error) {
	return localUnary(ctx, s.ic, paddockv1.WebSessionService_TouchWebSession_FullMethodName, req, s.srv.TouchWebSession)
}

func (s *localWebSession) DestroyWebSession(ctx context.Context, req *paddockv1.DestroyWebSessionRequest) (*paddockv1.DestroyWebSessionResponse, error) {
	return localUnary(ctx, s.ic, paddockv1.WebSessionService_DestroyWebSession_FullMethodName, req, s.srv.DestroyWebSession)
}

func (s *localWebSession) ValidateWebSession(ctx context.Context, req *paddockv1.ValidateWebSessionRequest) (*paddockv1.ValidateWebSessionResponse, error) {
	return localUnary(ctx, s.ic, paddockv1.WebSessionService_ValidateWebSession_FullMethodName, req, s.srv.ValidateWebSession)
}

func (s *localWebSession) CreateWebSession(ctx context.Context, req *paddockv1.CreateWebSessionRequest) (*paddockv1.CreateWebSessionResponse, error) {
	return localUnary(ctx, s.ic, paddockv1.WebSessionService_CreateWebSession_FullMethodName, req, s.srv.CreateWebSession)
}
