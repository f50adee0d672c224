package node_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock/paddock/fsm"
	"github.com/paddock/paddock/node"
	"github.com/paddock/paddock/node/nodetest"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// Every command this release knows is of the base level, so no real
// command can show a member blocking a newer one. These tests give create
// level 2 instead (Config.OpFeatureLevel, on every node), and have nodes
// claim level 2 or 1 (Config.FeatureLevel, which also sets the level their
// state machine applies): the mechanism under test is the real one, only
// the table of levels is the test's.

// createIsLevel2 is fsm.OpFeatureLevel with create moved to level 2.
func createIsLevel2(cmd *raftv1.Command) (uint32, bool) {
	if cmd.GetCreate() != nil {
		return 2, true
	}
	return fsm.OpFeatureLevel(cmd)
}

// withLevels makes create a level 2 command and has each node claim the
// level levels gives it at start.
func withLevels(levels func(id string) uint32) nodetest.Option {
	return nodetest.WithConfig(func(cfg *node.Config) {
		cfg.OpFeatureLevel = createIsLevel2
		cfg.FeatureLevel = levels(cfg.ID)
	})
}

// waitLevels waits until n's member table records want for every member.
func waitLevels(t *testing.T, n *node.Node, want map[string]uint32) {
	t.Helper()
	eventually(t, waitTimeout, func() error {
		for id, level := range want {
			m, ok := n.FSM().Member(id)
			if !ok || m.GetFeatureLevel() != level {
				return fmt.Errorf("%s records %s as %v, want feature level %d", n.ID(), id, m, level)
			}
		}
		return nil
	})
}

// TestFeatureLevelRefused runs a cluster where n3 claims level 1 while
// create needs 2: a create is refused on every node with an error naming
// n3 and the upgrade, over gRPC as FailedPrecondition, nothing appended,
// while base commands go on. Once n3 restarts claiming 2 (upgraded), the
// same create is applied everywhere.
func TestFeatureLevelRefused(t *testing.T) {
	var n3Level atomic.Uint32
	n3Level.Store(1)
	c := newCluster(t, 3, withLevels(func(id string) uint32 {
		if id == "n3" {
			return n3Level.Load()
		}
		return 2
	}))
	leader := c.WaitLeader(t)
	waitLevels(t, c.Node(leader), map[string]uint32{"n1": 2, "n2": 2, "n3": 1})
	members, err := c.Node(leader).Members(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if want := map[string]uint32{"n1": 2, "n2": 2, "n3": 1}[m.GetId()]; m.GetFeatureLevel() != want {
			t.Errorf("Members() lists %s at feature level %d, want %d", m.GetId(), m.GetFeatureLevel(), want)
		}
	}

	const want = "member n3 supports feature level 1, create needs 2: upgrade n3"
	for _, i := range c.Running() {
		n := c.Node(i)
		ctx, cancel := context.WithTimeout(context.Background(), testProposeTimeout)
		res, err := n.Propose(ctx, createCmd("/next", nil))
		cancel()
		if !errors.Is(err, fsm.ErrFeatureLevel) || !strings.Contains(err.Error(), want) {
			t.Errorf("Propose(create) on %s = %v, %v, want %v containing %q", n.ID(), res, err, fsm.ErrFeatureLevel, want)
		}

		conn, err := grpc.NewClient(c.GRPCAddr(i), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel = context.WithTimeout(context.Background(), testProposeTimeout)
		_, err = paddockv1.NewTreeServiceClient(conn).Create(ctx, &paddockv1.CreateRequest{Path: "/next"})
		cancel()
		conn.Close()
		if st := status.Convert(err); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), want) {
			t.Errorf("TreeService.Create on %s = %v, want FailedPrecondition containing %q", n.ID(), err, want)
		}
		// Base commands need no record and go on.
		mustOpenSession(t, n, 5*time.Second)
	}
	for _, i := range c.Running() {
		if _, _, err := c.Node(i).FSM().Get("/next"); !errors.Is(err, fsm.ErrNoNode) {
			t.Errorf("Get(/next) on %s = %v, want %v: a refused command appends nothing", c.ID(i), err, fsm.ErrNoNode)
		}
	}

	// Upgrade n3: it records level 2, and create is proposed.
	c.Stop(2)
	n3Level.Store(2)
	c.Restart(2)
	leader = c.WaitLeader(t)
	waitLevels(t, c.Node(leader), map[string]uint32{"n1": 2, "n2": 2, "n3": 2})
	res := mustPropose(t, c.Node(c.Followers(leader)[0]), createCmd("/next", []byte("v2")))
	eventually(t, waitTimeout, func() error {
		for _, i := range c.Running() {
			f := c.Node(i).FSM()
			if err := f.Err(); err != nil {
				return fmt.Errorf("%s stopped: %v", c.ID(i), err)
			}
			if _, st, err := f.Get("/next"); err != nil || st.GetCzxid() != res.Index {
				return fmt.Errorf("Get(/next) on %s = %v, %v, want czxid %d", c.ID(i), st, err, res.Index)
			}
		}
		return nil
	})
}

