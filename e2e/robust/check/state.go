package check

import (
	"bytes"
	"fmt"
	"strings"
)

// NodeState is one replica's state at the end of a run.
type NodeState struct {
	// Name identifies the node in violations.
	Name string
	// AppliedIndex is the raft index the replica had applied.
	AppliedIndex uint64
	// Hash is the hash of the replica's tree at AppliedIndex.
	Hash []byte
}

// SameState checks that every replica ended at the same applied index with
// the same state hash. Replicas that differ are reported once, listing
// every node's index and hash, so that a lagging replica (another index)
// reads apart from a diverged one (same index, another hash). It cannot
// say where the trees differ, nor catch a divergence the hash does not
// cover.
func SameState(hashes []NodeState) []Violation {
	if len(hashes) < 2 {
		return nil
	}
	first := hashes[0]
	sameIndex, sameHash := true, true
	for _, h := range hashes[1:] {
		sameIndex = sameIndex && h.AppliedIndex == first.AppliedIndex
		sameHash = sameHash && bytes.Equal(h.Hash, first.Hash)
	}
	if sameIndex && sameHash {
		return nil
	}
	nodes := make([]string, len(hashes))
	for i, h := range hashes {
		nodes[i] = fmt.Sprintf("%s at index %d hash %x", h.Name, h.AppliedIndex, h.Hash)
	}
	what := "the replicas' states diverged"
	if !sameIndex {
		what = "the replicas ended at different applied indexes"
	}
	return []Violation{{Check: "state", Detail: what + ": " + strings.Join(nodes, ", ")}}
}
