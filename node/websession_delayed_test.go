package node_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/paddock/paddock/fsm"
	"github.com/paddock/paddock/node"
	"github.com/paddock/paddock/node/nodetest"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

const delayed = paddockv1.WebSessionWriteMode_WEB_SESSION_WRITE_MODE_DELAYED

// wsWriteDelayed writes id in the delayed mode, which must be answered
// within 3 s: the tests that hold the leader's commits would see a
// write-through hang.
func wsWriteDelayed(t *testing.T, n *node.Node, id, data string, version, token uint64) *paddockv1.WriteWebSessionResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	r, err := n.WriteWebSession(ctx, &paddockv1.WriteWebSessionRequest{Id: id, Data: []byte(data), Version: version, Token: token, Mode: delayed})
	if err != nil {
		t.Fatalf("delayed WriteWebSession %s v%d on %s: %v", id, version, n.ID(), err)
	}
	return r
}

// dwCluster is a cluster for the delayed write tests: no lock grace,
// and a leader that stays put on a loaded machine (a leader change is a
// fault: it may lose delayed writes, and locks).
func dwCluster(t *testing.T, opts ...nodetest.Option) (*nodetest.Cluster, int) {
	t.Helper()
	opts = append([]nodetest.Option{nodetest.WithSteadyLeader(), nodetest.WithConfig(func(cfg *node.Config) { cfg.WebSessionLockGrace = -1 })}, opts...)
	c := newCluster(t, 3, opts...)
	return c, c.WaitLeader(t)
}

// steady fails t if leadership moved from l: the test's faults are its
// own.
func steady(t *testing.T, c *nodetest.Cluster, l int) {
	t.Helper()
	if !c.Node(l).IsLeader() {
		t.Fatalf("leadership moved from %s during the test: an unplanned fault (the machine too loaded?)", c.ID(l))
	}
}

// committed polls until leader n's applied state holds id at version
// with data.
func committed(t *testing.T, n *node.Node, id, data string, version uint64) {
	t.Helper()
	nodetest.Eventually(t, waitTimeout, func() error {
		s, ok := n.FSM().WebSession(id)
		if !ok || s.Version != version || string(s.Data) != data {
			return fmt.Errorf("%s on %s: %q v%d (found %v), want %q v%d", id, n.ID(), s.Data, s.Version, ok, data, version)
		}
		return nil
	})
}

// metricValue is n's counter (or histogram's sample count) name{label=value}.
func metricValue(t *testing.T, n *node.Node, name, label, value string) float64 {
	t.Helper()
	mfs, err := n.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" || hasLabel(m, label, value) {
				if h := m.GetHistogram(); h != nil {
					return float64(h.GetSampleCount())
				}
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name && lp.GetValue() == value {
			return true
		}
	}
	return false
}

