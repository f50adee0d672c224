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
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

const electionKind = raftv1.ContentionKind_CONTENTION_KIND_ELECTION

func campaign(ctx context.Context, n *node.Node, name string, session uint64, wait time.Duration) (*node.ContendResult, error) {
	return n.Contend(ctx, node.ContendArgs{Kind: electionKind, Name: name, Session: session, Value: []byte("v"), Limit: 1, Wait: wait})
}

// TestCampaignInLineAndResign: candidates lead in the order they entered,
// a repeat Campaign keeps the place, a timed-out Campaign answers not
// elected with its place, and Resign hands over to the next.
func TestCampaignInLineAndResign(t *testing.T) {
	c := nodetest.NewCluster(t, 3)
	l := c.WaitLeader(t)
	f := c.Followers(l)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s1 := mustOpenSession(t, c.Node(l), 5*time.Second)
	s2 := mustOpenSession(t, c.Node(f), 5*time.Second)

	r1, err := campaign(ctx, c.Node(l), "e", s1, time.Second)
	if err != nil || !r1.Holds || r1.Position != 0 {
		t.Fatalf("Campaign(s1) = %+v, %v; want elected", r1, err)
	}
	r2, err := campaign(ctx, c.Node(f), "e", s2, 200*time.Millisecond)
	if err != nil || r2.Holds || r2.Position != 1 {
		t.Fatalf("Campaign(s2) = %+v, %v; want not elected, position 1", r2, err)
	}
	if r2.Candidate.GetToken() <= r1.Candidate.GetToken() {
		t.Errorf("token of s2 %d <= token of s1 %d", r2.Candidate.GetToken(), r1.Candidate.GetToken())
	}
	again, err := campaign(ctx, c.Node(l), "e", s2, 100*time.Millisecond)
	if err != nil || again.Candidate.GetToken() != r2.Candidate.GetToken() {
		t.Fatalf("repeat Campaign(s2) = %+v, %v; want token %d", again, err, r2.Candidate.GetToken())
	}

	done := make(chan *node.ContendResult, 1)
	go func() {
		r, err := campaign(ctx, c.Node(f), "e", s2, 10*time.Second)
		if err != nil {
			t.Errorf("waiting Campaign(s2): %v", err)
		}
		done <- r
	}()
	if _, err := c.Node(f).Withdraw(ctx, electionKind, "e", r1.Candidate.GetToken()); err != nil {
		t.Fatalf("Resign(s1): %v", err)
	}
	select {
	case r := <-done:
		if r == nil || !r.Holds || r.Candidate.GetToken() != r2.Candidate.GetToken() {
			t.Fatalf("Campaign(s2) after resign = %+v, want elected", r)
		}
	case <-ctx.Done():
		t.Fatal("s2 not elected after s1 resigned")
	}
	if _, err := c.Node(l).Withdraw(ctx, electionKind, "e", r1.Candidate.GetToken()); !errors.Is(err, fsm.ErrNotHeld) {
		t.Errorf("second Resign(s1) = %v, want ErrNotHeld", err)
	}
	// A fenced write by the deposed token is refused; the leader's passes.
	fence := func(tok uint64) *paddockv1.Fence { return &paddockv1.Fence{Name: "elections/e", Token: tok} }
	if _, err := c.Node(l).Propose(ctx, &raftv1.Command{Op: &raftv1.Command_Create{Create: &paddockv1.CreateRequest{Path: "/x", Fence: fence(r1.Candidate.GetToken())}}}); !errors.Is(err, fsm.ErrFenceLost) {
		t.Errorf("fenced Create by the old leader = %v, want ErrFenceLost", err)
	}
	if _, err := c.Node(f).Propose(ctx, &raftv1.Command{Op: &raftv1.Command_Create{Create: &paddockv1.CreateRequest{Path: "/x", Fence: fence(r2.Candidate.GetToken())}}}); err != nil {
		t.Errorf("fenced Create by the leader = %v", err)
	}
}

