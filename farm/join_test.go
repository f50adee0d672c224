package farm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/paddock/paddock/client"
	"github.com/paddock/paddock/farm"
	"github.com/paddock/paddock/node"
	"github.com/paddock/paddock/node/nodetest"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
	"github.com/paddock/paddock/rpc"
)

// sessionTimeout keeps expiries in tests short.
const sessionTimeout = time.Second

// testCluster is a real three-node cluster and a Go client on it.
type testCluster struct {
	c  *nodetest.Cluster
	cl *client.Client
}

// newCluster starts a three-node cluster with gRPC servers and a client
// on every node; goroutines left behind fail the test.
func newCluster(t *testing.T, opts ...nodetest.Option) *testCluster {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	opts = append(opts, nodetest.WithServer(func(n *node.Node) *grpc.Server { return rpc.NewServer(n) }))
	c := nodetest.NewCluster(t, 3, opts...)
	c.WaitLeader(t)
	var addrs []string
	for i := range c.Size() {
		addrs = append(addrs, c.GRPCAddr(i))
	}
	cl, err := client.New(context.Background(), client.Config{Endpoints: addrs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return &testCluster{c: c, cl: cl}
}

func (tc *testCluster) newSession(ctx context.Context) (farm.Session, error) {
	return tc.cl.NewSession(ctx, sessionTimeout)
}

// get returns the znode's conf and stat.
func (tc *testCluster) get(p string) (farm.Conf, *paddockv1.Stat, error) {
	g, err := tc.cl.Get(context.Background(), &paddockv1.GetRequest{Path: p})
	if err != nil {
		return nil, nil, err
	}
	c, err := farm.DecodeConf(g.GetData())
	return c, g.GetStat(), err
}

// logSink collects log lines.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// running is a Join or Export in the background.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

// start runs fn until stop or the test's end, which checks it returned nil.
func start(t *testing.T, fn func(ctx context.Context) error) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- fn(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels the run and waits for it to return nil.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	if err, ok := <-r.done; ok {
		close(r.done)
		if err != nil {
			t.Errorf("returned %v, want nil", err)
		}
	}
}

func writeJSON(t *testing.T, p string, c farm.Conf) {
	t.Helper()
	f, _ := farm.ParseFormat("json")
	if _, err := f.Write(p, c); err != nil {
		t.Fatal(err)
	}
}

func readJSON(p string) (farm.Conf, error) {
	f, _ := farm.ParseFormat("json")
	return f.Read(p)
}

// joinConfig is a two-way join of name in /services/db from a JSON file.
func joinConfig(tc *testCluster, conf, name string) farm.JoinConfig {
	f, _ := farm.ParseFormat("json")
	return farm.JoinConfig{Tree: tc.cl, NewSession: tc.newSession, Farm: "/services/db", Name: name, Conf: conf, Format: f}
}

// waitZnode waits until p holds want.
func waitZnode(t *testing.T, tc *testCluster, p string, want farm.Conf) *paddockv1.Stat {
	t.Helper()
	var st *paddockv1.Stat
	nodetest.Eventually(t, nodetest.WaitTimeout, func() error {
		got, s, err := tc.get(p)
		if err != nil {
			return err
		}
		if !got.Equal(want) {
			return fmt.Errorf("Get(%s) = %s, want %s", p, got.Encode(), want.Encode())
		}
		st = s
		return nil
	})
	return st
}

// waitFile waits until the JSON file p holds want.
func waitFile(t *testing.T, p string, want farm.Conf) {
	t.Helper()
	nodetest.Eventually(t, nodetest.WaitTimeout, func() error {
		got, err := readJSON(p)
		if err != nil {
			return err
		}
		if !got.Equal(want) {
			return fmt.Errorf("%s = %s, want %s", p, got.Encode(), want.Encode())
		}
		return nil
	})
}

// steady checks for d that f keeps returning nil: something that must not
// happen (an echo) does not.
func steady(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestJoinRegistersAndFollowsLocal: join creates the ephemeral znode with
// the local conf and the hostname it lacked (also written to the file),
// raises the farm's size, carries a local edit up within a second, and
// removes the znode at once when it stops.
func TestJoinRegistersAndFollowsLocal(t *testing.T) {
	tc := newCluster(t)
	conf := filepath.Join(t.TempDir(), "db.json")
	writeJSON(t, conf, farm.Conf{"enabled": "0"})
	cfg := joinConfig(tc, conf, "10.0.0.1")
	cfg.Hostname = "db-01"
	r := start(t, func(ctx context.Context) error { return farm.Join(ctx, cfg) })

	want := farm.Conf{"enabled": "0", "hostname": "db-01"}
	st := waitZnode(t, tc, "/services/db/10.0.0.1", want)
	if st.GetEphemeralOwner() == 0 {
		t.Fatal("host znode is not ephemeral")
	}
	waitFile(t, conf, want)
	nodetest.Eventually(t, nodetest.WaitTimeout, func() error {
		props, _, err := tc.get("/services/db")
		if err != nil {
			return err
		}
		if got := farm.ValueString(props[farm.PropSize], true); got != "1" {
			return fmt.Errorf("size = %s, want 1", got)
		}
		return nil
	})

	writeJSON(t, conf, farm.Conf{"enabled": "1", "hostname": "db-01"})
	began := time.Now()
	waitZnode(t, tc, "/services/db/10.0.0.1", farm.Conf{"enabled": "1", "hostname": "db-01"})
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("local change reached the znode after %v, want within a second", d)
	}

	r.stop(t)
	e, err := tc.cl.Exists(context.Background(), &paddockv1.ExistsRequest{Path: "/services/db/10.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if e.GetExists() {
		t.Fatal("host znode still exists after Join returned")
	}
}

// TestJoinKeepsUserHostname: a hostname the user wrote is never rewritten.
func TestJoinKeepsUserHostname(t *testing.T) {
	tc := newCluster(t)
	conf := filepath.Join(t.TempDir(), "db.json")
	writeJSON(t, conf, farm.Conf{"hostname": "mine"})
	cfg := joinConfig(tc, conf, "h")
	cfg.Hostname = "theirs"
	start(t, func(ctx context.Context) error { return farm.Join(ctx, cfg) })
	waitZnode(t, tc, "/services/db/h", farm.Conf{"hostname": "mine"})
	waitFile(t, conf, farm.Conf{"hostname": "mine"})
}

// TestJoinMissingConf: a missing local conf is an error at start.
func TestJoinMissingConf(t *testing.T) {
	tc := newCluster(t)
	cfg := joinConfig(tc, filepath.Join(t.TempDir(), "none.json"), "h")
	err := farm.Join(context.Background(), cfg)
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Join = %v, want a not-exist error", err)
	}
}

// TestJoinRemoteChangeNoEcho: a remote set reaches the local file, runs
// OnChanged exactly once, and comes back neither as a local change nor
// as another set: the znode's version grows by exactly one.
func TestJoinRemoteChangeNoEcho(t *testing.T) {
	tc := newCluster(t)
	conf := filepath.Join(t.TempDir(), "db.json")
	writeJSON(t, conf, farm.Conf{"enabled": "0"})
	var changed atomic.Int32
	cfg := joinConfig(tc, conf, "h")
	cfg.OnChanged = func() { changed.Add(1) }
	start(t, func(ctx context.Context) error { return farm.Join(ctx, cfg) })
	st := waitZnode(t, tc, "/services/db/h", farm.Conf{"enabled": "0"})

	s, err := farm.SetField(context.Background(), tc.cl, "/services/db/h", "mysql.delay", "5")
	if err != nil {
		t.Fatal(err)
	}
	if s.GetVersion() != st.GetVersion()+1 {
		t.Fatalf("version after set = %d, want %d", s.GetVersion(), st.GetVersion()+1)
	}
	want := farm.Conf{"enabled": "0", "mysql": farm.Conf{"delay": "5"}}
	waitFile(t, conf, want)
	nodetest.Eventually(t, nodetest.WaitTimeout, func() error {
		if n := changed.Load(); n != 1 {
			return fmt.Errorf("OnChanged ran %d times, want 1", n)
		}
		return nil
	})
	steady(t, 1500*time.Millisecond, func() error {
		_, now, err := tc.get("/services/db/h")
		if err != nil {
			return err
		}
		if now.GetVersion() != s.GetVersion() {
			return fmt.Errorf("version = %d after one remote set, want %d (an echo)", now.GetVersion(), s.GetVersion())
		}
		if n := changed.Load(); n != 1 {
			return fmt.Errorf("OnChanged ran %d times, want 1", n)
		}
		return nil
	})
}

// TestJoinSessionExpiry: when the session ends, join registers again from
// a new session with the local copy.
func TestJoinSessionExpiry(t *testing.T) {
	tc := newCluster(t)
	conf := filepath.Join(t.TempDir(), "db.json")
	writeJSON(t, conf, farm.Conf{"enabled": "0"})
	cfg := joinConfig(tc, conf, "h")
	start(t, func(ctx context.Context) error { return farm.Join(ctx, cfg) })
	st := waitZnode(t, tc, "/services/db/h", farm.Conf{"enabled": "0"})

	// The cluster ends the session (as an expiry does); meanwhile the
	// local copy changes: it wins when join registers again.
	writeJSON(t, conf, farm.Conf{"enabled": "1"})
	if _, err := tc.cl.CloseSession(context.Background(), &paddockv1.CloseSessionRequest{SessionId: st.GetEphemeralOwner()}); err != nil {
		t.Fatal(err)
	}
	nodetest.Eventually(t, nodetest.WaitTimeout, func() error {
		got, now, err := tc.get("/services/db/h")
		if err != nil {
			return err
		}
		if now.GetEphemeralOwner() == st.GetEphemeralOwner() {
			return errors.New("still owned by the ended session")
		}
		if !got.Equal(farm.Conf{"enabled": "1"}) {
			return fmt.Errorf("Get = %s, want the local copy", got.Encode())
		}
		return nil
	})
}

// TestJoinRemoteDelete: a znode deleted by someone comes back.
func TestJoinRemoteDelete(t *testing.T) {
	tc := newCluster(t)
	conf := filepath.Join(t.TempDir(), "db.json")
	writeJSON(t, conf, farm.Conf{"enabled": "0"})
	cfg := joinConfig(tc, conf, "h")
	start(t, func(ctx context.Context) error { return farm.Join(ctx, cfg) })
	st := waitZnode(t, tc, "/services/db/h", farm.Conf{"enabled": "0"})
	if _, err := tc.cl.Delete(context.Background(), &paddockv1.DeleteRequest{Path: "/services/db/h"}); err != nil {
		t.Fatal(err)
	}
	nodetest.Eventually(t, nodetest.WaitTimeout, func() error {
		_, now, err := tc.get("/services/db/h")
		if err != nil {
			return err
		}
		if now.GetCzxid() == st.GetCzxid() {
			return errors.New("not created again yet")
		}
		return nil
	})
}

// TestJoinSameNameDoesNotSteal: a second joiner of a name held by another
// live session logs it and waits; it registers once the first stops.
func TestJoinSameNameDoesNotSteal(t *testing.T) {
	tc := newCluster(t)
	dir := t.TempDir()
	first, second := filepath.Join(dir, "a.json"), filepath.Join(dir, "b.json")
	writeJSON(t, first, farm.Conf{"who": "first"})
	writeJSON(t, second, farm.Conf{"who": "second"})
	r1 := start(t, func(ctx context.Context) error { return farm.Join(ctx, joinConfig(tc, first, "h")) })
	st := waitZnode(t, tc, "/services/db/h", farm.Conf{"who": "first"})

	var logs logSink
	cfg := joinConfig(tc, second, "h")
	cfg.Log = slog.New(slog.NewTextHandler(&logs, nil))
	start(t, func(ctx context.Context) error { return farm.Join(ctx, cfg) })
	owner := fmt.Sprintf("%#x", st.GetEphemeralOwner())
	nodetest.Eventually(t, nodetest.WaitTimeout, func() error {
		if l := logs.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, owner) {
			return fmt.Errorf("log %q names no foreign session %s", l, owner)
		}
		return nil
	})
	got, now, err := tc.get("/services/db/h")
	if err != nil {
		t.Fatal(err)
	}
	if now.GetEphemeralOwner() != st.GetEphemeralOwner() || !got.Equal(farm.Conf{"who": "first"}) {
		t.Fatalf("Get = %s owned by %#x, want the first joiner's", got.Encode(), now.GetEphemeralOwner())
	}
	got, err = readJSON(first)
	if err != nil || !got.Equal(farm.Conf{"who": "first"}) {
		t.Fatalf("first joiner's file = %v, %v: want it untouched", got, err)
	}

	r1.stop(t)
	waitZnode(t, tc, "/services/db/h", farm.Conf{"who": "second"})
}

// TestJoinCommon: FARM/common is persistent, its existing content wins
// over the local file on start, and later local changes go up.
func TestJoinCommon(t *testing.T) {
	tc := newCluster(t)
	ctx := context.Background()
	if err := farm.EnsurePath(ctx, tc.cl, "/services/db"); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.cl.Create(ctx, &paddockv1.CreateRequest{Path: "/services/db/common", Data: farm.Conf{"db": "main"}.Encode()}); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "common.json")
	writeJSON(t, conf, farm.Conf{"db": "local"})
	cfg := joinConfig(tc, conf, "")
	cfg.Common = true
	r := start(t, func(ctx context.Context) error { return farm.Join(ctx, cfg) })
	waitFile(t, conf, farm.Conf{"db": "main"})
	writeJSON(t, conf, farm.Conf{"db": "other"})
	st := waitZnode(t, tc, "/services/db/common", farm.Conf{"db": "other"})
	r.stop(t)
	if st.GetEphemeralOwner() != 0 {
		t.Fatal("common is ephemeral")
	}
	if _, _, err := tc.get("/services/db/common"); err != nil {
		t.Fatalf("common after join stopped: %v", err)
	}
}

