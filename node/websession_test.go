package node_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paddock/paddock/fsm"
	"github.com/paddock/paddock/node"
	"github.com/paddock/paddock/node/nodetest"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// wsCluster is a cluster for the web session tests: grace as given
// (negative: none).
func wsCluster(t *testing.T, grace time.Duration) (*nodetest.Cluster, int) {
	t.Helper()
	c := newCluster(t, 3, nodetest.WithConfig(func(cfg *node.Config) { cfg.WebSessionLockGrace = grace }))
	return c, c.WaitLeader(t)
}

func wsCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wsRead(t *testing.T, n *node.Node, id string, lock bool) *paddockv1.ReadWebSessionResponse {
	t.Helper()
	r, err := n.ReadWebSession(wsCtx(t), &paddockv1.ReadWebSessionRequest{Id: id, Lock: lock, WaitMs: 20_000})
	if err != nil {
		t.Fatalf("ReadWebSession %s on %s: %v", id, n.ID(), err)
	}
	if lock && r.GetToken() == 0 {
		t.Fatalf("ReadWebSession %s with lock: no token", id)
	}
	return r
}

func wsWrite(t *testing.T, n *node.Node, id, data string, version, token uint64) *paddockv1.WriteWebSessionResponse {
	t.Helper()
	r, err := n.WriteWebSession(wsCtx(t), &paddockv1.WriteWebSessionRequest{Id: id, Data: []byte(data), Version: version, Token: token})
	if err != nil {
		t.Fatalf("WriteWebSession %s v%d on %s: %v", id, version, n.ID(), err)
	}
	return r
}

