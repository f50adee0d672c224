package rpc_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock/paddock/node"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
	"github.com/paddock/paddock/rpc"
)

// farmFixture is a one-node cluster with its gRPC clients.
type farmFixture struct {
	n    *node.Node
	conn *grpc.ClientConn
	farm paddockv1.FarmServiceClient
	tree paddockv1.TreeServiceClient
}

func newFarmFixture(t *testing.T) *farmFixture {
	t.Helper()
	n, conn := singleNode(t, nil)
	// The node registers itself with a raft write of its own; wait for
	// it, so that tests comparing zxids see only their own writes.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ms, err := n.Members(context.Background())
		if err == nil && len(ms) == 1 && ms[0].GetFeatureLevel() != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node did not register itself within 10s (members %v, error %v)", ms, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return &farmFixture{n: n, conn: conn, farm: paddockv1.NewFarmServiceClient(conn), tree: paddockv1.NewTreeServiceClient(conn)}
}

// create makes znodes in order, each "path=data" ("path" alone: no
// data), and returns the zxid of the last.
func (f *farmFixture) create(t *testing.T, znodes ...string) uint64 {
	t.Helper()
	var zxid uint64
	for _, z := range znodes {
		p, data, _ := strings.Cut(z, "=")
		resp, err := f.tree.Create(context.Background(), &paddockv1.CreateRequest{Path: p, Data: []byte(data)})
		if err != nil {
			t.Fatalf("Create(%s): %v", p, err)
		}
		zxid = resp.GetHeader().GetZxid()
	}
	return zxid
}

// get returns a znode's data and Stat.
func (f *farmFixture) get(t *testing.T, p string) (string, *paddockv1.Stat) {
	t.Helper()
	resp, err := f.tree.Get(context.Background(), &paddockv1.GetRequest{Path: p})
	if err != nil {
		t.Fatalf("Get(%s): %v", p, err)
	}
	return string(resp.GetData()), resp.GetStat()
}

// sampleFarm creates /f: size 3, running when enabled=1, three hosts,
// common and a child whose data is not JSON. It returns the last zxid.
func (f *farmFixture) sampleFarm(t *testing.T) uint64 {
	t.Helper()
	return f.create(t,
		`/f={"size":"3","running_filter":"enabled=1"}`,
		`/f/h1={"enabled":"1","role":"db","mysql":{"port":"3306"}}`,
		`/f/h2={"enabled":"0","role":"db"}`,
		`/f/h3={"enabled":"1","role":"web"}`,
		`/f/common={"role":"all"}`,
		`/f/bad=not json`,
	)
}

