package rpc

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/paddock/paddock/fsm"
	"github.com/paddock/paddock/node"
)

func TestRequestIDInterceptor(t *testing.T) {
	tests := []struct {
		name     string
		md       metadata.MD
		wantID   []byte
		wantCode codes.Code
	}{
		{"no metadata", nil, nil, codes.OK},
		{"other keys", metadata.Pairs("x-other", "1"), nil, codes.OK},
		{"client form", metadata.Pairs(RequestIDMetadata, "0123456789abcdef0123456789abcdef"), []byte("0123456789abcdef0123456789abcdef"), codes.OK},
		{"printable with a space", metadata.Pairs(RequestIDMetadata, "job 42/retry~"), []byte("job 42/retry~"), codes.OK},
		{"longest", metadata.Pairs(RequestIDMetadata, strings.Repeat("a", fsm.MaxRequestIDLength)), []byte(strings.Repeat("a", fsm.MaxRequestIDLength)), codes.OK},
		{"too long", metadata.Pairs(RequestIDMetadata, strings.Repeat("a", fsm.MaxRequestIDLength+1)), nil, codes.InvalidArgument},
		{"empty", metadata.Pairs(RequestIDMetadata, ""), nil, codes.InvalidArgument},
		{"two values", metadata.Pairs(RequestIDMetadata, "a", RequestIDMetadata, "b"), nil, codes.InvalidArgument},
		{"control byte", metadata.Pairs(RequestIDMetadata, "a\tb"), nil, codes.InvalidArgument},
		{"non-ASCII", metadata.Pairs(RequestIDMetadata, "clé"), nil, codes.InvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.md != nil {
				ctx = metadata.NewIncomingContext(ctx, tc.md)
			}
			called := false
			var gotID []byte
			h := func(ctx context.Context, req any) (any, error) {
				called = true
				gotID = node.RequestID(ctx)
				return req, nil
			}
			_, err := withRequestID(ctx, "req", &grpc.UnaryServerInfo{FullMethod: "/paddock.v1.TreeService/Create"}, h)
			if got := status.Code(err); got != tc.wantCode {
				t.Fatalf("interceptor(%v) code = %v (%v), want %v", tc.md, got, err, tc.wantCode)
			}
			if called != (tc.wantCode == codes.OK) {
				t.Errorf("interceptor(%v) called the handler: %v, want %v", tc.md, called, tc.wantCode == codes.OK)
			}
			if !bytes.Equal(gotID, tc.wantID) {
				t.Errorf("node.RequestID in the handler = %q, want %q", gotID, tc.wantID)
			}
		})
	}
}
