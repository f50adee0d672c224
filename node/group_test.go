package node_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/paddock/paddock/fsm"
	"github.com/paddock/paddock/node"
	"github.com/paddock/paddock/node/nodetest"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// groupRounds is leader n's paddock_group_commit_commands: rounds and
// commands.
func groupRounds(t *testing.T, n *node.Node) (rounds uint64, commands float64) {
	t.Helper()
	mfs, err := n.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "paddock_group_commit_commands" {
			h := mf.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	t.Fatal("no paddock_group_commit_commands")
	return 0, 0
}

// Write-through web session writes that arrive while a group-commit
// round is under way go to raft together as the next round, each with
// its own outcome; a write whose caller gave up before its round began
// is left out, nothing appended.
func TestWebSessionGroupCommit(t *testing.T) {
	c, l := wsCluster(t, -1)
	n := c.Node(l)
	const k = 8
	tokens := make([]uint64, k+1)
	for i := range tokens {
		tokens[i] = wsRead(t, n, fmt.Sprintf("group-%d", i), true).GetToken()
	}
	rounds0, commands0 := groupRounds(t, n)

	type outcome struct {
		i   int
		v   uint64
		err error
	}
	results := make(chan outcome, k+1)
	write := func(ctx context.Context, i int, version uint64) {
		r, err := n.WriteWebSession(ctx, &paddockv1.WriteWebSessionRequest{
			Id: fmt.Sprintf("group-%d", i), Data: []byte("x"), Version: version, Token: tokens[i]})
		results <- outcome{i, r.GetVersion(), err}
	}
	release := node.StallGroupCommit(n)
	defer func() {
		if release != nil {
			release()
		}
	}()
	// The first write starts a round at once; it holds there.
	go write(wsCtx(t), 0, 0)
	nodetest.Eventually(t, 10*time.Second, func() error {
		if !node.GroupCommitRunning(n) || node.GroupCommitWaiting(n) != 0 {
			return errors.New("the first round has not taken its write")
		}
		return nil
	})
	// Those that come meanwhile wait for the next: k-2 good ones, one
	// with a stale version, one whose caller gives up.
	for i := 1; i < k; i++ {
		version := uint64(0)
		if i == k-1 {
			version = 7
		}
		go write(wsCtx(t), i, version)
	}
	gaveUp, cancel := context.WithCancel(wsCtx(t))
	go write(gaveUp, k, 0)
	nodetest.Eventually(t, 10*time.Second, func() error {
		if w := node.GroupCommitWaiting(n); w != k {
			return fmt.Errorf("%d writes wait for the next round, want %d", w, k)
		}
		return nil
	})
	cancel()
	release()
	release = nil

	for range k + 1 {
		o := <-results
		switch {
		case o.i == k:
			if !errors.Is(o.err, context.Canceled) {
				t.Errorf("write given up: %v, want context.Canceled", o.err)
			}
		case o.i == k-1:
			if !errors.Is(o.err, fsm.ErrBadVersion) {
				t.Errorf("stale write: %v, want ErrBadVersion", o.err)
			}
		case o.err != nil || o.v != 1:
			t.Errorf("write %d: version %d, %v", o.i, o.v, o.err)
		}
	}
	rounds, commands := groupRounds(t, n)
	if rounds-rounds0 != 2 || commands-commands0 != k {
		t.Errorf("%d rounds of %v commands, want 2 of %d (1, then %d)", rounds-rounds0, commands-commands0, k, k-1)
	}
	for i := range k + 1 {
		r, err := n.ReadWebSession(wsCtx(t), &paddockv1.ReadWebSessionRequest{Id: fmt.Sprintf("group-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		if want := i < k-1; r.GetFound() != want {
			t.Errorf("session %d found %v, want %v", i, r.GetFound(), want)
		}
	}
}

// A round whose commands find no free slot hands raft those it can and
// leaves the rest to the next round, first in it, instead of holding back
// the answers of those raft has.
func TestWebSessionGroupCommitSlots(t *testing.T) {
	c, l := wsCluster(t, -1)
	n := c.Node(l)
	const k = 4
	tokens := make([]uint64, k)
	for i := range tokens {
		tokens[i] = wsRead(t, n, fmt.Sprintf("slots-%d", i), true).GetToken()
	}
	rounds0, commands0 := groupRounds(t, n)
	giveBack := node.HoldApplySlots(n, 1)
	defer giveBack()

	errs := make(chan error, k)
	write := func(i int) {
		r, err := n.WriteWebSession(wsCtx(t), &paddockv1.WriteWebSessionRequest{
			Id: fmt.Sprintf("slots-%d", i), Data: []byte("x"), Token: tokens[i]})
		if err == nil && r.GetVersion() != 1 {
			err = fmt.Errorf("version %d", r.GetVersion())
		}
		errs <- err
	}
	release := node.StallGroupCommit(n)
	go write(0)
	nodetest.Eventually(t, 10*time.Second, func() error {
		if !node.GroupCommitRunning(n) || node.GroupCommitWaiting(n) != 0 {
			return errors.New("the first round has not taken its write")
		}
		return nil
	})
	for i := 1; i < k; i++ {
		go write(i)
	}
	nodetest.Eventually(t, 10*time.Second, func() error {
		if w := node.GroupCommitWaiting(n); w != k-1 {
			return fmt.Errorf("%d writes wait for the next round, want %d", w, k-1)
		}
		return nil
	})
	release()
	for range k {
		if err := <-errs; err != nil {
			t.Errorf("write: %v", err)
		}
	}
	// One slot: a command per round, unless a slot another proposal
	// held came free meanwhile. Never the three together.
	rounds, commands := groupRounds(t, n)
	if rounds-rounds0 < 3 || commands-commands0 != k {
		t.Errorf("%d rounds handed raft %v commands, want 3 or more rounds and %d commands", rounds-rounds0, commands-commands0, k)
	}
}
