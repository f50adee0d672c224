package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeStore is an in-memory key-value store with watches, the system under
// test of the runner's own tests.
type fakeStore struct {
	mu       sync.Mutex
	kv       map[string][]byte
	watchers map[string][]chan time.Time
	failGets bool          // every Get fails
	slowGets time.Duration // every Get takes this long
	// locks are the fake's locks: a lock is held while its channel holds
	// a value.
	locks map[string]chan struct{}
}

func newFakeStore() *fakeStore {
	return &fakeStore{kv: map[string][]byte{}, watchers: map[string][]chan time.Time{}, locks: map[string]chan struct{}{}}
}

func (s *fakeStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.kv)
}

// fakeCluster is a Cluster of a fakeStore: this process is its "server"
// (so CPU and RSS are read from /proc), it cannot be restarted and has no
// hold command. It records where clients are opened.
type fakeCluster struct {
	s   *fakeStore
	dir string

	mu sync.Mutex
	// leaders are Leader's answers, one per call, the last one repeated;
	// none is node 0.
	leaders []leaderAnswer
	// opened is the node of every NewClient, in order; closed counts the
	// clients closed.
	opened []int
	closed int
}

type leaderAnswer struct {
	node int
	err  error
}

func (c *fakeCluster) Leader(context.Context) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.leaders) == 0 {
		return 0, nil
	}
	a := c.leaders[0]
	if len(c.leaders) > 1 {
		c.leaders = c.leaders[1:]
	}
	return a.node, a.err
}

func (c *fakeCluster) NewClient(_ context.Context, node int) (Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.opened = append(c.opened, node)
	return &fakeClient{s: c.s, c: c}, nil
}

// openedAndClosed are the nodes of the clients opened so far and how many
// were closed.
func (c *fakeCluster) openedAndClosed() ([]int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.opened), c.closed
}

func (c *fakeCluster) Name() string       { return "fake" }
func (c *fakeCluster) Nodes() int         { return 3 }
func (c *fakeCluster) PIDs() []int        { return []int{os.Getpid()} }
func (c *fakeCluster) DataDirs() []string { return []string{c.dir} }
func (c *fakeCluster) Prepare(context.Context) error {
	return nil
}
func (c *fakeCluster) Stop(int) error                             { return ErrUnsupported }
func (c *fakeCluster) Start(int) error                            { return ErrUnsupported }
func (c *fakeCluster) HoldCommand(string, time.Duration) []string { return nil }
func (c *fakeCluster) Close() error                               { return nil }

type fakeClient struct {
	s *fakeStore
	c *fakeCluster
}

func (c *fakeClient) Create(_ context.Context, key string, value []byte) error {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if _, ok := c.s.kv[key]; ok {
		return fmt.Errorf("fake: %s exists", key)
	}
	c.s.kv[key] = value
	return nil
}

