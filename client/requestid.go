package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"

	"google.golang.org/grpc/metadata"
)

// RequestIDMetadataKey is the gRPC metadata key of a write's request id.
// The server remembers the result of every write that carries one, so a
// write sent again with the same id returns the first result and is not
// applied twice.
const RequestIDMetadataKey = "paddock-request-id"

// NewRequestID returns a fresh request id: 16 random bytes as 32 lowercase
// hex characters.
func NewRequestID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand since Go 1.24)
	return hex.EncodeToString(b[:])
}

// WithRequestID returns ctx carrying id as the request id of the writes
// made with it. A caller that must repeat a whole write after the client
// gave up (say, across a process restart) passes the same id both times;
// the client otherwise makes a fresh id per call.
func WithRequestID(ctx context.Context, id string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, RequestIDMetadataKey, id)
}

// withFreshRequestID gives ctx a fresh request id, in place of any it
// carries.
func withFreshRequestID(ctx context.Context) context.Context {
	md, _ := metadata.FromOutgoingContext(ctx)
	md = md.Copy()
	md.Set(RequestIDMetadataKey, NewRequestID())
	return metadata.NewOutgoingContext(ctx, md)
}

// withRequestID gives ctx a fresh request id unless it already carries one.
func withRequestID(ctx context.Context) context.Context {
	if md, ok := metadata.FromOutgoingContext(ctx); ok && len(md.Get(RequestIDMetadataKey)) > 0 {
		return ctx
	}
	return WithRequestID(ctx, NewRequestID())
}
