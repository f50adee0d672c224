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
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
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

// TestRequestIDReadsIgnore: a read never looks at the request id, not even
// an invalid one, and a write's id reaches the handler whatever the
// service.
func TestRequestIDReadsIgnore(t *testing.T) {
	bad := metadata.NewIncomingContext(context.Background(), metadata.Pairs(RequestIDMetadata, "a\tb"))
	good := metadata.NewIncomingContext(context.Background(), metadata.Pairs(RequestIDMetadata, "k1"))
	for _, tc := range []struct {
		method string
		ctx    context.Context
		wantID string
		want   codes.Code
	}{
		{paddockv1.TreeService_Get_FullMethodName, bad, "", codes.OK},
		{paddockv1.SessionService_KeepAlive_FullMethodName, good, "", codes.OK},
		{paddockv1.TreeService_Set_FullMethodName, bad, "", codes.InvalidArgument},
		{paddockv1.LockService_Release_FullMethodName, good, "k1", codes.OK},
		{paddockv1.SessionService_OpenSession_FullMethodName, good, "k1", codes.OK},
	} {
		var gotID []byte
		h := func(ctx context.Context, req any) (any, error) {
			gotID = node.RequestID(ctx)
			return req, nil
		}
		_, err := withRequestID(tc.ctx, "req", &grpc.UnaryServerInfo{FullMethod: tc.method}, h)
		if status.Code(err) != tc.want || string(gotID) != tc.wantID {
			t.Errorf("%s: code %v, request id %q; want %v, %q", tc.method, status.Code(err), gotID, tc.want, tc.wantID)
		}
	}
}