// appliedWebSessionCommands sums n's paddock_applied_commands_total of
// the web session operations.
func appliedWebSessionCommands(t *testing.T, n *node.Node) float64 {
	t.Helper()
	mfs, err := n.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != "paddock_applied_commands_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "op" && strings.HasPrefix(lp.GetValue(), "web_session") {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

func TestWebSessionReadWriteVersion(t *testing.T) {
	c, l := wsCluster(t, -1)
	for _, i := range []int{l, c.Followers(l)[0]} {
		n := c.Node(i)
		id := "rw-" + n.ID()
		r := wsRead(t, n, id, true)
		if r.GetFound() || r.GetVersion() != 0 {
			t.Fatalf("new session: found %v version %d", r.GetFound(), r.GetVersion())
		}
		if w := wsWrite(t, n, id, "a", 0, r.GetToken()); w.GetVersion() != 1 || w.GetHeader().GetZxid() == 0 {
			t.Fatalf("first write: %v", w)
		}
		r = wsRead(t, n, id, true)
		if !r.GetFound() || string(r.GetData()) != "a" || r.GetVersion() != 1 || r.GetMaxLifetimeMs() != fsm.DefaultWebSessionLifetimeMs {
			t.Fatalf("read after write: %v", r)
		}
		wsWrite(t, n, id, "b", 1, r.GetToken())
		// A stale write (version 1 again) is refused and changes nothing.
		r = wsRead(t, n, id, true)
		_, err := n.WriteWebSession(wsCtx(t), &paddockv1.WriteWebSessionRequest{Id: id, Data: []byte("stale"), Version: 1, Token: r.GetToken()})
		if !errors.Is(err, fsm.ErrBadVersion) {
			t.Fatalf("stale write: %v, want ErrBadVersion", err)
		}
		// The failed write released the lock: a read takes it at once.
		r2, err := n.ReadWebSession(wsCtx(t), &paddockv1.ReadWebSessionRequest{Id: id, Lock: true, WaitMs: 1})
		if err != nil || string(r2.GetData()) != "b" || r2.GetVersion() != 2 {
			t.Fatalf("read after the stale write: %v, %v", r2, err)
		}
		rel, err := n.ReleaseWebSession(wsCtx(t), &paddockv1.ReleaseWebSessionRequest{Id: id, Token: r2.GetToken()})
		if err != nil || !rel.GetReleased() {
			t.Fatalf("release: %v, %v", rel, err)
		}
		if rel, err = n.ReleaseWebSession(wsCtx(t), &paddockv1.ReleaseWebSessionRequest{Id: id, Token: r2.GetToken()}); err != nil || rel.GetReleased() {
			t.Fatalf("second release: %v, %v", rel, err)
		}
		// Destroy, then it is gone.
		d, err := n.DestroyWebSession(wsCtx(t), &paddockv1.DestroyWebSessionRequest{Id: id})
		if err != nil || !d.GetDestroyed() {
			t.Fatalf("destroy: %v, %v", d, err)
		}
		v, err := n.ValidateWebSession(wsCtx(t), &paddockv1.ValidateWebSessionRequest{Id: id})
		if err != nil || v.GetValid() {
			t.Fatalf("validate after destroy: %v, %v", v, err)
		}
	}
}

func TestWebSessionWaiterWokenByWrite(t *testing.T) {
	c, l := wsCluster(t, -1)
	leader, f := c.Node(l), c.Node(c.Followers(l)[0])
	a := wsRead(t, leader, "wake", true)
	type result struct {
		r   *paddockv1.ReadWebSessionResponse
		err error
		at  time.Time
	}
	done := make(chan result, 1)
	go func() {
		r, err := f.ReadWebSession(context.Background(), &paddockv1.ReadWebSessionRequest{Id: "wake", Lock: true, WaitMs: 20_000})
		done <- result{r, err, time.Now()}
	}()
	nodetest.Eventually(t, waitTimeout, func() error {
		if node.WebSessionWaiters(leader, "wake") != 1 {
			return errors.New("the second reader does not wait yet")
		}
		return nil
	})
	wsWrite(t, leader, "wake", "n=1", 0, a.GetToken())
	written := time.Now()
	var b result
	select {
	case b = <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("the waiting reader was not woken")
	}
	if b.err != nil {
		t.Fatal(b.err)
	}
	if string(b.r.GetData()) != "n=1" || b.r.GetVersion() != 1 {
		t.Fatalf("the woken reader read %q v%d, want the first's write", b.r.GetData(), b.r.GetVersion())
	}
	// Woken by the write's release, not by a poll or the 30 s lease.
	if d := b.at.Sub(written); d > 2*time.Second {
		t.Fatalf("woken %v after the write", d)
	}
	wsWrite(t, f, "wake", "n=2", 1, b.r.GetToken())
}

func TestWebSessionLeaseAndWaitTimeout(t *testing.T) {
	c, l := wsCluster(t, -1)
	n := c.Node(c.Followers(l)[0])
	ctx := wsCtx(t)
	a, err := n.ReadWebSession(ctx, &paddockv1.ReadWebSessionRequest{Id: "lease", Lock: true, LockTtlMs: 1000})
	if err != nil {
		t.Fatal(err)
	}
	// A short wait runs out: ABORTED's error, no token.
	start := time.Now()
	b, err := n.ReadWebSession(ctx, &paddockv1.ReadWebSessionRequest{Id: "lease", Lock: true, WaitMs: 100})
	if !errors.Is(err, node.ErrWebSessionLocked) || b != nil {
		t.Fatalf("read while locked: %v, %v", b, err)
	}
	// A killed holder (it never writes nor releases) loses the lock
	// after its lease; a reader waiting gets it then.
	b, err = n.ReadWebSession(ctx, &paddockv1.ReadWebSessionRequest{Id: "lease", Lock: true, WaitMs: 10_000})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("lock granted %v after a lease of 1 s", d)
	}
	// The first holder's write is refused: another token holds the lock.
	_, err = n.WriteWebSession(ctx, &paddockv1.WriteWebSessionRequest{Id: "lease", Data: []byte("x"), Token: a.GetToken()})
	if !errors.Is(err, node.ErrWebSessionLockLost) {
		t.Fatalf("write with an expired lease: %v, want ErrWebSessionLockLost", err)
	}
	if _, err = n.WriteWebSession(ctx, &paddockv1.WriteWebSessionRequest{Id: "lease", Data: []byte("y")}); !errors.Is(err, node.ErrWebSessionLockLost) {
		t.Fatalf("write without a token while locked: %v, want ErrWebSessionLockLost", err)
	}
	if _, ok := c.Node(l).FSM().WebSession("lease"); ok {
		t.Fatal("a refused write was applied")
	}
	wsWrite(t, n, "lease", "z", 0, b.GetToken())
}