// TestJoinOneWay: import copies local changes up and never writes remote
// ones to the local file.
func TestJoinOneWay(t *testing.T) {
	tc := newCluster(t)
	conf := filepath.Join(t.TempDir(), "db.json")
	writeJSON(t, conf, farm.Conf{"a": "1"})
	var changed atomic.Int32
	cfg := joinConfig(tc, conf, "h")
	cfg.OneWay = true
	cfg.Hostname = "ignored"
	cfg.OnChanged = func() { changed.Add(1) }
	start(t, func(ctx context.Context) error { return farm.Join(ctx, cfg) })
	waitZnode(t, tc, "/services/db/h", farm.Conf{"a": "1"})
	if _, err := farm.SetField(context.Background(), tc.cl, "/services/db/h", "b", "2"); err != nil {
		t.Fatal(err)
	}
	writeJSON(t, conf, farm.Conf{"a": "3"})
	// Local's change applies on top of the remote one.
	waitZnode(t, tc, "/services/db/h", farm.Conf{"a": "3", "b": "2"})
	got, err := readJSON(conf)
	if err != nil || !got.Equal(farm.Conf{"a": "3"}) {
		t.Fatalf("local file = %v, %v: want it untouched by import", got, err)
	}
	if n := changed.Load(); n != 0 {
		t.Fatalf("OnChanged ran %d times on import, want 0", n)
	}
}

