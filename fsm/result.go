package fsm

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// EncodeResult gives res its wire form: the form a leader sends back to
// the follower that forwarded a command, and the form the request id table
// keeps. A failed Multi keeps the failing op's index and error apart, so
// DecodeResult can rebuild the MultiError.
func EncodeResult(res *Result) (*raftv1.ProposeResponse, error) {
	out := &raftv1.ProposeResponse{}
	if _, err := encodeResult(out, res, nil); err != nil {
		return nil, err
	}
	return out, nil
}

// encodeResult fills out, which is empty, as EncodeResult does, with the
// response encoded into buf's array (grown and returned: the apply
// goroutine's scratch space, which out then aliases).
func encodeResult(out *raftv1.ProposeResponse, res *Result, buf []byte) ([]byte, error) {
	out.Index = res.Index
	if res.Err != nil {
		out.ErrorCode = ErrorCode(res.Err)
		out.ErrorMessage = res.Err.Error()
		out.FailedOp = -1
		var me *MultiError
		if errors.As(res.Err, &me) {
			out.FailedOp = int32(me.Index)
			out.ErrorMessage = me.Err.Error()
		}
		return buf, nil
	}
	if res.Resp != nil {
		b, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend(buf[:0], res.Resp)
		if err != nil {
			return buf, fmt.Errorf("fsm: encode result: %w", err)
		}
		if len(b) > 0 {
			out.Response = b
		}
		return b, nil
	}
	return buf, nil
}

// DecodeResult rebuilds a Result from its wire form. cmd is the command
// that produced it: its operation says which response message to decode.
func DecodeResult(cmd *raftv1.Command, pr *raftv1.ProposeResponse) (*Result, error) {
	res := &Result{Index: pr.GetIndex()}
	if err := DecodeError(pr.GetErrorCode(), pr.GetErrorMessage(), pr.GetFailedOp()); err != nil {
		res.Err = err
		return res, nil
	}
	if m := newResponse(cmd); m != nil {
		if err := proto.Unmarshal(pr.GetResponse(), m); err != nil {
			return nil, fmt.Errorf("fsm: decode result: %w", err)
		}
		res.Resp = m
	}
	return res, nil
}

// newResponse returns an empty response message of the type cmd produces,
// nil for the commands that produce none.
func newResponse(cmd *raftv1.Command) proto.Message {
	switch cmd.GetOp().(type) {
	case *raftv1.Command_Create:
		return &paddockv1.CreateResponse{}
	case *raftv1.Command_Set:
		return &paddockv1.SetResponse{}
	case *raftv1.Command_Delete, *raftv1.Command_DeleteIdle:
		return &paddockv1.DeleteResponse{}
	case *raftv1.Command_Multi:
		return &paddockv1.MultiResponse{}
	case *raftv1.Command_OpenSession:
		return &paddockv1.OpenSessionResponse{}
	case *raftv1.Command_CloseSession:
		return &paddockv1.CloseSessionResponse{}
	case *raftv1.Command_Contend:
		return &raftv1.ContendResponse{}
	case *raftv1.Command_Proclaim:
		return &paddockv1.ProclaimResponse{}
	case *raftv1.Command_WebSessionWrite:
		return &paddockv1.WriteWebSessionResponse{}
	case *raftv1.Command_WebSessionDelete:
		return &paddockv1.DestroyWebSessionResponse{}
	}
	return nil
}
