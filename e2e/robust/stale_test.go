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
// returns the stale value, and the same history passes. The election
// checker is shown the same way, on the same cluster: a Leader read on
// the cut follower names the leader that resigned before it was sent.
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
			el := newStaleElection(ctx, t, rec, writer)
			waitApplied(ctx, t, c, cut, max(cr.GetStat().GetCzxid(), el.applied()))

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
			el.check(ctx, t, pinned(t, c, cut), tc.broken)
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

// staleElection is the election part of TestCheckerCatchesStaleReads: a
// leads and writes before the follower is cut, then resigns; b leads and
// writes; a Leader read on the cut follower follows.
type staleElection struct {
	rec *recorder
	cl  *client.Client
	h   check.ElectionHistory
}

const staleElectionName = "stale"

// newStaleElection makes a lead and write through cl.
func newStaleElection(ctx context.Context, t *testing.T, rec *recorder, cl *client.Client) *staleElection {
	t.Helper()
	e := &staleElection{rec: rec, cl: cl, h: check.ElectionHistory{Name: staleElectionName, SessionTimeout: 10 * time.Second}}
	if _, err := cl.Create(ctx, &paddockv1.CreateRequest{Path: "/fenced"}); err != nil {
		t.Fatal(err)
	}
	e.lead(ctx, t, "a")
	return e
}

// lead opens a session for who, campaigns (it must be elected at once)
// and makes one fenced create, recording both.
func (e *staleElection) lead(ctx context.Context, t *testing.T, who string) uint64 {
	t.Helper()
	s, err := e.cl.OpenSession(ctx, &paddockv1.OpenSessionRequest{TimeoutMs: 10000})
	if err != nil {
		t.Fatal(err)
	}
	c := check.Campaign{Contender: who, Session: s.GetSessionId(), Call: e.rec.now()}
	r, err := e.cl.Campaign(ctx, &paddockv1.CampaignRequest{Name: staleElectionName, SessionId: s.GetSessionId(), TimeoutMs: 5000})
	if err != nil || !r.GetElected() {
		t.Fatalf("Campaign(%s) = %v, %v; want elected", who, r, err)
	}
	c.Return, c.Answered, c.Elected = e.rec.now(), true, true
	c.Key, c.Token, c.Zxid = r.GetCandidate().GetKey(), r.GetCandidate().GetToken(), r.GetHeader().GetZxid()
	e.h.Campaigns = append(e.h.Campaigns, c)
	w := check.FencedWrite{Contender: who, Token: c.Token, Call: e.rec.now()}
	cr, err := e.cl.Create(ctx, &paddockv1.CreateRequest{Path: "/fenced/" + who, Fence: &paddockv1.Fence{Name: "elections/" + staleElectionName, Token: c.Token}})
	if err != nil {
		t.Fatalf("fenced Create by %s = %v", who, err)
	}
	w.Return, w.Outcome, w.Path, w.Zxid = e.rec.now(), check.FenceOK, cr.GetPath(), cr.GetStat().GetCzxid()
	e.h.Writes = append(e.h.Writes, w)
	e.h.Applied = append(e.h.Applied, check.AppliedWrite{Path: w.Path, Token: w.Token, Zxid: w.Zxid})
	return c.Token
}

// applied is the zxid of the last fenced write.
func (e *staleElection) applied() uint64 { return e.h.Writes[len(e.h.Writes)-1].Zxid }

// check has a resign and b lead (the follower is cut), reads the leader
// through reader (on the cut follower) and checks the history: the
// broken variant's read must be stale and flagged, the default's not.
func (e *staleElection) check(ctx context.Context, t *testing.T, reader *client.Client, broken bool) {
	t.Helper()
	a := e.h.Campaigns[0]
	if _, err := e.cl.Resign(ctx, &paddockv1.ResignRequest{Name: staleElectionName, Token: a.Token}); err != nil {
		t.Fatalf("Resign(a) = %v", err)
	}
	b := e.lead(ctx, t, "b")
	rd := check.LeaderRead{Call: e.rec.now()}
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	r, err := reader.Leader(rctx, &paddockv1.LeaderRequest{Name: staleElectionName})
	cancel()
	rd.Return = e.rec.now()
	t.Logf("Leader(%s) on the cut follower = token %d at zxid %d, %v (a's token %d, b's %d)", staleElectionName, r.GetLeader().GetToken(), r.GetHeader().GetZxid(), err, a.Token, b)
	if err == nil {
		rd.Zxid, rd.Token = r.GetHeader().GetZxid(), r.GetLeader().GetToken()
		e.h.Reads = append(e.h.Reads, rd)
	}
	e.h.Candidates = check.ElectionCandidates(nil, "/paddock/elections/"+staleElectionName, e.h.Campaigns, nil)
	e.h.End = e.rec.now()
	vs := check.Election(e.h, electionTimeout, nil)
	switch {
	case broken && (err != nil || rd.Token != a.Token):
		t.Fatalf("the broken variant's Leader read = token %d, %v; want a's stale token %d", rd.Token, err, a.Token)
	case broken && len(vs) == 0:
		t.Fatalf("Election passed a history with a stale Leader read: %+v", e.h)
	case broken:
		t.Logf("election checker caught it: %v", vs)
	case err == nil && rd.Token != b:
		t.Fatalf("the default Leader read on a cut follower answered token %d, not b's %d", rd.Token, b)
	case len(vs) > 0:
		t.Fatalf("Election failed a valid history: %v", vs)
	}
}
