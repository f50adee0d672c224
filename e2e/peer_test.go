package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// internalService is the nodes' own protocol, served on raft addresses.
const internalService = "paddock.raft.v1.InternalService"

// TestClusterPeerTraffic: a client port serves no node-to-node service
// (reflection does not list it, a raw Propose there is Unimplemented and
// writes nothing), while followers still forward writes to the leader
// over the raft address; a connection to a raft address that speaks
// neither raft nor gRPC is closed, and the cluster goes on.
func TestClusterPeerTraffic(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	ld := c.leader()
	leader := c.agents[ld]

	for _, a := range c.agents {
		r := grpcurl(t, a.grpcAddr, "list")
		if r.code != 0 {
			t.Fatalf("grpcurl list on %s: %v", a.id, r)
		}
		services := strings.Fields(r.stdout)
		if !slices.Contains(services, "paddock.v1.TreeService") || slices.Contains(services, internalService) {
			t.Errorf("grpcurl list on %s = %q, want paddock.v1.TreeService and not %s", a.id, services, internalService)
		}
	}

	// A raw command on the client port is Unimplemented, from grpcurl and
	// from a client built with the generated stubs.
	raw, err := proto.Marshal(&raftv1.Command{Op: &raftv1.Command_Create{Create: &paddockv1.CreateRequest{Path: "/raw"}}})
	if err != nil {
		t.Fatal(err)
	}
	r := grpcurl(t, leader.grpcAddr, internalService+"/Propose", `{"command":"`+b64(string(raw))+`"}`)
	wantCode(t, "grpcurl "+internalService+"/Propose on the client port", r, "Unimplemented")
	conn, err := grpc.NewClient(leader.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithNoProxy())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	_, err = raftv1.NewInternalServiceClient(conn).Propose(ctx, &raftv1.ProposeRequest{Command: raw})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("%s/Propose on the client port: %v, want Unimplemented", internalService, err)
	}
	wantCode(t, "Get(/raw) after the refused Propose", grpcurl(t, leader.grpcAddr, "paddock.v1.TreeService/Get", `{"path":"/raw"}`), "NotFound")

	// Garbage on every raft address is closed at once.
	for _, a := range c.agents {
		if err := garbageClosed(a.raftAddr); err != nil {
			t.Errorf("raft address of %s: %v", a.id, err)
		}
	}

	// Writes through each follower's client port reach the leader.
	for i, a := range c.agents {
		if i == ld {
			continue
		}
		path := "/peer-" + a.id
		var created struct {
			Header struct {
				NodeID string `json:"nodeId"`
			} `json:"header"`
		}
		grpcurlJSON(t, a.grpcAddr, "paddock.v1.TreeService/Create", `{"path":"`+path+`"}`, &created)
		if created.Header.NodeID != a.id {
			t.Errorf("Create(%s) on %s answered by %q", path, a.id, created.Header.NodeID)
		}
		var got getResponse
		grpcurlJSON(t, leader.grpcAddr, "paddock.v1.TreeService/Get", `{"path":"`+path+`"}`, &got)
	}

	// The mux logged the garbage.
	log, err := os.ReadFile(leader.logPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "neither raft nor gRPC") {
		t.Errorf("%s's log does not mention the closed connection", leader.id)
	}
}

// garbageClosed sends an HTTP/1 request to a raft address and checks
// that the node closes the connection without answering.
func garbageClosed(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, cmdTimeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		return err
	}
	_ = conn.SetReadDeadline(time.Now().Add(cmdTimeout))
	n, err := conn.Read(make([]byte, 64))
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return errors.New("connection still open")
	case err == nil:
		return fmt.Errorf("answered %d bytes", n)
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), strings.Contains(err.Error(), "reset"):
		return nil
	}
	return err
}