// A delayed write is answered while the leader cannot commit anything,
// every read of the session (on any node: the leader serves them) sees it
// at once, a write-through write of the session waits for it, and all of
// it commits, in order, once the leader can commit again.
func TestWebSessionDelayedWrite(t *testing.T) {
	c, l := dwCluster(t)
	leader := c.Node(l)
	n := c.Node(c.Followers(l)[0])
	r := wsRead(t, n, "dw", true)
	wsWrite(t, n, "dw", "a", 0, r.GetToken())
	committed(t, leader, "dw", "a", 1)

	// Nothing the leader appends from now on reaches a follower: a
	// write-through write would hang.
	c.Transport(l).DropEntries("", true)
	r = wsRead(t, n, "dw", true)
	if w := wsWriteDelayed(t, n, "dw", "b", 1, r.GetToken()); w.GetVersion() != 2 || w.GetHeader().GetNodeId() != leader.ID() {
		t.Fatalf("delayed write: %v, want version 2 from the leader", w)
	}
	// The write released the lock; the next read takes it at once and
	// sees the pending data, from the follower and on the leader.
	r = wsRead(t, n, "dw", true)
	if !r.GetFound() || string(r.GetData()) != "b" || r.GetVersion() != 2 {
		t.Fatalf("read after the delayed write: %q v%d", r.GetData(), r.GetVersion())
	}
	if s, _ := leader.FSM().WebSession("dw"); s.Version != 1 {
		t.Fatalf("the leader's state is at v%d while its commits are held, want 1", s.Version)
	}
	if w := wsWriteDelayed(t, n, "dw", "c", 2, r.GetToken()); w.GetVersion() != 3 {
		t.Fatalf("second delayed write: v%d, want 3", w.GetVersion())
	}
	// A stale delayed write is refused at once, as the state machine
	// would: the version check holds for pending data too.
	r = wsRead(t, leader, "dw", true)
	if _, err := n.WriteWebSession(wsCtx(t), &paddockv1.WriteWebSessionRequest{Id: "dw", Data: []byte("stale"), Version: 2, Token: r.GetToken(), Mode: delayed}); !errors.Is(err, fsm.ErrBadVersion) {
		t.Fatalf("stale delayed write: %v, want ErrBadVersion", err)
	}
	// A new session written delayed exists for Validate and reads.
	r2 := wsRead(t, n, "dw-new", true)
	wsWriteDelayed(t, n, "dw-new", "x", 0, r2.GetToken())
	if v, err := n.ValidateWebSession(wsCtx(t), &paddockv1.ValidateWebSessionRequest{Id: "dw-new"}); err != nil || !v.GetValid() {
		t.Fatalf("validate a session written delayed: %v, %v", v, err)
	}
	// Each session counts its id, its data and 256 bytes.
	if k, b := node.WebSessionPending(leader); k != 2 || b != len("dw")+len("dw-new")+2+2*256 {
		t.Fatalf("pending: %d sessions, %d bytes, want 2 and %d", k, b, len("dw")+len("dw-new")+2+2*256)
	}

	// A write-through write of the session orders after the pending
	// ones: it waits for them, then applies at version 3.
	r = wsRead(t, n, "dw", true)
	if r.GetVersion() != 3 || string(r.GetData()) != "c" {
		t.Fatalf("read: %q v%d, want c v3", r.GetData(), r.GetVersion())
	}
	through := make(chan error, 1)
	go func() {
		_, err := n.WriteWebSession(wsCtx(t), &paddockv1.WriteWebSessionRequest{Id: "dw", Data: []byte("d"), Version: 3, Token: r.GetToken()})
		through <- err
	}()
	c.Transport(l).DropEntries("", false)
	if err := <-through; err != nil {
		t.Fatalf("write-through after delayed writes: %v", err)
	}
	committed(t, leader, "dw", "d", 4)
	committed(t, leader, "dw-new", "x", 1)
	for _, i := range c.Running() {
		committed(t, c.Node(i), "dw", "d", 4)
	}
	nodetest.Eventually(t, waitTimeout, func() error {
		if k, b := node.WebSessionPending(leader); k != 0 || b != 0 {
			return fmt.Errorf("pending: %d sessions, %d bytes", k, b)
		}
		return nil
	})
	if got := metricValue(t, leader, "paddock_web_session_delayed_writes_total", "outcome", "acked"); got != 3 {
		t.Errorf("acked delayed writes: %v, want 3", got)
	}
	if got := metricValue(t, leader, "paddock_web_session_delayed_window_seconds", "", ""); got < 2 {
		t.Errorf("delayed commits timed: %v, want at least 2 (one per session)", got)
	}
}