// A write retried with its request id after its lock went to another
// request gets its first result back.
func TestWebSessionWriteRetryAfterRelease(t *testing.T) {
	c, l := wsCluster(t, -1)
	n := c.Node(c.Followers(l)[0])
	a := wsRead(t, n, "retry", true)
	rid := []byte("0123456789abcdef0123456789abcdef")
	req := &paddockv1.WriteWebSessionRequest{Id: "retry", Data: []byte("a"), Token: a.GetToken()}
	first, err := n.WriteWebSession(node.WithRequestID(wsCtx(t), rid), req)
	if err != nil {
		t.Fatal(err)
	}
	b := wsRead(t, n, "retry", true) // holds the lock now
	again, err := c.Node(l).WriteWebSession(node.WithRequestID(wsCtx(t), rid), req)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if again.GetVersion() != first.GetVersion() || again.GetHeader().GetZxid() != first.GetHeader().GetZxid() {
		t.Fatalf("retry got v%d at %d, first v%d at %d", again.GetVersion(), again.GetHeader().GetZxid(), first.GetVersion(), first.GetHeader().GetZxid())
	}
	// The second request still holds the lock and writes on.
	if w := wsWrite(t, n, "retry", "b", 1, b.GetToken()); w.GetVersion() != 2 {
		t.Fatalf("second write: v%d", w.GetVersion())
	}
}

// A leader change: the holder's write with its token is accepted on the
// new leader during the grace, and a reader that waited gets the lock
// only after the grace, and sees that write.
func TestWebSessionLeaderChange(t *testing.T) {
	const grace = 5 * time.Second
	c, l := wsCluster(t, grace)
	var f int
	for _, i := range c.Followers(l) {
		f = i
	}
	n := c.Node(f) // the node the clients call
	// The leader is in its grace: a write with a token it does not know
	// (a holder from before) is accepted, and keep_lock keeps that token
	// holding the lock.
	const token = 0x5eed
	if _, err := n.WriteWebSession(wsCtx(t), &paddockv1.WriteWebSessionRequest{Id: "move", Data: []byte("n=1"), Token: token, KeepLock: true}); err != nil {
		t.Fatalf("write with an unknown token in the grace: %v", err)
	}
	a := &paddockv1.ReadWebSessionResponse{Token: token}
	type result struct {
		r   *paddockv1.ReadWebSessionResponse
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := n.ReadWebSession(context.Background(), &paddockv1.ReadWebSessionRequest{Id: "move", Lock: true, WaitMs: 25_000})
		done <- result{r, err}
	}()
	nodetest.Eventually(t, waitTimeout, func() error {
		if node.WebSessionWaiters(c.Node(l), "move") != 1 {
			return errors.New("the second reader does not wait yet")
		}
		return nil
	})
	to := c.Followers(l)[0]
	if to == f {
		to = c.Followers(l)[1]
	}
	c.Transfer(t, to)
	// The holder presents its token to the new leader in the grace.
	w, err := n.WriteWebSession(wsCtx(t), &paddockv1.WriteWebSessionRequest{Id: "move", Data: []byte("n=2"), Version: 1, Token: a.GetToken()})
	if err != nil {
		t.Fatalf("the old holder's write on the new leader: %v", err)
	}
	if w.GetHeader().GetNodeId() != c.ID(to) {
		t.Fatalf("served by %s, want the new leader %s", w.GetHeader().GetNodeId(), c.ID(to))
	}
	// No new grant in the grace.
	if _, err := n.ReadWebSession(wsCtx(t), &paddockv1.ReadWebSessionRequest{Id: "other", Lock: true, WaitMs: 200}); !errors.Is(err, node.ErrWebSessionLocked) {
		t.Fatalf("a lock granted in the grace: %v", err)
	}
	var b result
	select {
	case b = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the waiting reader never got the lock")
	}
	if b.err != nil {
		t.Fatal(b.err)
	}
	if string(b.r.GetData()) != "n=2" || b.r.GetVersion() != 2 {
		t.Fatalf("the waiter read %q v%d, want the holder's write", b.r.GetData(), b.r.GetVersion())
	}
	wsWrite(t, n, "move", "n=3", 2, b.r.GetToken())
}

