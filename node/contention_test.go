package node_test

import (
	"context"
	"errors"
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
