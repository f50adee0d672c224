package node

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// registerLoop records this node's client addresses and the feature
// level it supports in the replicated state, and again whenever they
// differ from what is recorded (a restart with new addresses, or an
// upgraded binary).
func (n *Node) registerLoop(ctx context.Context) {
	defer n.wg.Done()
	want := &raftv1.RegisterMember{
		Id: n.cfg.ID, RaftAddr: string(n.trans.LocalAddr()),
		GrpcAddr: n.cfg.GRPCAddr, HttpAddr: n.cfg.HTTPAddr,
		FeatureLevel: n.cfg.FeatureLevel,
	}
	for {
		if have, ok := n.fsm.Member(n.cfg.ID); ok && proto.Equal(have, want) {
			// Re-check now and then: a snapshot restore may change it.
			if !sleepCtx(ctx, 5*time.Second) {
				return
			}
			continue
		}
		cmd := &raftv1.Command{Op: &raftv1.Command_RegisterMember{RegisterMember: proto.CloneOf(want)}}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := n.Propose(pctx, cmd)
		cancel()
		if err != nil && ctx.Err() == nil {
			n.log.Debug("member registration pending", "error", err)
		}
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return
		}
	}
}

// Status describes this node. When req asks for the state hash, it also
// digests the whole state (fsm.StateHashAndIndex, a pass over the tree)
// and reports the digest with the applied index it was taken at.
func (n *Node) Status(req *paddockv1.StatusRequest) *paddockv1.StatusResponse {
	_, leader := n.raft.LeaderWithID()
	znodes, sessions := n.fsm.Counts()
	stats := n.raft.Stats()
	commit, _ := strconv.ParseUint(stats["commit_index"], 10, 64)
	resp := &paddockv1.StatusResponse{
		Header:       n.ReadHeader(),
		Id:           n.cfg.ID,
		Role:         role(n.raft.State()),
		LeaderId:     string(leader),
		Term:         n.raft.CurrentTerm(),
		CommitIndex:  commit,
		AppliedIndex: n.fsm.AppliedIndex(),
		Znodes:       int64(znodes),
		Sessions:     int64(sessions),
		Ready:        n.Ready(),
	}
	if req.GetStateHash() {
		hash, index := n.fsm.StateHashAndIndex()
		resp.StateHash, resp.StateHashIndex = hash[:], index
	}
	return resp
}

func role(s raft.RaftState) paddockv1.Role {
	switch s {
	case raft.Follower:
		return paddockv1.Role_ROLE_FOLLOWER
	case raft.Candidate:
		return paddockv1.Role_ROLE_CANDIDATE
	case raft.Leader:
		return paddockv1.Role_ROLE_LEADER
	}
	return paddockv1.Role_ROLE_SHUTDOWN
}

// LeaderHTTPAddr is the HTTP address the current leader registered (its
// --http-addr), or "" when no leader is known or it registered none.
// HTTP answers carry it, so that a client can send its next calls to the
// leader instead of through a follower that forwards them.
//
// Every HTTP answer asks, so a registered address is cached per leader
// for up to leaderHTTPFresh (a re-registration under a new address is
// seen within that), instead of taking the state machine's lock each
// time; a leader not registered yet is looked up again each time.
func (n *Node) LeaderHTTPAddr() string {
	_, id := n.raft.LeaderWithID()
	if id == "" {
		return ""
	}
	now := time.Now()
	if c := n.leaderHTTP.Load(); c != nil && c.id == id && now.Sub(c.at) < leaderHTTPFresh {
		return c.addr
	}
	m, ok := n.fsm.Member(string(id))
	if !ok || m.GetHttpAddr() == "" {
		return "" // not registered yet: asked again next time
	}
	addr := m.GetHttpAddr()
	n.leaderHTTP.Store(&leaderHTTP{id: id, addr: addr, at: now})
	return addr
}

// leaderHTTPFresh is how long LeaderHTTPAddr trusts its cached answer
// for the same leader.
const leaderHTTPFresh = time.Second

// leaderHTTP is LeaderHTTPAddr's cached answer: leader id's registered
// HTTP address as read at at.
type leaderHTTP struct {
	id   raft.ServerID
	addr string
	at   time.Time
}

// Members lists the raft configuration joined with the registered client
// addresses.
func (n *Node) Members(ctx context.Context) ([]*paddockv1.Member, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	_, leader := n.raft.LeaderWithID()
	var out []*paddockv1.Member
	for _, s := range f.Configuration().Servers {
		m := &paddockv1.Member{
			Id: string(s.ID), RaftAddr: string(s.Address),
			Voter: s.Suffrage == raft.Voter, Leader: s.ID == leader,
		}
		if reg, ok := n.fsm.Member(string(s.ID)); ok {
			m.GrpcAddr, m.HttpAddr = reg.GetGrpcAddr(), reg.GetHttpAddr()
			m.FeatureLevel = reg.GetFeatureLevel()
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b *paddockv1.Member) int {
		if a.Id < b.Id {
			return -1
		}
		if a.Id > b.Id {
			return 1
		}
		return 0
	})
	return out, nil
}
