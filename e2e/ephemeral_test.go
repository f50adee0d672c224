package e2e

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paddock/paddock/e2e/child"
)

// holder is a background `paddock tree create --ephemeral` holding its
// session open.
type holder struct {
	p              *child.Proc
	stdout, stderr *syncBuffer
}

// startHolder starts `paddock tree create --ephemeral` of path in a session
// of the given timeout, and waits until it has printed the path (the znode
// exists). It is SIGKILLed in t.Cleanup if still running.
func startHolder(t *testing.T, eps, path string, timeout time.Duration) *holder {
	t.Helper()
	h := &holder{stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	var err error
	h.p, err = startProc("holder "+path, h.stdout, h.stderr, paddockBin,
		"tree", "create", "--ephemeral", "--session-timeout", timeout.String(), "--endpoints", eps, path, "held")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.p.Kill)
	ok, _ := poll(15*time.Second, func() (bool, string) {
		return h.stdout.String() == path+"\n" || h.p.Exited(), ""
	})
	if !ok || h.p.Exited() {
		t.Fatalf("tree create --ephemeral %s: stdout %q, stderr %q, exited %t; want the path printed and the session held",
			path, h.stdout.String(), h.stderr.String(), h.p.Exited())
	}
	return h
}

// ephemeralOwner returns the ephemeral_owner line of `tree stat path` via
// eps, or "" if the znode does not exist.
func ephemeralOwner(t *testing.T, eps, path string) string {
	t.Helper()
	r := paddock(t, "tree", "stat", "--endpoints", eps, path)
	if r.code != 0 {
		if !strings.HasPrefix(r.stderr, "paddock: NotFound: ") {
			t.Errorf("tree stat %s: %v, want the stat or NotFound", path, r)
		}
		return ""
	}
	for _, line := range strings.Split(r.stdout, "\n") {
		if v, ok := strings.CutPrefix(line, "ephemeral_owner = "); ok {
			return v
		}
	}
	t.Errorf("tree stat %s: no ephemeral_owner in %q", path, r.stdout)
	return ""
}

