package rpc_test

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock/paddock/fsm"
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

// TestLargeMessages: the client server's static flow control windows
// (smaller than its largest request) carry the largest value both ways,
// and a request larger than the window arrives whole and is refused by
// its size, not stalled.
func TestLargeMessages(t *testing.T) {
	_, conn := singleNode(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tree := paddockv1.NewTreeServiceClient(conn)

	data := bytes.Repeat([]byte("0123456789abcdef"), fsm.MaxDataSize/16)
	if _, err := tree.Create(ctx, &paddockv1.CreateRequest{Path: "/big", Data: data}); err != nil {
		t.Fatalf("Create(/big, %d bytes): %v", len(data), err)
	}
	got, err := tree.Get(ctx, &paddockv1.GetRequest{Path: "/big"})
	if err != nil || !bytes.Equal(got.GetData(), data) {
		t.Fatalf("Get(/big) = %d bytes, %v; want the %d bytes written", len(got.GetData()), err, len(data))
	}

	huge := make([]byte, 6<<20)
	_, err = tree.Create(ctx, &paddockv1.CreateRequest{Path: "/huge", Data: huge}, grpc.MaxCallSendMsgSize(8<<20))
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "data too large") {
		t.Errorf("Create(/huge, %d bytes) = %v %q, want InvalidArgument data too large", len(huge), st.Code(), st.Message())
	}
}
