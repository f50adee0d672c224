package node_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/paddock/paddock/fsm"
	"github.com/paddock/paddock/node"
	"github.com/paddock/paddock/node/nodetest"
)

// ephemeralOn reports whether node i has path, owned by session.
func ephemeralOn(c *nodetest.Cluster, i int, path string, session uint64) error {
	n := c.Node(i)
	_, st, err := n.FSM().Get(path)
	if err != nil {
		return fmt.Errorf("Get(%s) on %s: %w", path, n.ID(), err)
	}
	if st.GetEphemeralOwner() != session {
		return fmt.Errorf("Get(%s) on %s: owner %d, want %d", path, n.ID(), st.GetEphemeralOwner(), session)
	}
	return nil
}

// goneEverywhere reports whether session and path are gone on every
// running node.
func goneEverywhere(c *nodetest.Cluster, path string, session uint64) error {
	for _, i := range c.Running() {
		n := c.Node(i)
		if _, err := n.FSM().Session(session); !errors.Is(err, fsm.ErrNoSession) {
			return fmt.Errorf("session %d on %s: %v", session, n.ID(), err)
		}
		if _, _, err := n.FSM().Get(path); !errors.Is(err, fsm.ErrNoNode) {
			return fmt.Errorf("Get(%s) on %s: err = %v, want ErrNoNode", path, n.ID(), err)
		}
	}
	return nil
}

// keepAlive renews session id through n and checks the timeout it reports.
func keepAlive(n *node.Node, id uint64, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	got, err := n.KeepAlive(ctx, id)
	if err == nil && got != timeout {
		return fmt.Errorf("KeepAlive(%d) on %s reports timeout %v, want %v", id, n.ID(), got, timeout)
	}
	return err
}