func hostNames(m *paddockv1.Farm) []string {
	var names []string
	for name := range m.GetHosts() {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func hostField(m *paddockv1.Farm, host, field string) string {
	return m.GetHosts()[host].GetFields()[field].GetStringValue()
}

func wantCode(t *testing.T, what string, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("%s: error %v, want code %v", what, err, code)
	}
}

func TestFarmGetAtOneZxidWithFilters(t *testing.T) {
	f := newFarmFixture(t)
	ctx := context.Background()
	last := f.sampleFarm(t)

	resp, err := f.farm.GetFarm(ctx, &paddockv1.GetFarmRequest{Farm: "/f"})
	if err != nil {
		t.Fatal(err)
	}
	m := resp.GetFarm()
	if got := resp.GetHeader().GetZxid(); got != last {
		t.Errorf("GetFarm(/f) header.zxid = %d, want %d (the last write)", got, last)
	}
	if got, want := hostNames(m), []string{"bad", "h1", "h2", "h3"}; !slices.Equal(got, want) {
		t.Errorf("GetFarm(/f) hosts = %v, want %v (common is not a host)", got, want)
	}
	if m.GetCommon() == nil {
		t.Errorf("GetFarm(/f) common = nil, want the farm's common configuration")
	}
	if !m.GetExists() || m.GetSize() != 3 || m.GetRunning() != 2 || m.GetRunningFilter() != "enabled=1" || m.GetRunningFilterError() != "" {
		t.Errorf("GetFarm(/f) = exists %v size %d running %d running_filter %q (%q), want true 3 2 enabled=1",
			m.GetExists(), m.GetSize(), m.GetRunning(), m.GetRunningFilter(), m.GetRunningFilterError())
	}
	if got := m.GetInvalidHosts(); !slices.Equal(got, []string{"bad"}) {
		t.Errorf("GetFarm(/f) invalid_hosts = %v, want [bad]", got)
	}
	if got := m.GetProperties().GetFields()["size"].GetStringValue(); got != "3" {
		t.Errorf("GetFarm(/f) properties.size = %q, want 3", got)
	}
	if got := m.GetHosts()["h1"].GetFields()["mysql"].GetStructValue().GetFields()["port"].GetStringValue(); got != "3306" {
		t.Errorf("GetFarm(/f) h1 mysql.port = %q, want 3306", got)
	}

	for _, tc := range []struct {
		filters string
		want    []string
	}{
		{"role=db", []string{"h1", "h2"}},
		{"role=db,enabled=1", []string{"h1"}},
		{"mysql.port", []string{"h1"}},
		{"!enabled", []string{"bad"}},
		{"role!=db", []string{"h3"}},
	} {
		resp, err := f.farm.GetFarm(ctx, &paddockv1.GetFarmRequest{Farm: "/f", Filters: tc.filters})
		if err != nil {
			t.Fatalf("GetFarm(/f, %q): %v", tc.filters, err)
		}
		if got := hostNames(resp.GetFarm()); !slices.Equal(got, tc.want) {
			t.Errorf("GetFarm(/f, %q) hosts = %v, want %v", tc.filters, got, tc.want)
		}
		if got := resp.GetFarm().GetRunning(); got != 2 {
			t.Errorf("GetFarm(/f, %q) running = %d, want 2 (filters do not apply to it)", tc.filters, got)
		}
	}

	f.create(t, `/g={"running_filter":"=x"}`, `/g/h1={}`)
	resp, err = f.farm.GetFarm(ctx, &paddockv1.GetFarmRequest{Farm: "/g"})
	if err != nil {
		t.Fatal(err)
	}
	if m := resp.GetFarm(); m.GetRunning() != 0 || m.GetRunningFilterError() != `bad filter: "=x": bad field` || len(m.GetHosts()) != 1 {
		t.Errorf("GetFarm(/g) = running %d, running_filter_error %q, %d hosts; want 0, the parser's message, 1",
			m.GetRunning(), m.GetRunningFilterError(), len(m.GetHosts()))
	}

	resp, err = f.farm.GetFarm(ctx, &paddockv1.GetFarmRequest{Farm: "/nofarm"})
	if err != nil {
		t.Fatal(err)
	}
	if m := resp.GetFarm(); m.GetExists() || len(m.GetHosts()) != 0 || resp.GetHeader().GetZxid() <= last {
		t.Errorf("GetFarm(/nofarm) = exists %v, %d hosts, zxid %d; want false, 0, > %d", m.GetExists(), len(m.GetHosts()), resp.GetHeader().GetZxid(), last)
	}
}

func TestFarmPoll(t *testing.T) {
	f := newFarmFixture(t)
	ctx := context.Background()
	f.sampleFarm(t)
	f.create(t, "/other")

	start := time.Now()
	first, err := f.farm.PollFarm(ctx, &paddockv1.PollFarmRequest{Farm: "/f", TimeoutMs: 300000, Filters: "role=db"})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second || !first.GetChanged() || !slices.Equal(hostNames(first.GetFarm()), []string{"h1", "h2"}) {
		t.Fatalf("PollFarm(after 0) = changed %v hosts %v after %v, want at once true [h1 h2]", first.GetChanged(), hostNames(first.GetFarm()), d)
	}
	after := first.GetHeader().GetZxid()

	// A change outside the farm does not end the poll.
	const timeout = 300 * time.Millisecond
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := f.tree.Set(ctx, &paddockv1.SetRequest{Path: "/other", Data: []byte("x")}); err != nil {
			t.Errorf("Set(/other): %v", err)
		}
	}()
	start = time.Now()
	idle, err := f.farm.PollFarm(ctx, &paddockv1.PollFarmRequest{Farm: "/f", AfterZxid: after, TimeoutMs: timeout.Milliseconds()})
	d := time.Since(start)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if idle.GetChanged() || idle.GetFarm() != nil || d < timeout || d > timeout+2*time.Second || idle.GetHeader().GetZxid() < after {
		t.Fatalf("PollFarm(after %d, %v) = changed %v farm %v zxid %d after %v, want false, none, >= %d, after the timeout",
			after, timeout, idle.GetChanged(), idle.GetFarm(), idle.GetHeader().GetZxid(), d, after)
	}
	after = idle.GetHeader().GetZxid()

	// A host's change ends it with the farm at or after the change.
	type result struct {
		resp *paddockv1.PollFarmResponse
		err  error
	}
	polled := make(chan result, 1)
	go func() {
		resp, err := f.farm.PollFarm(ctx, &paddockv1.PollFarmRequest{Farm: "/f", AfterZxid: after, TimeoutMs: 30000})
		polled <- result{resp, err}
	}()
	set, err := f.farm.SetField(ctx, &paddockv1.SetFieldRequest{Host: "/f/h2", Field: "enabled", Value: &paddockv1.FieldValue{Value: proto.String("1")}})
	if err != nil {
		t.Fatal(err)
	}
	r := <-polled
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !r.resp.GetChanged() || r.resp.GetHeader().GetZxid() < set.GetHeader().GetZxid() {
		t.Fatalf("PollFarm(after %d) = changed %v zxid %d, want true, >= %d (the set)", after, r.resp.GetChanged(), r.resp.GetHeader().GetZxid(), set.GetHeader().GetZxid())
	}
	if got := hostField(r.resp.GetFarm(), "h2", "enabled"); got != "1" || r.resp.GetFarm().GetRunning() != 3 {
		t.Fatalf("PollFarm farm: h2 enabled = %q, running %d; want 1, 3", got, r.resp.GetFarm().GetRunning())
	}

	// A poll after a zxid the cluster has not reached fails as /v1/poll.
	_, err = f.farm.PollFarm(ctx, &paddockv1.PollFarmRequest{Farm: "/f", AfterZxid: 1 << 40, TimeoutMs: 100})
	canceledStatus(t, "PollFarm(future)", err, codes.OutOfRange, paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_FUTURE_ZXID)
	_, err = f.farm.PollFarm(ctx, &paddockv1.PollFarmRequest{Farm: "/f", TimeoutMs: 300001})
	wantCode(t, "PollFarm(timeout_ms 300001)", err, codes.InvalidArgument)
}

