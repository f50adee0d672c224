package node_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	"github.com/paddock/paddock/fsm"
	"github.com/paddock/paddock/node"
	"github.com/paddock/paddock/node/nodetest"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
	"github.com/paddock/paddock/rpc"
)

// TestMain checks that no test leaves a goroutine behind: every node,
// transport, gRPC server and client connection a test starts is closed by
// its cluster's cleanup.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Timings the node tests share with their clusters.
const (
	waitTimeout        = nodetest.WaitTimeout
	testProposeTimeout = 10 * time.Second
)

// newCluster starts an in-process cluster (package nodetest) whose nodes
// serve the client gRPC API.
func newCluster(tb testing.TB, size int, opts ...nodetest.Option) *nodetest.Cluster {
	tb.Helper()
	return nodetest.NewCluster(tb, size, append([]nodetest.Option{nodetest.WithServer(func(n *node.Node) *grpc.Server { return rpc.NewServer(n) })}, opts...)...)
}

// eventually is nodetest.Eventually.
func eventually(tb testing.TB, timeout time.Duration, f func() error) {
	tb.Helper()
	nodetest.Eventually(tb, timeout, f)
}

// Commands.

func createCmd(path string, data []byte) *raftv1.Command {
	return &raftv1.Command{Op: &raftv1.Command_Create{Create: &paddockv1.CreateRequest{Path: path, Data: data}}}
}

func ephemeralCmd(path string, session uint64) *raftv1.Command {
	return &raftv1.Command{Op: &raftv1.Command_Create{Create: &paddockv1.CreateRequest{
		Path: path, Type: paddockv1.NodeType_NODE_TYPE_EPHEMERAL, SessionId: session,
	}}}
}

func setCmd(path string, data []byte) *raftv1.Command {
	return &raftv1.Command{Op: &raftv1.Command_Set{Set: &paddockv1.SetRequest{Path: path, Data: data}}}
}

// mustPropose proposes cmd on n and fails tb if it does not succeed.
func mustPropose(tb testing.TB, n *node.Node, cmd *raftv1.Command) *fsm.Result {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testProposeTimeout)
	defer cancel()
	res, err := n.Propose(ctx, cmd)
	if err != nil {
		tb.Fatalf("Propose on %s: %v", n.ID(), err)
	}
	return res
}

// mustOpenSession opens a session through n.
func mustOpenSession(tb testing.TB, n *node.Node, timeout time.Duration) uint64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testProposeTimeout)
	defer cancel()
	resp, _, err := n.OpenSession(ctx, timeout)
	if err != nil {
		tb.Fatalf("OpenSession on %s: %v", n.ID(), err)
	}
	if got := time.Duration(resp.GetTimeoutMs()) * time.Millisecond; got != timeout {
		tb.Fatalf("OpenSession(%v) granted %v", timeout, got)
	}
	return resp.GetSessionId()
}

// linearGet is a linearizable read of path on n.
func linearGet(ctx context.Context, n *node.Node, path string) ([]byte, *paddockv1.Stat, error) {
	resp, err := n.Get(ctx, &paddockv1.GetRequest{Path: path})
	return resp.GetData(), resp.GetStat(), err
}

// raftStat reads one of raft's numeric stats.
func raftStat(tb testing.TB, n *node.Node, key string) uint64 {
	tb.Helper()
	v, err := strconv.ParseUint(n.Raft().Stats()[key], 10, 64)
	if err != nil {
		tb.Fatalf("raft stat %s of %s: %v", key, n.ID(), err)
	}
	return v
}

// contentHash digests f's state without its applied index (which every
// new leader's barrier advances) and without the member table (client
// addresses may legitimately change across a restart): the znodes and the
// sessions, as the snapshot stream writes them.
func contentHash(tb testing.TB, f *fsm.FSM) [32]byte {
	tb.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		tb.Fatalf("Snapshot: %v", err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		tb.Fatalf("Persist: %v", err)
	}
	snap.Release()
	r := bufio.NewReader(&sink.buf)
	opts := protodelim.UnmarshalOptions{MaxSize: -1}
	if err := opts.UnmarshalFrom(r, &raftv1.SnapshotHeader{}); err != nil {
		tb.Fatalf("snapshot header: %v", err)
	}
	h := sha256.New()
	for {
		var rec raftv1.SnapshotRecord
		err := opts.UnmarshalFrom(r, &rec)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			tb.Fatalf("snapshot record: %v", err)
		}
		if rec.GetMember() != nil {
			continue
		}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&rec)
		if err != nil {
			tb.Fatal(err)
		}
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// memSink is a raft.SnapshotSink in memory.
type memSink struct{ buf bytes.Buffer }

func (s *memSink) Write(p []byte) (int, error) { return s.buf.Write(p) }
func (s *memSink) Close() error                { return nil }
func (s *memSink) ID() string                  { return "mem" }
func (s *memSink) Cancel() error               { return nil }
