package rpc

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/paddock/paddock/fsm"
	"github.com/paddock/paddock/node"
)

// RequestIDMetadata is the gRPC metadata key of a client's request id. A
// write that carries one is applied at most once within
// fsm.RequestIDWindow: a retry with the same id, on any node, returns the
// first result and zxid. Clients send 32 lowercase hex digits (16 random
// bytes); the server takes any printable ASCII value of 1 to
// fsm.MaxRequestIDLength bytes. Reads ignore it.
const RequestIDMetadata = "paddock-request-id"

// requestIDInterceptor moves a valid request id from the metadata into the
// context for node.Propose, and refuses an invalid one before the handler
// runs, so it never reaches the log.
func requestIDInterceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get(RequestIDMetadata)
	if len(vals) == 0 {
		return h(ctx, req)
	}
	id, err := parseRequestID(vals)
	if err != nil {
		return nil, toStatus(err)
	}
	return h(node.WithRequestID(ctx, id), req)
}

// parseRequestID checks the metadata values of the request id key.
func parseRequestID(vals []string) ([]byte, error) {
	if len(vals) != 1 {
		return nil, fmt.Errorf("%w: %d %s values, want one", fsm.ErrBadArgument, len(vals), RequestIDMetadata)
	}
	v := vals[0]
	if v == "" || len(v) > fsm.MaxRequestIDLength {
		return nil, fmt.Errorf("%w: %s of %d bytes, want 1 to %d", fsm.ErrBadArgument, RequestIDMetadata, len(v), fsm.MaxRequestIDLength)
	}
	for i := range len(v) {
		if c := v[i]; c < 0x20 || c > 0x7e {
			return nil, fmt.Errorf("%w: %s has a byte 0x%02x that is not printable ASCII", fsm.ErrBadArgument, RequestIDMetadata, c)
		}
	}
	return []byte(v), nil
}