// Many page views of one session through every node, each reading with
// the lock, adding one and writing delayed: the count is exact, every
// version from 1 to the last was answered exactly once, and it is all
// committed shortly after.
func TestWebSessionDelayedIncrements(t *testing.T) {
	c, l := dwCluster(t)
	const workers, each = 6, 15
	errs := make(chan error, workers)
	versions := make([]atomic.Int32, workers*each+1)
	for w := range workers {
		go func() {
			n := c.Node(w % 3)
			for range each {
				r, err := n.ReadWebSession(wsCtx(t), &paddockv1.ReadWebSessionRequest{Id: "dcount", Lock: true, WaitMs: 60_000})
				if err != nil {
					errs <- fmt.Errorf("read: %w", err)
					return
				}
				k, _ := strconv.Atoi(string(r.GetData()))
				if uint64(k) != r.GetVersion() {
					errs <- fmt.Errorf("read %d at version %d", k, r.GetVersion())
					return
				}
				wr, err := n.WriteWebSession(wsCtx(t), &paddockv1.WriteWebSessionRequest{
					Id: "dcount", Data: []byte(strconv.Itoa(k + 1)), Version: r.GetVersion(), Token: r.GetToken(), Mode: delayed,
				})
				if err != nil {
					errs <- fmt.Errorf("write v%d: %w", r.GetVersion(), err)
					return
				}
				if wr.GetVersion() != r.GetVersion()+1 || wr.GetVersion() > workers*each {
					errs <- fmt.Errorf("write at v%d answered v%d", r.GetVersion(), wr.GetVersion())
					return
				}
				versions[wr.GetVersion()].Add(1)
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			steady(t, c, l)
			t.Fatal(err)
		}
	}
	for v := 1; v <= workers*each; v++ {
		if k := versions[v].Load(); k != 1 {
			t.Fatalf("version %d answered %d times", v, k)
		}
	}
	for _, i := range c.Running() {
		committed(t, c.Node(i), "dcount", strconv.Itoa(workers*each), workers*each)
	}
	leader := c.Node(l)
	commits := metricValue(t, leader, "paddock_applied_commands_total", "op", "web_session_write")
	t.Logf("%d delayed writes, %v commits", workers*each, commits)
	if commits > workers*each || commits < 1 {
		t.Fatalf("%v commits of %d delayed writes", commits, workers*each)
	}
}

// A leader lost within the window loses nothing it acknowledged: every
// other voter held the write as its backup, and the new leader commits it
// before it serves any web session call. The retry of that write (its
// answer lost with the leader, same request id) gets its version; the
// holder's next write, at the version it read, goes on; and the old
// leader, back, agrees.
func TestWebSessionDelayedLeaderLoss(t *testing.T) {
	// A lock grace, so that the new leader takes the old holder's token
	// (it starts again when the takeover is over): long enough for a
	// loaded machine, short enough for the first leader's (no lock is
	// granted in it).
	c, l := dwCluster(t, nodetest.WithConfig(func(cfg *node.Config) { cfg.WebSessionLockGrace = 5 * time.Second }))
	leader := c.Node(l)
	f := c.Followers(l)[0]
	n := c.Node(f)
	r := wsRead(t, n, "dl", true)
	wsWriteDelayed(t, n, "dl", "1", 0, r.GetToken())
	r = wsRead(t, n, "dl", true)
	wsWriteDelayed(t, n, "dl", "2", 1, r.GetToken())
	// Committed: on every node, and no backup holds it any more.
	for _, i := range c.Running() {
		committed(t, c.Node(i), "dl", "2", 2)
		nodetest.Eventually(t, waitTimeout, func() error {
			if k := node.WebSessionHeld(c.Node(i)); k != 0 {
				return fmt.Errorf("%s holds %d writes after their commit", c.ID(i), k)
			}
			return nil
		})
	}
	c.Transport(l).DropEntries("", true)
	r = wsRead(t, n, "dl", true)
	rid := []byte("the third write")
	w3 := &paddockv1.WriteWebSessionRequest{Id: "dl", Data: []byte("3"), Version: 2, Token: r.GetToken(), Mode: delayed}
	if w, err := n.WriteWebSession(node.WithRequestID(wsCtx(t), rid), w3); err != nil || w.GetVersion() != 3 {
		t.Fatalf("third write: %v, %v; want version 3", w, err)
	}
	r = wsRead(t, n, "dl", true)
	if string(r.GetData()) != "3" || r.GetVersion() != 3 {
		t.Fatalf("read of the pending write: %q v%d", r.GetData(), r.GetVersion())
	}
	if k, _ := node.WebSessionPending(leader); k != 1 {
		t.Fatalf("%d sessions pending, want 1", k)
	}
	for _, i := range c.Followers(l) {
		if k := node.WebSessionHeld(c.Node(i)); k != 1 {
			t.Fatalf("%s holds %d writes, want 1 (the third)", c.ID(i), k)
		}
	}
	// The leader stops with version 3 in its memory (and its log) and in
	// its backups': it cannot commit it (its entries are dropped), so
	// its graceful stop gives up waiting for the commit, as a crash would
	// leave it.
	c.Stop(l)
	nl := c.WaitLeader(t)
	committed(t, c.Node(nl), "dl", "3", 3)
	// Served once the takeover is over (the metric is counted before).
	if w, err := n.WriteWebSession(node.WithRequestID(wsCtx(t), rid), w3); err != nil || w.GetVersion() != 3 {
		t.Fatalf("retry of the third write on the new leader: %v, %v; want version 3", w, err)
	}
	if got := metricValue(t, c.Node(nl), "paddock_web_session_delayed_writes_total", "outcome", "taken_over"); got != 1 {
		t.Errorf("taken_over on the new leader = %v, want 1", got)
	}
	if w := wsWriteDelayed(t, n, "dl", "4", 3, r.GetToken()); w.GetVersion() != 4 {
		t.Fatalf("write on: v%d, want 4", w.GetVersion())
	}
	committed(t, c.Node(nl), "dl", "4", 4)
	// The old leader comes back: its uncommitted entry is replaced by
	// the new leader's log, and every node agrees.
	c.Restart(l)
	for _, i := range c.Running() {
		committed(t, c.Node(i), "dl", "4", 4)
	}
}

// A leader cut off by a partition keeps its own writes not committed as
// backup copies when it steps down (it could lead again first); the new
// leader commits its own copies, and once that entry reaches the old
// leader, it lets go of its copy. The write answered before the
// partition is there.
func TestWebSessionDelayedPartitionedLeader(t *testing.T) {
	c, l := dwCluster(t)
	leader := c.Node(l)
	n := c.Node(c.Followers(l)[0])
	r := wsRead(t, n, "pl", true)
	wsWriteDelayed(t, n, "pl", "1", 0, r.GetToken())
	committed(t, leader, "pl", "1", 1)
	c.Transport(l).DropEntries("", true)
	r = wsRead(t, n, "pl", true)
	wsWriteDelayed(t, n, "pl", "2", 1, r.GetToken())
	c.Partition(l)
	nodetest.Eventually(t, waitTimeout, func() error {
		if leader.IsLeader() {
			return errors.New("the cut-off leader still leads")
		}
		if k := node.WebSessionHeld(leader); k != 1 {
			return fmt.Errorf("the old leader holds %d writes of its own, want 1", k)
		}
		return nil
	})
	c.Transport(l).DropEntries("", false)
	c.Heal()
	nl := c.WaitLeader(t)
	for _, i := range c.Running() {
		committed(t, c.Node(i), "pl", "2", 2)
	}
	nodetest.Eventually(t, waitTimeout, func() error {
		for _, i := range c.Running() {
			if k := node.WebSessionHeld(c.Node(i)); k != 0 {
				return fmt.Errorf("%s (leader %s) still holds %d writes", c.ID(i), c.ID(nl), k)
			}
		}
		return nil
	})
}

// A delayed write that a backup did not take goes through: answered only
// once committed, as a write-through write, with its request id, so that
// its retry is answered by the state machine. Nothing acknowledged rests
// on the leader's memory alone. Once the backup takes writes again, and
// the leader waits for it again (after a second), writes are answered
// from memory again.
func TestWebSessionDelayedWithoutBackup(t *testing.T) {
	c, l := dwCluster(t)
	leader := c.Node(l)
	fs := c.Followers(l)
	node.RefuseWebSessionHolds(c.Node(fs[0]), true)
	n := c.Node(fs[1])
	r := wsRead(t, n, "nb", true)
	wsWriteDelayed(t, n, "nb", "1", 0, r.GetToken())
	if s, ok := leader.FSM().WebSession("nb"); !ok || s.Version != 1 {
		t.Fatalf("answered before its commit: the leader's state has %v (found %v)", s, ok)
	}
	if got := metricValue(t, leader, "paddock_web_session_delayed_writes_total", "outcome", "not_backed_up"); got != 1 {
		t.Errorf("not_backed_up = %v, want 1", got)
	}
	// While the leader cannot commit, such a write is not answered.
	c.Transport(l).DropEntries("", true)
	r = wsRead(t, n, "nb", true)
	rid := []byte("the second write")
	w2 := &paddockv1.WriteWebSessionRequest{Id: "nb", Data: []byte("2"), Version: 1, Token: r.GetToken(), Mode: delayed}
	ctx, cancel := context.WithTimeout(node.WithRequestID(context.Background(), rid), 2*time.Second)
	defer cancel()
	_, err := n.WriteWebSession(ctx, w2)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("write the leader cannot commit, a backup refusing: %v, want DeadlineExceeded", err)
	}
	c.Transport(l).DropEntries("", false)
	// Its retry gets the first attempt's result (or, had that attempt
	// not reached the leader on a loaded machine, makes the write).
	if w, err := n.WriteWebSession(node.WithRequestID(wsCtx(t), rid), w2); err != nil || w.GetVersion() != 2 {
		t.Fatalf("retry of the second write: %v, %v; want version 2", w, err)
	}
	committed(t, leader, "nb", "2", 2)
	node.RefuseWebSessionHolds(c.Node(fs[0]), false)
	acked := metricValue(t, leader, "paddock_web_session_delayed_writes_total", "outcome", "acked")
	var v uint64
	nodetest.Eventually(t, waitTimeout, func() error {
		id := "nb-" + strconv.FormatUint(v, 10)
		v++
		r := wsRead(t, n, id, true)
		wsWriteDelayed(t, n, id, "x", 0, r.GetToken())
		if got := metricValue(t, leader, "paddock_web_session_delayed_writes_total", "outcome", "acked"); got == acked {
			return fmt.Errorf("write %d not answered from memory", v)
		}
		return nil
	})
	steady(t, c, l)
}