// TestCampaignHerdFree: with many candidates waiting, each leader change
// wakes one waiter, not all of them.
func TestCampaignHerdFree(t *testing.T) {
	c := nodetest.NewCluster(t, 3)
	l := c.WaitLeader(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 30
	sessions := make([]uint64, n)
	for i := range sessions {
		sessions[i] = mustOpenSession(t, c.Node(i%3), 10*time.Second)
	}
	first, err := campaign(ctx, c.Node(l), "herd", sessions[0], time.Second)
	if err != nil || !first.Holds {
		t.Fatalf("first Campaign = %+v, %v", first, err)
	}
	type won struct {
		i     int
		token uint64
	}
	wins := make(chan won, n)
	var wg sync.WaitGroup
	for i := 1; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := campaign(ctx, c.Node(i%3), "herd", sessions[i], 0)
			if err != nil {
				t.Errorf("Campaign %d: %v", i, err)
				return
			}
			wins <- won{i, r.Candidate.GetToken()}
		}()
	}
	// Wait until all are in line.
	eventually(t, 20*time.Second, func() error {
		line, err := c.Node(l).Line(ctx, electionKind, "herd", nil)
		if err != nil {
			return err
		}
		if len(line.Contention.Line) != n {
			return errors.New("not all in line yet")
		}
		return nil
	})
	wakeups := func() float64 {
		var sum float64
		for i := range 3 {
			mfs, err := c.Node(i).Metrics().Gather()
			if err != nil {
				t.Fatal(err)
			}
			for _, mf := range mfs {
				if mf.GetName() == "paddock_election_wakeups_total" {
					for _, m := range mf.GetMetric() {
						sum += m.GetCounter().GetValue()
					}
				}
			}
		}
		return sum
	}
	before := wakeups()
	token := first.Candidate.GetToken()
	for k := 1; k < n; k++ {
		if _, err := c.Node(l).Withdraw(ctx, electionKind, "herd", token); err != nil {
			t.Fatalf("Resign %d: %v", k, err)
		}
		select {
		case w := <-wins:
			token = w.token
		case <-ctx.Done():
			t.Fatalf("no leader after resign %d", k)
		}
	}
	wg.Wait()
	if got := wakeups() - before; got < float64(n-1) || got > float64(n-1)+2 {
		t.Errorf("%d leader changes woke %v waiters, want about one each", n-1, got)
	}
}

