package rpc

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/paddock/paddock/fsm"
	"github.com/paddock/paddock/node"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// RequestIDMetadata is the gRPC metadata key of a client's request id. A
// write that carries one is applied at most once within
// fsm.RequestIDWindow: a retry with the same id, on any node, returns the
// first result and zxid. Clients send 32 lowercase hex digits (16 random
// bytes); the server takes any printable ASCII value of 1 to
// fsm.MaxRequestIDLength bytes. Reads ignore it, but for a locked web
// session read: retried with its id, it gets the lock it was granted back.
const RequestIDMetadata = "paddock-request-id"

// reads are the methods that never propose a command: a request id means
// nothing to them, so they skip its look-up. Any other method takes one,
// so a new write cannot lose its at-most-once guarantee by being left out
// of a list.
var reads = map[string]bool{
	paddockv1.TreeService_Get_FullMethodName:             true,
	paddockv1.TreeService_Exists_FullMethodName:          true,
	paddockv1.TreeService_List_FullMethodName:            true,
	paddockv1.SessionService_KeepAlive_FullMethodName:    true,
	paddockv1.SessionService_GetSession_FullMethodName:   true,
	paddockv1.SessionService_ListSessions_FullMethodName: true,
	paddockv1.ClusterService_Status_FullMethodName:       true,
	paddockv1.ClusterService_Members_FullMethodName:      true,
	paddockv1.WatchService_Poll_FullMethodName:           true,
	paddockv1.FarmService_GetFarm_FullMethodName:         true,
	paddockv1.FarmService_PollFarm_FullMethodName:        true,
	paddockv1.FarmService_CheckFarm_FullMethodName:       true,
	paddockv1.ElectionService_Leader_FullMethodName:      true,
	paddockv1.ElectionService_PollLeader_FullMethodName:  true,
	paddockv1.LockService_GetLock_FullMethodName:         true,
	// A web session read proposes nothing, but is not in this list: a
	// locked read retried with its request id gets the lock it was
	// granted back (node's wsLocks.acquire).
	paddockv1.WebSessionService_ValidateWebSession_FullMethodName: true,
}

// withRequestID calls h, for a write with the valid request id of the
// metadata in its context for node.Propose; it refuses an invalid one
// before h runs, so it never reaches the log. A read ignores the metadata,
// and so does a web session read without the lock.
func withRequestID(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if reads[info.FullMethod] {
		return h(ctx, req)
	}
	if r, ok := req.(*paddockv1.ReadWebSessionRequest); ok && !r.GetLock() {
		return h(ctx, req)
	}
	// Not metadata.FromIncomingContext: that copies every key.
	vals := metadata.ValueFromIncomingContext(ctx, RequestIDMetadata)
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