// Past the cap on pending bytes a delayed write goes through: answered
// once committed. An entry counts its id ("cap": 3), its data and 256.
func TestWebSessionDelayedMemoryCap(t *testing.T) {
	c, l := dwCluster(t, nodetest.WithConfig(func(cfg *node.Config) { cfg.WebSessionDelayedMaxBytes = 3 + 8 + 256 }))
	leader := c.Node(l)
	n := c.Node(c.Followers(l)[0])
	r := wsRead(t, n, "cap", true)
	w := wsWriteDelayed(t, n, "cap", "more than eight bytes", 0, r.GetToken())
	// Written through: in the leader's state on the answer.
	if s, ok := leader.FSM().WebSession("cap"); !ok || s.Version != w.GetVersion() || string(s.Data) != "more than eight bytes" {
		t.Fatalf("after a write over the cap: %+v, %v", s, ok)
	}
	if got := metricValue(t, leader, "paddock_web_session_delayed_writes_total", "outcome", "write_through"); got != 1 {
		t.Fatalf("written through: %v, want 1", got)
	}
	// A small one is held.
	r = wsRead(t, n, "cap", true)
	wsWriteDelayed(t, n, "cap", "small", 1, r.GetToken())
	if got := metricValue(t, leader, "paddock_web_session_delayed_writes_total", "outcome", "acked"); got != 1 {
		t.Fatalf("acked: %v, want 1", got)
	}
	committed(t, leader, "cap", "small", 2)
}