func TestWebSessionIdleExpiry(t *testing.T) {
	c, l := wsCluster(t, -1)
	n := c.Node(c.Followers(l)[0])
	const lifetime = 1500 * time.Millisecond
	// The lower bounds of the accesses are taken before the calls, the
	// upper bounds of the deletions after the checks that find them gone:
	// a correct expiry can never fail the test.
	accessed := map[string]time.Time{}
	for _, id := range []string{"idle", "touched"} {
		r := wsRead(t, n, id, true)
		accessed[id] = time.Now()
		if _, err := n.WriteWebSession(wsCtx(t), &paddockv1.WriteWebSessionRequest{
			Id: id, Data: []byte("x"), Token: r.GetToken(), MaxLifetimeMs: lifetime.Milliseconds(),
		}); err != nil {
			t.Fatal(err)
		}
	}
	written := time.Now()
	touched := false
	gone := map[string]time.Time{}
	deadline := written.Add(3*lifetime + 10*time.Second)
	for len(gone) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("sessions still there %v after the write: gone %v", time.Since(written), gone)
		}
		if !touched && time.Since(written) > lifetime/2 {
			touched = true
			accessed["touched"] = time.Now()
			if r, err := n.TouchWebSession(wsCtx(t), &paddockv1.TouchWebSessionRequest{Id: "touched"}); err != nil || !r.GetFound() {
				t.Fatalf("touch: %v, %v", r, err)
			}
		}
		for _, id := range []string{"idle", "touched"} {
			if _, ok := gone[id]; ok {
				continue
			}
			if _, ok := c.Node(l).FSM().WebSession(id); !ok {
				gone[id] = time.Now()
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, id := range []string{"idle", "touched"} {
		if d := gone[id].Sub(accessed[id]); d < lifetime {
			t.Fatalf("%s session expired %v after its last access, lifetime %v", id, d, lifetime)
		}
	}
}

func TestWebSessionCreate(t *testing.T) {
	c, l := wsCluster(t, -1)
	n := c.Node(c.Followers(l)[0])
	for _, tc := range []struct {
		bits int32
		re   string
	}{{0, `^[0-9a-f]{32}$`}, {4, `^[0-9a-f]{32}$`}, {5, `^[0-9a-v]{26}$`}, {6, `^[0-9a-zA-Z,-]{22}$`}} {
		r, err := n.CreateWebSession(wsCtx(t), &paddockv1.CreateWebSessionRequest{SidBitsPerCharacter: tc.bits})
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(tc.re).MatchString(r.GetId()) || r.GetVersion() != 1 {
			t.Fatalf("%d bits: id %q v%d", tc.bits, r.GetId(), r.GetVersion())
		}
		v, err := n.ValidateWebSession(wsCtx(t), &paddockv1.ValidateWebSessionRequest{Id: r.GetId()})
		if err != nil || !v.GetValid() {
			t.Fatalf("validate %q: %v, %v", r.GetId(), v, err)
		}
	}
	// A retry with the request id gets the same session.
	rid := []byte("fedcba9876543210fedcba9876543210")
	first, err := n.CreateWebSession(node.WithRequestID(wsCtx(t), rid), &paddockv1.CreateWebSessionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Node(l).CreateWebSession(node.WithRequestID(wsCtx(t), rid), &paddockv1.CreateWebSessionRequest{})
	if err != nil || again.GetId() != first.GetId() || again.GetHeader().GetZxid() != first.GetHeader().GetZxid() {
		t.Fatalf("retried create: %v, %v; first %v", again, err, first)
	}
}

func TestWebSessionBadInput(t *testing.T) {
	c, l := wsCluster(t, -1)
	leader := c.Node(l)
	before := appliedWebSessionCommands(t, leader)
	for _, n := range []*node.Node{leader, c.Node(c.Followers(l)[0])} {
		ctx := wsCtx(t)
		for _, id := range []string{"", "a b", "a/b", strings.Repeat("a", 257), "é", "secret/id"} {
			_, err := n.ReadWebSession(ctx, &paddockv1.ReadWebSessionRequest{Id: id})
			if !errors.Is(err, fsm.ErrBadArgument) {
				t.Fatalf("read %q: %v", id, err)
			}
			if id != "" && strings.Contains(err.Error(), id) {
				t.Fatalf("read %q: the error names the id (a secret): %v", id, err)
			}
			if _, err := n.WriteWebSession(ctx, &paddockv1.WriteWebSessionRequest{Id: id}); !errors.Is(err, fsm.ErrBadArgument) {
				t.Fatalf("write %q: %v", id, err)
			}
			if _, err := n.DestroyWebSession(ctx, &paddockv1.DestroyWebSessionRequest{Id: id}); !errors.Is(err, fsm.ErrBadArgument) {
				t.Fatalf("destroy %q: %v", id, err)
			}
			if _, err := n.ValidateWebSession(ctx, &paddockv1.ValidateWebSessionRequest{Id: id}); !errors.Is(err, fsm.ErrBadArgument) {
				t.Fatalf("validate %q: %v", id, err)
			}
		}
		huge := make([]byte, node.DefaultWebSessionMaxBytes+1)
		if _, err := n.WriteWebSession(ctx, &paddockv1.WriteWebSessionRequest{Id: "big", Data: huge}); !errors.Is(err, fsm.ErrTooLarge) {
			t.Fatalf("huge write: %v", err)
		}
		for _, r := range []*paddockv1.ReadWebSessionRequest{
			{Id: "x", Lock: true, LockTtlMs: -1},
			{Id: "x", Lock: true, WaitMs: -5},
			{Id: "x", Lock: true, LockTtlMs: 11 * 60 * 1000},
			// Values whose product with time.Millisecond overflows int64.
			{Id: "x", Lock: true, LockTtlMs: 9223372036855},
			{Id: "x", Lock: true, WaitMs: 18446744073710 / 2},
		} {
			if _, err := n.ReadWebSession(ctx, r); !errors.Is(err, fsm.ErrBadArgument) {
				t.Fatalf("read %v: %v", r, err)
			}
		}
		if _, err := n.WriteWebSession(ctx, &paddockv1.WriteWebSessionRequest{Id: "x", MaxLifetimeMs: -1}); !errors.Is(err, fsm.ErrBadArgument) {
			t.Fatalf("negative lifetime: %v", err)
		}
		if _, err := n.WriteWebSession(ctx, &paddockv1.WriteWebSessionRequest{Id: "x", MaxLifetimeMs: 9223372036855}); !errors.Is(err, fsm.ErrBadArgument) {
			t.Fatalf("lifetime overflowing a duration: %v", err)
		}
		if _, err := n.TouchWebSession(ctx, &paddockv1.TouchWebSessionRequest{Id: "x", MaxLifetimeMs: -1}); !errors.Is(err, fsm.ErrBadArgument) {
			t.Fatalf("touch with a negative lifetime: %v", err)
		}
		if _, err := n.CreateWebSession(ctx, &paddockv1.CreateWebSessionRequest{SidBitsPerCharacter: 7}); !errors.Is(err, fsm.ErrBadArgument) {
			t.Fatalf("create with 7 bits: %v", err)
		}
	}
	if got := appliedWebSessionCommands(t, leader); got != before {
		t.Fatalf("bad input applied %v web session commands", got-before)
	}
	if k := leader.FSM().WebSessionCount(); k != 0 {
		t.Fatalf("%d web sessions after bad input", k)
	}
}

// A page view that changes nothing costs no raft write; one that changes
// the session costs one.
func TestWebSessionAppliedCommands(t *testing.T) {
	c, l := wsCluster(t, -1)
	leader := c.Node(l)
	n := c.Node(c.Followers(l)[0])
	r := wsRead(t, n, "cost", true)
	wsWrite(t, n, "cost", "a", 0, r.GetToken())
	c.Converged(t)

	before := appliedWebSessionCommands(t, leader)
	r = wsRead(t, n, "cost", true)
	if _, err := n.ReleaseWebSession(wsCtx(t), &paddockv1.ReleaseWebSessionRequest{Id: "cost", Token: r.GetToken()}); err != nil {
		t.Fatal(err)
	}
	r = wsRead(t, n, "cost", true)
	if _, err := n.TouchWebSession(wsCtx(t), &paddockv1.TouchWebSessionRequest{Id: "cost", Token: r.GetToken()}); err != nil {
		t.Fatal(err)
	}
	if got := appliedWebSessionCommands(t, leader) - before; got != 0 {
		t.Fatalf("read+release, read+touch: %v web session commands applied, want 0", got)
	}
	r = wsRead(t, n, "cost", true)
	wsWrite(t, n, "cost", "b", r.GetVersion(), r.GetToken())
	if got := appliedWebSessionCommands(t, leader) - before; got != 1 {
		t.Fatalf("read+write: %v web session commands applied, want 1", got)
	}
}

// A session is not expired under its lock, and a new leader gives every
// session its full lifetime from its takeover.
func TestWebSessionIdleExpiryLockAndLeaderChange(t *testing.T) {
	c, l := wsCluster(t, -1)
	f := c.Followers(l)[0]
	n := c.Node(f)
	const lifetime = 2 * time.Second
	write := func(id string) {
		r := wsRead(t, n, id, true)
		if _, err := n.WriteWebSession(wsCtx(t), &paddockv1.WriteWebSessionRequest{
			Id: id, Data: []byte("x"), Token: r.GetToken(), MaxLifetimeMs: lifetime.Milliseconds(),
		}); err != nil {
			t.Fatal(err)
		}
		nodetest.Eventually(t, waitTimeout, func() error { // applied on n too
			if _, ok := n.FSM().WebSession(id); !ok {
				return errors.New("not applied on the follower yet")
			}
			return nil
		})
	}
	write("locked")
	held := wsRead(t, n, "locked", true)
	// Past the lifetime, with the lock held all along: still there.
	for end := time.Now().Add(lifetime + 500*time.Millisecond); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if _, ok := n.FSM().WebSession("locked"); !ok {
			t.Fatal("a locked session expired")
		}
	}
	if w := wsWrite(t, n, "locked", "y", 1, held.GetToken()); w.GetVersion() != 2 {
		t.Fatalf("write after the lifetime under the lock: v%d", w.GetVersion())
	}

	// "moved" is last accessed before a leader change: the new leader
	// gives it a full lifetime from its takeover, which comes after
	// transferStart. A follower's state lags the leader's, so seeing it
	// gone there means it was deleted no later.
	write("moved")
	written := time.Now()
	var transferStart time.Time
	for {
		if _, ok := n.FSM().WebSession("moved"); !ok {
			now := time.Now() // it was deleted no later
			if transferStart.IsZero() || now.Sub(transferStart) < lifetime {
				t.Fatalf("expired %v after its write, %v after the leader change began; lifetime %v",
					now.Sub(written), now.Sub(transferStart), lifetime)
			}
			break
		}
		if transferStart.IsZero() && time.Since(written) > lifetime/2 {
			transferStart = time.Now()
			l = c.WaitLeader(t)
			to := c.Followers(l)[0]
			if to == f {
				to = c.Followers(l)[1]
			}
			c.Transfer(t, to)
		}
		if time.Since(written) > 3*lifetime+10*time.Second {
			t.Fatal("the session never expired after the leader change")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Concurrent page views on one session through every node, with a
// leadership transfer, or the leader stopped, in the middle: each reads with the lock, adds one,
// and writes (a write that fails for the cluster, not for the lock or
// the version, is retried with its request id, as a client does). The
// final count is exact and no page view fails.
func TestWebSessionConcurrentIncrements(t *testing.T) {
	t.Run("transfer", func(t *testing.T) { testWebSessionIncrements(t, false) })
	t.Run("leader stopped", func(t *testing.T) { testWebSessionIncrements(t, true) })
}

func testWebSessionIncrements(t *testing.T, stop bool) {
	c, l := wsCluster(t, 2*time.Second)
	const workers, each = 6, 8
	retryable := func(err error) bool {
		return errors.Is(err, node.ErrNoLeader) || errors.Is(err, node.ErrNotLeader) ||
			errors.Is(err, node.ErrUnknownOutcome) || errors.Is(err, context.DeadlineExceeded)
	}
	errs := make(chan error, workers)
	var seq atomic.Uint64
	for w := range workers {
		go func() {
			i := w % 3
			if stop && i == l {
				i = c.Followers(l)[0] // the stopped node's clients fail over
			}
			n := c.Node(i)
			for range each {
				var r *paddockv1.ReadWebSessionResponse
				var err error
				for {
					r, err = n.ReadWebSession(wsCtx(t), &paddockv1.ReadWebSessionRequest{Id: "count", Lock: true, WaitMs: 60_000})
					if err == nil || !retryable(err) {
						break
					}
				}
				if err != nil {
					errs <- fmt.Errorf("read: %w", err)
					return
				}
				k, _ := strconv.Atoi(string(r.GetData()))
				rid := fmt.Appendf(nil, "inc-%032d", seq.Add(1))
				req := &paddockv1.WriteWebSessionRequest{Id: "count", Data: []byte(strconv.Itoa(k + 1)), Version: r.GetVersion(), Token: r.GetToken()}
				for {
					_, err = n.WriteWebSession(node.WithRequestID(wsCtx(t), rid), req)
					if err == nil || !retryable(err) {
						break
					}
				}
				if err != nil {
					errs <- fmt.Errorf("write v%d: %w", r.GetVersion(), err)
					return
				}
			}
			errs <- nil
		}()
	}
	// Move leadership while the page views run: once a third are done.
	nodetest.Eventually(t, 60*time.Second, func() error {
		if seq.Load() < workers*each/3 {
			return errors.New("not a third done yet")
		}
		return nil
	})
	if stop {
		c.Stop(l)
	} else {
		c.Transfer(t, c.Followers(l)[0])
	}
	if seq.Load() == workers*each {
		t.Log("every page view was done before the transfer")
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	l = c.WaitLeader(t)
	s, ok := c.Node(l).FSM().WebSession("count")
	if !ok || string(s.Data) != strconv.Itoa(workers*each) || s.Version != workers*each {
		t.Fatalf("count %q at version %d, want %d", s.Data, s.Version, workers*each)
	}
}