func TestEphemeralHeldByCLI(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	// The holder talks to one node, the observer to another.
	holderEps, observer := c.endpoints(0, 1, 2), c.endpoints(2)

	t.Run("kill -9 holder", func(t *testing.T) {
		const timeout = 2 * time.Second
		h := startHolder(t, holderEps, "/eph", timeout)
		owner := ephemeralOwner(t, observer, "/eph")
		if owner == "" || owner == "0" {
			t.Fatalf("ephemeral_owner of /eph = %q, want a session id", owner)
		}
		// The session is kept alive: still there after more than a timeout.
		held := time.Now()
		ok, _ := poll(timeout+time.Second, func() (bool, string) {
			return ephemeralOwner(t, observer, "/eph") == "", ""
		})
		if ok {
			t.Fatalf("/eph vanished %v after creation while its holder ran (session timeout %v)", time.Since(held), timeout)
		}

		h.p.Kill()
		killed := time.Now()
		// Expiry takes the session timeout plus the leader's tick; allow a
		// generous margin, never less than the timeout itself.
		ok, last := poll(timeout+8*time.Second, func() (bool, string) {
			o := ephemeralOwner(t, observer, "/eph")
			return o == "", "ephemeral_owner " + o
		})
		gone := time.Since(killed)
		if !ok {
			t.Fatalf("/eph still exists %v after its holder was killed (session timeout %v): %s", gone, timeout, last)
		}
		t.Logf("/eph gone %v after kill -9 of its holder (session timeout %v)", gone.Round(time.Millisecond), timeout)
		if gone < timeout/2 {
			t.Errorf("/eph gone %v after kill -9, want about the session timeout %v", gone, timeout)
		}
		var sessions struct {
			Sessions []any `json:"sessions"`
		}
		grpcurlJSON(t, c.agents[2].grpcAddr, "paddock.v1.SessionService/ListSessions", `{}`, &sessions)
		if len(sessions.Sessions) != 0 {
			t.Errorf("ListSessions after expiry: %d sessions, want 0", len(sessions.Sessions))
		}
	})

	t.Run("SIGINT holder", func(t *testing.T) {
		// A long timeout: the znode can only go this fast if the holder
		// closes its session.
		const timeout = 60 * time.Second
		h := startHolder(t, holderEps, "/eph2", timeout)
		if owner := ephemeralOwner(t, observer, "/eph2"); owner == "" || owner == "0" {
			t.Fatalf("ephemeral_owner of /eph2 = %q, want a session id", owner)
		}
		h.p.Signal(syscall.SIGINT)
		signalled := time.Now()
		if !h.p.Wait(5 * time.Second) {
			t.Fatalf("holder still running 5s after SIGINT; stderr %q", h.stderr.String())
		}
		if code := h.p.ExitCode(); code != 0 {
			t.Errorf("holder exit code after SIGINT = %d, want 0 (stderr %q)", code, h.stderr.String())
		}
		// Closing is a committed write before the holder exits: the znode
		// is gone for a linearizable read right away.
		if o := ephemeralOwner(t, observer, "/eph2"); o != "" {
			t.Errorf("/eph2 exists (owner %s) after its holder exited on SIGINT, want it deleted with the session", o)
		}
		t.Logf("holder exited %v after SIGINT", time.Since(signalled).Round(time.Millisecond))
	})

	t.Run("SIGTERM holder", func(t *testing.T) {
		h := startHolder(t, holderEps, "/eph3", time.Minute)
		h.p.Signal(syscall.SIGTERM)
		if !h.p.Wait(5 * time.Second) {
			t.Fatalf("holder still running 5s after SIGTERM; stderr %q", h.stderr.String())
		}
		if code := h.p.ExitCode(); code != 0 {
			t.Errorf("holder exit code after SIGTERM = %d, want 0 (stderr %q)", code, h.stderr.String())
		}
		if o := ephemeralOwner(t, observer, "/eph3"); o != "" {
			t.Errorf("/eph3 exists (owner %s) after its holder exited on SIGTERM, want it deleted", o)
		}
	})

	t.Run("holder survives leader kill", func(t *testing.T) {
		// A holder connected to every node keeps its session across a
		// leader change: the new leader gives sessions a fresh timeout.
		// The timeout must outlast the election: hashicorp/raft notices a
		// dead leader 1-3 heartbeat timeouts (1 s each) after its last
		// contact, and a loaded machine (CI runs e2e/robust alongside)
		// adds to that; with 3 s the holder's client sometimes gave up.
		const timeout = 6 * time.Second
		h := startHolder(t, holderEps, "/eph4", timeout)
		l := c.leader()
		var others []int
		for i := range c.agents {
			if i != l {
				others = append(others, i)
			}
		}
		obs := c.endpoints(others...)
		c.kill9(l)
		// Once the survivors serve it, the znode stays for two more full
		// timeouts: the holder's keepalives reach the new leader.
		ok, last := poll(electionTimeout, func() (bool, string) {
			r := paddock(t, "tree", "stat", "--timeout", "3s", "--endpoints", obs, "/eph4")
			return r.code == 0, r.String()
		})
		if !ok {
			t.Fatalf("tree stat /eph4 after killing the leader: %s", last)
		}
		vanished, _ := poll(2*timeout, func() (bool, string) {
			return ephemeralOwner(t, obs, "/eph4") == "", ""
		})
		if vanished {
			t.Fatalf("/eph4 vanished after the leader was killed, while its holder ran (stderr %q)", h.stderr.String())
		}
		if h.p.Exited() {
			t.Errorf("holder exited after the leader was killed: %q", h.stderr.String())
		}
		c.restart(l)
		c.waitReady(l)
	})
}