func TestFarmSetFieldConcurrent(t *testing.T) {
	f := newFarmFixture(t)
	ctx := context.Background()
	f.create(t, "/f", `/f/h1={"keep":"me"}`)

	const writers, sets = 8, 20
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range sets {
				field := fmt.Sprintf("w%d.k%d", w, i)
				if _, err := f.farm.SetField(ctx, &paddockv1.SetFieldRequest{Host: "/f/h1", Field: field, Value: &paddockv1.FieldValue{Value: proto.String(fmt.Sprint(i))}}); err != nil {
					t.Errorf("SetField(%s): %v", field, err)
					return
				}
			}
		})
	}
	wg.Wait()
	data, _ := f.get(t, "/f/h1")
	var conf map[string]any
	if err := json.Unmarshal([]byte(data), &conf); err != nil {
		t.Fatalf("h1 data %q: %v", data, err)
	}
	if conf["keep"] != "me" {
		t.Errorf("h1 keep = %v, want me", conf["keep"])
	}
	for w := range writers {
		sub, _ := conf[fmt.Sprintf("w%d", w)].(map[string]any)
		for i := range sets {
			if got := sub[fmt.Sprintf("k%d", i)]; got != fmt.Sprint(i) {
				t.Errorf("h1 w%d.k%d = %v, want %d", w, i, got, i)
			}
		}
	}

	// Unset a nested field: its siblings stay.
	un, err := f.farm.UnsetField(ctx, &paddockv1.UnsetFieldRequest{Host: "/f/h1", Field: "w0.k0"})
	if err != nil {
		t.Fatal(err)
	}
	data, st := f.get(t, "/f/h1")
	conf = nil
	if err := json.Unmarshal([]byte(data), &conf); err != nil {
		t.Fatalf("h1 data %q: %v", data, err)
	}
	w0, _ := conf["w0"].(map[string]any)
	if _, ok := w0["k0"]; ok || w0["k1"] != "1" || st.GetVersion() != un.GetStat().GetVersion() {
		t.Errorf("after UnsetField(w0.k0): h1 w0 = %v version %d, want w0 without k0, with k1, version %d", w0, st.GetVersion(), un.GetStat().GetVersion())
	}
	// Unsetting a missing field, or setting a field to its value,
	// writes nothing and returns the znode's Stat.
	for _, call := range []struct {
		name string
		do   func() (*paddockv1.Stat, error)
	}{
		{"UnsetField(w0.k0) again", func() (*paddockv1.Stat, error) {
			r, err := f.farm.UnsetField(ctx, &paddockv1.UnsetFieldRequest{Host: "/f/h1", Field: "w0.k0"})
			return r.GetStat(), err
		}},
		{"SetField(keep=me)", func() (*paddockv1.Stat, error) {
			r, err := f.farm.SetField(ctx, &paddockv1.SetFieldRequest{Host: "/f/h1", Field: "keep", Value: &paddockv1.FieldValue{Value: proto.String("me")}})
			return r.GetStat(), err
		}},
	} {
		got, err := call.do()
		if err != nil {
			t.Fatalf("%s: %v", call.name, err)
		}
		if got.GetVersion() != st.GetVersion() || got.GetMzxid() != st.GetMzxid() {
			t.Errorf("%s: stat version %d mzxid %d, want unchanged %d %d", call.name, got.GetVersion(), got.GetMzxid(), st.GetVersion(), st.GetMzxid())
		}
	}

	// The farm znode itself takes fields too.
	if _, err := f.farm.SetField(ctx, &paddockv1.SetFieldRequest{Host: "/f", Field: "running_filter", Value: &paddockv1.FieldValue{Value: proto.String("keep=me")}}); err != nil {
		t.Fatal(err)
	}
	resp, err := f.farm.GetFarm(ctx, &paddockv1.GetFarmRequest{Farm: "/f"})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetFarm().GetRunningFilter(); got != "keep=me" || resp.GetFarm().GetRunning() != 1 {
		t.Errorf("GetFarm(/f) running_filter %q running %d, want keep=me 1", got, resp.GetFarm().GetRunning())
	}
}

