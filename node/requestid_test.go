package node_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/paddock/paddock/fsm"
	"github.com/paddock/paddock/node"
	"github.com/paddock/paddock/node/nodetest"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
	"github.com/paddock/paddock/rpc"
)

func seqCmd(parent string) *raftv1.Command {
	return &raftv1.Command{Op: &raftv1.Command_Create{Create: &paddockv1.CreateRequest{Path: parent + "/n-", Sequential: true}}}
}

// proposeWithID proposes cmd on n with request id id in the context.
func proposeWithID(n *node.Node, id string, cmd *raftv1.Command) (*fsm.Result, error) {
	ctx, cancel := context.WithTimeout(node.WithRequestID(context.Background(), []byte(id)), testProposeTimeout)
	defer cancel()
	return n.Propose(ctx, cmd)
}

// sameResult compares what a retry got with what the first call got.
func sameResult(t *testing.T, what string, got, want *fsm.Result, gotErr, wantErr error) {
	t.Helper()
	if (gotErr == nil) != (wantErr == nil) || (gotErr != nil && gotErr.Error() != wantErr.Error()) {
		t.Errorf("%s: error %v, want %v", what, gotErr, wantErr)
	}
	if got == nil || want == nil {
		if (got == nil) != (want == nil) {
			t.Errorf("%s: result %v, want %v", what, got, want)
		}
		return
	}
	if got.Index != want.Index {
		t.Errorf("%s: index (zxid) %d, want the first call's %d", what, got.Index, want.Index)
	}
	if diff := cmp.Diff(want.Resp, got.Resp, protocmp.Transform()); diff != "" {
		t.Errorf("%s: response mismatch (-first +retry):\n%s", what, diff)
	}
}

// childCount counts parent's children on every running node, once they
// have converged.
func childCount(t *testing.T, c *nodetest.Cluster, parent string) int {
	t.Helper()
	c.Converged(t)
	n := -1
	for _, i := range c.Running() {
		page, err := c.Node(i).FSM().List(parent, "", 100)
		if err != nil {
			t.Fatalf("List(%s) on %s: %v", parent, c.Node(i).ID(), err)
		}
		if n >= 0 && len(page.Children) != n {
			t.Fatalf("List(%s) on %s = %d children, another node has %d", parent, c.Node(i).ID(), len(page.Children), n)
		}
		n = len(page.Children)
	}
	return n
}

// TestRequestIDRetryOnAnotherNode retries writes with the same request id
// through every node, followers (forwarded) and the leader: each is
// applied once, and every retry gets the first result and zxid.
func TestRequestIDRetryOnAnotherNode(t *testing.T) {
	c := newCluster(t, 3)
	leader := c.WaitLeader(t)
	fs := c.Followers(leader)
	order := []int{fs[0], leader, fs[1]}
	mustPropose(t, c.Node(leader), createCmd("/q", nil))

	t.Run("sequential create", func(t *testing.T) {
		var first *fsm.Result
		for k, i := range order {
			res, err := proposeWithID(c.Node(i), "seq-1", seqCmd("/q"))
			if err != nil {
				t.Fatalf("Propose(seq-1) on %s: %v", c.Node(i).ID(), err)
			}
			if k == 0 {
				first = res
				continue
			}
			sameResult(t, "retry on "+c.Node(i).ID(), res, first, err, nil)
		}
		if got := childCount(t, c, "/q"); got != 1 {
			t.Errorf("/q has %d children after 3 tries of one request, want 1", got)
		}
	})

	t.Run("failed create", func(t *testing.T) {
		mustPropose(t, c.Node(leader), createCmd("/taken", nil))
		first, firstErr := proposeWithID(c.Node(order[0]), "fail-1", createCmd("/taken", []byte("mine")))
		if !errors.Is(firstErr, fsm.ErrNodeExists) {
			t.Fatalf("Propose(create /taken) = %v, want %v", firstErr, fsm.ErrNodeExists)
		}
		// Now a fresh create would succeed; the retry must not.
		mustPropose(t, c.Node(leader), &raftv1.Command{Op: &raftv1.Command_Delete{Delete: &paddockv1.DeleteRequest{Path: "/taken"}}})
		for _, i := range order[1:] {
			res, err := proposeWithID(c.Node(i), "fail-1", createCmd("/taken", []byte("mine")))
			sameResult(t, "retry on "+c.Node(i).ID(), res, first, err, firstErr)
		}
		c.Converged(t)
		if _, _, err := c.Node(leader).FSM().Get("/taken"); !errors.Is(err, fsm.ErrNoNode) {
			t.Errorf("Get(/taken) after retried failed creates = %v, want %v", err, fsm.ErrNoNode)
		}
	})

	t.Run("id too long", func(t *testing.T) {
		// Before any session: the leader appends nothing on its own.
		c.Converged(t)
		last := c.Node(leader).Raft().LastIndex()
		for _, i := range order {
			_, err := proposeWithID(c.Node(i), strings.Repeat("x", fsm.MaxRequestIDLength+1), createCmd("/long-id", nil))
			if !errors.Is(err, fsm.ErrBadArgument) {
				t.Errorf("Propose with a %d byte id on %s = %v, want %v", fsm.MaxRequestIDLength+1, c.Node(i).ID(), err, fsm.ErrBadArgument)
			}
		}
		if got := c.Node(leader).Raft().LastIndex(); got != last {
			t.Errorf("leader's last log index went from %d to %d", last, got)
		}
	})

	t.Run("open session", func(t *testing.T) {
		before := len(c.Node(leader).FSM().Sessions())
		var firstID, firstIdx uint64
		for k, i := range order {
			ctx, cancel := context.WithTimeout(node.WithRequestID(context.Background(), []byte("open-1")), testProposeTimeout)
			resp, idx, err := c.Node(i).OpenSession(ctx, 0)
			cancel()
			if err != nil {
				t.Fatalf("OpenSession(open-1) on %s: %v", c.Node(i).ID(), err)
			}
			if k == 0 {
				firstID, firstIdx = resp.GetSessionId(), idx
			} else if resp.GetSessionId() != firstID || idx != firstIdx {
				t.Errorf("OpenSession retry on %s = session %d zxid %d, want %d zxid %d", c.Node(i).ID(), resp.GetSessionId(), idx, firstID, firstIdx)
			}
		}
		c.Converged(t)
		if got := len(c.Node(leader).FSM().Sessions()); got != before+1 {
			t.Errorf("Sessions() = %d, want %d: one per request id", got, before+1)
		}
	})
}