func (c *fakeClient) Put(ctx context.Context, key string, value []byte) error {
	c.s.mu.Lock()
	if _, ok := c.s.kv[key]; !ok {
		c.s.mu.Unlock()
		return fmt.Errorf("fake: no %s", key)
	}
	c.s.kv[key] = value
	ws := slices.Clone(c.s.watchers[key])
	c.s.mu.Unlock()
	for _, w := range ws {
		select {
		case w <- time.Now():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (c *fakeClient) Get(_ context.Context, key string, _ Consistency) error {
	time.Sleep(c.s.slowGets)
	ok, _ := c.Exists(context.Background(), key)
	switch {
	case c.s.failGets:
		return errors.New("fake: get failed")
	case !ok:
		return fmt.Errorf("fake: no %s", key)
	}
	return nil
}

func (c *fakeClient) Exists(_ context.Context, key string) (bool, error) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	_, ok := c.s.kv[key]
	return ok, nil
}

func (c *fakeClient) Watch(ctx context.Context, key string) (<-chan time.Time, error) {
	ch := make(chan time.Time, 16)
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	c.s.watchers[key] = append(c.s.watchers[key], ch)
	context.AfterFunc(ctx, func() {
		c.s.mu.Lock()
		defer c.s.mu.Unlock()
		c.s.watchers[key] = slices.DeleteFunc(c.s.watchers[key], func(w chan time.Time) bool { return w == ch })
	})
	return ch, nil
}

func (c *fakeClient) OpenSession(context.Context, time.Duration) (Session, error) {
	return &fakeSession{c: c}, nil
}

func (c *fakeClient) Close() error {
	c.c.mu.Lock()
	defer c.c.mu.Unlock()
	c.c.closed++
	return nil
}

// NewMutex makes fakeClient a Locker.
func (c *fakeClient) NewMutex(_ context.Context, name string, _ time.Duration) (Mutex, error) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	l, ok := c.s.locks[name]
	if !ok {
		l = make(chan struct{}, 1)
		c.s.locks[name] = l
	}
	return &fakeMutex{l: l}, nil
}

// fakeMutex holds its lock while it has put a value in the lock's channel.
type fakeMutex struct {
	l    chan struct{}
	held bool
}

func (m *fakeMutex) Lock(ctx context.Context) error {
	select {
	case m.l <- struct{}{}:
		m.held = true
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *fakeMutex) Unlock(context.Context) error {
	if !m.held {
		return errors.New("fake: unlock of a mutex not held")
	}
	m.held = false
	<-m.l
	return nil
}

func (m *fakeMutex) Close(ctx context.Context) error {
	if m.held {
		return m.Unlock(ctx)
	}
	return nil
}

type fakeSession struct {
	c    *fakeClient
	keys []string
}

func (s *fakeSession) CreateEphemeral(ctx context.Context, key string, value []byte) error {
	if err := s.c.Create(ctx, key, value); err != nil {
		return err
	}
	s.keys = append(s.keys, key)
	return nil
}

func (s *fakeSession) Close(context.Context) error {
	s.c.s.mu.Lock()
	defer s.c.s.mu.Unlock()
	for _, k := range s.keys {
		delete(s.c.s.kv, k)
	}
	return nil
}

func TestRunFake(t *testing.T) {
	s := newFakeStore()
	c := &fakeCluster{s: s, dir: t.TempDir()}
	var log strings.Builder
	workloads := slices.DeleteFunc(slices.Clone(Workloads), func(w string) bool { return w == WorkloadEphemeralCleanup })
	res, err := Run(context.Background(), c, Options{
		Duration: 100 * time.Millisecond, Warmup: 20 * time.Millisecond,
		Clients: []int{1, 4}, Watchers: []int{1, 20}, Keys: 50, Workloads: workloads, Log: &log,
		LockClients: []int{1, 4},
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.System != "fake" {
		t.Errorf("Run system = %q, want fake", res.System)
	}
	type key struct {
		w string
		n int
	}
	got := map[key]Row{}
	for _, r := range res.Rows {
		got[key{r.Workload, r.Clients}] = r
	}
	var want []key
	for _, w := range []string{WorkloadWrite, WorkloadReadLinearizable, WorkloadReadSerializable, WorkloadMixed, WorkloadSessionChurn, WorkloadLock} {
		want = append(want, key{w, 1}, key{w, 4})
	}
	want = append(want, key{WorkloadWatch, 1}, key{WorkloadWatch, 20}, key{WorkloadMemory, 0}, key{WorkloadRestart, 0},
		key{WorkloadElection, electionContenders}, key{WorkloadElectionServerKill, electionContenders})
	if len(res.Rows) != len(want) {
		t.Errorf("Run returned %d rows, want %d: %+v", len(res.Rows), len(want), res.Rows)
	}
	for _, k := range want {
		r, ok := got[k]
		switch {
		case !ok:
			t.Errorf("no %s row of %d clients", k.w, k.n)
		case k.w == WorkloadRestart:
			if r.P50 >= 0 || r.P99 >= 0 {
				t.Errorf("restart of a cluster that cannot restart: p50 %v p99 %v, want n/a (negative)", r.P50, r.P99)
			}
		case k.w == WorkloadElection || k.w == WorkloadElectionServerKill:
			if r.Ops != 0 {
				t.Errorf("%s row of a cluster without contenders = %+v, want no rounds", k.w, r)
			}
		case k.w == WorkloadMemory:
			if r.Ops != 50 || r.RSSBytes <= 0 || r.DiskBytes < 0 {
				t.Errorf("memory row = %+v, want 50 keys and RSS > 0", r)
			}
		default:
			if r.Ops <= 0 || r.OpsPerSec <= 0 || r.P99 < r.P50 || r.CPUPer1kOps < 0 {
				t.Errorf("%s row of %d clients = %+v, want ops, p99 >= p50, CPU measured", k.w, k.n, r)
			}
		}
	}
	if w := got[key{WorkloadWatch, 20}]; w.Ops%20 != 0 {
		t.Errorf("watch with 20 watchers measured %d events, want a multiple of 20 (every write reaches every watcher)", w.Ops)
	}
	// The preloaded keys, the writes and the two watch keys remain; the
	// session churn's ephemerals are gone.
	if n, writes := s.len(), got[key{WorkloadWrite, 1}].Ops+got[key{WorkloadWrite, 4}].Ops; int64(n) < 50+writes+2 {
		t.Errorf("store holds %d keys, want at least 50 preloaded + %d written + 2 watched", n, writes)
	}
	s.mu.Lock()
	for k := range s.kv {
		if strings.Contains(k, "-s") && !strings.Contains(k, "-k") {
			t.Errorf("session churn left %s behind", k)
		}
	}
	s.mu.Unlock()
	if !strings.Contains(log.String(), "preloaded 50 keys") {
		t.Errorf("log = %q, want the preload reported", log.String())
	}
}

func TestRunFailingOperations(t *testing.T) {
	s := newFakeStore()
	s.failGets = true
	c := &fakeCluster{s: s, dir: t.TempDir()}
	res, err := Run(context.Background(), c, Options{
		Duration: 50 * time.Millisecond, Warmup: 10 * time.Millisecond,
		Clients: []int{2}, Keys: 10, Workloads: []string{WorkloadMemory, WorkloadReadLinearizable},
	})
	if err == nil || !strings.Contains(err.Error(), "operations failed") {
		t.Fatalf("Run with failing gets = %v, want operations failed", err)
	}
	if res == nil || len(res.Rows) != 1 || res.Rows[0].Workload != WorkloadMemory {
		t.Errorf("Run with failing gets returned rows %+v, want the memory row done before", res)
	}
}

// TestRunSlowOperations: every get outlasts the whole measured window, yet
// each worker measures one.
func TestRunSlowOperations(t *testing.T) {
	s := newFakeStore()
	s.slowGets = 150 * time.Millisecond
	c := &fakeCluster{s: s, dir: t.TempDir()}
	res, err := Run(context.Background(), c, Options{
		Duration: 50 * time.Millisecond, Warmup: 10 * time.Millisecond,
		Clients: []int{2}, Keys: 10, Workloads: []string{WorkloadReadSerializable},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 1 || res.Rows[0].Ops != 2 {
		t.Fatalf("rows %+v, want one row of 2 operations (one per worker)", res.Rows)
	}
}
