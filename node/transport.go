package node

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// guard wraps the raft transport to fix two things hashicorp/raft (v1.7.3,
// and v1.8.0 still) does that let a deposed leader act on its old term.
// Both showed with a leader paused by SIGSTOP in the robustness suite
// (README, Reliability).
//
// A follower's commit index. Raft sets it to min(leaderCommit, the
// follower's last log index). The Raft paper says min(leaderCommit, index
// of the last new entry): only the request's prev entry and the entries it
// carries are known to match the leader's log. Anything after them in the
// follower's log may be a stale tail from an old term. A leader that was
// paused (or cut off) after appending entries it never replicated keeps
// them when it comes back as a follower; a request from the new leader
// with a matching prev entry, no entries and a newer commit index then
// makes it apply its stale entry before the next request truncates it,
// and the replica diverges for good. The guard caps each incoming
// request's LeaderCommitIndex at the last index it verifies before raft
// sees it, which makes raft's rule the paper's. It costs a follower one
// goroutine hand-off per replication request. Heartbeats carry no commit
// index and take raft's fast path as before.
// TestGuardKeepsStaleTail shows the bug with raft alone.
//
// A leader's confirmation. VerifyLeader counts every successful response
// processed after it is called, also responses to requests sent before:
// a paused leader that resumes can find its followers' old answers in its
// sockets and confirm its leadership with them, in the moment before a
// fresh answer tells it of the new term (TestCutOffLeaderConfirmsNoRead
// shows it with a leader cut off while answers are on their way). The
// guard records, per peer, the send time of the latest request the peer
// answered in the sender's term; confirmLeadership waits, through
// confirmedSince, for a quorum of answers to requests sent after it began.
type guard struct {
	raft.Transport
	rpcs chan raft.RPC
	done chan struct{}
	once sync.Once

	mu     sync.Mutex
	acks   map[raft.ServerID]ack
	ackNew chan struct{} // closed and replaced when an ack is recorded

	// startCommit is the first leader commit index this node received
	// since it started (0 until one came): what readiness waits for
	// (Node.caughtUp).
	startCommit atomic.Uint64
}

// ack is the latest request a peer answered in the term it was sent in.
type ack struct {
	term uint64
	sent time.Time
}

// guardPreVote is guard over a transport that supports pre-vote, which
// raft looks for on the transport it is given.
type guardPreVote struct {
	*guard
	raft.WithPreVote
}

// newGuard wraps t, forwarding its RPCs until Close or stop. It returns
// the guard and the transport to give raft.
func newGuard(t raft.Transport) (*guard, raft.Transport) {
	g := &guard{
		Transport: t, rpcs: make(chan raft.RPC), done: make(chan struct{}),
		acks: map[raft.ServerID]ack{}, ackNew: make(chan struct{}),
	}
	go g.forward(t.Consumer())
	if pv, ok := t.(raft.WithPreVote); ok {
		return g, guardPreVote{g, pv}
	}
	return g, g
}

func (g *guard) forward(in <-chan raft.RPC) {
	for {
		select {
		case rpc := <-in:
			if req, ok := rpc.Command.(*raft.AppendEntriesRequest); ok {
				// The leader's own commit index, before the cap: the
				// cluster had committed that much when this node heard.
				if c := req.LeaderCommitIndex; c > 0 {
					g.startCommit.CompareAndSwap(0, c)
				}
				capCommit(req)
			}
			select {
			case g.rpcs <- rpc:
			case <-g.done:
				return
			}
		case <-g.done:
			return
		}
	}
}

// capCommit caps req's commit index at the last index req verifies: its
// last entry, or its prev entry when it carries none.
func capCommit(req *raft.AppendEntriesRequest) {
	verified := req.PrevLogEntry
	if n := len(req.Entries); n > 0 {
		verified = req.Entries[n-1].Index
	}
	req.LeaderCommitIndex = min(req.LeaderCommitIndex, verified)
}

// Consumer is where raft takes the requests, capped.
func (g *guard) Consumer() <-chan raft.RPC { return g.rpcs }

// AppendEntries sends a request (raft's heartbeats, and appends outside
// the pipeline) and records the peer's answer in the request's term.
func (g *guard) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	sent := time.Now()
	err := g.Transport.AppendEntries(id, target, args, resp)
	if err == nil && resp.Term == args.Term {
		g.mu.Lock()
		if a := g.acks[id]; args.Term > a.term || args.Term == a.term && sent.After(a.sent) {
			g.acks[id] = ack{args.Term, sent}
			close(g.ackNew)
			g.ackNew = make(chan struct{})
		}
		g.mu.Unlock()
	}
	return err
}

// confirmedSince reports whether voters other than self, enough to make a
// quorum with it, answered requests of term sent after since; if not, it
// returns a channel closed at the next answer.
func (g *guard) confirmedSince(term uint64, since time.Time, self raft.ServerID, voters []raft.ServerID) (bool, <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	have := 0
	for _, id := range voters {
		if a := g.acks[id]; id == self || a.term == term && a.sent.After(since) {
			have++
		}
	}
	return have > len(voters)/2, g.ackNew
}

// Close stops forwarding and closes the wrapped transport if it can be
// closed. Raft calls it when it shuts down.
func (g *guard) Close() error {
	var err error
	g.once.Do(func() {
		close(g.done)
		if c, ok := g.Transport.(raft.WithClose); ok {
			err = c.Close()
		}
	})
	return err
}

// stop stops forwarding without closing the wrapped transport (a node
// whose raft never started, with a transport it was given).
func (g *guard) stop() {
	g.once.Do(func() { close(g.done) })
}

// confirmPoll is how often confirmLeadership asks raft again while it
// waits for fresh answers: each VerifyLeader sends heartbeats at once and
// fails once this node has stepped down.
const confirmPoll = 20 * time.Millisecond

// confirmLeadership returns nil once a quorum has acknowledged this node
// as leader of its current term in answers to requests sent after the
// call began, and ErrNotLeader if it does not lead.
func (n *Node) confirmLeadership(ctx context.Context) error {
	began := time.Now()
	term := n.raft.CurrentTerm()
	verify := true
	for {
		if verify {
			if err := n.raft.VerifyLeader().Error(); err != nil {
				return fmt.Errorf("%w: %v", ErrNotLeader, err)
			}
			if n.raft.CurrentTerm() != term {
				return ErrNotLeader
			}
		}
		cfg := n.raft.GetConfiguration()
		if err := cfg.Error(); err != nil {
			return err
		}
		var voters []raft.ServerID
		for _, s := range cfg.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				voters = append(voters, s.ID)
			}
		}
		ok, next := n.guard.confirmedSince(term, began, raft.ServerID(n.cfg.ID), voters)
		if ok {
			return nil
		}
		t := time.NewTimer(confirmPoll)
		select {
		case <-next:
			verify = false
		case <-t.C:
			verify = true
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		t.Stop()
	}
}