// TestRequestIDOverGRPC sends a create with the paddock-request-id
// metadata to each node's gRPC server: one znode, and every answer has the
// first one's zxid in its header; a bad id is InvalidArgument.
func TestRequestIDOverGRPC(t *testing.T) {
	c := newCluster(t, 3)
	leader := c.WaitLeader(t)
	mustPropose(t, c.Node(leader), createCmd("/g", nil))
	var first *paddockv1.CreateResponse
	for _, i := range append(c.Followers(leader), leader) {
		conn, err := grpc.NewClient(c.GRPCAddr(i), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		tree := paddockv1.NewTreeServiceClient(conn)
		ctx, cancel := context.WithTimeout(context.Background(), testProposeTimeout)
		defer cancel()
		req := &paddockv1.CreateRequest{Path: "/g/n-", Sequential: true}
		resp, err := tree.Create(metadata.AppendToOutgoingContext(ctx, rpc.RequestIDMetadata, "0123456789abcdef0123456789abcdef"), req)
		if err != nil {
			t.Fatalf("Create on %s: %v", c.Node(i).ID(), err)
		}
		if first == nil {
			first = resp
		} else if resp.GetHeader().GetZxid() != first.GetHeader().GetZxid() || resp.GetPath() != first.GetPath() ||
			!proto.Equal(resp.GetStat(), first.GetStat()) {
			t.Errorf("Create retry on %s = %v, want path, stat and zxid of %v", c.Node(i).ID(), resp, first)
		}
		if got := resp.GetHeader().GetNodeId(); got != c.Node(i).ID() {
			t.Errorf("Create on %s: header node id %s", c.Node(i).ID(), got)
		}
		_, err = tree.Create(metadata.AppendToOutgoingContext(ctx, rpc.RequestIDMetadata, strings.Repeat("z", fsm.MaxRequestIDLength+1)), req)
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("Create with a long request id on %s = %v, want InvalidArgument", c.Node(i).ID(), err)
		}
	}
	if got := childCount(t, c, "/g"); got != 1 {
		t.Errorf("/g has %d children, want 1", got)
	}
}

// TestRequestIDConcurrentDuplicates proposes the same request at once
// through two nodes, many times: both reach the log, one is applied, the
// other gets its result.
func TestRequestIDConcurrentDuplicates(t *testing.T) {
	c := newCluster(t, 3)
	leader := c.WaitLeader(t)
	fs := c.Followers(leader)
	mustPropose(t, c.Node(leader), createCmd("/dup", nil))
	const rounds = 20
	for r := range rounds {
		id := fmt.Sprintf("%032x", r)
		start := make(chan struct{})
		var wg sync.WaitGroup
		var res [2]*fsm.Result
		var errs [2]error
		for k, i := range []int{fs[0], leader} {
			if r%2 == 1 {
				i = []int{fs[1], fs[0]}[k]
			}
			wg.Go(func() {
				<-start
				res[k], errs[k] = proposeWithID(c.Node(i), id, seqCmd("/dup"))
			})
		}
		close(start)
		wg.Wait()
		for k, err := range errs {
			if err != nil {
				t.Fatalf("round %d: proposal %d: %v", r, k, err)
			}
		}
		sameResult(t, fmt.Sprintf("round %d", r), res[1], res[0], nil, nil)
	}
	if got := childCount(t, c, "/dup"); got != rounds {
		t.Errorf("/dup has %d children after %d rounds of two identical requests, want %d", got, rounds, rounds)
	}
}
