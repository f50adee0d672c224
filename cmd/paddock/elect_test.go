package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paddock/paddock/client"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// runHeldCLI runs a paddock command line in-process in the background;
// its outcome arrives on the returned channel.
func runHeldCLI(out, errOut *lockedBuffer, args ...string) <-chan error {
	done := make(chan error, 1)
	go func() {
		root := newRootCmd()
		root.SetOut(out)
		root.SetErr(errOut)
		root.SetArgs(args)
		done <- root.ExecuteContext(context.Background())
	}()
	return done
}

// waitOutput waits until b holds want.
func waitOutput(t *testing.T, b *lockedBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(b.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("output %q: no %q after 15s", b.String(), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitExit waits for a background command's outcome.
func waitExit(t *testing.T, done <-chan error, errOut *lockedBuffer) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("still running after 20s; stderr %q", errOut.String())
		return nil
	}
}

func newTestClient(t *testing.T, ep string) *client.Client {
	t.Helper()
	c, err := client.New(context.Background(), client.Config{Endpoints: []string{ep}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestElectRunsCommand: the command gets the key and token, its status
// is elect's, and elect resigns when it ends.
func TestElectRunsCommand(t *testing.T) {
	ep := startOneNode(t).node.Config().GRPCAddr
	c := newTestClient(t, ep)
	release := filepath.Join(t.TempDir(), "release")
	out, errOut := &lockedBuffer{}, &lockedBuffer{}
	done := runHeldCLI(out, errOut, "elect", "e", "--value", "v1", "--endpoints", ep, "--session-timeout", "2s",
		"--", "sh", "-c", `echo "$PADDOCK_ELECTION_KEY $PADDOCK_ELECTION_TOKEN $PADDOCK_ENDPOINTS"; until [ -e "$0" ]; do sleep 0.02; done; exit 4`, release)
	waitOutput(t, out, "\n")
	var key, token, eps string
	if f := strings.Fields(out.String()); len(f) == 3 {
		key, token, eps = f[0], f[1], f[2]
	}
	if !strings.HasPrefix(key, "/paddock/elections/e/") || token == "" || eps != ep {
		t.Errorf("PADDOCK_ELECTION_KEY, _TOKEN, PADDOCK_ENDPOINTS = %q, %q, %q; want /paddock/elections/e/..., a token, %s", key, token, eps, ep)
	}
	resp, err := c.Leader(context.Background(), &paddockv1.LeaderRequest{Name: "e"})
	if err != nil || resp.GetLeader().GetKey() != key || strconv.FormatUint(resp.GetLeader().GetToken(), 10) != token || string(resp.GetLeader().GetValue()) != "v1" {
		t.Errorf("Leader while the command runs = %v, %v; want key %s, token %s, value v1", resp, err, key, token)
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := waitExit(t, done, errOut); !errors.Is(err, exitCodeError(4)) {
		t.Errorf("elect error = %v, want exit status 4 (the command's); stderr %q", err, errOut.String())
	}
	resp, err = c.Leader(context.Background(), &paddockv1.LeaderRequest{Name: "e"})
	if err != nil || resp.GetLeader() != nil || resp.GetCandidates() != 0 {
		t.Errorf("after the command: Leader = %v, %v; want none, no candidate (resigned)", resp, err)
	}
}

// TestElectStopsCommandWhenDeposed: a Resign of its token from elsewhere
// ends the leadership; elect stops the command (SIGTERM) and exits 75.
func TestElectStopsCommandWhenDeposed(t *testing.T) {
	ep := startOneNode(t).node.Config().GRPCAddr
	c := newTestClient(t, ep)
	out, errOut := &lockedBuffer{}, &lockedBuffer{}
	done := runHeldCLI(out, errOut, "elect", "e", "--endpoints", ep, "--session-timeout", "2s", "--grace", "5s",
		"--", "sh", "-c", `trap 'echo term; exit 0' TERM; echo started; while :; do sleep 0.05; done`)
	waitOutput(t, out, "started\n")
	resp, err := c.Leader(context.Background(), &paddockv1.LeaderRequest{Name: "e"})
	if err != nil || resp.GetLeader() == nil {
		t.Fatalf("Leader = %v, %v; want the elect command", resp, err)
	}
	deposed := time.Now()
	if _, err := c.Resign(context.Background(), &paddockv1.ResignRequest{Name: "e", Token: resp.GetLeader().GetToken()}); err != nil {
		t.Fatal(err)
	}
	err = waitExit(t, done, errOut)
	if !errors.Is(err, exitCodeError(exitLost)) {
		t.Errorf("elect error = %v, want exit status %d", err, exitLost)
	}
	// Checked every quarter of the session timeout.
	if took := time.Since(deposed); took > time.Second+500*time.Millisecond {
		t.Errorf("the command stopped %v after the resignation, want within a session timeout/4 and a bit", took)
	}
	if !strings.Contains(out.String(), "term\n") {
		t.Errorf("command output %q: it did not get SIGTERM", out.String())
	}
	if !strings.Contains(errOut.String(), "leadership lost: no one leads: stopping the command") {
		t.Errorf("stderr %q, want why the command was stopped", errOut.String())
	}
}

// TestLockStopsCommandWhenSessionEnds: the holder's session closed from
// elsewhere; lock stops the command and exits 75.
func TestLockStopsCommandWhenSessionEnds(t *testing.T) {
	ep := startOneNode(t).node.Config().GRPCAddr
	c := newTestClient(t, ep)
	out, errOut := &lockedBuffer{}, &lockedBuffer{}
	done := runHeldCLI(out, errOut, "lock", "l", "-n", "2", "--endpoints", ep, "--session-timeout", "2s",
		"--", "sh", "-c", `echo "started $PADDOCK_LOCK_TOKEN"; exec sleep 30`)
	waitOutput(t, out, "started ")
	resp, err := c.GetLock(context.Background(), &paddockv1.GetLockRequest{Name: "l"})
	if err != nil || len(resp.GetHolders()) != 1 || resp.GetLimit() != 2 {
		t.Fatalf("GetLock = %v, %v; want one holder, limit 2", resp, err)
	}
	if _, err := c.CloseSession(context.Background(), &paddockv1.CloseSessionRequest{SessionId: resp.GetHolders()[0].GetSessionId()}); err != nil {
		t.Fatal(err)
	}
	err = waitExit(t, done, errOut)
	if !errors.Is(err, exitCodeError(exitLost)) {
		t.Errorf("lock error = %v, want exit status %d; stderr %q", err, exitLost, errOut.String())
	}
	if !strings.Contains(errOut.String(), "stopping the command") {
		t.Errorf("stderr %q, want why the command was stopped", errOut.String())
	}
}

// TestElectLockDelayFlag: --lock-delay reaches the session.
func TestElectLockDelayFlag(t *testing.T) {
	ep := startOneNode(t).node.Config().GRPCAddr
	c := newTestClient(t, ep)
	release := filepath.Join(t.TempDir(), "release")
	out, errOut := &lockedBuffer{}, &lockedBuffer{}
	done := runHeldCLI(out, errOut, "elect", "e", "--lock-delay", "3s", "--endpoints", ep, "--session-timeout", "2s",
		"--", "sh", "-c", `echo started; until [ -e "$0" ]; do sleep 0.02; done`, release)
	waitOutput(t, out, "started\n")
	l, err := c.Leader(context.Background(), &paddockv1.LeaderRequest{Name: "e"})
	if err != nil || l.GetLeader() == nil {
		t.Fatalf("Leader = %v, %v", l, err)
	}
	s, err := c.GetSession(context.Background(), &paddockv1.GetSessionRequest{SessionId: l.GetLeader().GetSessionId()})
	if err != nil || s.GetSession().GetLockDelayMs() != 3000 {
		t.Errorf("the leader's session = %v, %v; want lock_delay_ms 3000", s, err)
	}
	os.WriteFile(release, nil, 0o644)
	if err := waitExit(t, done, errOut); err != nil {
		t.Errorf("elect error = %v, want none", err)
	}
}

func TestWriteContenderLine(t *testing.T) {
	var b strings.Builder
	writeContenderLine(&b, &paddockv1.Contender{Name: "e", Key: "/paddock/elections/e/0000000000-3", Value: []byte("v"), Token: 4, SessionId: 3, ModZxid: 4, Ctime: 5})
	writeContenderLine(&b, nil)
	want := `{"name":"e","key":"/paddock/elections/e/0000000000-3","value":"dg==","token":"4","session_id":"3","mod_zxid":"4","ctime":"5"}` + "\nnull\n"
	if b.String() != want {
		t.Errorf("NDJSON = %q, want %q", b.String(), want)
	}
}

// TestLockCommandNotFound: a command that cannot start is 127, as in a
// shell, and the lock is released.
func TestLockCommandNotFound(t *testing.T) {
	ep := startOneNode(t).node.Config().GRPCAddr
	c := newTestClient(t, ep)
	out, errOut := &lockedBuffer{}, &lockedBuffer{}
	err := waitExit(t, runHeldCLI(out, errOut, "lock", "l", "--endpoints", ep, "--", "/nonexistent/command"), errOut)
	if !errors.Is(err, exitCodeError(127)) || !strings.Contains(errOut.String(), "/nonexistent/command") {
		t.Errorf("lock of a missing command: error = %v, stderr %q; want exit 127 and the command named", err, errOut.String())
	}
	resp, err := c.GetLock(context.Background(), &paddockv1.GetLockRequest{Name: "l"})
	if err != nil || len(resp.GetHolders())+len(resp.GetWaiters()) != 0 {
		t.Errorf("GetLock after = %v, %v; want the lock released", resp, err)
	}
}