// TestCampaignRightAfterStart: on a new cluster, a Campaign sent as soon
// as a leader accepts writes waits for the members to register their
// feature level instead of failing with ErrFeatureLevel.
func TestCampaignRightAfterStart(t *testing.T) {
	c := nodetest.NewCluster(t, 3)
	deadline := time.Now().Add(nodetest.WaitTimeout)
	var session uint64
	for i := 0; ; i++ {
		if time.Now().After(deadline) {
			t.Fatal("no Campaign went through on the new cluster")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		n := c.Node(i % 3)
		if session == 0 {
			resp, _, err := n.OpenSession(ctx, 5*time.Second)
			if err == nil {
				session = resp.GetSessionId()
			}
		}
		var err error
		if session != 0 {
			_, err = campaign(ctx, n, "fresh", session, 100*time.Millisecond)
		}
		cancel()
		if errors.Is(err, fsm.ErrFeatureLevel) {
			t.Fatalf("Campaign on a new cluster: %v", err)
		}
		if session != 0 && err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCampaignWaitRenewsSession: a session that a waiting Campaign holds
// lives on without keepalives for three times its timeout, even when it
// was close to expiring as the wait began, and expires once the wait
// ends.
func TestCampaignWaitRenewsSession(t *testing.T) {
	c := nodetest.NewCluster(t, 3)
	l := c.WaitLeader(t)
	f := c.Followers(l)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	holder := mustOpenSession(t, c.Node(l), 10*time.Second)
	if r, err := campaign(ctx, c.Node(l), "renew", holder, time.Second); err != nil || !r.Holds {
		t.Fatalf("Campaign(holder) = %+v, %v", r, err)
	}
	const timeout = 1500 * time.Millisecond
	waiter := mustOpenSession(t, c.Node(f), timeout)
	// Let most of the session's timeout pass: the wait must renew it
	// before the rest runs out.
	time.Sleep(timeout * 8 / 10)
	r, err := campaign(ctx, c.Node(f), "renew", waiter, 3*timeout)
	if err != nil || r.Holds || r.Position != 1 {
		t.Fatalf("waiting Campaign = %+v, %v; want not elected, position 1", r, err)
	}
	if _, ok := c.Node(l).FSM().SessionTimer(waiter); !ok {
		t.Fatal("the waiting candidate's session expired during the wait")
	}
	// The wait is over: no one renews the session any more.
	eventually(t, timeout+5*time.Second, func() error {
		if _, ok := c.Node(l).FSM().SessionTimer(waiter); ok {
			return errors.New("session still open")
		}
		return nil
	})
}

// TestObserveLeaderFirstAnswer: Observe sends the election's leader at
// once, none included, then every change.
func TestObserveLeaderFirstAnswer(t *testing.T) {
	c := nodetest.NewCluster(t, 3)
	l := c.WaitLeader(t)
	f := c.Followers(l)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := make(chan *paddockv1.Contender, 10)
	octx, ocancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- c.Node(f).ObserveLeader(octx, "obs", func(leader *paddockv1.Contender, _ uint64) error {
			got <- leader
			return nil
		})
	}()
	defer func() {
		ocancel()
		<-done
	}()
	next := func(what string) *paddockv1.Contender {
		t.Helper()
		select {
		case l := <-got:
			return l
		case <-time.After(5 * time.Second):
			t.Fatalf("Observe sent nothing for %s", what)
		}
		return nil
	}
	if first := next("an election without a leader"); first != nil {
		t.Fatalf("first answer = %v, want no leader", first)
	}
	s := mustOpenSession(t, c.Node(l), 10*time.Second)
	r, err := campaign(ctx, c.Node(l), "obs", s, time.Second)
	if err != nil || !r.Holds {
		t.Fatalf("Campaign = %+v, %v", r, err)
	}
	if got := next("the new leader"); got.GetToken() != r.Candidate.GetToken() {
		t.Fatalf("second answer = %v, want token %d", got, r.Candidate.GetToken())
	}
	if _, err := c.Node(l).Withdraw(ctx, electionKind, "obs", r.Candidate.GetToken()); err != nil {
		t.Fatal(err)
	}
	if got := next("the resignation"); got != nil {
		t.Fatalf("third answer = %v, want no leader", got)
	}
}

const lockKind = raftv1.ContentionKind_CONTENTION_KIND_LOCK

// contendAsync runs a Contend in the background; its outcome arrives on
// the returned channel with the time it came.
type contendOutcome struct {
	r   *node.ContendResult
	err error
	at  time.Time
}

func contendAsync(ctx context.Context, n *node.Node, a node.ContendArgs) <-chan contendOutcome {
	out := make(chan contendOutcome, 1)
	go func() {
		r, err := n.Contend(ctx, a)
		out <- contendOutcome{r, err, time.Now()}
	}()
	return out
}

// waitInLine waits until the line holds want candidates and placeholders.
func waitInLine(t *testing.T, ctx context.Context, n *node.Node, kind raftv1.ContentionKind, name string, want int) {
	t.Helper()
	eventually(t, nodetest.WaitTimeout, func() error {
		line, err := n.Line(ctx, kind, name, nil)
		if err != nil {
			return err
		}
		if got := len(line.Contention.Line); got != want {
			return fmt.Errorf("%d in line, want %d", got, want)
		}
		return nil
	})
}

// TestCampaignLeaderSessionExpires: when the leader's session expires,
// the next candidate leads within the session timeout and a second.
func TestCampaignLeaderSessionExpires(t *testing.T) {
	c := nodetest.NewCluster(t, 3)
	l := c.WaitLeader(t)
	f := c.Followers(l)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const timeout = time.Second
	opened := time.Now()
	sa := mustOpenSession(t, c.Node(l), timeout)
	sb := mustOpenSession(t, c.Node(f), 10*time.Second)
	if r, err := campaign(ctx, c.Node(l), "exp", sa, time.Second); err != nil || !r.Holds {
		t.Fatalf("Campaign(a) = %+v, %v", r, err)
	}
	out := contendAsync(ctx, c.Node(f), node.ContendArgs{Kind: electionKind, Name: "exp", Session: sb, Limit: 1})
	select {
	case o := <-out:
		if o.err != nil || !o.r.Holds {
			t.Fatalf("Campaign(b) = %+v, %v; want elected", o.r, o.err)
		}
		if took := o.at.Sub(opened); took > timeout+time.Second {
			t.Errorf("b elected %v after a's session opened, want within %v", took, timeout+time.Second)
		}
		if o.r.LockDelay != 0 {
			t.Errorf("LockDelay = %v without a lock-delay session", o.r.LockDelay)
		}
	case <-ctx.Done():
		t.Fatal("b never elected")
	}
}

// TestLockDelay: a holder whose session has a lock-delay and expires
// leaves its slot to no one for the delay (Leader nil, LockDelay > 0,
// no one elected), then the next holds; Resign, Release and a client's
// CloseSession skip the delay.
func TestLockDelay(t *testing.T) {
	c := nodetest.NewCluster(t, 3)
	l := c.WaitLeader(t)
	f := c.Followers(l)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const timeout, delay = time.Second, 2 * time.Second
	delayed := func() uint64 {
		t.Helper()
		resp, _, err := c.Node(l).OpenSessionWithDelay(ctx, timeout, delay)
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetSessionId()
	}

	t.Run("expiry", func(t *testing.T) {
		sa := delayed()
		sb := mustOpenSession(t, c.Node(f), 10*time.Second)
		if r, err := campaign(ctx, c.Node(l), "ld", sa, time.Second); err != nil || !r.Holds {
			t.Fatalf("Campaign(a) = %+v, %v", r, err)
		}
		out := contendAsync(ctx, c.Node(f), node.ContendArgs{Kind: electionKind, Name: "ld", Session: sb, Limit: 1})
		// a's session expires: its place stays, held by no one.
		var expired time.Time
		eventually(t, nodetest.WaitTimeout, func() error {
			line, err := c.Node(f).Line(ctx, electionKind, "ld", nil)
			if err != nil {
				return err
			}
			if line.Leader() != nil || line.LockDelay(time.Now()) == 0 {
				return fmt.Errorf("leader %v, lock delay %v", line.Leader(), line.LockDelay(time.Now()))
			}
			expired = time.Now()
			return nil
		})
		sc := mustOpenSession(t, c.Node(l), 10*time.Second)
		r, err := campaign(ctx, c.Node(l), "ld", sc, 100*time.Millisecond)
		if err != nil || r.Holds || r.LockDelay <= 0 || r.Position != 2 {
			t.Errorf("Campaign(c) during the delay = %+v, %v; want not elected, position 2, LockDelay > 0", r, err)
		}
		select {
		case o := <-out:
			if o.err != nil || !o.r.Holds {
				t.Fatalf("Campaign(b) = %+v, %v; want elected", o.r, o.err)
			}
			// The delay counts from the expiry, which came before we saw it.
			if took := o.at.Sub(expired); took < delay-500*time.Millisecond || took > delay+2*time.Second {
				t.Errorf("b elected %v after a's session expired, want about %v", took, delay)
			}
		case <-ctx.Done():
			t.Fatal("b never elected")
		}
	})

	skip := func(t *testing.T, kind raftv1.ContentionKind, name string, end func(sa uint64, token uint64) error) {
		sa := delayed()
		sb := mustOpenSession(t, c.Node(f), 10*time.Second)
		r, err := c.Node(l).Contend(ctx, node.ContendArgs{Kind: kind, Name: name, Session: sa, Limit: 1, Wait: time.Second})
		if err != nil || !r.Holds {
			t.Fatalf("Contend(a) = %+v, %v", r, err)
		}
		out := contendAsync(ctx, c.Node(f), node.ContendArgs{Kind: kind, Name: name, Session: sb, Limit: 1})
		waitInLine(t, ctx, c.Node(l), kind, name, 2)
		ended := time.Now()
		if err := end(sa, r.Candidate.GetToken()); err != nil {
			t.Fatal(err)
		}
		select {
		case o := <-out:
			if o.err != nil || !o.r.Holds || o.r.LockDelay != 0 {
				t.Fatalf("Contend(b) = %+v, %v; want holding, no lock delay", o.r, o.err)
			}
			if took := o.at.Sub(ended); took > time.Second {
				t.Errorf("b held %v after a let go, want at once", took)
			}
		case <-ctx.Done():
			t.Fatal("b never held")
		}
	}
	t.Run("resign", func(t *testing.T) {
		skip(t, electionKind, "resign", func(_, token uint64) error {
			_, err := c.Node(f).Withdraw(ctx, electionKind, "resign", token)
			return err
		})
	})
	t.Run("release", func(t *testing.T) {
		skip(t, lockKind, "release", func(_, token uint64) error {
			_, err := c.Node(l).Withdraw(ctx, lockKind, "release", token)
			return err
		})
	})
	t.Run("close", func(t *testing.T) {
		skip(t, lockKind, "close", func(sa, _ uint64) error {
			_, _, err := c.Node(l).CloseSession(ctx, sa)
			return err
		})
	})
}

// TestCampaignPartitionedFollower: a candidate waiting on a follower that
// is cut off from the others is never elected from that follower's stale
// state: its wait ends with ErrLostLeader, a new Campaign there fails,
// and once healed the same session is elected in its place.
func TestCampaignPartitionedFollower(t *testing.T) {
	c := nodetest.NewCluster(t, 3)
	l := c.WaitLeader(t)
	f := c.Followers(l)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sa := mustOpenSession(t, c.Node(l), 30*time.Second)
	sb := mustOpenSession(t, c.Node(f), 30*time.Second)
	ra, err := campaign(ctx, c.Node(l), "cut", sa, time.Second)
	if err != nil || !ra.Holds {
		t.Fatalf("Campaign(a) = %+v, %v", ra, err)
	}
	out := contendAsync(ctx, c.Node(f), node.ContendArgs{Kind: electionKind, Name: "cut", Session: sb, Limit: 1})
	waitInLine(t, ctx, c.Node(f), electionKind, "cut", 2)
	c.Partition(f)
	defer c.Heal()
	// a resigns on the majority side: b leads, but f cannot know it.
	if _, err := c.Node(l).Withdraw(ctx, electionKind, "cut", ra.Candidate.GetToken()); err != nil {
		t.Fatalf("Resign(a): %v", err)
	}
	select {
	case o := <-out:
		if o.err == nil || !errors.Is(o.err, node.ErrNoLeader) {
			t.Fatalf("Campaign(b) on the cut follower = %+v, %v; want ErrLostLeader", o.r, o.err)
		}
	case <-ctx.Done():
		t.Fatal("Campaign(b) on the cut follower never ended")
	}
	cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
	r, err := campaign(cctx, c.Node(f), "cut", sb, time.Second)
	ccancel()
	if err == nil {
		t.Fatalf("Campaign(b) on the cut follower = %+v, want an error", r)
	}
	c.Heal()
	eventually(t, nodetest.WaitTimeout, func() error {
		r, err := campaign(ctx, c.Node(f), "cut", sb, time.Second)
		if err != nil {
			return err
		}
		if !r.Holds || r.Position != 0 {
			return fmt.Errorf("Campaign(b) = %+v, want elected", r)
		}
		return nil
	})
}

// TestPollLeaderCutOff: on a follower cut off from the others, PollLeader
// fails with ErrLostLeader within its wait, as a watch would, rather than
// block past it or answer from stale state.
func TestPollLeaderCutOff(t *testing.T) {
	c := nodetest.NewCluster(t, 3)
	l := c.WaitLeader(t)
	f := c.Followers(l)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := mustOpenSession(t, c.Node(l), 30*time.Second)
	r, err := campaign(ctx, c.Node(l), "poll", s, time.Second)
	if err != nil || !r.Holds {
		t.Fatalf("Campaign = %+v, %v", r, err)
	}
	waitInLine(t, ctx, c.Node(f), electionKind, "poll", 1)
	c.Partition(f)
	defer c.Heal()
	const wait = 500 * time.Millisecond
	// Once f has noticed (a heartbeat timeout), every poll fails at once.
	eventually(t, nodetest.WaitTimeout, func() error {
		start := time.Now()
		_, changed, _, err := c.Node(f).PollLeader(ctx, "poll", r.Candidate.GetToken(), r.Candidate.GetModZxid(), wait)
		took := time.Since(start)
		if took > wait+300*time.Millisecond {
			t.Fatalf("PollLeader(%v) on the cut follower took %v (%v)", wait, took, err)
		}
		if changed {
			t.Fatalf("PollLeader on the cut follower reported a change")
		}
		if !errors.Is(err, node.ErrNoLeader) {
			return fmt.Errorf("PollLeader = %v", err)
		}
		return nil
	})
}
