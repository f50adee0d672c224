package bench

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestFindLeader(t *testing.T) {
	errDown := errors.New("connection refused")
	tests := []struct {
		name    string
		answers []leaderAnswer // node i's answer: node 1 means it leads
		want    int
		wantErr string
	}{
		{"the leader", []leaderAnswer{{0, nil}, {1, nil}, {0, nil}}, 1, ""},
		{"a node down", []leaderAnswer{{0, errDown}, {0, nil}, {1, nil}}, 2, ""},
		{"no leader", []leaderAnswer{{0, nil}, {0, errDown}, {0, nil}}, -1, "node 1: connection refused"},
		{"two claim", []leaderAnswer{{1, nil}, {0, nil}, {1, nil}}, -1, "nodes [0 2] all claim to lead"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FindLeader(context.Background(), len(tt.answers), func(ctx context.Context, i int) (bool, error) {
				if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > leaderQueryTimeout {
					t.Errorf("node %d asked with deadline %v (set %t), want within %v", i, dl, ok, leaderQueryTimeout)
				}
				return tt.answers[i].node == 1, tt.answers[i].err
			})
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Errorf("FindLeader = %d, %v; want %d, nil", got, err, tt.want)
				}
				return
			}
			if !errors.Is(err, ErrNoLeader) || !strings.Contains(err.Error(), tt.wantErr) || got != -1 {
				t.Errorf("FindLeader = %d, %v; want -1 and %v saying %q", got, err, ErrNoLeader, tt.wantErr)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := FindLeader(ctx, 3, func(ctx context.Context, _ int) (bool, error) { return false, ctx.Err() }); !errors.Is(err, context.Canceled) {
		t.Errorf("FindLeader with a cancelled ctx = %v, want %v", err, context.Canceled)
	}
}

// TestPlacement checks where Run opens its clients: round-robin from the
// node after the leader, reopened around a new leader when it moves.
func TestPlacement(t *testing.T) {
	// Leader 1: node 2 gets 6 clients, node 0 and the leader 5 each.
	sixteen := []int{2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2}
	tests := []struct {
		name       string
		leaders    []leaderAnswer
		clients    []int
		wantOpened []int
		wantLeader []int // of each row
		wantLog    string
		wantErr    string
	}{
		{name: "one client on a follower", leaders: []leaderAnswer{{1, nil}}, clients: []int{1},
			wantOpened: []int{2}, wantLeader: []int{1}, wantLog: "leader is node 1"},
		{name: "sixteen clients 6, 5 and 5 on the leader", leaders: []leaderAnswer{{1, nil}}, clients: []int{1, 16},
			wantOpened: sixteen, wantLeader: []int{1, 1}},
		{name: "leader none of the nodes", leaders: []leaderAnswer{{-1, nil}}, clients: []int{2},
			wantOpened: []int{0, 1}, wantLeader: []int{-1}},
		{name: "election between rows", clients: []int{1, 2},
			leaders:    []leaderAnswer{{0, nil}, {-1, ErrNoLeader}, {-1, ErrNoLeader}, {2, nil}},
			wantOpened: []int{1, 0, 1}, wantLeader: []int{0, 2}, wantLog: "leader moved from node 0 to node 2: reopening 1 clients"},
		{name: "leader out of range", leaders: []leaderAnswer{{3, nil}}, clients: []int{1},
			wantLeader: []int{}, wantErr: "Leader() = 3, want -1 to 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &fakeCluster{s: newFakeStore(), dir: t.TempDir(), leaders: tt.leaders}
			var log strings.Builder
			res, err := Run(context.Background(), c, Options{
				Duration: 20 * time.Millisecond, Warmup: 5 * time.Millisecond,
				Clients: tt.clients, Workloads: []string{WorkloadWrite}, Log: &log,
			})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Run = %v, want an error saying %q", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatalf("Run = %v", err)
			}
			if res.Nodes != 3 {
				t.Errorf("Results.Nodes = %d, want 3", res.Nodes)
			}
			var leaders []int
			for _, r := range res.Rows {
				leaders = append(leaders, r.Leader)
			}
			if !slices.Equal(leaders, tt.wantLeader) {
				t.Errorf("rows' leaders = %v, want %v", leaders, tt.wantLeader)
			}
			opened, closed := c.openedAndClosed()
			if !slices.Equal(opened, tt.wantOpened) {
				t.Errorf("clients opened on nodes %v, want %v", opened, tt.wantOpened)
			}
			if closed != len(opened) {
				t.Errorf("%d clients closed of %d opened", closed, len(opened))
			}
			if !strings.Contains(log.String(), tt.wantLog) {
				t.Errorf("log = %q, want it to say %q", log.String(), tt.wantLog)
			}
		})
	}
}