func TestSessionExpiresOneTimeoutAfterLastKeepalive(t *testing.T) {
	const timeout = time.Second
	c := newCluster(t, 3)
	leader := c.WaitLeader(t)
	f := c.Followers(leader)[0]
	id := mustOpenSession(t, c.Node(f), timeout)
	mustPropose(t, c.Node(leader), ephemeralCmd("/eph", id))
	term := c.Node(leader).Raft().CurrentTerm()

	// Keepalives on every node in turn, each a third of the timeout apart,
	// for twice the timeout: the session lives on.
	var last, lastDone time.Time
	tick := time.NewTicker(timeout / 3)
	defer tick.Stop()
	for k := range 6 {
		n := c.Node(k % 3)
		start := time.Now()
		if err := keepAlive(n, id, timeout); err != nil {
			// Between leaders (a loaded machine can miss a heartbeat):
			// the previous keepalive stays the last one.
			t.Logf("KeepAlive on %s: %v", n.ID(), err)
		} else {
			last, lastDone = start, time.Now()
		}
		if err := ephemeralOn(c, leader, "/eph", id); err != nil {
			t.Fatalf("after keepalive %d: %v", k, err)
		}
		<-tick.C
	}
	if last.IsZero() {
		t.Fatal("no keepalive succeeded")
	}

	// The leader renewed the session after last: the ephemeral lives until
	// at least last+timeout.
	for time.Until(last.Add(timeout)) > 30*time.Millisecond {
		for _, i := range c.Running() {
			if err := ephemeralOn(c, i, "/eph", id); err != nil {
				t.Fatalf("%v after last keepalive, before the timeout %v: %v", time.Since(last), timeout, err)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	// And it goes soon after lastDone+timeout.
	bound := lastDone.Add(timeout + time.Second)
	for {
		err := goneEverywhere(c, "/eph", id)
		if err == nil {
			break
		}
		if time.Now().After(bound) {
			if c.Node(leader).Raft().CurrentTerm() != term {
				// A leader change restarts the clock from the last
				// checkpoint: allow another timeout.
				bound = bound.Add(timeout + time.Second)
				term = 0
				continue
			}
			t.Fatalf("%v after the last keepalive: %v", time.Since(lastDone), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSessionsSurviveLeaderChanges(t *testing.T) {
	const timeout = 2 * time.Second
	c := newCluster(t, 3)
	leader := c.WaitLeader(t)
	ids := []uint64{
		mustOpenSession(t, c.Node(leader), timeout),
		mustOpenSession(t, c.Node(c.Followers(leader)[0]), timeout),
	}
	for i, id := range ids {
		mustPropose(t, c.Node(leader), ephemeralCmd(fmt.Sprintf("/live-%d", i), id))
	}

	// A client per session: a keepalive every third of the timeout, on
	// the next running node each time, retried at once on failure (a node
	// may be between leaders or stopped).
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for s, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := s
			for {
				for {
					next++
					n := c.Node(next % 3)
					if n != nil && keepAlive(n, id, timeout) == nil {
						break
					}
					select {
					case <-ctx.Done():
						return
					case <-time.After(10 * time.Millisecond):
					}
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(timeout / 3):
				}
			}
		}()
	}

	// Leader change 1: a transfer.
	c.Transfer(t, c.Followers(leader)[1])
	second := c.WaitLeader(t)
	// Leader change 2: the leader dies and comes back.
	c.Stop(second)
	third := c.WaitLeader(t)
	c.Restart(second)
	c.WaitLeader(t)
	// Outlive two timeouts under the third leader.
	deadline := time.Now().Add(2 * timeout)
	for time.Now().Before(deadline) {
		for i := range ids {
			if err := ephemeralOn(c, third, fmt.Sprintf("/live-%d", i), ids[i]); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	// Expiry is final: had a session expired at any point, its ephemeral
	// would be gone everywhere.
	c.Converged(t)
	for _, i := range c.Running() {
		for s, id := range ids {
			if err := ephemeralOn(c, i, fmt.Sprintf("/live-%d", s), id); err != nil {
				t.Error(err)
			}
		}
	}
}

// TestSessionExpiresDespiteLeaderChurn: leaders check-point the time idle
// sessions have left, so moving leadership faster than the timeout cannot
// keep a dead client's session alive (etcd#9888), nor end it early.
func TestSessionExpiresDespiteLeaderChurn(t *testing.T) {
	const timeout = 1500 * time.Millisecond
	c := newCluster(t, 3)
	leader := c.WaitLeader(t)
	opening := time.Now() // the leader starts the clock after this
	id := mustOpenSession(t, c.Node(c.Followers(leader)[0]), timeout)
	mustPropose(t, c.Node(leader), ephemeralCmd("/churn", id))
	eventually(t, waitTimeout, func() error {
		for _, i := range c.Running() {
			if err := ephemeralOn(c, i, "/churn", id); err != nil {
				return err
			}
		}
		return nil
	})

	transfers := 0
	nextTransfer := time.Now().Add(timeout / 2)
	for {
		gone := false
		for _, i := range c.Running() {
			if _, err := c.Node(i).FSM().Session(id); errors.Is(err, fsm.ErrNoSession) {
				gone = true
			}
		}
		now := time.Now()
		if gone {
			if now.Before(opening.Add(timeout)) {
				t.Fatalf("session gone %v after it was opened, before its timeout %v (%d leader changes)", now.Sub(opening), timeout, transfers)
			}
			break
		}
		if now.After(opening.Add(3 * timeout)) {
			t.Fatalf("session still alive %v after it was opened without keepalives, after %d leader changes", now.Sub(opening), transfers)
		}
		if now.After(nextTransfer) {
			nextTransfer = nextTransfer.Add(timeout / 2)
			l := c.WaitLeader(t)
			// A transfer may time out on a loaded machine; the next
			// one will try again.
			if err := c.Node(l).Raft().LeadershipTransfer().Error(); err != nil {
				t.Logf("LeadershipTransfer: %v", err)
			}
			if c.WaitLeader(t) != l {
				transfers++
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if transfers < 2 {
		t.Fatalf("session expired after %d leader changes; the test needs at least 2", transfers)
	}
	eventually(t, waitTimeout, func() error { return goneEverywhere(c, "/churn", id) })
}

// TestSessionOpenedByAbandonedProposalExpires: a session whose opening
// proposal outlived its caller's context is still timed by the leader.
func TestSessionOpenedByAbandonedProposalExpires(t *testing.T) {
	const timeout = time.Second
	c := newCluster(t, 3)
	leader := c.WaitLeader(t)
	c.Stop(c.Followers(leader)[0])
	ln := c.Node(leader)

	// The leader cannot replicate: the proposal is appended but does not
	// commit before the caller gives up.
	c.Transport(leader).DropEntries("", true)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, _, err := ln.OpenSession(ctx, timeout)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("OpenSession while the leader cannot replicate: err = %v, want DeadlineExceeded", err)
	}
	c.Transport(leader).DropEntries("", false)

	var id uint64
	eventually(t, waitTimeout, func() error {
		ss := ln.FSM().Sessions()
		if len(ss) != 1 {
			return fmt.Errorf("%d sessions, want 1", len(ss))
		}
		id = ss[0].GetId()
		return nil
	})
	if !c.Node(leader).IsLeader() {
		t.Fatal("leadership moved; the test needs it to stay")
	}
	created := time.Now()
	eventually(t, timeout+2*time.Second, func() error {
		if _, err := ln.FSM().Session(id); !errors.Is(err, fsm.ErrNoSession) {
			return fmt.Errorf("session %d still open %v after it was applied: %v", id, time.Since(created), err)
		}
		return nil
	})
}

// TestKeepAliveOnLaggingFollower: a keepalive answered by a follower that
// has not yet applied the session's opening reports the session's real
// timeout, never zero.
func TestKeepAliveOnLaggingFollower(t *testing.T) {
	const timeout = 2 * time.Second
	c := newCluster(t, 3)
	leader := c.WaitLeader(t)
	lag := c.Followers(leader)[0]
	lt := c.Transport(leader)
	lt.DropEntries(c.RaftAddr(lag), true)
	id := mustOpenSession(t, c.Node(leader), timeout) // committed with the other follower
	if _, err := c.Node(lag).FSM().Session(id); !errors.Is(err, fsm.ErrNoSession) {
		t.Fatalf("lagging follower knows session %d: %v", id, err)
	}

	// While it lags, the follower answers late or not at all, never with
	// a wrong timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	got, err := c.Node(lag).KeepAlive(ctx, id)
	cancel()
	if err == nil && got != timeout {
		t.Fatalf("KeepAlive on the lagging follower = %v, want %v", got, timeout)
	}
	// Once it catches up, it answers.
	lt.DropEntries(c.RaftAddr(lag), false)
	ctx, cancel = context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if got, err := c.Node(lag).KeepAlive(ctx, id); err != nil || got != timeout {
		t.Fatalf("KeepAlive on the follower = %v, %v; want %v", got, err, timeout)
	}
}

// A leader that cannot reach the others must not renew a session: the
// majority will elect a leader that times the session from its own start,
// and a client that was told its session lives on would be wrong.
func TestKeepAliveOnDeposedLeaderFails(t *testing.T) {
	const timeout = 2 * time.Second
	c := newCluster(t, 3)
	old := c.WaitLeader(t)
	id := mustOpenSession(t, c.Node(old), timeout)
	if err := keepAlive(c.Node(old), id, timeout); err != nil {
		t.Fatalf("KeepAlive on the leader: %v", err)
	}

	c.Partition(old)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	_, err := c.Node(old).KeepAlive(ctx, id)
	cancel()
	if err == nil {
		t.Fatal("KeepAlive on the partitioned leader succeeded")
	}
	t.Logf("KeepAlive on the partitioned leader: %v", err)

	c.Heal()
	leader := c.WaitLeader(t)
	eventually(t, waitTimeout, func() error { return keepAlive(c.Node(leader), id, timeout) })
}

// A keepalive answers only once the session's checkpoint is cleared in the
// log: a leader elected right after it must not time the session from the
// remaining time checkpointed before the renewal.
func TestKeepAliveClearsCheckpointBeforeAnswering(t *testing.T) {
	const timeout = 4 * time.Second
	c := newCluster(t, 3)
	leader := c.WaitLeader(t)
	n := c.Node(leader)
	id := mustOpenSession(t, n, timeout)
	eventually(t, waitTimeout, func() error {
		if st, _ := n.FSM().SessionTimer(id); st.RemainingMs == 0 {
			return errors.New("no checkpoint yet")
		}
		return nil
	})
	if err := keepAlive(n, id, timeout); err != nil {
		t.Fatalf("KeepAlive on the leader: %v", err)
	}
	if st, _ := n.FSM().SessionTimer(id); st.RemainingMs != 0 {
		t.Fatalf("after the keepalive the session's checkpoint still holds %d ms", st.RemainingMs)
	}
}