// Destroying a session with pending writes orders after them: the
// session is gone, and the background commit does not bring it back.
func TestWebSessionDelayedThenDestroy(t *testing.T) {
	c, l := dwCluster(t)
	leader := c.Node(l)
	n := c.Node(c.Followers(l)[0])
	c.Transport(l).DropEntries("", true)
	r := wsRead(t, n, "dd", true)
	wsWriteDelayed(t, n, "dd", "a", 0, r.GetToken())
	r = wsRead(t, n, "dd", true)
	done := make(chan error, 1)
	go func() {
		d, err := n.DestroyWebSession(wsCtx(t), &paddockv1.DestroyWebSessionRequest{Id: "dd", Token: r.GetToken()})
		if err == nil && !d.GetDestroyed() {
			err = errors.New("not destroyed")
		}
		done <- err
	}()
	c.Transport(l).DropEntries("", false)
	if err := <-done; err != nil {
		t.Fatalf("destroy: %v", err)
	}
	if k, _ := node.WebSessionPending(leader); k != 0 {
		t.Fatalf("%d sessions pending after the destroy", k)
	}
	if v, err := n.ValidateWebSession(wsCtx(t), &paddockv1.ValidateWebSessionRequest{Id: "dd"}); err != nil || v.GetValid() {
		t.Fatalf("validate after destroy: %v, %v", v, err)
	}
	if _, ok := leader.FSM().WebSession("dd"); ok {
		t.Fatal("the destroyed session is in the leader's state")
	}
}

// A bad mode is InvalidArgument and changes nothing.
func TestWebSessionDelayedBadMode(t *testing.T) {
	c, l := dwCluster(t)
	for _, n := range []*node.Node{c.Node(l), c.Node(c.Followers(l)[0])} {
		for _, m := range []paddockv1.WebSessionWriteMode{3, -1, 1 << 20} {
			_, err := n.WriteWebSession(wsCtx(t), &paddockv1.WriteWebSessionRequest{Id: "mode", Data: []byte("x"), Mode: m})
			if !errors.Is(err, fsm.ErrBadArgument) {
				t.Fatalf("mode %d on %s: %v, want ErrBadArgument", m, n.ID(), err)
			}
		}
	}
	if k := c.Node(l).FSM().WebSessionCount(); k != 0 {
		t.Fatalf("%d web sessions after bad modes", k)
	}
}

// A delayed write retried with its request id after its answer was lost
// (and its lock went to another request) gets its first answer, and is
// not applied twice.
func TestWebSessionDelayedRetry(t *testing.T) {
	c, l := dwCluster(t)
	n := c.Node(c.Followers(l)[0])
	a := wsRead(t, n, "dretry", true)
	rid := []byte("delayed-retry-0123456789abcdef01")
	req := &paddockv1.WriteWebSessionRequest{Id: "dretry", Data: []byte("a"), Token: a.GetToken(), Mode: delayed}
	first, err := n.WriteWebSession(node.WithRequestID(wsCtx(t), rid), req)
	if err != nil || first.GetVersion() != 1 {
		t.Fatalf("delayed write: %v, %v", first, err)
	}
	b := wsRead(t, n, "dretry", true) // holds the lock now
	again, err := c.Node(l).WriteWebSession(node.WithRequestID(wsCtx(t), rid), req)
	if err != nil || again.GetVersion() != 1 {
		t.Fatalf("retry: %v, %v; want its first answer, version 1", again, err)
	}
	if w := wsWriteDelayed(t, n, "dretry", "b", 1, b.GetToken()); w.GetVersion() != 2 {
		t.Fatalf("second write: v%d, want 2", w.GetVersion())
	}
	committed(t, c.Node(l), "dretry", "b", 2)
	steady(t, c, l)
}

