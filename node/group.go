package node

import (
	"context"
	"time"

	"github.com/paddock/paddock/fsm"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
)

// Group commit, for the leader's write-through web-session writes (a PHP
// page view that changed its session): one round of commands is in
// raft at a time, and the commands that arrive meanwhile wait for the
// round to end and go in together as the next. hashicorp/raft stores and
// sends what it finds in its apply queue as one batch, and a round hands
// its commands to raft back to back (checked, stamped and encoded
// first), so a round is usually one log append (a bbolt commit, two
// fdatasyncs) on the leader and on each follower, however many commands
// it holds; raft may split it when it takes the queue in the middle of
// a round. Handed to raft one by one as they came, the writes of 16
// concurrent page views went into batches of 3 or 4
// (paddock_apply_batch_entries), and the appends were most of the raft
// work per view; in rounds, a round holds what arrived during one whole
// commit (append, replication, apply).
//
// A command alone waits for nothing: its round starts at once. One that
// arrives during a round waits for it before its own: more latency under
// load, for less CPU per write, which is what a shared machine's
// throughput is made of (docs/benchmarks.md, "Build against build: group
// commit"). A round takes groupMax commands at most (the oldest), far
// below applySlots, and holds a slot for each until all are answered.
// Only its first command waits for a slot: when the slots run out
// (hundreds of other writes in flight), the rest of the round goes first
// in the next one, instead of holding back the answers of the commands
// raft already has while they wait.
//
// Each command keeps its caller's bounds. One whose caller stopped
// waiting (its context ended, or its call's end passed) before its round
// handed it to raft is left out, nothing appended; once handed to raft
// it is applied whether or not its caller still waits, as a command
// handed to raft directly is. A slot is waited for until the caller's
// context or call ends, as proposeCall waits.

// groupMax is the most commands a group-commit round takes.
const groupMax = 128

// groupCmd is a command waiting for a round, with its caller's bounds.
type groupCmd struct {
	ctx context.Context
	end time.Time // zero: ctx alone bounds the caller
	cmd *raftv1.Command
}

// gone says whether the caller of g stopped waiting.
func (g groupCmd) gone() error {
	if err := g.ctx.Err(); err != nil {
		return err
	}
	if !g.end.IsZero() && !time.Now().Before(g.end) {
		return context.DeadlineExceeded
	}
	return nil
}

// groupResult is one command's outcome in a round; again says the round
// did not hand it to raft (no free slot) and the next round takes it.
type groupResult struct {
	res   *fsm.Result
	err   error
	again bool
}

// proposeGroup has cmd applied in a coming group-commit round and waits
// for its result until c ends.
func (n *Node) proposeGroup(c *call, cmd *raftv1.Command) (*fsm.Result, error) {
	r, err := wait(c, n.group.enqueue(c.ctx, groupCmd{ctx: c.ctx, end: c.end, cmd: cmd}))
	if err != nil {
		return nil, err
	}
	if r.err != nil {
		return nil, r.err
	}
	return r.v.res, r.v.err
}

// applyGroup is one round: it checks, stamps and encodes every command,
// hands them to raft in order, and waits for all their results. A
// command raft did not take (this node stopped leading, its caller gone,
// no slot before its caller's end) has its error; the others go on.
func (n *Node) applyGroup(_ context.Context, cmds []groupCmd) ([]groupResult, error) {
	if ch := n.groupStall.Load(); ch != nil {
		<-*ch
	}
	out := make([]groupResult, len(cmds))
	data := make([][]byte, len(cmds))
	for i, g := range cmds {
		data[i], out[i].err = n.prepareApply(g.cmd, nil)
	}
	started := make([]*applying, len(cmds))
	count, full := 0, false
	for i, g := range cmds {
		if out[i].err != nil {
			continue
		}
		if full {
			out[i].again = true
			continue
		}
		if out[i].err = g.gone(); out[i].err != nil {
			continue
		}
		if count == 0 {
			out[i].err = n.acquireSlotUntil(g.ctx, g.end)
		} else if !n.trySlot() {
			out[i].again, full = true, true
			continue
		}
		if out[i].err == nil {
			started[i], out[i].err = n.submitApply(g.cmd, data[i])
		}
		if started[i] != nil {
			count++
		}
	}
	n.metrics.groupCommit.Observe(float64(count))
	for i, a := range started {
		if a != nil {
			out[i].res, out[i].err = a.finish()
		}
	}
	return out, nil
}
