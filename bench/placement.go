package bench

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrNoLeader is Cluster.Leader's error while no node leads the cluster,
// or while more than one claims to (a deposed leader that has not heard
// of its successor yet): an election, or a majority down.
var ErrNoLeader = errors.New("bench: no leader")

// Placement describes where the runner opens its clients, for reports.
const Placement = "round-robin starting at a follower: client i of every row on node (leader + 1 + i) mod nodes, numbered from 0"

const (
	// leaderQueryTimeout bounds FindLeader's question to one node, so a
	// stopped or stuck node costs that long at most.
	leaderQueryTimeout = 2 * time.Second
	// leaderLimit bounds the runner's wait for a leader before a row.
	leaderLimit = 60 * time.Second
)

// FindLeader asks each of n nodes in turn whether it leads, each question
// bounded by leaderQueryTimeout, and returns the one that does. A node
// that does not answer (stopped, unreachable) is passed over. When none
// leads, or more than one claims to, it returns an error wrapping
// ErrNoLeader and the nodes' errors; the caller asks again later.
// Cluster.Leader implementations share it.
func FindLeader(ctx context.Context, n int, isLeader func(ctx context.Context, node int) (bool, error)) (int, error) {
	var (
		leaders []int
		errs    []error
	)
	for i := range n {
		qctx, cancel := context.WithTimeout(ctx, leaderQueryTimeout)
		ok, err := isLeader(qctx, i)
		cancel()
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("node %d: %w", i, err))
		case ok:
			leaders = append(leaders, i)
		}
	}
	switch {
	case len(leaders) == 1:
		return leaders[0], nil
	case ctx.Err() != nil:
		return -1, ctx.Err()
	case len(leaders) > 1:
		return -1, fmt.Errorf("%w: nodes %v all claim to lead", ErrNoLeader, leaders)
	case len(errs) > 0:
		return -1, fmt.Errorf("%w among %d nodes: %w", ErrNoLeader, n, errors.Join(errs...))
	}
	return -1, fmt.Errorf("%w among %d nodes", ErrNoLeader, n)
}

// nodeFor is the node of client i of the pool when leader leads a cluster
// of nodes nodes: round-robin starting at the node after the leader, so
// that one client is on a follower (as two of three clients of a
// three-node cluster would be), and extra clients go to the followers
// before the leader (16 clients on three nodes: 6, 5 and 5 on the
// leader). A leader that is none of the nodes (-1) starts at node 0.
func nodeFor(i, leader, nodes int) int {
	return (leader + 1 + i) % nodes
}

// place finds the cluster's leader before a row, waiting up to
// leaderLimit for one, and when it is not the node the pool's clients
// were placed around, closes them: pool then reopens them around the new
// leader, so that every row runs with the same placement even if an
// election happened during an earlier one.
func (r *runner) place(ctx context.Context) error {
	leader := -1
	err := pollUntil(ctx, leaderLimit, time.Duration(r.c.Nodes()+1)*leaderQueryTimeout, func(ctx context.Context) (bool, error) {
		l, err := r.c.Leader(ctx)
		leader = l
		return err == nil, err
	})
	if err != nil {
		return fmt.Errorf("find the leader: %w", err)
	}
	if n := r.c.Nodes(); leader < -1 || leader >= n {
		return fmt.Errorf("bench: %s: Leader() = %d, want -1 to %d", r.c.Name(), leader, n-1)
	}
	if leader == r.leader && r.placed {
		return nil
	}
	if r.placed {
		r.logf("leader moved from node %d to node %d: reopening %d clients around it", r.leader, leader, len(r.clients))
		r.closeClients()
	} else {
		r.logf("leader is node %d; clients placed %s", leader, Placement)
	}
	r.leader, r.placed = leader, true
	return nil
}
