package rpc_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock/paddock/client"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
	"github.com/paddock/paddock/rpc"
)

// checkLeaks makes t fail if it leaves a goroutine behind once its
// cleanups (cluster, clients) have run. Call it first.
func checkLeaks(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		http.DefaultClient.CloseIdleConnections()
		goleak.VerifyNone(t, before)
	})
}

// newClient returns a Go client of nodes, trying first first.
func newClient(t *testing.T, nodes []*served, first int) *client.Client {
	t.Helper()
	var eps []string
	for i := range nodes {
		eps = append(eps, nodes[(first+i)%len(nodes)].addr)
	}
	c, err := client.New(context.Background(), client.Config{Endpoints: eps})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// openSession opens a session (not kept alive) through c.
func openSession(t *testing.T, ctx context.Context, c *client.Client, timeout time.Duration) uint64 {
	t.Helper()
	resp, err := c.OpenSession(ctx, &paddockv1.OpenSessionRequest{TimeoutMs: timeout.Milliseconds()})
	if err != nil {
		t.Fatalf("OpenSession: %v", err)
	}
	return resp.GetSessionId()
}

// wakeups sums paddock_election_wakeups_total over the running nodes.
func wakeups(t *testing.T, nodes []*served) float64 {
	t.Helper()
	var sum float64
	for _, s := range nodes {
		mfs, err := s.n.Metrics().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "paddock_election_wakeups_total" {
				for _, m := range mf.GetMetric() {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

// TestCampaignHundredContenders: 100 contenders campaign at once through
// the Go client against three nodes; each, once elected, resigns. Every
// one leads in turn, never two at once, and each leader change wakes
// about one waiter (herd-free), not the whole line.
func TestCampaignHundredContenders(t *testing.T) {
	checkLeaks(t)
	nodes := threeNodes(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	clients := []*client.Client{newClient(t, nodes, 0), newClient(t, nodes, 1), newClient(t, nodes, 2)}
	const n = 100
	sessions := make([]uint64, n)
	for i := range sessions {
		sessions[i] = openSession(t, ctx, clients[i%3], 15*time.Second)
	}
	before := wakeups(t, nodes)
	var leading atomic.Int32
	tokens := make(chan uint64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[i%3]
			r, err := c.Campaign(ctx, &paddockv1.CampaignRequest{Name: "herd", SessionId: sessions[i], Value: []byte(strconv.Itoa(i))})
			if err != nil || !r.GetElected() {
				t.Errorf("Campaign %d = %v, %v", i, r, err)
				return
			}
			if k := leading.Add(1); k != 1 {
				t.Errorf("%d leaders at once", k)
			}
			tokens <- r.GetCandidate().GetToken()
			leading.Add(-1)
			if _, err := c.Resign(ctx, &paddockv1.ResignRequest{Name: "herd", Token: r.GetCandidate().GetToken()}); err != nil {
				t.Errorf("Resign %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	close(tokens)
	seen := map[uint64]bool{}
	for tok := range tokens {
		seen[tok] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct leaders, want %d", len(seen), n)
	}
	// 100 leaders, 99 handovers to a waiting candidate: a herd would wake
	// the whole line at each (about 5000 in all).
	got := wakeups(t, nodes) - before
	t.Logf("%d leader changes woke %v waiters", n-1, got)
	if got > 2*n {
		t.Errorf("%d leader changes woke %v waiters, want about one each", n-1, got)
	}
}

// TestCampaignRaftLeaderStops: candidates wait on followers while the
// raft leader's node stops; their Campaigns go on (the client retries
// them where they were cut off, in the same place in line), and after
// the leader resigns the next one is elected and confirmed by Leader.
func TestCampaignRaftLeaderStops(t *testing.T) {
	checkLeaks(t)
	nodes := threeNodes(t)
	leader, _ := leaderAndFollower(t, nodes)
	var followers []int
	for i, s := range nodes {
		if s != leader {
			followers = append(followers, i)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ca := newClient(t, nodes, followers[0])
	cb := newClient(t, nodes, followers[0])
	cc := newClient(t, nodes, followers[1])
	sa := openSession(t, ctx, ca, 10*time.Second)
	sb := openSession(t, ctx, cb, 10*time.Second)
	sc := openSession(t, ctx, cc, 10*time.Second)
	ra, err := ca.Campaign(ctx, &paddockv1.CampaignRequest{Name: "fail", SessionId: sa})
	if err != nil || !ra.GetElected() {
		t.Fatalf("Campaign(a) = %v, %v", ra, err)
	}
	type outcome struct {
		r   *paddockv1.CampaignResponse
		err error
	}
	campaignAsync := func(c *client.Client, s uint64) <-chan outcome {
		out := make(chan outcome, 1)
		go func() {
			r, err := c.Campaign(ctx, &paddockv1.CampaignRequest{Name: "fail", SessionId: s})
			out <- outcome{r, err}
		}()
		return out
	}
	outB := campaignAsync(cb, sb)
	waitCandidates(t, ctx, ca, "fail", 2)
	outC := campaignAsync(cc, sc)
	waitCandidates(t, ctx, ca, "fail", 3)

	leader.stop()
	// a resigns through the remaining nodes: b is next.
	if _, err := ca.Resign(ctx, &paddockv1.ResignRequest{Name: "fail", Token: ra.GetCandidate().GetToken()}); err != nil {
		t.Fatalf("Resign(a): %v", err)
	}
	var rb *paddockv1.CampaignResponse
	select {
	case o := <-outB:
		if o.err != nil || !o.r.GetElected() {
			t.Fatalf("Campaign(b) = %v, %v; want elected", o.r, o.err)
		}
		rb = o.r
	case <-ctx.Done():
		t.Fatal("b never elected")
	}
	select {
	case o := <-outC:
		t.Fatalf("Campaign(c) = %v, %v while b leads", o.r, o.err)
	default:
	}
	l, err := cc.Leader(ctx, &paddockv1.LeaderRequest{Name: "fail"})
	if err != nil || l.GetLeader().GetToken() != rb.GetCandidate().GetToken() || l.GetCandidates() != 2 {
		t.Fatalf("Leader = %v, %v; want b with 2 candidates", l, err)
	}
	if _, err := cb.Resign(ctx, &paddockv1.ResignRequest{Name: "fail", Token: rb.GetCandidate().GetToken()}); err != nil {
		t.Fatalf("Resign(b): %v", err)
	}
	select {
	case o := <-outC:
		if o.err != nil || !o.r.GetElected() {
			t.Fatalf("Campaign(c) = %v, %v; want elected", o.r, o.err)
		}
	case <-ctx.Done():
		t.Fatal("c never elected")
	}
}

// waitCandidates waits until the election has want candidates.
func waitCandidates(t *testing.T, ctx context.Context, c *client.Client, name string, want int32) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		l, err := c.Leader(ctx, &paddockv1.LeaderRequest{Name: name})
		if err == nil && l.GetCandidates() == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Leader(%s) = %v, %v; want %d candidates", name, l, err, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLockSemaphore: a lock of limit 2 has two holders and a waiter;
// another limit is refused; TryAcquire on the busy lock leaves nothing;
// GetLock lists holders and waiters; a release lets the waiter hold.
func TestLockSemaphore(t *testing.T) {
	checkLeaks(t)
	nodes := threeNodes(t)
	leader, follower := leaderAndFollower(t, nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	locks := paddockv1.NewLockServiceClient(follower.conn)
	sess := paddockv1.NewSessionServiceClient(leader.conn)
	var ids []uint64
	for range 4 {
		r, err := sess.OpenSession(ctx, &paddockv1.OpenSessionRequest{TimeoutMs: 10000})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.GetSessionId())
	}
	var held []*paddockv1.Contender
	for i := range 2 {
		r, err := locks.Acquire(ctx, &paddockv1.AcquireRequest{Name: "sem", SessionId: ids[i], Limit: 2, TimeoutMs: 1000})
		if err != nil || !r.GetAcquired() || r.GetLimit() != 2 || r.GetPosition() != int32(i) {
			t.Fatalf("Acquire %d = %v, %v; want acquired at %d", i, r, err, i)
		}
		held = append(held, r.GetHolder())
	}
	r, err := locks.Acquire(ctx, &paddockv1.AcquireRequest{Name: "sem", SessionId: ids[2], Limit: 2, TimeoutMs: 500})
	if err != nil || r.GetAcquired() || r.GetPosition() != 2 || r.GetHolder() == nil {
		t.Fatalf("third Acquire = %v, %v; want waiting at 2", r, err)
	}
	waiter := r.GetHolder()
	_, err = locks.Acquire(ctx, &paddockv1.AcquireRequest{Name: "sem", SessionId: ids[3], Limit: 3, TimeoutMs: 2000})
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), "limit 2") {
		t.Errorf("Acquire with limit 3 = %v, want FailedPrecondition naming limit 2", err)
	}
	tr, err := locks.TryAcquire(ctx, &paddockv1.TryAcquireRequest{Name: "sem", SessionId: ids[3], Limit: 2})
	if err != nil || tr.GetAcquired() || tr.GetHolder() != nil {
		t.Errorf("TryAcquire on the busy lock = %v, %v; want not acquired, nothing left", tr, err)
	}
	g, err := paddockv1.NewLockServiceClient(leader.conn).GetLock(ctx, &paddockv1.GetLockRequest{Name: "sem"})
	if err != nil || g.GetLimit() != 2 || len(g.GetHolders()) != 2 || len(g.GetWaiters()) != 1 ||
		g.GetHolders()[0].GetToken() != held[0].GetToken() || g.GetHolders()[1].GetToken() != held[1].GetToken() ||
		g.GetWaiters()[0].GetToken() != waiter.GetToken() {
		t.Fatalf("GetLock = %v, %v; want 2 holders and the waiter", g, err)
	}
	if _, err := locks.Release(ctx, &paddockv1.ReleaseRequest{Name: "sem", Token: held[0].GetToken()}); err != nil {
		t.Fatal(err)
	}
	r, err = locks.Acquire(ctx, &paddockv1.AcquireRequest{Name: "sem", SessionId: ids[2], Limit: 2, TimeoutMs: 5000})
	if err != nil || !r.GetAcquired() || r.GetHolder().GetToken() != waiter.GetToken() || r.GetPosition() != 1 {
		t.Fatalf("waiter's Acquire after a release = %v, %v; want acquired with its token at 1", r, err)
	}
	tr, err = locks.TryAcquire(ctx, &paddockv1.TryAcquireRequest{Name: "sem", SessionId: ids[3], Limit: 2})
	if err != nil || tr.GetAcquired() {
		t.Errorf("TryAcquire on the busy lock = %v, %v", tr, err)
	}
	if _, err := locks.Release(ctx, &paddockv1.ReleaseRequest{Name: "sem", Token: held[1].GetToken()}); err != nil {
		t.Fatal(err)
	}
	tr, err = locks.TryAcquire(ctx, &paddockv1.TryAcquireRequest{Name: "sem", SessionId: ids[3], Limit: 2})
	if err != nil || !tr.GetAcquired() {
		t.Errorf("TryAcquire on a free slot = %v, %v; want acquired", tr, err)
	}
}

// httpCall sends a request to the gateway and decodes the JSON answer.
func httpCall(t *testing.T, method, url, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s %s: %d %q is not JSON: %v", method, url, resp.StatusCode, b, err)
	}
	return resp.StatusCode, out
}

// field reads a nested field of a JSON answer ("candidate.token").
func field(m map[string]any, path string) any {
	var v any = m
	for _, k := range strings.Split(path, ".") {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}

// TestElectionOverGRPCAndHTTP: status codes and messages of elections,
// locks and fenced writes over gRPC and the HTTP gateway, tokens as JSON
// strings, Campaign's timeout_ms, PollLeader and Observe.
func TestElectionOverGRPCAndHTTP(t *testing.T) {
	checkLeaks(t)
	nodes := threeNodes(t)
	leader, follower := leaderAndFollower(t, nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	h, err := rpc.NewHTTPHandler(ctx, follower.n, follower.addr)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(h)
	defer hs.Close()
	elections := paddockv1.NewElectionServiceClient(leader.conn)
	tree := paddockv1.NewTreeServiceClient(leader.conn)
	sess := paddockv1.NewSessionServiceClient(leader.conn)
	open := func() uint64 {
		r, err := sess.OpenSession(ctx, &paddockv1.OpenSessionRequest{TimeoutMs: 10000})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetSessionId()
	}
	sa, sb := open(), open()

	// Campaign over HTTP: elected, the token a JSON string.
	code, body := httpCall(t, "POST", hs.URL+"/v1/elections/e/campaign", fmt.Sprintf(`{"session_id":"%d","value":"YQ==","timeout_ms":"1000"}`, sa))
	tokA, _ := field(body, "candidate.token").(string)
	if code != 200 || body["elected"] != true || tokA == "" {
		t.Fatalf("HTTP Campaign(a) = %d %v; want elected with a string token", code, body)
	}
	tokenA, err := strconv.ParseUint(tokA, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	// A waiting Campaign over HTTP returns within timeout_ms.
	start := time.Now()
	code, body = httpCall(t, "POST", hs.URL+"/v1/elections/e/campaign", fmt.Sprintf(`{"session_id":"%d","timeout_ms":"500"}`, sb))
	if took := time.Since(start); took < 500*time.Millisecond || took > 500*time.Millisecond+500*time.Millisecond {
		t.Errorf("HTTP Campaign with timeout_ms 500 took %v", took)
	}
	tokB, _ := field(body, "candidate.token").(string)
	if code != 200 || body["elected"] == true || tokB == "" || body["position"] != float64(1) {
		t.Fatalf("HTTP Campaign(b) = %d %v; want not elected, position 1", code, body)
	}
	tokenB, _ := strconv.ParseUint(tokB, 10, 64)

	// Fenced tree writes over HTTP: the leader's token passes.
	fence := func(tok string) string { return `"fence":{"name":"elections/e","token":"` + tok + `"}` }
	if code, body := httpCall(t, "POST", hs.URL+"/v1/tree/f", `{"data":"eA==",`+fence(tokA)+`}`); code != 200 {
		t.Fatalf("fenced Create by the leader = %d %v", code, body)
	}
	if code, body := httpCall(t, "PUT", hs.URL+"/v1/tree/f", `{"data":"eQ==",`+fence(tokA)+`}`); code != 200 {
		t.Fatalf("fenced Set by the leader = %d %v", code, body)
	}
	// b's token does not lead: refused, nothing changed.
	code, body = httpCall(t, "PUT", hs.URL+"/v1/tree/f", `{"data":"eg==",`+fence(tokB)+`}`)
	if msg, _ := body["message"].(string); code != 412 || !strings.HasPrefix(msg, "fence lost") {
		t.Errorf("fenced Set by a waiting candidate = %d %v; want 412 fence lost", code, body)
	}
	code, body = httpCall(t, "DELETE", hs.URL+"/v1/tree/f?fence.name=elections/e&fence.token="+tokB, "")
	if msg, _ := body["message"].(string); code != 412 || !strings.HasPrefix(msg, "fence lost") {
		t.Errorf("fenced Delete by a waiting candidate = %d %v; want 412 fence lost", code, body)
	}
	if g, err := tree.Get(ctx, &paddockv1.GetRequest{Path: "/f"}); err != nil || string(g.GetData()) != "y" {
		t.Errorf("Get(/f) = %v, %v; want the leader's write", g, err)
	}

	// Observe over gRPC: the current leader first, then changes.
	octx, ocancel := context.WithCancel(ctx)
	defer ocancel()
	obs, err := paddockv1.NewElectionServiceClient(follower.conn).Observe(octx, &paddockv1.ObserveRequest{Name: "e"})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := obs.Recv(); err != nil || m.GetLeader().GetToken() != tokenA || string(m.GetLeader().GetValue()) != "a" {
		t.Fatalf("first Observe answer = %v, %v; want a", m, err)
	}
	// PollLeader over HTTP: a long poll that returns on the change.
	type polled struct {
		code int
		body map[string]any
		took time.Duration
	}
	poll := func(query string) <-chan polled {
		out := make(chan polled, 1)
		go func() {
			start := time.Now()
			code, body := httpCall(t, "GET", hs.URL+"/v1/elections/e/observe?"+query, "")
			out <- polled{code, body, time.Since(start)}
		}()
		return out
	}
	g, err := elections.Leader(ctx, &paddockv1.LeaderRequest{Name: "e"})
	if err != nil {
		t.Fatal(err)
	}
	known := fmt.Sprintf("known_token=%d&known_mod_zxid=%d", tokenA, g.GetLeader().GetModZxid())
	if p := <-poll(known + "&timeout_ms=300"); p.code != 200 || p.body["changed"] == true || p.took > 800*time.Millisecond {
		t.Errorf("PollLeader with no change = %d %v after %v; want unchanged after 300ms", p.code, p.body, p.took)
	}
	pc := poll(known + "&timeout_ms=10000")
	// Proclaim by b (not the leader): fence lost; by a: the value changes.
	_, err = elections.Proclaim(ctx, &paddockv1.ProclaimRequest{Name: "e", Token: tokenB, Value: []byte("b")})
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), "fence lost") {
		t.Errorf("Proclaim by b = %v, want FailedPrecondition fence lost", err)
	}
	if _, err := elections.Proclaim(ctx, &paddockv1.ProclaimRequest{Name: "e", Token: tokenA, Value: []byte("a2")}); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-pc:
		if p.code != 200 || p.body["changed"] != true || field(p.body, "leader.value") != "YTI=" || field(p.body, "leader.token") != tokA {
			t.Errorf("PollLeader after Proclaim = %d %v; want changed to a2", p.code, p.body)
		}
	case <-ctx.Done():
		t.Fatal("PollLeader never returned")
	}
	if m, err := obs.Recv(); err != nil || string(m.GetLeader().GetValue()) != "a2" {
		t.Fatalf("Observe after Proclaim = %v, %v; want a2", m, err)
	}

	// Resign over HTTP; a second Resign of the same token: not held.
	if code, body := httpCall(t, "POST", hs.URL+"/v1/elections/e/resign", `{"token":"`+tokA+`"}`); code != 200 {
		t.Fatalf("HTTP Resign(a) = %d %v", code, body)
	}
	if m, err := obs.Recv(); err != nil || m.GetLeader().GetToken() != tokenB {
		t.Fatalf("Observe after Resign = %v, %v; want b", m, err)
	}
	code, body = httpCall(t, "POST", hs.URL+"/v1/elections/e/resign", `{"token":"`+tokA+`"}`)
	if msg, _ := body["message"].(string); code != 412 || !strings.HasPrefix(msg, "not held") {
		t.Errorf("second HTTP Resign(a) = %d %v; want 412 not held", code, body)
	}
	// a's fence is lost, over gRPC as over HTTP.
	_, err = tree.Set(ctx, &paddockv1.SetRequest{Path: "/f", Data: []byte("late"), Fence: &paddockv1.Fence{Name: "elections/e", Token: tokenA}})
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || !strings.HasPrefix(st.Message(), "fence lost") {
		t.Errorf("fenced Set by the old leader = %v, want FailedPrecondition fence lost", err)
	}
	_, err = tree.Multi(ctx, &paddockv1.MultiRequest{Fence: &paddockv1.Fence{Name: "elections/e", Token: tokenA},
		Ops: []*paddockv1.Op{{Op: &paddockv1.Op_Delete{Delete: &paddockv1.DeleteRequest{Path: "/f"}}}}})
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), "fence lost") {
		t.Errorf("fenced Multi by the old leader = %v, want FailedPrecondition fence lost", err)
	}
	if g, err := tree.Get(ctx, &paddockv1.GetRequest{Path: "/f"}); err != nil || string(g.GetData()) != "y" {
		t.Errorf("Get(/f) = %v, %v; want the leader's write only", g, err)
	}

	// Bad names and unknown tokens.
	for _, name := range []string{"a/b", "", "x\x00"} {
		_, err := elections.Campaign(ctx, &paddockv1.CampaignRequest{Name: name, SessionId: sa})
		if st := status.Convert(err); st.Code() != codes.InvalidArgument {
			t.Errorf("Campaign(%q) = %v, want InvalidArgument", name, err)
		}
	}
	_, err = tree.Create(ctx, &paddockv1.CreateRequest{Path: "/g", Fence: &paddockv1.Fence{Name: "queues/e", Token: 1}})
	if st := status.Convert(err); st.Code() != codes.InvalidArgument {
		t.Errorf("Create fenced by queues/e = %v, want InvalidArgument", err)
	}
	code, body = httpCall(t, "POST", hs.URL+"/v1/locks/l/release", `{"token":"12345"}`)
	if msg, _ := body["message"].(string); code != 412 || !strings.HasPrefix(msg, "not held") {
		t.Errorf("HTTP Release of an unknown token = %d %v; want 412 not held", code, body)
	}
	_, err = paddockv1.NewLockServiceClient(follower.conn).Release(ctx, &paddockv1.ReleaseRequest{Name: "l", Token: 12345})
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || !strings.HasPrefix(st.Message(), "not held") {
		t.Errorf("Release of an unknown token = %v, want FailedPrecondition not held", err)
	}
	_, err = elections.Campaign(ctx, &paddockv1.CampaignRequest{Name: "e", SessionId: 999999})
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), "session expired") {
		t.Errorf("Campaign with an unknown session = %v, want FailedPrecondition session expired", err)
	}
	// Locks over HTTP: acquire, GetLock, a limit that differs.
	code, body = httpCall(t, "POST", hs.URL+"/v1/locks/l/acquire", fmt.Sprintf(`{"session_id":"%d","limit":2,"timeout_ms":"1000"}`, sa))
	if code != 200 || body["acquired"] != true {
		t.Fatalf("HTTP Acquire = %d %v", code, body)
	}
	code, body = httpCall(t, "GET", hs.URL+"/v1/locks/l", "")
	if hs, _ := body["holders"].([]any); code != 200 || len(hs) != 1 || body["limit"] != float64(2) {
		t.Errorf("HTTP GetLock = %d %v; want one holder, limit 2", code, body)
	}
	code, body = httpCall(t, "POST", hs.URL+"/v1/locks/l/acquire", fmt.Sprintf(`{"session_id":"%d","limit":1,"timeout_ms":"2000"}`, sb))
	if msg, _ := body["message"].(string); code != 412 || !strings.Contains(msg, "has limit 2") {
		t.Errorf("HTTP Acquire with another limit = %d %v; want 412 naming the limit", code, body)
	}
	// A bad name over HTTP.
	code, body = httpCall(t, "POST", hs.URL+"/v1/elections/%2e%2e/campaign", fmt.Sprintf(`{"session_id":"%d"}`, sa))
	if code != 400 || body["code"] != float64(codes.InvalidArgument) {
		t.Errorf("HTTP Campaign of .. = %d %v; want 400 InvalidArgument", code, body)
	}
}

// TestClientObserveFirstAnswerWithoutLeader: the Go client's Observe
// calls fn with the leader as it is first, at once, also when no one
// leads (nil), rather than after its first poll's wait; then each
// change.
func TestClientObserveFirstAnswerWithoutLeader(t *testing.T) {
	checkLeaks(t)
	nodes := threeNodes(t)
	c := newClient(t, nodes, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	octx, ocancel := context.WithCancel(ctx)
	defer ocancel()
	seen := make(chan *paddockv1.Contender, 4)
	done := make(chan error, 1)
	go func() {
		done <- c.Observe(octx, "nobody", func(l *paddockv1.Contender) error {
			seen <- l
			return nil
		})
	}()
	select {
	case l := <-seen:
		if l != nil {
			t.Fatalf("first Observe answer = %v, want nil (no leader)", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Observe of an election without a leader did not answer within 5s")
	}
	s := openSession(t, ctx, c, 10*time.Second)
	r, err := c.Campaign(ctx, &paddockv1.CampaignRequest{Name: "nobody", SessionId: s, TimeoutMs: 1000})
	if err != nil || !r.GetElected() {
		t.Fatalf("Campaign = %v, %v", r, err)
	}
	select {
	case l := <-seen:
		if l.GetToken() != r.GetCandidate().GetToken() {
			t.Fatalf("Observe after Campaign = %v, want token %d", l, r.GetCandidate().GetToken())
		}
	case <-ctx.Done():
		t.Fatal("Observe did not report the new leader")
	}
	ocancel()
	if err := <-done; err != context.Canceled {
		t.Errorf("Observe after cancel = %v, want context.Canceled", err)
	}
}
