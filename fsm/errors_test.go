package fsm

import (
	"errors"
	"fmt"
	"io"
	"testing"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

var sentinels = []error{
	ErrNoNode, ErrNodeExists, ErrBadVersion, ErrNotEmpty, ErrEphemeralParent,
	ErrBadPath, ErrTooLarge, ErrBadArgument, ErrSessionExpired, ErrReservedPath,
	ErrBadEntry, ErrNoSession, ErrFeatureLevel, ErrUpgradeRequired, ErrListingChanged,
	ErrRequestIDReused, ErrFenceLost, ErrNotHeld, ErrLimitMismatch,
}

// roundTrip sends err the way a leader answers a forwarded proposal.
func roundTrip(err error) error {
	failedOp := int32(-1)
	var me *MultiError
	if errors.As(err, &me) {
		failedOp = int32(me.Index)
	}
	var msg string
	if err != nil {
		msg = err.Error()
	}
	return DecodeError(ErrorCode(err), msg, failedOp)
}

func TestErrorRoundTrip(t *testing.T) {
	codes := map[raftv1.ErrorCode]error{}
	for _, s := range sentinels {
		t.Run(s.Error(), func(t *testing.T) {
			err := fmt.Errorf("%w: /some/path", s)
			code := ErrorCode(err)
			if code == raftv1.ErrorCode_ERROR_CODE_UNSPECIFIED {
				t.Fatalf("ErrorCode(%v) = %v, want a code", err, code)
			}
			if prev, dup := codes[code]; dup {
				t.Errorf("ErrorCode(%v) = %v, also the code of %v", err, code, prev)
			}
			codes[code] = s
			back := roundTrip(err)
			if !errors.Is(back, s) {
				t.Errorf("DecodeError(%v) = %v, want it to match %v", code, back, s)
			}
			if back.Error() != err.Error() {
				t.Errorf("DecodeError(%v).Error() = %q, want %q", code, back.Error(), err.Error())
			}
			for _, other := range sentinels {
				if other != s && errors.Is(back, other) {
					t.Errorf("DecodeError(%v) matches %v too", code, other)
				}
			}
			if got := ErrorCode(back); got != code {
				t.Errorf("ErrorCode(DecodeError(%v)) = %v, want %v", code, got, code)
			}

			multi := &MultiError{Index: 3, Err: err}
			mback := roundTrip(multi)
			var me *MultiError
			if !errors.As(mback, &me) || me.Index != 3 {
				t.Fatalf("DecodeError(%v, op 3) = %#v, want a *MultiError at index 3", code, mback)
			}
			if !errors.Is(mback, s) {
				t.Errorf("DecodeError(%v, op 3) = %v, want it to match %v", code, mback, s)
			}
			if mback.Error() != multi.Error() {
				t.Errorf("DecodeError(%v, op 3).Error() = %q, want %q", code, mback.Error(), multi.Error())
			}
		})
	}
	// Every wire code but UNSPECIFIED belongs to a sentinel.
	for v, name := range raftv1.ErrorCode_name {
		code := raftv1.ErrorCode(v)
		if _, ok := codes[code]; !ok && code != raftv1.ErrorCode_ERROR_CODE_UNSPECIFIED {
			t.Errorf("wire code %s has no sentinel", name)
		}
	}
}

func TestErrorCodeEdges(t *testing.T) {
	if got := ErrorCode(nil); got != raftv1.ErrorCode_ERROR_CODE_UNSPECIFIED {
		t.Errorf("ErrorCode(nil) = %v, want UNSPECIFIED", got)
	}
	if got := ErrorCode(io.EOF); got != raftv1.ErrorCode_ERROR_CODE_UNSPECIFIED {
		t.Errorf("ErrorCode(io.EOF) = %v, want UNSPECIFIED", got)
	}
	if err := DecodeError(raftv1.ErrorCode_ERROR_CODE_UNSPECIFIED, "", -1); err != nil {
		t.Errorf("DecodeError(UNSPECIFIED) = %v, want nil", err)
	}
	// A code from a newer build is not lost: it decodes as a bad entry
	// and keeps its message.
	err := DecodeError(raftv1.ErrorCode(999), "fsm: something new", -1)
	if !errors.Is(err, ErrBadEntry) || err.Error() != "fsm: something new" {
		t.Errorf("DecodeError(999) = %v, want %v with the message kept", err, ErrBadEntry)
	}
}

// TestErrorRoundTripFromApply sends real Apply errors over the wire form.
func TestErrorRoundTripFromApply(t *testing.T) {
	h, _ := treeFixture(t)
	tests := []struct {
		name string
		cmd  *raftv1.Command
		want error
		op   int
	}{
		{"create exists", cmdCreate("/a", nil), ErrNodeExists, -1},
		{"set bad version", cmdSet("/a", nil, int32p(5)), ErrBadVersion, -1},
		{"multi", cmdMulti(opCheck("/a", 0), opCreate(&paddockv1.CreateRequest{Path: "/x/y"})), ErrNoNode, 1},
		{"entry that stops the replica", nil, ErrUpgradeRequired, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var res *Result
			if tc.cmd == nil {
				res = h.applyRaw([]byte{0xff, 0xff})
			} else {
				res = h.apply(tc.cmd)
			}
			back := roundTrip(res.Err)
			if !errors.Is(back, tc.want) || back.Error() != res.Err.Error() {
				t.Errorf("round trip of %v = %v, want %v with the same message", res.Err, back, tc.want)
			}
			var me *MultiError
			if got := errors.As(back, &me); got != (tc.op >= 0) || (got && me.Index != tc.op) {
				t.Errorf("round trip of %v = %#v, want MultiError %v at %d", res.Err, back, tc.op >= 0, tc.op)
			}
		})
	}
}

func int32p(v int32) *int32 { return &v }