// TestFeatureLevelFatalEntry proposes, raw through the leader's raft, an
// entry stamped with level 2 to a cluster where n3 supports only level 1:
// n3 stops at that entry, naming the upgrade, and shuts itself down
// (reads refused), while n1 and n2, which support level 2, apply it.
func TestFeatureLevelFatalEntry(t *testing.T) {
	c := newCluster(t, 3, withLevels(func(id string) uint32 {
		if id == "n3" {
			return 1
		}
		return 2
	}))
	leader := c.WaitLeader(t)
	n3 := c.Node(2)
	before := n3.FSM().AppliedIndex()

	cmd := setCmd("/", []byte("from level 2"))
	cmd.FeatureLevel = 2
	cmd.TimeUnixMs = time.Now().UnixMilli()
	data, err := proto.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	f := c.Node(leader).Raft().Apply(data, testProposeTimeout)
	if err := f.Error(); err != nil {
		t.Fatalf("raft Apply on the leader: %v", err)
	}
	index := f.Index()

	select {
	case <-n3.Halted():
	case <-time.After(waitTimeout):
		t.Fatalf("n3 did not halt after entry %d", index)
	}
	want := fmt.Sprintf("entry %d needs feature level 2, this binary supports 1: upgrade paddock on this node", index)
	if err := n3.Err(); !errors.Is(err, fsm.ErrUpgradeRequired) || !strings.Contains(err.Error(), want) {
		t.Errorf("n3.Err() = %v, want %v containing %q", err, fsm.ErrUpgradeRequired, want)
	}
	if got := n3.FSM().AppliedIndex(); got >= index || got < before {
		t.Errorf("n3 applied index = %d, want in [%d, %d): it stops before the entry", got, before, index)
	}
	if _, _, err := n3.FSM().Get("/"); err != nil {
		t.Fatal(err)
	}
	if data, _, _ := n3.FSM().Get("/"); len(data) != 0 {
		t.Errorf("n3 applied the entry it cannot understand: / = %q", data)
	}
	if n3.Ready() {
		t.Errorf("n3.Ready() = true after halting")
	}
	ctx, cancel := context.WithTimeout(context.Background(), testProposeTimeout)
	defer cancel()
	serial := &paddockv1.ReadOptions{Consistency: paddockv1.ReadConsistency_READ_CONSISTENCY_SERIALIZABLE}
	if _, err := n3.Get(ctx, &paddockv1.GetRequest{Path: "/", Read: serial}); !errors.Is(err, node.ErrShuttingDown) {
		t.Errorf("serializable Get on halted n3 = %v, want %v", err, node.ErrShuttingDown)
	}
	if _, err := n3.Propose(ctx, setCmd("/", []byte("x"))); !errors.Is(err, node.ErrShuttingDown) {
		t.Errorf("Propose on halted n3 = %v, want %v", err, node.ErrShuttingDown)
	}

	for _, i := range []int{0, 1} {
		n := c.Node(i)
		eventually(t, waitTimeout, func() error {
			if err := n.Err(); err != nil {
				return fmt.Errorf("%s stopped: %v", n.ID(), err)
			}
			if data, _, err := n.FSM().Get("/"); err != nil || string(data) != "from level 2" {
				return fmt.Errorf("Get(/) on %s = %q, %v, want the level 2 entry applied", n.ID(), data, err)
			}
			return nil
		})
	}
}
