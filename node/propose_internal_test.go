package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// TestProposeEncodeStamped: a forwarded command with the leader's stamps
// appended decodes to the command the leader checked and stamped, also
// when the follower's encoding carries stamps of its own (a command it
// stamped as leader, then forwarded when leadership moved).
func TestProposeEncodeStamped(t *testing.T) {
	create := &raftv1.Command_Create{Create: &paddockv1.CreateRequest{Path: "/a", Data: []byte("v")}}
	tests := []struct {
		name string
		sent *raftv1.Command // as the follower encoded it
	}{
		{"unstamped", &raftv1.Command{RequestId: []byte("0123456789abcdef0123456789abcdef"), Op: create}},
		{"stale stamps", &raftv1.Command{TimeUnixMs: 1 << 40, FeatureLevel: 9, Op: create}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := proto.Marshal(tt.sent)
			if err != nil {
				t.Fatal(err)
			}
			for _, stamp := range []struct {
				time  int64
				level uint32
			}{{1_700_000_000_000, 1}, {5, 0}} {
				want := proto.Clone(tt.sent).(*raftv1.Command)
				want.TimeUnixMs, want.FeatureLevel = stamp.time, stamp.level
				data, err := encodeStamped(want, raw)
				if err != nil {
					t.Fatal(err)
				}
				var got raftv1.Command
				if err := proto.Unmarshal(data, &got); err != nil {
					t.Fatalf("decode: %v", err)
				}
				if !proto.Equal(&got, want) {
					t.Errorf("decoded %v, want %v", &got, want)
				}
			}
		})
	}
}

// TestProposeApplySlots: with every slot taken (raft far behind), a
// command waits for one until its context ends, or for RequestTimeout if
// the context has no deadline, and gets one as soon as one is released.
func TestProposeApplySlots(t *testing.T) {
	n := &Node{applySlots: make(chan struct{}, 1), cfg: Config{RequestTimeout: 50 * time.Millisecond}}
	if err := n.acquireSlot(context.Background()); err != nil {
		t.Fatalf("acquireSlot with a slot free: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := n.acquireSlot(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("acquireSlot(canceled) with no slot free = %v, want %v", err, context.Canceled)
	}
	if err := n.acquireSlot(context.Background()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("acquireSlot(no deadline) with no slot free = %v, want %v", err, context.DeadlineExceeded)
	}
	n.cfg.RequestTimeout = time.Minute // the release below comes first
	got := make(chan error, 1)
	go func() { got <- n.acquireSlot(context.Background()) }()
	n.releaseSlot()
	if err := <-got; err != nil {
		t.Errorf("acquireSlot once a slot is released: %v", err)
	}
}

// TestProposeCallWait: a write whose context has no deadline waits
// RequestTimeout (and at most a tick more), then fails with
// DeadlineExceeded; one whose context ends first gets its context's error;
// a value that comes in time is returned.
func TestProposeCallWait(t *testing.T) {
	const timeout = 100 * time.Millisecond
	n := &Node{cfg: Config{RequestTimeout: timeout}, ticks: newCoarseTicks(timeout / 8)}
	never := make(chan int)

	c := n.newCall(context.Background())
	start := time.Now()
	if _, err := wait(&c, never); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("wait(no deadline) = %v, want %v", err, context.DeadlineExceeded)
	}
	if waited := time.Since(start); waited < timeout {
		t.Errorf("wait(no deadline) returned after %v, want at least %v", waited, timeout)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c = n.newCall(ctx)
	if _, err := wait(&c, never); !errors.Is(err, context.Canceled) {
		t.Errorf("wait(canceled) = %v, want %v", err, context.Canceled)
	}

	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, ctx := range []context.Context{ctx, context.Background()} {
		c = n.newCall(ctx)
		ch := make(chan int, 1)
		ch <- 7
		if v, err := wait(&c, ch); v != 7 || err != nil {
			t.Errorf("wait(ready) = %v, %v, want 7, nil", v, err)
		}
		c.release()
	}
}
