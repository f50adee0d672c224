package node

import (
	"github.com/paddock/paddock/fsm"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
)

// validate refuses, before it reaches the log, input the state machine
// would refuse anyway, and values over this node's configured limit.
func (n *Node) validate(cmd *raftv1.Command) error {
	return fsm.CheckCommand(cmd, n.cfg.MaxValueSize)
}
