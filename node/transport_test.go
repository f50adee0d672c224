package node

import (
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// recordingFSM records the commands applied to it.
type recordingFSM struct {
	mu      sync.Mutex
	applied []string // "index:data"
}

func (f *recordingFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = append(f.applied, fmt.Sprintf("%d:%s", l.Index, l.Data))
	return nil
}

func (f *recordingFSM) Snapshot() (raft.FSMSnapshot, error) {
	return nil, fmt.Errorf("recordingFSM takes no snapshots")
}

func (f *recordingFSM) Restore(rc io.ReadCloser) error { return rc.Close() }

func (f *recordingFSM) get() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.applied...)
}

// staleFollower starts a raft follower in term 2 whose log holds, after a
// configuration and command "a" from term 1, a stale entry "stale" at
// index 3: one that its term-1 leadership appended and never replicated.
// It returns the follower's FSM and a function that sends it an
// AppendEntries from the term-2 leader "l".
func staleFollower(t *testing.T, wrap bool) (*recordingFSM, func(req *raft.AppendEntriesRequest) *raft.AppendEntriesResponse) {
	t.Helper()
	store := raft.NewInmemStore()
	servers := raft.Configuration{Servers: []raft.Server{
		{ID: "f", Address: "f"}, {ID: "l", Address: "l"}, {ID: "x", Address: "x"},
	}}
	err := store.StoreLogs([]*raft.Log{
		{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: raft.EncodeConfiguration(servers)},
		{Index: 2, Term: 1, Type: raft.LogCommand, Data: []byte("a")},
		{Index: 3, Term: 1, Type: raft.LogCommand, Data: []byte("stale")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.SetUint64([]byte("CurrentTerm"), 2); err != nil {
		t.Fatal(err)
	}

	_, followerTrans := raft.NewInmemTransport("f")
	_, leaderTrans := raft.NewInmemTransport("l")
	leaderTrans.Connect("f", followerTrans)
	var trans raft.Transport = followerTrans
	if wrap {
		_, trans = newGuard(followerTrans)
	}

	conf := raft.DefaultConfig()
	conf.LocalID = "f"
	conf.Logger = hclog.NewNullLogger()
	// No election while the test acts as the leader.
	conf.HeartbeatTimeout, conf.ElectionTimeout, conf.LeaderLeaseTimeout = time.Hour, time.Hour, time.Hour
	conf.SnapshotThreshold, conf.SnapshotInterval = 1<<40, time.Hour
	fsm := &recordingFSM{}
	r, err := raft.NewRaft(conf, fsm, store, store, raft.NewInmemSnapshotStore(), trans)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Shutdown().Error(); err != nil {
			t.Error(err)
		}
		leaderTrans.Close()
	})

	send := func(req *raft.AppendEntriesRequest) *raft.AppendEntriesResponse {
		t.Helper()
		req.RPCHeader = raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("l"), Addr: []byte("l")}
		req.Term = 2
		var resp raft.AppendEntriesResponse
		if err := leaderTrans.AppendEntries("f", "f", req, &resp); err != nil {
			t.Fatal(err)
		}
		return &resp
	}
	return fsm, send
}

// waitApplied polls until fsm has applied want (and nothing else).
func waitApplied(t *testing.T, fsm *recordingFSM, want []string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := fsm.get()
		if len(got) >= len(want) {
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("applied (-want +got):\n%s", diff)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("applied %v after 10s, want %v", got, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// The new leader has "new" at index 3 and has committed it. Its first
// request to the old leader verifies only index 2 (the prev entry) and
// carries no entries, with commit index 3; the next one carries index 3.
// A follower must apply "new", never its own stale entry.
func TestGuardKeepsStaleTail(t *testing.T) {
	empty := func() *raft.AppendEntriesRequest {
		return &raft.AppendEntriesRequest{PrevLogEntry: 2, PrevLogTerm: 1, LeaderCommitIndex: 3}
	}
	withNew := func() *raft.AppendEntriesRequest {
		return &raft.AppendEntriesRequest{PrevLogEntry: 2, PrevLogTerm: 1, LeaderCommitIndex: 3,
			Entries: []*raft.Log{{Index: 3, Term: 2, Type: raft.LogCommand, Data: []byte("new")}}}
	}

	t.Run("wrapped", func(t *testing.T) {
		fsm, send := staleFollower(t, true)
		req := empty()
		if resp := send(req); !resp.Success {
			t.Fatalf("empty request refused: %+v", resp)
		}
		if req.LeaderCommitIndex != 2 {
			t.Errorf("commit index of the request raft saw = %d, want 2 (its prev entry)", req.LeaderCommitIndex)
		}
		waitApplied(t, fsm, []string{"2:a"})
		if resp := send(withNew()); !resp.Success {
			t.Fatalf("request with index 3 refused: %+v", resp)
		}
		waitApplied(t, fsm, []string{"2:a", "3:new"})
	})

	// Without the wrapper, hashicorp/raft applies the stale entry. If this
	// fails, raft has fixed its commit rule and the wrapper can go.
	t.Run("raft alone", func(t *testing.T) {
		fsm, send := staleFollower(t, false)
		if resp := send(empty()); !resp.Success {
			t.Fatalf("empty request refused: %+v", resp)
		}
		waitApplied(t, fsm, []string{"2:a", "3:stale"})
	})
}

func TestCapCommit(t *testing.T) {
	tests := []struct {
		name               string
		prev, commit, want uint64
		entries            []uint64
	}{
		{"heartbeat", 0, 0, 0, nil},
		{"empty, commit behind", 10, 7, 7, nil},
		{"empty, commit ahead", 10, 15, 10, nil},
		{"entries cover the commit", 10, 12, 12, []uint64{11, 12, 13}},
		{"entries end before the commit", 10, 20, 13, []uint64{11, 12, 13}},
		{"from the start", 0, 5, 2, []uint64{1, 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := &raft.AppendEntriesRequest{PrevLogEntry: tc.prev, LeaderCommitIndex: tc.commit}
			for _, i := range tc.entries {
				req.Entries = append(req.Entries, &raft.Log{Index: i})
			}
			capCommit(req)
			if req.LeaderCommitIndex != tc.want {
				t.Errorf("commit index = %d, want %d", req.LeaderCommitIndex, tc.want)
			}
		})
	}
}