// A leader that gives its place up on purpose, by a graceful Close or a
// leadership transfer, first commits the delayed writes it answered: on
// the next leader every answered version is there.
func TestWebSessionDelayedGracefulStop(t *testing.T) {
	for _, how := range []string{"close", "handover"} {
		t.Run(how, func(t *testing.T) {
			// The flusher waits a minute: the writes are only in the
			// leader's memory when it goes.
			c, l := dwCluster(t)
			leader := c.Node(l)
			node.SetWebSessionFlushDelay(leader, time.Minute)
			n := c.Node(c.Followers(l)[0])
			r := wsRead(t, n, "gs", true)
			wsWriteDelayed(t, n, "gs", "a", 0, r.GetToken())
			r = wsRead(t, n, "gs", true)
			wsWriteDelayed(t, n, "gs", "b", 1, r.GetToken())
			r = wsRead(t, n, "gs2", true)
			wsWriteDelayed(t, n, "gs2", "x", 0, r.GetToken())
			if k, _ := node.WebSessionPending(leader); k != 2 {
				t.Fatalf("%d sessions pending, want 2", k)
			}
			if _, ok := leader.FSM().WebSession("gs"); ok {
				t.Fatal("gs committed before the leader went: the flush delay did not hold it")
			}
			switch how {
			case "close":
				if err := leader.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
				c.Stop(l)
			case "handover":
				node.HandOver(leader)
			}
			nl := c.WaitLeader(t)
			if nl == l {
				t.Fatalf("%s still leads", c.ID(l))
			}
			committed(t, c.Node(nl), "gs", "b", 2)
			committed(t, c.Node(nl), "gs2", "x", 1)
		})
	}
}

// A delayed write that went through (here: the pending memory was full)
// and is retried, with its request id, before it applies is retried
// through too. Held in memory instead, at the version the first attempt
// was about to change, the retry made the background commit fail its
// version check and drop the writes answered after it.
func TestWebSessionDelayedRetryOfWriteThrough(t *testing.T) {
	c, l := dwCluster(t)
	leader := c.Node(l)
	n := c.Node(c.Followers(l)[0])
	r := wsRead(t, n, "drt", true)
	wsWrite(t, n, "drt", "a", 0, r.GetToken())
	committed(t, leader, "drt", "a", 1)
	r = wsRead(t, n, "drt", true)

	type answer struct {
		w   *paddockv1.WriteWebSessionResponse
		err error
	}
	rid := []byte("delayed-through-0123456789abcdef")
	req := &paddockv1.WriteWebSessionRequest{Id: "drt", Data: []byte("b"), Version: 1, Token: r.GetToken(), KeepLock: true, Mode: delayed}
	write := func() chan answer {
		ch := make(chan answer, 1)
		go func() {
			w, err := n.WriteWebSession(node.WithRequestID(wsCtx(t), rid), req)
			ch <- answer{w, err}
		}()
		return ch
	}
	// Nothing commits; the first attempt finds no room and goes
	// through: appended on the leader, not applied.
	c.Transport(l).DropEntries("", true)
	node.SetWebSessionDelayedMax(leader, 0)
	last := leader.Raft().LastIndex()
	first := write()
	nodetest.Eventually(t, waitTimeout, func() error {
		if i := leader.Raft().LastIndex(); i <= last {
			return fmt.Errorf("the leader's last index is %d, want the write-through after %d", i, last)
		}
		return nil
	})
	node.SetWebSessionDelayedMax(leader, node.DefaultWebSessionDelayedMaxBytes)
	// Its retry, which the memory now has room for. Were it answered at
	// once (held in memory), the next write (version 2) would be too.
	retry := write()
	lifted := false
	select {
	case a := <-retry:
		if a.err != nil {
			t.Fatalf("retry: %v", a.err)
		}
		wsWriteDelayed(t, n, "drt", "c", 2, r.GetToken())
	case <-time.After(time.Second):
		c.Transport(l).DropEntries("", false)
		lifted = true
		for _, ch := range []chan answer{first, retry} {
			if a := <-ch; a.err != nil || a.w.GetVersion() != 2 {
				t.Fatalf("write-through and its retry: %v, %v; want version 2", a.w, a.err)
			}
		}
		wsWriteDelayed(t, n, "drt", "c", 2, r.GetToken())
	}
	if !lifted {
		c.Transport(l).DropEntries("", false)
		if a := <-first; a.err != nil || a.w.GetVersion() != 2 {
			t.Fatalf("write-through: %v, %v; want version 2", a.w, a.err)
		}
	}
	// Every answered write is kept: c at version 3.
	committed(t, leader, "drt", "c", 3)
	steady(t, c, l)
}