func TestFarmBadInputs(t *testing.T) {
	f := newFarmFixture(t)
	ctx := context.Background()
	f.sampleFarm(t)
	value := &paddockv1.FieldValue{Value: proto.String("1")}
	for _, tc := range []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"SetField empty field", func() error {
			_, err := f.farm.SetField(ctx, &paddockv1.SetFieldRequest{Host: "/f/h1", Field: "", Value: value})
			return err
		}, codes.InvalidArgument, `bad field: "": empty segment`},
		{"SetField a..b", func() error {
			_, err := f.farm.SetField(ctx, &paddockv1.SetFieldRequest{Host: "/f/h1", Field: "a..b", Value: value})
			return err
		}, codes.InvalidArgument, `bad field: "a..b": empty segment`},
		{"SetField no value", func() error {
			_, err := f.farm.SetField(ctx, &paddockv1.SetFieldRequest{Host: "/f/h1", Field: "a"})
			return err
		}, codes.InvalidArgument, "bad argument"},
		{"SetField missing host", func() error {
			_, err := f.farm.SetField(ctx, &paddockv1.SetFieldRequest{Host: "/f/nohost", Field: "a", Value: value})
			return err
		}, codes.NotFound, "node does not exist: /f/nohost"},
		{"SetField non-JSON host", func() error {
			_, err := f.farm.SetField(ctx, &paddockv1.SetFieldRequest{Host: "/f/bad", Field: "a", Value: value})
			return err
		}, codes.InvalidArgument, "bad configuration: /f/bad: "},
		{"UnsetField non-JSON host", func() error {
			_, err := f.farm.UnsetField(ctx, &paddockv1.UnsetFieldRequest{Host: "/f/bad", Field: "a"})
			return err
		}, codes.InvalidArgument, "bad configuration: /f/bad: "},
		{"UnsetField a.", func() error {
			_, err := f.farm.UnsetField(ctx, &paddockv1.UnsetFieldRequest{Host: "/f/h1", Field: "a."})
			return err
		}, codes.InvalidArgument, `bad field: "a."`},
		{"GetFarm bad filter", func() error {
			_, err := f.farm.GetFarm(ctx, &paddockv1.GetFarmRequest{Farm: "/f", Filters: "role=db,,x"})
			return err
		}, codes.InvalidArgument, `bad filter: "role=db,,x": empty predicate`},
		{"GetFarm bad path", func() error {
			_, err := f.farm.GetFarm(ctx, &paddockv1.GetFarmRequest{Farm: "f"})
			return err
		}, codes.InvalidArgument, "bad path"},
		{"PollFarm bad filter", func() error {
			_, err := f.farm.PollFarm(ctx, &paddockv1.PollFarmRequest{Farm: "/f", Filters: "=x"})
			return err
		}, codes.InvalidArgument, `bad filter: "=x"`},
		{"CheckFarm bad max", func() error {
			_, err := f.farm.CheckFarm(ctx, &paddockv1.CheckFarmRequest{Farm: "/f", Max: "ten"})
			return err
		}, codes.InvalidArgument, `bad threshold: "ten"`},
		{"CheckFarm bad warn", func() error {
			_, err := f.farm.CheckFarm(ctx, &paddockv1.CheckFarmRequest{Farm: "/f", Warn: "-1%"})
			return err
		}, codes.InvalidArgument, `bad threshold: "-1%"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := map[string]string{}
			for _, p := range []string{"/f", "/f/h1", "/f/bad"} {
				data, st := f.get(t, p)
				before[p] = fmt.Sprintf("%s v%d", data, st.GetVersion())
			}
			err := tc.call()
			wantCode(t, tc.name, err, tc.code)
			if msg := status.Convert(err).Message(); !strings.HasPrefix(msg, tc.msg) {
				t.Errorf("%s: message %q, want it to start with %q", tc.name, msg, tc.msg)
			}
			for p, was := range before {
				data, st := f.get(t, p)
				if now := fmt.Sprintf("%s v%d", data, st.GetVersion()); now != was {
					t.Errorf("%s: %s changed from %s to %s", tc.name, p, was, now)
				}
			}
		})
	}
}

func TestFarmCheckStatuses(t *testing.T) {
	f := newFarmFixture(t)
	ctx := context.Background()
	f.create(t, `/f={"size":"4","running_filter":"up=1"}`, `/f/h1={"up":"1"}`, `/f/h2={"up":"1"}`, `/f/h3={"up":"1"}`, `/f/h4={"up":"0"}`, `/nosize={}`)
	for _, tc := range []struct {
		farm, max, warn string
		want            paddockv1.FarmCheckStatus
		msg             string
	}{
		{"/f", "2", "", paddockv1.FarmCheckStatus_FARM_CHECK_STATUS_OK, "3/4 nodes running, 1 nodes failing, max allowed 2"},
		{"/f", "2", "1", paddockv1.FarmCheckStatus_FARM_CHECK_STATUS_WARNING, "3/4 nodes running, 1 nodes failing, max allowed 2"},
		{"/f", "1", "", paddockv1.FarmCheckStatus_FARM_CHECK_STATUS_CRITICAL, "3/4 nodes running, 1 nodes failing, max allowed 1"},
		{"/f", "", "", paddockv1.FarmCheckStatus_FARM_CHECK_STATUS_CRITICAL, "3/4 nodes running, 1 nodes failing, max allowed 10%"},
		{"/f", "50%", "25%", paddockv1.FarmCheckStatus_FARM_CHECK_STATUS_WARNING, "3/4 nodes running, 1 nodes failing, max allowed 50%"},
		{"/nosize", "", "", paddockv1.FarmCheckStatus_FARM_CHECK_STATUS_UNKNOWN, "No `size' property found for `/nosize' farm"},
		{"/nofarm", "", "", paddockv1.FarmCheckStatus_FARM_CHECK_STATUS_UNKNOWN, "No `size' property found for `/nofarm' farm"},
	} {
		resp, err := f.farm.CheckFarm(ctx, &paddockv1.CheckFarmRequest{Farm: tc.farm, Max: tc.max, Warn: tc.warn})
		if err != nil {
			t.Fatalf("CheckFarm(%s, max %q, warn %q): %v", tc.farm, tc.max, tc.warn, err)
		}
		if resp.GetStatus() != tc.want || resp.GetMessage() != tc.msg {
			t.Errorf("CheckFarm(%s, max %q, warn %q) = %v %q, want %v %q", tc.farm, tc.max, tc.warn, resp.GetStatus(), resp.GetMessage(), tc.want, tc.msg)
		}
		if tc.farm == "/f" && (resp.GetSize() != 4 || resp.GetRunning() != 3 || resp.GetFailing() != 1) {
			t.Errorf("CheckFarm(/f) = size %d running %d failing %d, want 4 3 1", resp.GetSize(), resp.GetRunning(), resp.GetFailing())
		}
	}
}

