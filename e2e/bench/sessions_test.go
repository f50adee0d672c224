package main

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestParseSessionsFlags checks `bench sessions`'s command line.
func TestParseSessionsFlags(t *testing.T) {
	c, err := parseSessionsFlags([]string{"--paddock-bin", "/x/paddock", "--paddock-php", "/x/php/paddock-session.php"}, io.Discard)
	if err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if !slices.Equal(c.stores, sessionStores) || !slices.Equal(c.users, []int{16, 128}) || !slices.Equal(c.bursts, []int{16, 64}) {
		t.Errorf("stores, users, bursts = %v, %v, %v; want %v, [16 128], [16 64]", c.stores, c.users, c.bursts, sessionStores)
	}
	if c.duration != 10*time.Second || c.workers != 8 || c.webServers != 3 || c.killUsers != 16 {
		t.Errorf("duration, workers, web servers, kill users = %v, %d, %d, %d; want 10s, 8, 3, 16", c.duration, c.workers, c.webServers, c.killUsers)
	}
	c, err = parseSessionsFlags([]string{"--stores", "redis, memcached", "--users", "4", "--duration", "2s"}, io.Discard)
	if err != nil {
		t.Fatalf("redis and memcached only: %v", err)
	}
	if !slices.Equal(c.stores, []string{storeRedis, storeMemcached}) || !slices.Equal(c.users, []int{4}) || c.duration != 2*time.Second {
		t.Errorf("stores, users, duration = %v, %v, %v", c.stores, c.users, c.duration)
	}
	for _, args := range [][]string{
		nil, // paddock needs its binary and handler
		{"--stores", "paddock", "--paddock-bin", "/x/paddock"},
		{"--stores", "mysql"},
		{"--stores", "redis,redis"},
		{"--stores", ","},
		{"--stores", "redis", "--users", "0"},
		{"--stores", "redis", "--bursts", "x"},
		{"--stores", "redis", "--burst-rounds", "0"},
		{"--stores", "redis", "--duration", "0s"},
		{"--stores", "redis", "extra"},
	} {
		if _, err := parseSessionsFlags(args, io.Discard); !errors.Is(err, errUsage) {
			t.Errorf("parseSessionsFlags(%q) error = %v, want %v", args, err, errUsage)
		}
	}
}

// TestUserLostSession checks what counts as a lost session: a count that
// went back, a new session cookie, or a final count below the last one
// shown; a count that jumped (an answer lost, the increment stored) is
// not.
func TestUserLostSession(t *testing.T) {
	tests := []struct {
		name     string
		answers  []view
		final    int
		wantNext []bool
		wantLost bool
	}{
		{name: "every count in turn", answers: []view{{n: 1, sid: "a"}, {n: 2}, {n: 3}}, final: 3,
			wantNext: []bool{true, true, true}},
		{name: "a jump", answers: []view{{n: 1, sid: "a"}, {n: 3}}, final: 3,
			wantNext: []bool{true, false}},
		{name: "count went back", answers: []view{{n: 1, sid: "a"}, {n: 2}, {n: 1}, {n: 2}}, final: 2,
			wantNext: []bool{true, true, false, true}, wantLost: true},
		{name: "new cookie", answers: []view{{n: 1, sid: "a"}, {n: 2, sid: "b"}}, final: 2,
			wantNext: []bool{true, true}, wantLost: true},
		{name: "same cookie again", answers: []view{{n: 1, sid: "a"}, {n: 2, sid: "a"}}, final: 2,
			wantNext: []bool{true, true}},
		{name: "vanished afterwards", answers: []view{{n: 1, sid: "a"}, {n: 2}}, final: 0,
			wantNext: []bool{true, true}, wantLost: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := &user{}
			var next []bool
			for _, v := range tc.answers {
				next = append(next, u.see(v))
			}
			if !slices.Equal(next, tc.wantNext) {
				t.Errorf("see() = %v, want %v", next, tc.wantNext)
			}
			if got := u.lost(tc.final); got != tc.wantLost {
				t.Errorf("lost(%d) = %t, want %t", tc.final, got, tc.wantLost)
			}
		})
	}
}

func TestQuantile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	if got := quantile(d, 0.5); got != 50*time.Millisecond {
		t.Errorf("quantile(1..100 ms, 0.5) = %v, want 50ms", got)
	}
	if got := quantile(d, 0.99); got != 99*time.Millisecond {
		t.Errorf("quantile(1..100 ms, 0.99) = %v, want 99ms", got)
	}
	if got := quantile(nil, 0.5); got != 0 {
		t.Errorf("quantile(nil) = %v, want 0", got)
	}
}

// TestSessionsMarkdown checks that the tables have a row per store and a
// column pair per users row and burst size.
func TestSessionsMarkdown(t *testing.T) {
	cfg := sessionsConfig{users: []int{16, 128}, bursts: []int{16}, burstRounds: 3, killUsers: 16,
		duration: 10 * time.Second, killDuration: 10 * time.Second, restartAfter: 2 * time.Second, workers: 8, webServers: 3}
	rs := []storeResult{{
		Label: "A", Rows: []usersRow{{Users: 16, loadStats: loadStats{PerSecond: 1234, P50: 3 * time.Millisecond, P99: 25 * time.Millisecond},
			StoreCPU: 0.5, WebCPU: 1.25, ClientCPU: 0.1}},
		Bursts: []burstStats{{Size: 16, Expected: 51, Lost: 2, Failed: 1, Median: 18 * time.Millisecond}},
		Kill:   &killStats{Users: 16, Victim: "redis-server", SessionsLost: 16, loadStats: loadStats{Failed: 40, LongestGap: 2100 * time.Millisecond}},
	}, {Label: "B", Error: "start: boom"}}
	var b bytes.Buffer
	sessionsMarkdown(&b, cfg, rs)
	out := b.String()
	for _, want := range []string{
		"| store | 16 users: views/s | p50 / p99 ms | 128 users: views/s | p50 / p99 ms |",
		"| A | 1234 | 3.0 / 25 | - | - |",
		"| A | 0.50 / 1.25 / 0.10 | - |",
		"| A | 2 of 51 / 1 | 18 ms | redis-server | 40 | 16 of 16 | 2.1 s |",
		"| B | - | - | - | - | - | - |",
		"B: start: boom",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
}