// The cap charges every pending session its id and a fixed overhead, not
// only its data: empty writes to many sessions fill it too, and the
// writes beyond it go through.
func TestWebSessionDelayedEmptyWritesCap(t *testing.T) {
	const max = 4096
	c, l := dwCluster(t, nodetest.WithConfig(func(cfg *node.Config) { cfg.WebSessionDelayedMaxBytes = max }))
	leader := c.Node(l)
	node.SetWebSessionFlushDelay(leader, time.Minute) // pending writes stay
	const writes = 40
	for i := range writes {
		id := fmt.Sprintf("empty-%02d", i)
		if w := wsWriteDelayed(t, leader, id, "", 0, 0); w.GetVersion() != 1 {
			t.Fatalf("write %s: v%d, want 1", id, w.GetVersion())
		}
	}
	k, b := node.WebSessionPending(leader)
	if b > max || k > max/(len("empty-00")+256) {
		t.Fatalf("%d sessions and %d bytes pending, want at most %d bytes", k, b, max)
	}
	through := metricValue(t, leader, "paddock_web_session_delayed_writes_total", "outcome", "write_through")
	if k == 0 || int(through) != writes-k {
		t.Fatalf("%d sessions pending, %v written through, want both and %d in all", k, through, writes)
	}
	for i := k; i < writes; i++ {
		committed(t, leader, fmt.Sprintf("empty-%02d", i), "", 1)
	}
}

// A request id the leader remembers for a delayed write names that write
// only: another write with it (another session, version or data) is
// refused with ErrRequestIDReused, as the state machine refuses it, and
// changes nothing.
func TestWebSessionDelayedRequestIDReused(t *testing.T) {
	c, l := dwCluster(t)
	n := c.Node(c.Followers(l)[0])
	rid := []byte("delayed-reused-0123456789abcdef0")
	a := wsRead(t, n, "dreuse", true)
	first, err := n.WriteWebSession(node.WithRequestID(wsCtx(t), rid), &paddockv1.WriteWebSessionRequest{Id: "dreuse", Data: []byte("a"), Token: a.GetToken(), Mode: delayed})
	if err != nil || first.GetVersion() != 1 {
		t.Fatalf("delayed write: %v, %v", first, err)
	}
	for _, req := range []*paddockv1.WriteWebSessionRequest{
		{Id: "dreuse-other", Data: []byte("a"), Mode: delayed},
		{Id: "dreuse", Data: []byte("z"), Mode: delayed},
		{Id: "dreuse", Data: []byte("a"), Version: 1, Mode: delayed},
		{Id: "dreuse", Data: []byte("a"), MaxLifetimeMs: 5000, Mode: delayed},
	} {
		if w, err := n.WriteWebSession(node.WithRequestID(wsCtx(t), rid), req); !errors.Is(err, fsm.ErrRequestIDReused) {
			t.Fatalf("write %v with a used request id: %v, %v; want ErrRequestIDReused", req, w, err)
		}
	}
	committed(t, c.Node(l), "dreuse", "a", 1)
	if _, ok := c.Node(l).FSM().WebSession("dreuse-other"); ok {
		t.Fatal("dreuse-other was written")
	}
	steady(t, c, l)
}

// A change of a session let in while a delayed write of it is being
// held (writes without a token, or with the same one) waits for that
// write: a write-through write at the same version is refused once the
// delayed one is answered, and the version answered is the one
// committed.
func TestWebSessionDelayedReservationOrdersWrites(t *testing.T) {
	c, l := dwCluster(t)
	leader := c.Node(l)
	wsWriteDelayed(t, leader, "ro", "1", 0, 0)
	committed(t, leader, "ro", "1", 1)
	release := node.StallWebSessionHolds(leader)
	released := false
	defer func() {
		if !released {
			release()
		}
	}()
	type result struct {
		w   *paddockv1.WriteWebSessionResponse
		err error
	}
	delayedDone := make(chan result, 1)
	go func() {
		w, err := leader.WriteWebSession(wsCtx(t), &paddockv1.WriteWebSessionRequest{Id: "ro", Data: []byte("delayed"), Version: 1, Mode: delayed})
		delayedDone <- result{w, err}
	}()
	nodetest.Eventually(t, waitTimeout, func() error {
		if k := node.WebSessionReserved(leader); k != 1 {
			return fmt.Errorf("%d writes reserved, want 1", k)
		}
		return nil
	})
	throughDone := make(chan result, 1)
	go func() {
		w, err := leader.WriteWebSession(wsCtx(t), &paddockv1.WriteWebSessionRequest{Id: "ro", Data: []byte("through"), Version: 1})
		throughDone <- result{w, err}
	}()
	release()
	released = true
	d := <-delayedDone
	if d.err != nil || d.w.GetVersion() != 2 {
		t.Fatalf("delayed write: %v, %v; want version 2", d.w, d.err)
	}
	if r := <-throughDone; !errors.Is(r.err, fsm.ErrBadVersion) {
		t.Fatalf("write-through write at the version the delayed one changed: %v, %v; want ErrBadVersion", r.w, r.err)
	}
	for _, i := range c.Running() {
		committed(t, c.Node(i), "ro", "delayed", 2)
	}
	steady(t, c, l)
}

