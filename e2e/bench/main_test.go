package main

import (
	"errors"
	"io"
	"slices"
	"testing"
	"time"
)

// TestParseFlags checks the command line: defaults, lists and bad input.
func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr bool
		check   func(t *testing.T, c config)
	}{
		{name: "paddock needs its binary", args: nil, wantErr: true},
		{name: "defaults", args: []string{"--paddock-bin", "/x/paddock"}, check: func(t *testing.T, c config) {
			if !slices.Equal(c.systems, systems) {
				t.Errorf("systems = %v, want %v", c.systems, systems)
			}
			if !slices.Equal(c.opts.Clients, []int{1, 16, 128}) || !slices.Equal(c.opts.Watchers, []int{1, 1000}) {
				t.Errorf("clients, watchers = %v, %v; want [1 16 128], [1 1000]", c.opts.Clients, c.opts.Watchers)
			}
			if c.opts.Duration != 10*time.Second || c.opts.Warmup != 2*time.Second || c.opts.Keys != 100000 {
				t.Errorf("duration, warmup, keys = %v, %v, %d; want 10s, 2s, 100000", c.opts.Duration, c.opts.Warmup, c.opts.Keys)
			}
			if c.opts.Workloads != nil {
				t.Errorf("workloads = %v, want nil (all)", c.opts.Workloads)
			}
			if !slices.Equal(c.opts.LockClients, []int{1, 16}) || c.opts.ElectionRounds != 20 || c.opts.ServerKills != 3 {
				t.Errorf("lock clients, election rounds, server kills = %v, %d, %d; want [1 16], 20, 3", c.opts.LockClients, c.opts.ElectionRounds, c.opts.ServerKills)
			}
		}},
		{name: "elections and locks", args: []string{"--paddock-bin", "/x/paddock", "--workloads", "election,election-server-kill,lock", "--lock-clients", "1,4", "--election-rounds", "5", "--server-kills", "2"}, check: func(t *testing.T, c config) {
			if !slices.Equal(c.opts.Workloads, []string{"election", "election-server-kill", "lock"}) {
				t.Errorf("workloads = %v", c.opts.Workloads)
			}
			if !slices.Equal(c.opts.LockClients, []int{1, 4}) || c.opts.ElectionRounds != 5 || c.opts.ServerKills != 2 {
				t.Errorf("lock clients, election rounds, server kills = %v, %d, %d; want [1 4], 5, 2", c.opts.LockClients, c.opts.ElectionRounds, c.opts.ServerKills)
			}
		}},
		{name: "bad lock clients", args: []string{"--systems", "etcd", "--lock-clients", "0"}, wantErr: true},
		{name: "zero election rounds", args: []string{"--systems", "etcd", "--election-rounds", "0"}, wantErr: true},
		{name: "peers only, short", args: []string{"--systems", "etcd, zookeeper", "--duration", "3s", "--clients", "1,16", "--workloads", "write,watch", "--keys", "20000"}, check: func(t *testing.T, c config) {
			if !slices.Equal(c.systems, []string{"etcd", "zookeeper"}) {
				t.Errorf("systems = %v, want [etcd zookeeper]", c.systems)
			}
			if !slices.Equal(c.opts.Clients, []int{1, 16}) || !slices.Equal(c.opts.Workloads, []string{"write", "watch"}) {
				t.Errorf("clients, workloads = %v, %v", c.opts.Clients, c.opts.Workloads)
			}
			if c.opts.Duration != 3*time.Second || c.opts.Keys != 20000 {
				t.Errorf("duration, keys = %v, %d; want 3s, 20000", c.opts.Duration, c.opts.Keys)
			}
		}},
		{name: "unknown system", args: []string{"--systems", "consul"}, wantErr: true},
		{name: "system twice", args: []string{"--systems", "etcd,etcd"}, wantErr: true},
		{name: "empty systems", args: []string{"--systems", ","}, wantErr: true},
		{name: "bad clients", args: []string{"--systems", "etcd", "--clients", "1,x"}, wantErr: true},
		{name: "zero watchers", args: []string{"--systems", "etcd", "--watchers", "0"}, wantErr: true},
		{name: "stray argument", args: []string{"--systems", "etcd", "extra"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseFlags(tc.args, io.Discard)
			if tc.wantErr {
				if !errors.Is(err, errUsage) {
					t.Fatalf("parseFlags(%q) error = %v, want %v", tc.args, err, errUsage)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseFlags(%q) = %v", tc.args, err)
			}
			tc.check(t, c)
		})
	}
}
