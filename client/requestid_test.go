package client

import (
	"context"
	"testing"

	"google.golang.org/grpc/metadata"
)

// TestWithFreshRequestID: a locked web session read's id replaces the
// one a caller set for its writes, which stays on the caller's context.
func TestWithFreshRequestID(t *testing.T) {
	ctx := WithRequestID(context.Background(), "write-id")
	fresh := withFreshRequestID(ctx)
	md, _ := metadata.FromOutgoingContext(fresh)
	if got := md.Get(RequestIDMetadataKey); len(got) != 1 || got[0] == "write-id" || len(got[0]) != 32 {
		t.Errorf("fresh ids = %q, want one new id of 32 hex digits", got)
	}
	md, _ = metadata.FromOutgoingContext(ctx)
	if got := md.Get(RequestIDMetadataKey); len(got) != 1 || got[0] != "write-id" {
		t.Errorf("the caller's ids = %q, want [write-id]", got)
	}
	md, _ = metadata.FromOutgoingContext(withFreshRequestID(context.Background()))
	if got := md.Get(RequestIDMetadataKey); len(got) != 1 {
		t.Errorf("fresh ids on a bare context = %q, want one", got)
	}
}
