package robust

import (
	"context"
	"testing"
	"time"

	"github.com/paddock/paddock/client"
	"github.com/paddock/paddock/e2e/robust/check"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// TestCheckerCatchesStaleReads shows that the linearizability checker can
// fail. With the hidden --unsafe-local-reads flag, a follower cut off from
// the leader serves a linearizable read from its own stale state, and the
// checker reports the history; without the flag the same read never
// returns the stale value, and the same history passes.
func TestCheckerCatchesStaleReads(t *testing.T) {
	needHarness(t)
	for _, tc := range []struct {
		name   string
		args   []string
		broken bool
	}{
		{"unsafe-local-reads", []string{"--unsafe-local-reads"}, true},
		{"default", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			c, err := Start(ctx, Options{Bin: paddockBin, Dir: t.TempDir(), ExtraArgs: tc.args, Logf: t.Logf})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			leader, err := c.Leader(ctx)
			if err != nil {
				t.Fatal(err)
			}
			cut := (leader + 1) % c.N()
			writer := pinned(t, c, leader)
			rec := newRecorder()
			const key = "/k"

			// The old value reaches every node before the follower is cut.
			op := check.RegisterOp{Client: 1, Key: key, Kind: check.Create, Value: "old", ExpectVersion: -1, Call: rec.now()}
			cr, err := writer.Create(ctx, &paddockv1.CreateRequest{Path: key, Data: []byte("old")})
			if err != nil {
				t.Fatalf("Create(%s) = %v", key, err)
			}
			op.Return, op.Outcome = rec.now(), check.OK
			ops := []check.RegisterOp{op}
			waitApplied(ctx, t, c, cut, cr.GetStat().GetCzxid())

			if err := c.Isolate(cut); err != nil {
				t.Fatal(err)
			}
			op = check.RegisterOp{Client: 1, Key: key, Kind: check.Set, Value: "new", ExpectVersion: -1, Call: rec.now()}
			sr, err := writer.Set(ctx, &paddockv1.SetRequest{Path: key, Data: []byte("new")})
			if err != nil {
				t.Fatalf("Set(%s) = %v", key, err)
			}
			op.Return, op.Outcome, op.Version = rec.now(), check.OK, int64(sr.GetStat().GetVersion())
			ops = append(ops, op)

			// A reader that never saw the write asks the cut follower.
			reader := pinned(t, c, cut)
			op = check.RegisterOp{Client: 2, Key: key, Kind: check.Get, ExpectVersion: -1, Call: rec.now()}
			rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
			gr, readErr := reader.Get(rctx, &paddockv1.GetRequest{Path: key})
			rcancel()
			op.Return, op.Outcome = rec.now(), outcome(readErr)
			op.Value, op.Version = string(gr.GetData()), int64(gr.GetStat().GetVersion())
			if op.Outcome != check.Unknown {
				ops = append(ops, op)
			}
			t.Logf("Get(%s) on the cut follower n%d = %q, %v", key, cut+1, op.Value, readErr)

			ok, vs, err := check.Linearizable(ops, 10*time.Second, "")
			if err != nil {
				t.Fatalf("Linearizable: %v", err)
			}
			switch {
			case tc.broken && (readErr != nil || op.Value != "old"):
				t.Fatalf("the broken variant's read = %q, %v; want the stale %q", op.Value, readErr, "old")
			case tc.broken && ok:
				t.Fatalf("Linearizable passed a history with a stale read: %+v", ops)
			case tc.broken:
				t.Logf("checker caught it: %v", vs)
			case op.Outcome != check.Unknown && op.Value == "old":
				t.Fatalf("the default read on a cut follower returned the stale %q", op.Value)
			case !ok:
				t.Fatalf("Linearizable failed a valid history: %v", vs)
			}
		})
	}
}

// pinned is a client of node i alone.
func pinned(t *testing.T, c *Cluster, i int) *client.Client {
	t.Helper()
	cl, err := client.New(context.Background(), client.Config{Endpoints: []string{c.Endpoint(i)}, RetryTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// waitApplied waits until node i has applied index.
func waitApplied(ctx context.Context, t *testing.T, c *Cluster, i int, index uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := c.Status(ctx, i)
		if err == nil && st.GetAppliedIndex() >= index {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("n%d has not applied index %d after 10s: %v, %v", i+1, index, st, err)
		}
		sleep(ctx, 20*time.Millisecond)
	}
}
