package farm_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paddock/paddock/client"
	"github.com/paddock/paddock/farm"
	"github.com/paddock/paddock/node"
	"github.com/paddock/paddock/node/nodetest"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// addHost registers host name in /services/db with conf, owned by a new
// session it returns.
func addHost(t *testing.T, tc *testCluster, name string, conf farm.Conf) *client.Session {
	t.Helper()
	ctx := context.Background()
	if err := farm.EnsurePath(ctx, tc.cl, "/services/db"); err != nil {
		t.Fatal(err)
	}
	s, err := tc.cl.NewSession(ctx, sessionTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	_, err = tc.cl.Create(ctx, &paddockv1.CreateRequest{
		Path: farm.HostPath("/services/db", name), Data: conf.Encode(), Type: paddockv1.NodeType_NODE_TYPE_EPHEMERAL, SessionId: s.ID(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// exportConfig exports /services/db to a JSON file, counting changes.
func exportConfig(tc *testCluster, dest string, changed *atomic.Int32) farm.ExportConfig {
	f, _ := farm.ParseFormat("json")
	return farm.ExportConfig{
		Tree: tc.cl, Farm: "/services/db", Dest: dest, Format: f,
		OnChanged: func() { changed.Add(1) }, Stats: &farm.ExportStats{},
	}
}

// waitCount waits until n holds want.
func waitCount(t *testing.T, what string, n *atomic.Int32, want int32) {
	t.Helper()
	nodetest.Eventually(t, nodetest.WaitTimeout, func() error {
		if got := n.Load(); got != want {
			return fmt.Errorf("%s = %d, want %d", what, got, want)
		}
		return nil
	})
}

// TestExportFollowsFarm: export writes the farm, follows a set by reading
// that host alone, ignores a set to the same value (no write, no
// OnChanged), drops a host whose session closed, and keeps following
// across a leader's stop and restart, with no full re-read.
func TestExportFollowsFarm(t *testing.T) {
	tc := newCluster(t)
	ctx := context.Background()
	sb := addHost(t, tc, "b", farm.Conf{"enabled": "0"})
	// Persistent: a session of the test's length could expire during the
	// node stops below, and this host must stay.
	if _, err := tc.cl.Create(ctx, &paddockv1.CreateRequest{Path: "/services/db/a", Data: farm.Conf{"enabled": "1"}.Encode()}); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "farm.json")
	var changed atomic.Int32
	cfg := exportConfig(tc, dest, &changed)
	stats := cfg.Stats
	start(t, func(ctx context.Context) error { return farm.Export(ctx, cfg) })

	waitFile(t, dest, farm.Conf{"a": farm.Conf{"enabled": "1"}, "b": farm.Conf{"enabled": "0"}})
	waitCount(t, "OnChanged", &changed, 1)

	if _, err := farm.SetField(ctx, tc.cl, "/services/db/b", "enabled", "1"); err != nil {
		t.Fatal(err)
	}
	waitFile(t, dest, farm.Conf{"a": farm.Conf{"enabled": "1"}, "b": farm.Conf{"enabled": "1"}})
	waitCount(t, "OnChanged", &changed, 2)

	// A set to the same content: an event, a host read, no write.
	reads := stats.HostReads.Load()
	if _, err := tc.cl.Set(ctx, &paddockv1.SetRequest{Path: "/services/db/a", Data: farm.Conf{"enabled": "1"}.Encode()}); err != nil {
		t.Fatal(err)
	}
	nodetest.Eventually(t, nodetest.WaitTimeout, func() error {
		if got := stats.HostReads.Load(); got != reads+1 {
			return fmt.Errorf("host reads = %d, want %d", got, reads+1)
		}
		return nil
	})
	if got := changed.Load(); got != 2 {
		t.Fatalf("OnChanged = %d after a no-op set, want 2", got)
	}

	if err := sb.Close(ctx); err != nil {
		t.Fatal(err)
	}
	waitFile(t, dest, farm.Conf{"a": farm.Conf{"enabled": "1"}})
	waitCount(t, "OnChanged", &changed, 3)

	// Node 0, the client's first endpoint, serves the exporter's polls;
	// then the leader goes.
	tc.c.Stop(0)
	tc.c.WaitLeader(t)
	if _, err := farm.SetField(ctx, tc.cl, "/services/db/a", "enabled", "0"); err != nil {
		t.Fatal(err)
	}
	waitFile(t, dest, farm.Conf{"a": farm.Conf{"enabled": "0"}})
	tc.c.Restart(0)
	leader := tc.c.WaitLeader(t)
	tc.c.Stop(leader)
	tc.c.WaitLeader(t)
	if _, err := farm.SetField(ctx, tc.cl, "/services/db/a", "weight", "5"); err != nil {
		t.Fatal(err)
	}
	waitFile(t, dest, farm.Conf{"a": farm.Conf{"enabled": "0", "weight": "5"}})
	tc.c.Restart(leader)
	tc.c.WaitLeader(t)
	if _, err := farm.SetField(ctx, tc.cl, "/services/db/a", "weight", "6"); err != nil {
		t.Fatal(err)
	}
	waitFile(t, dest, farm.Conf{"a": farm.Conf{"enabled": "0", "weight": "6"}})
	waitCount(t, "OnChanged", &changed, 6)
	if got := stats.FullReads.Load(); got != 1 {
		t.Fatalf("full reads = %d, want 1 (only at start)", got)
	}
	if got := stats.Writes.Load(); got != 6 {
		t.Fatalf("writes = %d, want 6", got)
	}
}

// TestExportFilter: only the hosts passing the filter are written; a host
// changing so that it passes appears.
func TestExportFilter(t *testing.T) {
	tc := newCluster(t)
	addHost(t, tc, "a", farm.Conf{"enabled": "1"})
	addHost(t, tc, "b", farm.Conf{"enabled": "0"})
	dest := filepath.Join(t.TempDir(), "farm.json")
	var changed atomic.Int32
	cfg := exportConfig(tc, dest, &changed)
	f, err := farm.ParseFilter("enabled=1")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Filter = f
	start(t, func(ctx context.Context) error { return farm.Export(ctx, cfg) })
	waitFile(t, dest, farm.Conf{"a": farm.Conf{"enabled": "1"}})
	if _, err := farm.SetField(context.Background(), tc.cl, "/services/db/b", "enabled", "1"); err != nil {
		t.Fatal(err)
	}
	waitFile(t, dest, farm.Conf{"a": farm.Conf{"enabled": "1"}, "b": farm.Conf{"enabled": "1"}})
}

// TestExportOnce: one read, one write, and Export returns.
func TestExportOnce(t *testing.T) {
	tc := newCluster(t)
	addHost(t, tc, "a", farm.Conf{"enabled": "1"})
	dest := filepath.Join(t.TempDir(), "farm.json")
	var changed atomic.Int32
	cfg := exportConfig(tc, dest, &changed)
	cfg.Once = true
	if err := farm.Export(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	got, err := readJSON(dest)
	if err != nil || !got.Equal(farm.Conf{"a": farm.Conf{"enabled": "1"}}) {
		t.Fatalf("%s = %v, %v", dest, got, err)
	}
	if changed.Load() != 1 || cfg.Stats.FullReads.Load() != 1 {
		t.Fatalf("OnChanged = %d, full reads = %d, want 1 and 1", changed.Load(), cfg.Stats.FullReads.Load())
	}
}

// TestExportWaitCoalesces: with WaitMin, a burst of changes is written
// once; with changes that never pause, WaitMax still writes.
func TestExportWaitCoalesces(t *testing.T) {
	tc := newCluster(t)
	ctx := context.Background()
	addHost(t, tc, "a", farm.Conf{"n": "0"})
	dest := filepath.Join(t.TempDir(), "farm.json")
	var changed atomic.Int32
	cfg := exportConfig(tc, dest, &changed)
	cfg.WaitMin, cfg.WaitMax = time.Second, 10*time.Second
	start(t, func(ctx context.Context) error { return farm.Export(ctx, cfg) })
	waitCount(t, "OnChanged", &changed, 1)

	for i := 1; i <= 5; i++ {
		if _, err := farm.SetField(ctx, tc.cl, "/services/db/a", "n", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFile(t, dest, farm.Conf{"a": farm.Conf{"n": "5"}})
	waitCount(t, "OnChanged (one write for the burst)", &changed, 2)
}

// TestExportWaitMax: changes that never leave WaitMin of quiet are written
// WaitMax after the first.
func TestExportWaitMax(t *testing.T) {
	tc := newCluster(t)
	ctx := context.Background()
	addHost(t, tc, "a", farm.Conf{"n": "0"})
	dest := filepath.Join(t.TempDir(), "farm.json")
	var changed atomic.Int32
	cfg := exportConfig(tc, dest, &changed)
	cfg.WaitMin, cfg.WaitMax = 5*time.Second, 500*time.Millisecond
	start(t, func(ctx context.Context) error { return farm.Export(ctx, cfg) })
	waitCount(t, "OnChanged", &changed, 1)

	deadline := time.Now().Add(nodetest.WaitTimeout)
	for i := 1; changed.Load() < 2; i++ {
		if time.Now().After(deadline) {
			t.Fatal("no write while changes kept coming: WaitMax did not bound the wait")
		}
		if _, err := farm.SetField(ctx, tc.cl, "/services/db/a", "n", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond) // pace the changes, well under WaitMin
	}
}

// TestExportSurvivesOutage: with the cluster down to one node the file
// keeps its content and export keeps running; once the cluster is back it
// catches later changes from its last zxid, without a full re-read.
func TestExportSurvivesOutage(t *testing.T) {
	tc := newCluster(t)
	ctx := context.Background()
	addHost(t, tc, "a", farm.Conf{"n": "0"})
	// A persistent host: the sessions of the outage may expire.
	if _, err := tc.cl.Create(ctx, &paddockv1.CreateRequest{Path: "/services/db/p", Data: farm.Conf{"n": "0"}.Encode()}); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "farm.json")
	var changed atomic.Int32
	cfg := exportConfig(tc, dest, &changed)
	r := start(t, func(ctx context.Context) error { return farm.Export(ctx, cfg) })
	waitFile(t, dest, farm.Conf{"a": farm.Conf{"n": "0"}, "p": farm.Conf{"n": "0"}})

	leader := tc.c.WaitLeader(t)
	other := tc.c.Followers(leader)[0]
	tc.c.Stop(leader)
	tc.c.Stop(other)
	steady(t, 2*time.Second, func() error {
		select {
		case err := <-r.done:
			return fmt.Errorf("Export returned %v during the outage", err)
		default:
		}
		got, err := readJSON(dest)
		if err != nil {
			return err
		}
		if _, ok := got["p"]; !ok {
			return fmt.Errorf("%s = %s during the outage, want the last good file", dest, got.Encode())
		}
		return nil
	})
	tc.c.Restart(leader)
	tc.c.Restart(other)
	tc.c.WaitLeader(t)
	if _, err := farm.SetField(ctx, tc.cl, "/services/db/p", "n", "1"); err != nil {
		t.Fatal(err)
	}
	nodetest.Eventually(t, nodetest.WaitTimeout, func() error {
		got, err := readJSON(dest)
		if err != nil {
			return err
		}
		if v, _ := got.Lookup("p.n"); v != "1" {
			return fmt.Errorf("%s = %s, want p.n = 1", dest, got.Encode())
		}
		return nil
	})
	if got := cfg.Stats.FullReads.Load(); got != 1 {
		t.Fatalf("full reads = %d, want 1", got)
	}
}

// TestExportDJBDir: the farm as a DJB directory, a host per directory.
func TestExportDJBDir(t *testing.T) {
	f, err := farm.ParseFormat("dir")
	if err != nil {
		t.Skip("no dir format yet:", err)
	}
	tc := newCluster(t)
	addHost(t, tc, "a", farm.Conf{"enabled": "1"})
	dest := filepath.Join(t.TempDir(), "farm")
	var changed atomic.Int32
	cfg := exportConfig(tc, dest, &changed)
	cfg.Format = f
	start(t, func(ctx context.Context) error { return farm.Export(ctx, cfg) })
	nodetest.Eventually(t, nodetest.WaitTimeout, func() error {
		got, err := f.Read(dest)
		if err != nil {
			return err
		}
		if !got.Equal(farm.Conf{"a": farm.Conf{"enabled": "1"}}) {
			return fmt.Errorf("%s = %s", dest, got.Encode())
		}
		return nil
	})
	if _, err := farm.SetField(context.Background(), tc.cl, "/services/db/a", "enabled", "0"); err != nil {
		t.Fatal(err)
	}
	nodetest.Eventually(t, nodetest.WaitTimeout, func() error {
		got, err := f.Read(dest)
		if err != nil {
			return err
		}
		if !got.Equal(farm.Conf{"a": farm.Conf{"enabled": "0"}}) {
			return fmt.Errorf("%s = %s", dest, got.Encode())
		}
		return nil
	})
}

// gatedTree holds polls back while its gate is shut, so that a test can
// make the farm's history outrun an exporter.
type gatedTree struct {
	*client.Client
	mu   sync.Mutex
	open chan struct{}
}

func (g *gatedTree) Poll(ctx context.Context, req *paddockv1.PollRequest) (*paddockv1.PollResponse, error) {
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	select {
	case <-open:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.Client.Poll(ctx, req)
}

func (g *gatedTree) shut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open = make(chan struct{})
}

func (g *gatedTree) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.open)
}

// TestExportRereadsOnCompacted: an exporter whose last zxid fell out of
// the nodes' event history reads the whole farm again and goes on.
func TestExportRereadsOnCompacted(t *testing.T) {
	tc := newCluster(t, nodetest.WithConfig(func(c *node.Config) { c.WatchHistory, c.WatchSlowLag = 8, 4 }))
	ctx := context.Background()
	addHost(t, tc, "a", farm.Conf{"n": "0"})
	g := &gatedTree{Client: tc.cl, open: make(chan struct{})}
	close(g.open)
	dest := filepath.Join(t.TempDir(), "farm.json")
	var changed atomic.Int32
	cfg := exportConfig(tc, dest, &changed)
	cfg.Tree = g
	start(t, func(ctx context.Context) error { return farm.Export(ctx, cfg) })
	waitFile(t, dest, farm.Conf{"a": farm.Conf{"n": "0"}})

	g.shut()
	// The poll in flight returns with this change; the next one waits.
	if _, err := farm.SetField(ctx, tc.cl, "/services/db/a", "n", "1"); err != nil {
		t.Fatal(err)
	}
	waitFile(t, dest, farm.Conf{"a": farm.Conf{"n": "1"}})
	for i := 2; i <= 30; i++ {
		if _, err := farm.SetField(ctx, tc.cl, "/services/db/a", "n", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	g.release()
	waitFile(t, dest, farm.Conf{"a": farm.Conf{"n": "30"}})
	if got := cfg.Stats.FullReads.Load(); got != 2 {
		t.Fatalf("full reads = %d, want 2 (start, then the gap)", got)
	}
}

// TestExportFarmCreatedLater: a farm that does not exist yet exports as
// empty; once created, it is read again and its hosts followed.
func TestExportFarmCreatedLater(t *testing.T) {
	tc := newCluster(t)
	dest := filepath.Join(t.TempDir(), "farm.json")
	var changed atomic.Int32
	cfg := exportConfig(tc, dest, &changed)
	start(t, func(ctx context.Context) error { return farm.Export(ctx, cfg) })
	waitFile(t, dest, farm.Conf{})
	addHost(t, tc, "a", farm.Conf{"enabled": "1"})
	waitFile(t, dest, farm.Conf{"a": farm.Conf{"enabled": "1"}})
	if got := cfg.Stats.FullReads.Load(); got != 2 {
		t.Fatalf("full reads = %d, want 2 (start, then the farm's creation)", got)
	}
}

// TestExportDJBDirUnwritableKey: a host holding a field a DJB directory
// cannot hold (a/b, set from anywhere) does not stop the export: that
// field is left out, the rest of the farm is written and followed.
func TestExportDJBDirUnwritableKey(t *testing.T) {
	f, err := farm.ParseFormat("dir")
	if err != nil {
		t.Fatal(err)
	}
	tc := newCluster(t)
	addHost(t, tc, "a", farm.Conf{"enabled": "1"})
	addHost(t, tc, "b", farm.Conf{"enabled": "1"})
	dest := filepath.Join(t.TempDir(), "farm")
	var changed atomic.Int32
	cfg := exportConfig(tc, dest, &changed)
	cfg.Format = f
	start(t, func(ctx context.Context) error { return farm.Export(ctx, cfg) })
	waitDir := func(want farm.Conf) {
		t.Helper()
		nodetest.Eventually(t, nodetest.WaitTimeout, func() error {
			got, err := f.Read(dest)
			if err != nil {
				return err
			}
			if !got.Equal(want) {
				return fmt.Errorf("%s = %s, want %s", dest, got.Encode(), want.Encode())
			}
			return nil
		})
	}
	waitDir(farm.Conf{"a": farm.Conf{"enabled": "1"}, "b": farm.Conf{"enabled": "1"}})
	ctx := context.Background()
	if _, err := farm.SetField(ctx, tc.cl, "/services/db/a", "x/y", "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := farm.SetField(ctx, tc.cl, "/services/db/a", "enabled", "0"); err != nil {
		t.Fatal(err)
	}
	if _, err := farm.SetField(ctx, tc.cl, "/services/db/b", "enabled", "0"); err != nil {
		t.Fatal(err)
	}
	waitDir(farm.Conf{"a": farm.Conf{"enabled": "0"}, "b": farm.Conf{"enabled": "0"}})
}
