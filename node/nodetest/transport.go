package nodetest

import (
	"errors"
	"sync"

	"github.com/hashicorp/raft"
)

// Transport is raft's in-memory transport with two faults to inject, to
// every peer or to one:
//   - dropping the AppendEntries that carry entries (heartbeats still pass,
//     so the sender keeps its leadership and its followers stay put, but
//     nothing new reaches them);
//   - holding back the leader's commit index: entries arrive and are
//     stored, but the follower never learns they are committed, so it
//     applies none of them.
type Transport struct {
	*raft.InmemTransport

	mu     sync.Mutex
	dropTo map[raft.ServerAddress]bool // "" is every peer
	holdTo map[raft.ServerAddress]bool
}

// ErrDropped is what a dropped AppendEntries fails with.
var ErrDropped = errors.New("nodetest: entries dropped")

// DropEntries starts or stops dropping entries sent to target ("" for
// every peer).
func (t *Transport) DropEntries(target raft.ServerAddress, on bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dropTo == nil {
		t.dropTo = map[raft.ServerAddress]bool{}
	}
	t.dropTo[target] = on
}

// HoldCommit starts or stops hiding the commit index from target ("" for
// every peer).
func (t *Transport) HoldCommit(target raft.ServerAddress, on bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.holdTo == nil {
		t.holdTo = map[raft.ServerAddress]bool{}
	}
	t.holdTo[target] = on
}

// fault applies the faults set for target to args: it returns ErrDropped,
// or the request to send (a copy when it changes it: raft keeps its own).
func (t *Transport) fault(target raft.ServerAddress, args *raft.AppendEntriesRequest) (*raft.AppendEntriesRequest, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(args.Entries) > 0 && (t.dropTo[""] || t.dropTo[target]) {
		return nil, ErrDropped
	}
	if t.holdTo[""] || t.holdTo[target] {
		held := *args
		held.LeaderCommitIndex = 0 // raft's "no commit index in this request"
		return &held, nil
	}
	return args, nil
}

// AppendEntries sends args unless a fault drops it.
func (t *Transport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	args, err := t.fault(target, args)
	if err != nil {
		return err
	}
	return t.InmemTransport.AppendEntries(id, target, args, resp)
}

// AppendEntriesPipeline is raft's pipeline with the faults applied.
func (t *Transport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	p, err := t.InmemTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	return &pipeline{AppendPipeline: p, t: t, target: target}, nil
}

type pipeline struct {
	raft.AppendPipeline
	t      *Transport
	target raft.ServerAddress
}

func (p *pipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	args, err := p.t.fault(p.target, args)
	if err != nil {
		return nil, err
	}
	return p.AppendPipeline.AppendEntries(args, resp)
}

var (
	_ raft.WithPreVote = (*Transport)(nil)
	_ raft.WithClose   = (*Transport)(nil)
)
