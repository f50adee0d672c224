package rpc_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// TestServerHasNoInternalService: the client server neither serves nor
// lists the nodes' internal service. A raw command sent there (one a
// client must never write: a znode under /paddock) is Unimplemented and
// changes nothing.
func TestServerHasNoInternalService(t *testing.T) {
	n, conn := singleNode(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	raw, err := proto.Marshal(&raftv1.Command{Op: &raftv1.Command_Create{Create: &paddockv1.CreateRequest{Path: "/paddock/raw"}}})
	if err != nil {
		t.Fatal(err)
	}
	internal := raftv1.NewInternalServiceClient(conn)
	if _, err := internal.Propose(ctx, &raftv1.ProposeRequest{Command: raw}); status.Code(err) != codes.Unimplemented {
		t.Errorf("InternalService/Propose = %v, want Unimplemented", err)
	}
	if _, err := internal.ReadIndex(ctx, &raftv1.ReadIndexRequest{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("InternalService/ReadIndex = %v, want Unimplemented", err)
	}
	if _, _, err := n.FSM().Get("/paddock/raw"); err == nil {
		t.Error("/paddock/raw exists after the refused Propose")
	}

	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stream.CloseSend() }()
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("ListServices: %v", err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if !slices.Contains(names, paddockv1.TreeService_ServiceDesc.ServiceName) || slices.Contains(names, raftv1.InternalService_ServiceDesc.ServiceName) {
		t.Errorf("ListServices = %q, want %s and not %s", names,
			paddockv1.TreeService_ServiceDesc.ServiceName, raftv1.InternalService_ServiceDesc.ServiceName)
	}
}
