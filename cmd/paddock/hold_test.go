package main

import (
	"errors"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"github.com/paddock/paddock/farm"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

func TestParseFence(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    *paddockv1.Fence
		wantErr string
	}{
		{in: "", want: nil},
		{in: "elections/batch:42", want: &paddockv1.Fence{Name: "elections/batch", Token: 42}},
		{in: "locks/deploy:18446744073709551615", want: &paddockv1.Fence{Name: "locks/deploy", Token: 1<<64 - 1}},
		// Split at the last colon: the name may hold one.
		{in: "locks/a:b:7", want: &paddockv1.Fence{Name: "locks/a:b", Token: 7}},
		{in: "elections/batch", wantErr: "want NAME:TOKEN"},
		{in: "elections/batch:", wantErr: "no TOKEN after the colon (is $PADDOCK_ELECTION_TOKEN"},
		{in: ":42", wantErr: "no NAME before the colon"},
		{in: "elections/batch:0", wantErr: "not a fencing token"},
		{in: "elections/batch:-1", wantErr: "not a fencing token"},
		{in: "elections/batch:x", wantErr: "not a fencing token"},
	} {
		got, err := parseFence(tc.in)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseFence(%q) error = %v, want one containing %q", tc.in, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("parseFence(%q) error = %v", tc.in, err)
		case got.GetName() != tc.want.GetName() || got.GetToken() != tc.want.GetToken() || (got == nil) != (tc.want == nil):
			t.Errorf("parseFence(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestFenceFlagOnWrites checks that create, set and rm take --fence and
// refuse a bad one before dialling (the endpoint is unreachable).
func TestFenceFlagOnWrites(t *testing.T) {
	for _, args := range [][]string{
		{"tree", "create", "--fence", "elections/e:", "/a"},
		{"tree", "set", "--fence", "elections/e:", "/a", "x"},
		{"tree", "rm", "--fence", "elections/e:", "/a"},
	} {
		_, _, err := runFarm(append(args, "--endpoints", "127.0.0.1:1")...)
		if err == nil || !strings.Contains(err.Error(), `bad --fence "elections/e:"`) {
			t.Errorf("paddock %q: error = %v, want bad --fence", args, err)
		}
	}
}

func TestCommandArgs(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		wantErr string
	}{
		{args: []string{"lock", "L", "--", "true"}},
		{args: []string{"lock", "-n", "2", "L", "--", "sh", "-c", "exit 3"}},
		{args: []string{"lock", "L", "true"}, wantErr: "the command to run goes after --"},
		{args: []string{"lock", "L", "--"}, wantErr: "no command after --"},
		{args: []string{"lock", "--", "true"}, wantErr: "0 arguments before --"},
		{args: []string{"lock", "L", "M", "--", "true"}, wantErr: `2 arguments before --: ["L" "M"]`},
		{args: []string{"elect", "--leader", "E", "--", "true"}, wantErr: "take NAME only"},
		{args: []string{"farm", "exec", "services", "--", "true"}, wantErr: "must be the full path"},
	} {
		root := newRootCmd()
		cmd, rest, err := root.Find(tc.args)
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.ParseFlags(rest); err != nil {
			t.Fatalf("%q: ParseFlags: %v", tc.args, err)
		}
		err = cmd.ValidateArgs(cmd.Flags().Args())
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%q: error = %v, want none", tc.args, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%q: error = %v, want one containing %q", tc.args, err, tc.wantErr)
		}
	}
}

func TestExitStatus(t *testing.T) {
	for _, tc := range []struct {
		script string
		want   int
	}{
		{"exit 0", 0},
		{"exit 3", 3},
		{"kill -TERM $$", 143},
		{"kill -KILL $$", 137},
	} {
		cmd := exec.Command("sh", "-c", tc.script)
		cmd.Run()
		if got := exitStatus(cmd.ProcessState); got != tc.want {
			t.Errorf("exitStatus(sh -c %q) = %d, want %d", tc.script, got, tc.want)
		}
	}
}

func TestHeldResultExit(t *testing.T) {
	for _, tc := range []struct {
		r    heldResult
		want error
	}{
		{heldResult{code: 0}, nil},
		{heldResult{code: 4}, exitCodeError(4)},
		{heldResult{code: 143}, exitCodeError(143)},
		// Lost wins over whatever status the stopped command returned.
		{heldResult{code: 0, lost: "x"}, exitCodeError(exitLost)},
		{heldResult{code: 143, lost: "x"}, exitCodeError(exitLost)},
	} {
		if got := tc.r.exitError(); !errors.Is(got, tc.want) && got != tc.want {
			t.Errorf("%+v.exitError() = %v, want %v", tc.r, got, tc.want)
		}
	}
	if startFailure(exec.ErrNotFound) != 127 || startFailure(errors.New("permission denied")) != 126 {
		t.Errorf("startFailure: want 127 for not found, 126 otherwise")
	}
}

func TestHeldEnv(t *testing.T) {
	c := &paddockv1.Contender{Key: "/paddock/elections/batch/0000000003-9", Token: 12}
	got := heldEnv(envElectionKey, envElectionToken, c)
	want := []string{"PADDOCK_ELECTION_KEY=/paddock/elections/batch/0000000003-9", "PADDOCK_ELECTION_TOKEN=12"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("heldEnv = %q, want %q", got, want)
	}
}