// A change that waits for a session's delayed writes (a destroy, a
// write-through write) does not wait out the flush delay: it hurries the
// flusher, also for the writes answered while the session's previous
// commit was in flight. The delay here is a minute, and each change must
// end within its request's 3 s.
func TestWebSessionDelayedDrainHurries(t *testing.T) {
	c, l := dwCluster(t)
	leader := c.Node(l)
	node.SetWebSessionFlushDelay(leader, time.Minute)
	n := c.Node(c.Followers(l)[0])
	change := func(what string, f func(ctx context.Context) error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := f(ctx); err != nil {
			t.Fatalf("%s with delayed writes pending: %v", what, err)
		}
	}

	r := wsRead(t, n, "hurry-d", true)
	wsWriteDelayed(t, n, "hurry-d", "a", 0, r.GetToken())
	r = wsRead(t, n, "hurry-d", true)
	wsWriteDelayed(t, n, "hurry-d", "b", 1, r.GetToken())
	r = wsRead(t, n, "hurry-d", true)
	change("destroy", func(ctx context.Context) error {
		d, err := n.DestroyWebSession(ctx, &paddockv1.DestroyWebSessionRequest{Id: "hurry-d", Token: r.GetToken()})
		if err == nil && !d.GetDestroyed() {
			err = errors.New("not destroyed")
		}
		return err
	})

	r = wsRead(t, n, "hurry-w", true)
	wsWriteDelayed(t, n, "hurry-w", "a", 0, r.GetToken())
	r = wsRead(t, n, "hurry-w", true)
	change("write-through write", func(ctx context.Context) error {
		w, err := n.WriteWebSession(ctx, &paddockv1.WriteWebSessionRequest{Id: "hurry-w", Data: []byte("b"), Version: 1, Token: r.GetToken()})
		if err == nil && w.GetVersion() != 2 {
			err = fmt.Errorf("version %d, want 2", w.GetVersion())
		}
		return err
	})
	committed(t, leader, "hurry-w", "b", 2)
	if _, ok := leader.FSM().WebSession("hurry-d"); ok {
		t.Fatal("hurry-d still there after its destroy")
	}

	// A drain that begins while the session's commit is in flight needs
	// a second round, for the writes answered since: that one does not
	// wait the delay either.
	node.SetWebSessionFlushDelay(leader, 0)
	r = wsRead(t, n, "hurry-0", true) // a round at delay 0: the flusher waits no more
	wsWriteDelayed(t, n, "hurry-0", "a", 0, r.GetToken())
	committed(t, leader, "hurry-0", "a", 1)
	c.Transport(l).DropEntries("", true) // the commit stays in flight
	r = wsRead(t, n, "hurry-f", true)
	wsWriteDelayed(t, n, "hurry-f", "a", 0, r.GetToken())
	nodetest.Eventually(t, waitTimeout, func() error {
		if !node.WebSessionCommitInFlight(leader, "hurry-f") {
			return errors.New("hurry-f's commit not in flight")
		}
		return nil
	})
	node.SetWebSessionFlushDelay(leader, time.Minute)
	r = wsRead(t, n, "hurry-f", true)
	wsWriteDelayed(t, n, "hurry-f", "b", 1, r.GetToken())
	r = wsRead(t, n, "hurry-f", true)
	destroyed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := n.DestroyWebSession(ctx, &paddockv1.DestroyWebSessionRequest{Id: "hurry-f", Token: r.GetToken()})
		destroyed <- err
	}()
	nodetest.Eventually(t, waitTimeout, func() error {
		if k := node.WebSessionDrainers(leader); k != 1 {
			return fmt.Errorf("%d drains waiting, want the destroy's", k)
		}
		return nil
	})
	c.Transport(l).DropEntries("", false)
	if err := <-destroyed; err != nil {
		t.Fatalf("destroy after a commit in flight and a write since: %v", err)
	}
	steady(t, c, l)
}
