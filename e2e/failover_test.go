package e2e

import (
	"strings"
	"testing"
	"time"
)

// electionTimeout bounds how long the survivors of a killed leader may take
// to elect a new one and accept writes (raft timeouts are 1s).
const electionTimeout = 15 * time.Second

func TestKillLeader(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	tree(t, c.endpoints(), "create", "/kl", "v1")

	l := c.leader()
	var survivors []int
	for i := range c.agents {
		if i != l {
			survivors = append(survivors, i)
		}
	}
	eps := c.endpoints(survivors...)
	c.kill9(l)
	killed := time.Now()

	// Writes through the survivors succeed once they have a new leader.
	// Set is safe to repeat; a failed attempt must be Unavailable (no
	// leader yet), nothing else.
	ok, last := poll(electionTimeout, func() (bool, string) {
		r := paddock(t, "tree", "set", "--timeout", "3s", "--endpoints", eps, "/kl", "v2")
		if r.code != 0 && !strings.HasPrefix(r.stderr, "paddock: Unavailable: ") && !strings.HasPrefix(r.stderr, "paddock: DeadlineExceeded: ") {
			t.Errorf("tree set /kl v2 with the leader dead: %v, want success or Unavailable", r)
		}
		return r.code == 0, r.String()
	})
	if !ok {
		t.Fatalf("tree set /kl v2 via %s: no success within %v of killing %s: %s", eps, electionTimeout, c.agents[l].id, last)
	}
	t.Logf("first write %v after killing leader %s", time.Since(killed).Round(time.Millisecond), c.agents[l].id)
	tree(t, eps, "create", "/kl/while-down", "w")
	if got := tree(t, eps, "get", "/kl"); got != "v2" {
		t.Errorf("tree get /kl via survivors = %q, want %q", got, "v2")
	}
	if nl := c.leader(); nl == l {
		t.Errorf("leader after killing %s = %s, want a survivor", c.agents[l].id, c.agents[nl].id)
	}

	// The old leader comes back on its data dir, and catches up: its local
	// (serializable) state eventually has what was written while it was
	// down.
	c.restart(l)
	c.waitReady(l)
	self := c.endpoints(l)
	for _, tc := range []struct{ path, want string }{{"/kl", "v2"}, {"/kl/while-down", "w"}} {
		ok, last := poll(electionTimeout, func() (bool, string) {
			r := paddock(t, "tree", "get", "--consistency", "serializable", "--endpoints", self, tc.path)
			return r.code == 0 && r.stdout == tc.want, r.String()
		})
		if !ok {
			t.Errorf("tree get --consistency serializable %s on restarted %s: last %s, want %q", tc.path, c.agents[l].id, last, tc.want)
		}
	}
	// It serves linearizable reads and takes writes again, once every
	// node agrees on the leader.
	c.leader()
	if got := tree(t, self, "get", "/kl"); got != "v2" {
		t.Errorf("tree get /kl on restarted %s = %q, want %q", c.agents[l].id, got, "v2")
	}
	tree(t, self, "set", "/kl", "v3")
	for i := range c.agents {
		if got := tree(t, c.endpoints(i), "get", "/kl"); got != "v3" {
			t.Errorf("tree get /kl on %s = %q, want %q", c.agents[i].id, got, "v3")
		}
	}
	c.leader()
}