func TestLeadsAndHolds(t *testing.T) {
	me := &paddockv1.Contender{Key: "/paddock/elections/e/0000000001-5", Token: 8}
	other := &paddockv1.Contender{Key: "/paddock/elections/e/0000000002-6", Token: 9}
	for _, tc := range []struct {
		leader   *paddockv1.Contender
		delay    int64
		wantHeld bool
		wantWhy  string
	}{
		{me, 0, true, ""},
		{other, 0, false, "/paddock/elections/e/0000000002-6 (token 9) leads"},
		{nil, 0, false, "no one leads"},
		{nil, 1500, false, "lock-delay, 1500 ms more"},
	} {
		held, why, _ := leads(tc.leader, me.Token, tc.delay)
		if held != tc.wantHeld || !strings.Contains(why, tc.wantWhy) {
			t.Errorf("leads(%v, 8, %d) = %v, %q; want %v, %q", tc.leader, tc.delay, held, why, tc.wantHeld, tc.wantWhy)
		}
	}
	if held, _, _ := leads(nil, 0, 0); held {
		t.Errorf("leads(nil, 0) = true: a zero token never leads")
	}
	lock := &paddockv1.GetLockResponse{Limit: 2, Holders: []*paddockv1.Contender{{Token: 3}, {Token: 8}}, Waiters: []*paddockv1.Contender{{Token: 11}}}
	if held, _, _ := holds(lock, 8); !held {
		t.Errorf("holds(token 8) = false, want true")
	}
	if held, why, _ := holds(lock, 5); held || !strings.Contains(why, "no longer holds (2 holder(s) of 2)") {
		t.Errorf("holds(token 5) = %v, %q; want false, no longer holds", held, why)
	}
	if held, why, _ := holds(lock, 11); held || !strings.Contains(why, "waiting again") {
		t.Errorf("holds(token 11) = %v, %q; want false, waiting again", held, why)
	}
}

func TestLeaderLine(t *testing.T) {
	for _, tc := range []struct {
		c    *paddockv1.Contender
		want string
	}{
		{nil, "(none)"},
		{&paddockv1.Contender{Token: 7, Key: "/paddock/elections/e/0000000000-3", Value: []byte("web1 10.0.0.1")}, "7 /paddock/elections/e/0000000000-3 web1 10.0.0.1"},
		{&paddockv1.Contender{Token: 7, Key: "/k", Value: []byte("a\nb")}, `7 /k "a\nb"`},
	} {
		if got := leaderLine(tc.c); got != tc.want {
			t.Errorf("leaderLine(%v) = %q, want %q", tc.c, got, tc.want)
		}
	}
}

func TestFarmExecSettings(t *testing.T) {
	if got := farmLockName("/services/web"); got != "farm_services_web" {
		t.Errorf("farmLockName(/services/web) = %q, want farm_services_web", got)
	}
	for _, bad := range []string{"enabled", "=0", "a..b=1"} {
		if _, err := parseSettings([]string{bad}); err == nil {
			t.Errorf("parseSettings(%q) succeeded, want an error", bad)
		}
	}
	// Each setting, applied in order, is undone exactly in reverse order.
	before := farm.Conf{"enabled": "1", "x": "s", "d": farm.Conf{"k": "v"}}
	specs := []string{"enabled=0", "maint.reason=deploy", "maint.by=me", "x.y=1", "d.k=w", "d.n=1", "new=1"}
	settings, err := parseSettings(specs)
	if err != nil {
		t.Fatal(err)
	}
	conf := before.Clone()
	for _, s := range settings {
		s.remember(conf)
		if err := conf.SetField(s.field, s.value); err != nil {
			t.Fatal(err)
		}
	}
	if v, _ := conf.Lookup("maint.by"); v != "me" {
		t.Fatalf("after the settings, maint.by = %v, want me", v)
	}
	for i := len(settings) - 1; i >= 0; i-- {
		s := settings[i]
		if s.had {
			conf.SetField(s.restore, s.prev)
		} else {
			conf.UnsetField(s.restore)
		}
	}
	if !conf.Equal(before) {
		t.Errorf("after restoring: %s, want %s", conf.Encode(), before.Encode())
	}
}

func TestFarmExecRefusesZkfarmerOptions(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"farm", "exec", "-a", "2-6", "/f", "--", "true"}, "-a/--allowed-hour-ranges is not supported"},
		{[]string{"farm", "exec", "-r", "60", "/f", "--", "true"}, "-r/--repeat is not supported"},
		{[]string{"farm", "exec", "-r", "5m", "/f", "--", "true"}, "-r/--repeat is not supported"},
		{[]string{"farm", "exec", "--repeat", "5m", "/f", "--", "true"}, "-r/--repeat is not supported"},
		{[]string{"farm", "exec", "-c", "0", "/f", "--", "true"}, "bad --concurrency 0"},
		{[]string{"farm", "exec", "-s", "enabled", "/f", "--", "true"}, `bad --set "enabled"`},
	} {
		_, _, err := runFarm(append(tc.args, "--endpoints", "127.0.0.1:1")...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("paddock %q: error = %v, want %q", tc.args, err, tc.want)
		}
	}
}