// TestJoinDJBDir: a DJB directory goes up, a file written in a new
// subdirectory follows, and a remote set lands as a file.
func TestJoinDJBDir(t *testing.T) {
	f, err := farm.ParseFormat("dir")
	if err != nil {
		t.Skip("no dir format yet:", err)
	}
	tc := newCluster(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "enabled"), []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := joinConfig(tc, dir, "h")
	cfg.Format = f
	start(t, func(ctx context.Context) error { return farm.Join(ctx, cfg) })
	waitZnode(t, tc, "/services/db/h", farm.Conf{"enabled": "0"})
	if err := os.Mkdir(filepath.Join(dir, "mysql"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "mysql", "delay"), []byte("3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitZnode(t, tc, "/services/db/h", farm.Conf{"enabled": "0", "mysql": farm.Conf{"delay": "3"}})
	if _, err := farm.SetField(context.Background(), tc.cl, "/services/db/h", "enabled", "1"); err != nil {
		t.Fatal(err)
	}
	nodetest.Eventually(t, nodetest.WaitTimeout, func() error {
		b, err := os.ReadFile(filepath.Join(dir, "enabled"))
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(b)) != "1" {
			return fmt.Errorf("enabled = %q, want 1", b)
		}
		return nil
	})
}

// TestJoinMerge3: when both sides changed, local's changed leaves apply
// on the remote content.
func TestJoinMerge3(t *testing.T) {
	for _, tt := range []struct {
		name                      string
		base, local, remote, want string
	}{
		{"different fields", `{"a":"1","b":"1"}`, `{"a":"2","b":"1"}`, `{"a":"1","b":"3"}`, `{"a":"2","b":"3"}`},
		{"same field: local wins", `{"a":"1"}`, `{"a":"2"}`, `{"a":"3"}`, `{"a":"2"}`},
		{"nested", `{"m":{"x":"1","y":"1"}}`, `{"m":{"x":"2","y":"1"}}`, `{"m":{"x":"1","y":"2","z":"9"}}`, `{"m":{"x":"2","y":"2","z":"9"}}`},
		{"local removes", `{"a":"1","b":"1"}`, `{"b":"1"}`, `{"a":"1","b":"2","c":"3"}`, `{"b":"2","c":"3"}`},
		{"local adds a dict", `{}`, `{"m":{"x":"1"}}`, `{"m":{"y":"2"}}`, `{"m":{"x":"1","y":"2"}}`},
		{"dict replaces a leaf", `{"m":"1"}`, `{"m":{"x":"1"}}`, `{"m":"1","n":"2"}`, `{"m":{"x":"1"},"n":"2"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dec := func(s string) farm.Conf {
				c, err := farm.DecodeConf([]byte(s))
				if err != nil {
					t.Fatal(err)
				}
				return c
			}
			base, local, remote := dec(tt.base), dec(tt.local), dec(tt.remote)
			got := farm.Merge3(base, local, remote)
			if !got.Equal(dec(tt.want)) {
				t.Fatalf("Merge3(%s, %s, %s) = %s, want %s", tt.base, tt.local, tt.remote, got.Encode(), tt.want)
			}
			if !remote.Equal(dec(tt.remote)) || !local.Equal(dec(tt.local)) {
				t.Fatal("Merge3 modified its arguments")
			}
		})
	}
}

// TestJoinDefaultName: the default name is an IPv4 address, or an error
// that says to pass --name.
func TestJoinDefaultName(t *testing.T) {
	name, err := farm.DefaultName()
	if err != nil {
		if !strings.Contains(err.Error(), "--name") {
			t.Fatalf("DefaultName error %q does not mention --name", err)
		}
		return
	}
	if strings.Count(name, ".") != 3 {
		t.Fatalf("DefaultName = %q, want an IPv4 address", name)
	}
}

// TestJoinSurvivesOutage: with the cluster down to one node (no quorum),
// join keeps running and retrying; a local change made meanwhile reaches
// the znode once the cluster is back.
func TestJoinSurvivesOutage(t *testing.T) {
	tc := newCluster(t)
	conf := filepath.Join(t.TempDir(), "db.json")
	writeJSON(t, conf, farm.Conf{"enabled": "0"})
	cfg := joinConfig(tc, conf, "h")
	r := start(t, func(ctx context.Context) error { return farm.Join(ctx, cfg) })
	waitZnode(t, tc, "/services/db/h", farm.Conf{"enabled": "0"})

	leader := tc.c.WaitLeader(t)
	other := tc.c.Followers(leader)[0]
	tc.c.Stop(leader)
	tc.c.Stop(other)
	writeJSON(t, conf, farm.Conf{"enabled": "1"})
	steady(t, 2*time.Second, func() error {
		select {
		case err := <-r.done:
			return fmt.Errorf("Join returned %v during the outage", err)
		default:
			return nil
		}
	})
	tc.c.Restart(leader)
	tc.c.Restart(other)
	tc.c.WaitLeader(t)
	waitZnode(t, tc, "/services/db/h", farm.Conf{"enabled": "1"})
}

// heldTree holds the answers of polls back while held, so that a test can
// change both sides before a joiner learns of the remote change.
type heldTree struct {
	*client.Client
	mu   sync.Mutex
	open chan struct{}
}

func (h *heldTree) Poll(ctx context.Context, req *paddockv1.PollRequest) (*paddockv1.PollResponse, error) {
	resp, err := h.Client.Poll(ctx, req)
	h.mu.Lock()
	open := h.open
	h.mu.Unlock()
	select {
	case <-open:
		return resp, err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (h *heldTree) hold() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.open = make(chan struct{})
}

func (h *heldTree) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	close(h.open)
}

// TestJoinMergesBothSides: a local edit made before join learned of a
// remote set loses its compare-and-set, and the two are merged: both
// fields survive, on both sides, and OnChanged runs for the local rewrite.
func TestJoinMergesBothSides(t *testing.T) {
	tc := newCluster(t)
	conf := filepath.Join(t.TempDir(), "db.json")
	writeJSON(t, conf, farm.Conf{"a": "0", "b": "0"})
	h := &heldTree{Client: tc.cl, open: make(chan struct{})}
	close(h.open)
	var changed atomic.Int32
	cfg := joinConfig(tc, conf, "h")
	cfg.Tree = h
	cfg.OnChanged = func() { changed.Add(1) }
	start(t, func(ctx context.Context) error { return farm.Join(ctx, cfg) })
	waitZnode(t, tc, "/services/db/h", farm.Conf{"a": "0", "b": "0"})

	h.hold()
	defer h.release()
	if _, err := farm.SetField(context.Background(), tc.cl, "/services/db/h", "b", "remote"); err != nil {
		t.Fatal(err)
	}
	writeJSON(t, conf, farm.Conf{"a": "local", "b": "0"})
	want := farm.Conf{"a": "local", "b": "remote"}
	waitZnode(t, tc, "/services/db/h", want)
	waitFile(t, conf, want)
	waitCount(t, "OnChanged", &changed, 1)
}

// TestJoinCommonRecreated: common deleted and created again in one Multi,
// at the version it had (0), with other content: the new content is a
// remote change and reaches the local file (the version alone would not
// tell it from what join last synced).
func TestJoinCommonRecreated(t *testing.T) {
	tc := newCluster(t)
	ctx := context.Background()
	conf := filepath.Join(t.TempDir(), "common.json")
	writeJSON(t, conf, farm.Conf{"db": "local"})
	cfg := joinConfig(tc, conf, "")
	cfg.Common = true
	start(t, func(ctx context.Context) error { return farm.Join(ctx, cfg) })
	st := waitZnode(t, tc, "/services/db/common", farm.Conf{"db": "local"})
	if _, err := tc.cl.Multi(ctx, &paddockv1.MultiRequest{Ops: []*paddockv1.Op{
		{Op: &paddockv1.Op_Delete{Delete: &paddockv1.DeleteRequest{Path: "/services/db/common"}}},
		{Op: &paddockv1.Op_Create{Create: &paddockv1.CreateRequest{Path: "/services/db/common", Data: farm.Conf{"db": "new"}.Encode()}}},
	}}); err != nil {
		t.Fatal(err)
	}
	if _, st2, err := tc.get("/services/db/common"); err != nil || st2.GetVersion() != st.GetVersion() {
		t.Fatalf("common after the Multi: version %d, %v; want %d", st2.GetVersion(), err, st.GetVersion())
	}
	waitFile(t, conf, farm.Conf{"db": "new"})
}

// TestJoinDirUnwritableRemoteKey: a remote set of a field a DJB directory
// cannot hold (a/b) cannot be written locally; that must not stop the
// sync: a local change still goes up, and once the field is unset the
// remote side is followed again.
func TestJoinDirUnwritableRemoteKey(t *testing.T) {
	f, err := farm.ParseFormat("dir")
	if err != nil {
		t.Fatal(err)
	}
	tc := newCluster(t)
	ctx := context.Background()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "enabled"), []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := joinConfig(tc, dir, "h")
	cfg.Format = f
	start(t, func(ctx context.Context) error { return farm.Join(ctx, cfg) })
	const host = "/services/db/h"
	waitZnode(t, tc, host, farm.Conf{"enabled": "0"})
	if _, err := farm.SetField(ctx, tc.cl, host, "a/b", "x"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "enabled"), []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitZnode(t, tc, host, farm.Conf{"enabled": "1", "a/b": "x"})
	if _, err := farm.UnsetField(ctx, tc.cl, host, "a/b"); err != nil {
		t.Fatal(err)
	}
	if _, err := farm.SetField(ctx, tc.cl, host, "weight", "5"); err != nil {
		t.Fatal(err)
	}
	nodetest.Eventually(t, nodetest.WaitTimeout, func() error {
		got, err := f.Read(dir)
		if err != nil {
			return err
		}
		if want := (farm.Conf{"enabled": "1", "weight": "5"}); !got.Equal(want) {
			return fmt.Errorf("%s = %s, want %s", dir, got.Encode(), want.Encode())
		}
		return nil
	})
}

// TestJoinDirUnwritableKeyLeftOut: while the znode holds a field a DJB
// directory cannot hold, remote changes of the other fields still reach
// the directory (that field alone is left out), and the field stays on
// the znode across a local change.
func TestJoinDirUnwritableKeyLeftOut(t *testing.T) {
	f, err := farm.ParseFormat("dir")
	if err != nil {
		t.Fatal(err)
	}
	tc := newCluster(t)
	ctx := context.Background()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "enabled"), []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := joinConfig(tc, dir, "h")
	cfg.Format = f
	start(t, func(ctx context.Context) error { return farm.Join(ctx, cfg) })
	const host = "/services/db/h"
	waitZnode(t, tc, host, farm.Conf{"enabled": "0"})
	for _, kv := range [][2]string{{"a/b", "x"}, {"weight", "5"}} {
		if _, err := farm.SetField(ctx, tc.cl, host, kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	nodetest.Eventually(t, nodetest.WaitTimeout, func() error {
		got, err := f.Read(dir)
		if err != nil {
			return err
		}
		if want := (farm.Conf{"enabled": "0", "weight": "5"}); !got.Equal(want) {
			return fmt.Errorf("%s = %s, want %s", dir, got.Encode(), want.Encode())
		}
		return nil
	})
	if err := os.WriteFile(filepath.Join(dir, "enabled"), []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitZnode(t, tc, host, farm.Conf{"enabled": "1", "weight": "5", "a/b": "x"})
}

// TestJoinFarmDataNotJSON: a farm znode created by hand with data that is
// no JSON object cannot keep a size. Join registers anyway and says so
// once, rather than reading the farm and logging every rescan.
func TestJoinFarmDataNotJSON(t *testing.T) {
	tc := newCluster(t)
	ctx := context.Background()
	if err := farm.EnsurePath(ctx, tc.cl, "/services"); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.cl.Create(ctx, &paddockv1.CreateRequest{Path: "/services/db", Data: []byte("db farm")}); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "db.json")
	writeJSON(t, conf, farm.Conf{"enabled": "1"})
	var logs logSink
	cfg := joinConfig(tc, conf, "h")
	cfg.Log = slog.New(slog.NewTextHandler(&logs, nil))
	start(t, func(ctx context.Context) error { return farm.Join(ctx, cfg) })
	waitZnode(t, tc, "/services/db/h", farm.Conf{"enabled": "1"})
	nodetest.Eventually(t, nodetest.WaitTimeout, func() error {
		if !strings.Contains(logs.String(), "bad configuration") {
			return fmt.Errorf("no log of the farm's data; logs:\n%s", logs.String())
		}
		return nil
	})
	steady(t, 2*time.Second, func() error {
		if n := strings.Count(logs.String(), "bad configuration"); n > 1 {
			return fmt.Errorf("the farm's data logged %d times, want once; logs:\n%s", n, logs.String())
		}
		return nil
	})
	if g, err := tc.cl.Get(ctx, &paddockv1.GetRequest{Path: "/services/db"}); err != nil || string(g.GetData()) != "db farm" {
		t.Fatalf("farm znode = %q, %v: want it untouched", g.GetData(), err)
	}
}

// setHookTree is a heldTree that runs afterSet (once) when a Set
// succeeds: a local edit landing while a joiner's merge goes up.
type setHookTree struct {
	*heldTree
	afterSet atomic.Pointer[func()]
}

func (h *setHookTree) Set(ctx context.Context, req *paddockv1.SetRequest) (*paddockv1.SetResponse, error) {
	resp, err := h.heldTree.Set(ctx, req)
	if err == nil {
		if f := h.afterSet.Swap(nil); f != nil {
			(*f)()
		}
	}
	return resp, err
}

// TestJoinLocalEditDuringMerge: a local edit made while a merge of both
// sides goes up is not written over by the merge's rewrite of the local
// copy: it is merged in turn and reaches the znode.
func TestJoinLocalEditDuringMerge(t *testing.T) {
	tc := newCluster(t)
	conf := filepath.Join(t.TempDir(), "db.json")
	writeJSON(t, conf, farm.Conf{"a": "0"})
	h := &setHookTree{heldTree: &heldTree{Client: tc.cl, open: make(chan struct{})}}
	close(h.open)
	cfg := joinConfig(tc, conf, "h")
	cfg.Tree = h
	start(t, func(ctx context.Context) error { return farm.Join(ctx, cfg) })
	waitZnode(t, tc, "/services/db/h", farm.Conf{"a": "0"})
	// The size is raised (a Set through h) before the hook is set.
	waitZnode(t, tc, "/services/db", farm.Conf{farm.PropSize: json.Number("1")})

	h.hold()
	defer h.release()
	if _, err := farm.SetField(context.Background(), tc.cl, "/services/db/h", "r", "1"); err != nil {
		t.Fatal(err)
	}
	edit := func() { writeJSON(t, conf, farm.Conf{"a": "3"}) }
	h.afterSet.Store(&edit)
	writeJSON(t, conf, farm.Conf{"a": "2"})
	want := farm.Conf{"a": "3", "r": "1"}
	waitZnode(t, tc, "/services/db/h", want)
	waitFile(t, conf, want)
}

// TestJoinCommonOneWayLocalWins: import --common writes the local copy
// over an existing common on start (the local copy wins for OneWay), and
// over a common whose data is no JSON object.
func TestJoinCommonOneWayLocalWins(t *testing.T) {
	for _, existing := range []string{`{"db":"main","other":"x"}`, "not json"} {
		t.Run(existing, func(t *testing.T) {
			tc := newCluster(t)
			ctx := context.Background()
			if err := farm.EnsurePath(ctx, tc.cl, "/services/db"); err != nil {
				t.Fatal(err)
			}
			if _, err := tc.cl.Create(ctx, &paddockv1.CreateRequest{Path: "/services/db/common", Data: []byte(existing)}); err != nil {
				t.Fatal(err)
			}
			conf := filepath.Join(t.TempDir(), "common.json")
			writeJSON(t, conf, farm.Conf{"db": "local"})
			cfg := joinConfig(tc, conf, "")
			cfg.Common, cfg.OneWay = true, true
			start(t, func(ctx context.Context) error { return farm.Join(ctx, cfg) })
			waitZnode(t, tc, "/services/db/common", farm.Conf{"db": "local"})
		})
	}
}

// hookFormat is a Format that runs afterWrite (once) right after a Write:
// a local edit landing between join's rewrite of the local copy and its
// reading it back.
type hookFormat struct {
	farm.Format
	afterWrite atomic.Pointer[func()]
}

func (h *hookFormat) Write(p string, c farm.Conf) (bool, error) {
	changed, err := h.Format.Write(p, c)
	if f := h.afterWrite.Swap(nil); f != nil {
		(*f)()
	}
	return changed, err
}

// TestJoinLocalEditAfterRewrite: a local edit made right after join wrote
// a remote change to the local copy is not taken for join's own rewrite:
// it goes up.
func TestJoinLocalEditAfterRewrite(t *testing.T) {
	tc := newCluster(t)
	conf := filepath.Join(t.TempDir(), "db.json")
	writeJSON(t, conf, farm.Conf{"a": "0"})
	f := &hookFormat{}
	f.Format, _ = farm.ParseFormat("json")
	cfg := joinConfig(tc, conf, "h")
	cfg.Format = f
	start(t, func(ctx context.Context) error { return farm.Join(ctx, cfg) })
	waitZnode(t, tc, "/services/db/h", farm.Conf{"a": "0"})
	edit := func() { writeJSON(t, conf, farm.Conf{"a": "0", "r": "1", "u": "user"}) }
	f.afterWrite.Store(&edit)
	if _, err := farm.SetField(context.Background(), tc.cl, "/services/db/h", "r", "1"); err != nil {
		t.Fatal(err)
	}
	want := farm.Conf{"a": "0", "r": "1", "u": "user"}
	waitZnode(t, tc, "/services/db/h", want)
	waitFile(t, conf, want)
}

// TestJoinDirRewordingNoEcho: a remote value a DJB directory words
// differently (a number, a list, a string with spaces around it, null)
// is written to the directory and not sent back up reworded.
func TestJoinDirRewordingNoEcho(t *testing.T) {
	f, err := farm.ParseFormat("dir")
	if err != nil {
		t.Fatal(err)
	}
	tc := newCluster(t)
	ctx := context.Background()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "enabled"), []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := joinConfig(tc, dir, "h")
	cfg.Format = f
	start(t, func(ctx context.Context) error { return farm.Join(ctx, cfg) })
	const host = "/services/db/h"
	st := waitZnode(t, tc, host, farm.Conf{"enabled": "0"})
	data := []byte(`{"enabled":"0","n":12,"l":[1,"a"],"s":"  x  ","z":null,"d":{"t":true}}`)
	set, err := tc.cl.Set(ctx, &paddockv1.SetRequest{Path: host, Data: data, Version: proto.Int32(st.GetVersion())})
	if err != nil {
		t.Fatal(err)
	}
	nodetest.Eventually(t, nodetest.WaitTimeout, func() error {
		got, err := f.Read(dir)
		if err != nil {
			return err
		}
		want := farm.Conf{"enabled": "0", "n": "12", "l": `[1,"a"]`, "s": "x", "z": "", "d": farm.Conf{"t": "true"}}
		if !got.Equal(want) {
			return fmt.Errorf("%s = %s, want %s", dir, got.Encode(), want.Encode())
		}
		return nil
	})
	steady(t, 1500*time.Millisecond, func() error {
		_, st, err := tc.get(host)
		if err != nil {
			return err
		}
		if st.GetVersion() != set.GetStat().GetVersion() {
			return fmt.Errorf("%s version %d, want %d: join wrote the directory's wording back", host, st.GetVersion(), set.GetStat().GetVersion())
		}
		return nil
	})
}
