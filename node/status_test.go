package node_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/paddock/paddock/node/nodetest"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// stateHashes asks every running node of c for its state hash and returns
// the responses, in node order.
func stateHashes(c *nodetest.Cluster) []*paddockv1.StatusResponse {
	var out []*paddockv1.StatusResponse
	for _, i := range c.Running() {
		out = append(out, c.Node(i).Status(&paddockv1.StatusRequest{StateHash: true}))
	}
	return out
}

// TestStatusStateHash: after writes through every node, the three nodes
// report the same state hash at the same index, the hash moves with the
// next write, and over gRPC the hash is there only when asked for.
func TestStatusStateHash(t *testing.T) {
	c := newCluster(t, 3)
	c.WaitLeader(t)
	for i := range 30 {
		mustPropose(t, c.Node(i%3), createCmd(fmt.Sprintf("/h-%d", i), fmt.Appendf(nil, "v%d", i)))
	}

	var agreed *paddockv1.StatusResponse
	eventually(t, waitTimeout, func() error {
		sts := stateHashes(c)
		first := sts[0]
		if len(first.GetStateHash()) != 32 || first.GetStateHashIndex() == 0 {
			return fmt.Errorf("%s: state hash %x at index %d, want 32 bytes at an index", first.GetId(), first.GetStateHash(), first.GetStateHashIndex())
		}
		for _, st := range sts[1:] {
			if st.GetStateHashIndex() != first.GetStateHashIndex() {
				return fmt.Errorf("%s hashed at index %d, %s at %d", st.GetId(), st.GetStateHashIndex(), first.GetId(), first.GetStateHashIndex())
			}
			// Same index, different state: a divergence, not a lag.
			if !bytes.Equal(st.GetStateHash(), first.GetStateHash()) {
				t.Fatalf("at index %d, %s has state hash %x, %s has %x", st.GetStateHashIndex(), st.GetId(), st.GetStateHash(), first.GetId(), first.GetStateHash())
			}
		}
		agreed = first
		return nil
	})

	res := mustPropose(t, c.Node(0), setCmd("/h-0", []byte("changed")))
	eventually(t, waitTimeout, func() error {
		for _, st := range stateHashes(c) {
			if st.GetStateHashIndex() < res.Index {
				return fmt.Errorf("%s hashed at index %d, want %d or later", st.GetId(), st.GetStateHashIndex(), res.Index)
			}
			if bytes.Equal(st.GetStateHash(), agreed.GetStateHash()) {
				t.Fatalf("%s: state hash at index %d = the hash at %d, want it changed by the write at %d", st.GetId(), st.GetStateHashIndex(), agreed.GetStateHashIndex(), res.Index)
			}
		}
		return nil
	})

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for i := range c.Size() {
		id := c.ID(i)
		conn, err := grpc.NewClient(c.GRPCAddr(i), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		cs := paddockv1.NewClusterServiceClient(conn)
		plain, err := cs.Status(ctx, &paddockv1.StatusRequest{})
		if err != nil {
			t.Fatalf("Status on %s: %v", id, err)
		}
		if plain.GetStateHash() != nil || plain.GetStateHashIndex() != 0 || plain.GetAppliedIndex() == 0 {
			t.Errorf("Status on %s without state_hash = hash %x at index %d, applied %d; want no hash, no index, an applied index",
				id, plain.GetStateHash(), plain.GetStateHashIndex(), plain.GetAppliedIndex())
		}
		// Polled: an entry applied between the call and the node's own
		// hash (a new leader's barrier) would move the index.
		eventually(t, waitTimeout, func() error {
			hashed, err := cs.Status(ctx, &paddockv1.StatusRequest{StateHash: true})
			if err != nil {
				t.Fatalf("Status(state_hash) on %s: %v", id, err)
			}
			own, idx := c.Node(i).FSM().StateHashAndIndex()
			if idx != hashed.GetStateHashIndex() {
				return fmt.Errorf("%s: Status(state_hash) at index %d, the node has since applied %d", id, hashed.GetStateHashIndex(), idx)
			}
			if !bytes.Equal(hashed.GetStateHash(), own[:]) {
				t.Fatalf("Status(state_hash) on %s = %x at index %d, want the node's %x", id, hashed.GetStateHash(), idx, own)
			}
			return nil
		})
	}
}
