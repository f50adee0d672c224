package node_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/paddock/paddock/node"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
)

// lockedBuffer collects a logger's output from many goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// tcpCluster starts size nodes on real raft addresses on 127.0.0.1 (the
// production transport: raft and the internal service multiplexed on one
// port), logging warnings to log. They close at cleanup.
func tcpCluster(t *testing.T, size int, log io.Writer) ([]*node.Node, []string) {
	t.Helper()
	var addrs []string
	var voters []raft.Server
	for i := range size {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, l.Addr().String())
		l.Close()
		voters = append(voters, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(fmt.Sprintf("t%d", i+1)), Address: raft.ServerAddress(addrs[i])})
	}
	var nodes []*node.Node
	t.Cleanup(func() {
		for _, n := range nodes {
			if err := n.Close(); err != nil {
				t.Errorf("Close(%s): %v", n.ID(), err)
			}
		}
	})
	for i := range size {
		n, err := node.New(node.Config{
			ID: string(voters[i].ID), DataDir: t.TempDir(), RaftAddr: addrs[i], Bootstrap: voters,
			HeartbeatTimeout: 250 * time.Millisecond, ElectionTimeout: 250 * time.Millisecond,
			RequestTimeout: 5 * time.Second,
			Logger:         hclog.New(&hclog.LoggerOptions{Name: string(voters[i].ID), Level: hclog.Warn, Output: log}),
		})
		if err != nil {
			t.Fatalf("node.New(%s): %v", voters[i].ID, err)
		}
		nodes = append(nodes, n)
	}
	return nodes, addrs
}

// waitTCPLeader waits until one node leads, is ready, and every node
// follows it; it returns its index.
func waitTCPLeader(t *testing.T, nodes []*node.Node) int {
	t.Helper()
	leader := -1
	eventually(t, waitTimeout, func() error {
		leader = -1
		for i, n := range nodes {
			if n.IsLeader() && n.Ready() {
				leader = i
			}
		}
		if leader < 0 {
			return errors.New("no ready leader")
		}
		for _, n := range nodes {
			if _, id := n.Raft().LeaderWithID(); string(id) != nodes[leader].ID() {
				return fmt.Errorf("%s follows %q", n.ID(), id)
			}
		}
		return nil
	})
	return leader
}

// TestRaftAddressMux: on the raft address, a connection that starts with
// neither a raft RPC type nor the HTTP/2 preface is closed and logged,
// one that sends nothing holds up no other, and the nodes still replicate
// (raft) and forward followers' writes (the internal gRPC service, reached
// on the same address).
func TestRaftAddressMux(t *testing.T) {
	log := &lockedBuffer{}
	nodes, addrs := tcpCluster(t, 3, log)
	leader := waitTCPLeader(t, nodes)

	for _, addr := range addrs {
		// Left silent until the nodes close: their close must not wait
		// for it.
		silent, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer silent.Close()

		garbage, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer garbage.Close()
		if _, err := garbage.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		_ = garbage.SetReadDeadline(time.Now().Add(waitTimeout))
		n, err := garbage.Read(make([]byte, 16))
		if ne := (net.Error)(nil); errors.As(err, &ne) && ne.Timeout() || err == nil {
			t.Errorf("garbage on %s: read %d bytes, %v; want the connection closed", addr, n, err)
		}
	}
	if !strings.Contains(log.String(), "neither raft nor gRPC") {
		t.Errorf("no log line for the garbage connections; log:\n%s", log)
	}

	for i, n := range nodes {
		if i == leader {
			continue
		}
		res := mustPropose(t, n, createCmd(fmt.Sprintf("/mux-%d", i), nil)) // forwarded
		eventually(t, waitTimeout, func() error {
			for _, m := range nodes {
				if _, st, err := m.FSM().Get(fmt.Sprintf("/mux-%d", i)); err != nil || st.GetCzxid() != res.Index {
					return fmt.Errorf("Get(/mux-%d) on %s = %v, %v; want czxid %d", i, m.ID(), st, err, res.Index)
				}
			}
			return nil
		})
	}

	// A peer's gRPC client reaches the internal service on the leader's
	// raft address.
	conn, err := grpc.NewClient(addrs[leader], grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithNoProxy())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if resp, err := raftv1.NewInternalServiceClient(conn).ReadIndex(ctx, &raftv1.ReadIndexRequest{}); err != nil || resp.GetIndex() == 0 {
		t.Errorf("ReadIndex on the leader's raft address = %v, %v; want an index", resp, err)
	}
}
