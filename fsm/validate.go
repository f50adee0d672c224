package fsm

import (
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// CheckCommand runs the checks that need no state (paths, sizes, argument
// ranges), so a node can refuse bad input before it reaches the log.
// maxData is the node's value limit (at most MaxDataSize). Apply runs the
// same checks again: the log is the authority.
func CheckCommand(cmd *raftv1.Command, maxData int) error {
	if err := checkRequestID(cmd.GetRequestId()); err != nil {
		return err
	}
	switch op := cmd.GetOp().(type) {
	case *raftv1.Command_Create:
		return checkCreate(op.Create, maxData)
	case *raftv1.Command_Set:
		return checkSet(op.Set, maxData)
	case *raftv1.Command_Delete:
		if err := checkWritable(op.Delete.GetPath(), false); err != nil {
			return err
		}
		return checkFenceArg(op.Delete.GetFence())
	case *raftv1.Command_DeleteIdle:
		// Leader-built (a lock-delay placeholder and a line's container
		// are below /paddock).
		return ValidatePath(op.DeleteIdle.GetPath(), false)
	case *raftv1.Command_Contend:
		if _, err := checkContendArgs(op.Contend); err != nil {
			return err
		}
		return checkSize(op.Contend.GetValue(), maxData)
	case *raftv1.Command_Withdraw:
		_, err := ContentionDir(op.Withdraw.GetKind(), op.Withdraw.GetName())
		return err
	case *raftv1.Command_Proclaim:
		if err := checkContentionName(op.Proclaim.GetName()); err != nil {
			return err
		}
		if op.Proclaim.GetToken() == 0 {
			return errorf(ErrBadArgument, "proclaim in %s without a token", op.Proclaim.GetName())
		}
		return checkSize(op.Proclaim.GetValue(), maxData)
	case *raftv1.Command_Multi:
		if err := checkFenceArg(op.Multi.GetFence()); err != nil {
			return err
		}
		for i, o := range op.Multi.GetOps() {
			if err := checkOp(o, maxData); err != nil {
				return &MultiError{Index: i, Err: err}
			}
		}
		return nil
	case *raftv1.Command_OpenSession:
		if op.OpenSession.GetTimeoutMs() <= 0 {
			return errorf(ErrBadArgument, "session timeout %dms", op.OpenSession.GetTimeoutMs())
		}
		if d := op.OpenSession.GetLockDelayMs(); d < 0 || d > MaxTTL.Milliseconds() {
			return errorf(ErrBadArgument, "lock delay %dms: want 0 to %dms", d, MaxTTL.Milliseconds())
		}
		return nil
	case *raftv1.Command_WebSessionWrite:
		// The size against the agent's limit is the node's check.
		return checkWebSessionWrite(op.WebSessionWrite)
	case *raftv1.Command_WebSessionDelete:
		return checkWebSessionID(op.WebSessionDelete.GetId())
	case nil:
		return errorf(ErrBadArgument, "empty command")
	}
	return nil
}

func checkOp(o *paddockv1.Op, maxData int) error {
	switch op := o.GetOp().(type) {
	case *paddockv1.Op_Check:
		return ValidatePath(op.Check.GetPath(), false)
	case *paddockv1.Op_Create:
		return checkCreate(op.Create, maxData)
	case *paddockv1.Op_Set:
		return checkSet(op.Set, maxData)
	case *paddockv1.Op_Delete:
		if err := checkWritable(op.Delete.GetPath(), false); err != nil {
			return err
		}
		return checkFenceArg(op.Delete.GetFence())
	}
	return errorf(ErrBadArgument, "empty op")
}

func checkCreate(req *paddockv1.CreateRequest, maxData int) error {
	if err := checkWritable(req.GetPath(), req.GetSequential()); err != nil {
		return err
	}
	if _, ok := paddockv1.NodeType_name[int32(req.GetType())]; !ok {
		return errorf(ErrBadArgument, "unknown node type %d", req.GetType())
	}
	if req.GetType() == paddockv1.NodeType_NODE_TYPE_EPHEMERAL && req.GetSessionId() == 0 {
		return errorf(ErrBadArgument, "ephemeral node without a session")
	}
	if err := checkNodeType(req); err != nil {
		return err
	}
	if err := checkFenceArg(req.GetFence()); err != nil {
		return err
	}
	return checkSize(req.GetData(), maxData)
}

func checkSet(req *paddockv1.SetRequest, maxData int) error {
	if err := checkWritable(req.GetPath(), false); err != nil {
		return err
	}
	if err := checkFenceArg(req.GetFence()); err != nil {
		return err
	}
	return checkSize(req.GetData(), maxData)
}

func checkSize(data []byte, maxData int) error {
	if len(data) > min(maxData, MaxDataSize) {
		return errorf(ErrTooLarge, "%d bytes, limit %d", len(data), min(maxData, MaxDataSize))
	}
	return nil
}