// httpFarm serves f's node over the HTTP gateway until the test ends.
func (f *farmFixture) httpFarm(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h, err := rpc.NewHTTPHandler(ctx, f.n, f.conn.Target())
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		cancel()
	})
	return srv.URL
}

// doJSON sends an HTTP request and decodes its JSON answer.
func doJSON(t *testing.T, method, url, body string) (int, map[string]any) {
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
		t.Fatalf("%s %s: body %q: %v", method, url, b, err)
	}
	return resp.StatusCode, out
}

// jsonAt follows a dotted path in decoded JSON.
func jsonAt(v any, path string) any {
	for k := range strings.SplitSeq(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func TestFarmHTTPRoutes(t *testing.T) {
	f := newFarmFixture(t)
	f.sampleFarm(t)
	base := f.httpFarm(t)

	code, got := doJSON(t, "GET", base+"/v1/farms/f?filters=role%3Ddb", "")
	if code != 200 || jsonAt(got, "farm.hosts.h1.role") != "db" || jsonAt(got, "farm.hosts.h3") != nil || jsonAt(got, "farm.size") != 3.0 {
		t.Fatalf("GET /v1/farms/f?filters=role=db = %d %v, want 200 with h1 (role db), no h3, size 3", code, got)
	}
	zxid, ok := jsonAt(got, "header.zxid").(string)
	if !ok {
		t.Fatalf("GET /v1/farms/f header.zxid = %#v, want a JSON string", jsonAt(got, "header.zxid"))
	}

	for _, tc := range []struct {
		method, path, body string
		code               int
		check              string // dotted path that must be set, or the error message's start
	}{
		{"GET", "/v1/farms/f?filters=%3Dx", "", 400, `bad filter: "=x"`},
		{"GET", "/v1/farm-poll/f?after_zxid=0", "", 200, "farm.hosts.h2"},
		{"PUT", "/v1/farm-fields/f/h1?field=mysql.slave", `{"value":"1"}`, 200, "stat.version"},
		{"PUT", "/v1/farm-fields/f/nohost?field=a", `{"value":"1"}`, 404, "node does not exist: /f/nohost"},
		{"PUT", "/v1/farm-fields/f/bad?field=a", `{"value":"1"}`, 400, "bad configuration: /f/bad"},
		{"PUT", "/v1/farm-fields/f/h1?field=a..b", `{"value":"1"}`, 400, `bad field: "a..b"`},
		// A body without its value is refused, not taken for "".
		{"PUT", "/v1/farm-fields/f/h1?field=role", `{}`, 400, "bad argument: value is required"},
		{"PUT", "/v1/farm-fields/f/h1?field=role", `{"value":null}`, 400, "bad argument: value is required"},
		{"PUT", "/v1/farm-fields/f/h1?field=empty", `{"value":""}`, 200, "stat.version"},
		{"DELETE", "/v1/farm-fields/f/h1?field=mysql.port", "", 200, "stat.version"},
		{"GET", "/v1/farm-check/f?max=10%25", "", 200, "status"},
		{"GET", "/v1/farm-check/f?max=ten", "", 400, `bad threshold: "ten"`},
	} {
		code, got := doJSON(t, tc.method, base+tc.path, tc.body)
		if code != tc.code {
			t.Errorf("%s %s = %d %v, want %d", tc.method, tc.path, code, got, tc.code)
			continue
		}
		if code == 200 && jsonAt(got, tc.check) == nil {
			t.Errorf("%s %s = %v, want %s set", tc.method, tc.path, got, tc.check)
		}
		if msg, _ := got["message"].(string); code != 200 && !strings.HasPrefix(msg, tc.check) {
			t.Errorf("%s %s message = %q, want it to start with %q", tc.method, tc.path, msg, tc.check)
		}
	}

	data, _ := f.get(t, "/f/h1")
	if want := `{"empty":"","enabled":"1","mysql":{"slave":"1"},"role":"db"}`; data != want {
		t.Errorf("/f/h1 after PUT and DELETE = %s, want %s", data, want)
	}
	code, got = doJSON(t, "GET", base+"/v1/farm-check/f", "")
	if code != 200 || got["status"] != "FARM_CHECK_STATUS_CRITICAL" || got["message"] != "2/3 nodes running, 1 nodes failing, max allowed 10%" {
		t.Errorf("GET /v1/farm-check/f = %d %v, want CRITICAL, 2/3 running", code, got)
	}
	// The poll after the first read sees the PUT and DELETE.
	code, got = doJSON(t, "GET", base+"/v1/farm-poll/f?timeout_ms=10000&after_zxid="+zxid, "")
	if code != 200 || got["changed"] != true || jsonAt(got, "farm.hosts.h1.mysql.slave") != "1" {
		t.Errorf("GET /v1/farm-poll/f?after_zxid=%s = %d %v, want changed with h1 mysql.slave 1", zxid, code, got)
	}
	next := jsonAt(got, "header.zxid").(string)
	start := time.Now()
	code, got = doJSON(t, "GET", base+"/v1/farm-poll/f?timeout_ms=100&after_zxid="+next, "")
	if code != 200 || got["changed"] != false || got["farm"] != nil || time.Since(start) > 3*time.Second {
		t.Errorf("GET /v1/farm-poll/f?after_zxid=%s&timeout_ms=100 = %d %v after %v, want unchanged, no farm", next, code, got, time.Since(start))
	}
}

// TestFarmOnFollowers: every node serves FarmService; a follower's field
// change is forwarded to the leader, and another follower's poll sees it.
func TestFarmOnFollowers(t *testing.T) {
	nodes := threeNodes(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var followers []*served
	for _, s := range nodes {
		if !s.n.IsLeader() {
			followers = append(followers, s)
		}
	}
	if len(followers) < 2 {
		t.Fatalf("%d followers, want 2", len(followers))
	}
	a, b := paddockv1.NewFarmServiceClient(followers[0].conn), paddockv1.NewFarmServiceClient(followers[1].conn)
	tree := paddockv1.NewTreeServiceClient(followers[0].conn)
	for _, z := range []string{"/f", "/f/h1"} {
		if _, err := tree.Create(ctx, &paddockv1.CreateRequest{Path: z, Data: []byte("{}")}); err != nil {
			t.Fatalf("Create(%s): %v", z, err)
		}
	}
	first, err := b.PollFarm(ctx, &paddockv1.PollFarmRequest{Farm: "/f"})
	if err != nil {
		t.Fatal(err)
	}
	set, err := a.SetField(ctx, &paddockv1.SetFieldRequest{Host: "/f/h1", Field: "role", Value: &paddockv1.FieldValue{Value: proto.String("db")}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := b.PollFarm(ctx, &paddockv1.PollFarmRequest{Farm: "/f", AfterZxid: first.GetHeader().GetZxid(), TimeoutMs: 20000})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.GetChanged() || hostField(resp.GetFarm(), "h1", "role") != "db" || resp.GetHeader().GetZxid() < set.GetHeader().GetZxid() {
		t.Fatalf("PollFarm on %s after SetField on %s = %v, want changed, h1 role db, zxid >= %d",
			followers[1].n.ID(), followers[0].n.ID(), resp, set.GetHeader().GetZxid())
	}
}
