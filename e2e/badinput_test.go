package e2e

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// maxData is fsm.MaxDataSize, restated: e2e tests the binary, not the
// package.
const maxData = 1 << 20

// grpcurlFile runs an RPC whose request JSON is in a file, passed on stdin
// with `-d @` (too big for a command line).
func grpcurlFile(t *testing.T, addr, method, path string) result {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return run(t, f, grpcurlBin, "-plaintext", "-d", "@", addr, method)
}

// writeDataRequest writes {"path": path, "data": <n bytes, base64>} to a
// file and returns its name.
func writeDataRequest(t *testing.T, path string, n int) string {
	t.Helper()
	data := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{'x'}, n))
	name := filepath.Join(t.TempDir(), fmt.Sprintf("req-%d.json", n))
	if err := os.WriteFile(name, []byte(fmt.Sprintf(`{"path":%q,"data":%q}`, path, data)), 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	l := c.leader()
	follower := c.agents[(l+1)%3]

	r := grpcurl(t, follower.grpcAddr, "paddock.v1.TreeService/Create", `{"path":"/bi","data":"djE="}`)
	if r.code != 0 {
		t.Fatalf("Create(/bi): %v", r)
	}
	var before getResponse
	grpcurlJSON(t, follower.grpcAddr, "paddock.v1.TreeService/Get", `{"path":"/bi"}`, &before)
	stBefore, err := c.status(l)
	if err != nil {
		t.Fatal(err)
	}

	// Too large: refused before the log with our own error, by the leader
	// and by a follower (which must not forward it), for Create and Set.
	// Sent at exactly the limit plus one byte: the gRPC message limit is
	// above it, so the error is the state machine's, not the transport's.
	tooBigCreate := writeDataRequest(t, "/bi-big", maxData+1)
	tooBigSet := writeDataRequest(t, "/bi", maxData+1)
	for _, a := range []*agent{c.agents[l], follower} {
		for _, tc := range []struct{ method, file string }{
			{"paddock.v1.TreeService/Create", tooBigCreate},
			{"paddock.v1.TreeService/Set", tooBigSet},
		} {
			r := grpcurlFile(t, a.grpcAddr, tc.method, tc.file)
			msg := wantCode(t, fmt.Sprintf("%s with %d bytes on %s", tc.method, maxData+1, a.id), r, "InvalidArgument")
			if want := fmt.Sprintf("data too large: %d bytes, limit %d", maxData+1, maxData); msg != want {
				t.Errorf("%s with %d bytes on %s: message = %q, want the state machine's %q", tc.method, maxData+1, a.id, msg, want)
			}
		}
	}
	// Bad paths are refused before the log too.
	r = grpcurl(t, follower.grpcAddr, "paddock.v1.TreeService/Create", `{"path":"/bi/"}`)
	wantCode(t, "Create(/bi/)", r, "InvalidArgument")

	// Nothing above reached the log.
	stAfter, err := c.status(l)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case stAfter.Status.Term != stBefore.Status.Term:
		// A new term appends the new leader's barrier entry.
		t.Logf("term changed from %s to %s: commit index not compared", stBefore.Status.Term, stAfter.Status.Term)
	case stAfter.Status.CommitIndex != stBefore.Status.CommitIndex:
		t.Errorf("leader commit index after refused input = %s, want %s (unchanged)", stAfter.Status.CommitIndex, stBefore.Status.CommitIndex)
	}

	// Exactly the limit is fine.
	r = grpcurlFile(t, follower.grpcAddr, "paddock.v1.TreeService/Create", writeDataRequest(t, "/bi-max", maxData))
	if r.code != 0 {
		t.Errorf("Create(/bi-max) with %d bytes: %v, want success", maxData, r)
	}
	r = paddock(t, "tree", "stat", "--endpoints", c.endpoints(), "/bi-max")
	if !strings.Contains(r.stdout, fmt.Sprintf("data_length = %d\n", maxData)) {
		t.Errorf("paddock tree stat /bi-max: %v, want data_length = %d", r, maxData)
	}

	// Stateful failures: the right code, and no change.
	for _, tc := range []struct {
		name, method, req, code string
	}{
		{"missing parent", "paddock.v1.TreeService/Create", `{"path":"/no-parent/child","data":"eA=="}`, "NotFound"},
		{"existing node", "paddock.v1.TreeService/Create", `{"path":"/bi","data":"eA=="}`, "AlreadyExists"},
		{"set wrong version", "paddock.v1.TreeService/Set", `{"path":"/bi","data":"eA==","version":7}`, "FailedPrecondition"},
		{"delete wrong version", "paddock.v1.TreeService/Delete", `{"path":"/bi","version":7}`, "FailedPrecondition"},
		{"set missing node", "paddock.v1.TreeService/Set", `{"path":"/no-such","data":"eA=="}`, "NotFound"},
		{"reserved path", "paddock.v1.TreeService/Create", `{"path":"/paddock/x"}`, "InvalidArgument"},
		{"keepalive unknown session", "paddock.v1.SessionService/KeepAlive", `{"sessionId":"987654321"}`, "FailedPrecondition"},
		{"ephemeral in unknown session", "paddock.v1.TreeService/Create", `{"path":"/bi-eph","type":"NODE_TYPE_EPHEMERAL","sessionId":"987654321"}`, "FailedPrecondition"},
		// Session 0 is never a session: InvalidArgument would say so better
		// (and keep it out of the log), FailedPrecondition is what it is now.
		{"ephemeral without session", "paddock.v1.TreeService/Create", `{"path":"/bi-eph","type":"NODE_TYPE_EPHEMERAL"}`, "InvalidArgument|FailedPrecondition"},
		{"negative session timeout", "paddock.v1.SessionService/OpenSession", `{"timeoutMs":"-1"}`, "InvalidArgument"},
		{"list page size", "paddock.v1.TreeService/List", `{"path":"/","pageSize":-1}`, "InvalidArgument"},
		{"list page token", "paddock.v1.TreeService/List", `{"path":"/","pageToken":"!!"}`, "InvalidArgument"},
	} {
		for _, a := range []*agent{c.agents[l], follower} {
			r := grpcurl(t, a.grpcAddr, tc.method, tc.req)
			wantCode(t, fmt.Sprintf("%s (%s %s on %s)", tc.name, tc.method, tc.req, a.id), r, tc.code)
		}
	}

	var after getResponse
	grpcurlJSON(t, follower.grpcAddr, "paddock.v1.TreeService/Get", `{"path":"/bi"}`, &after)
	if after.Data != before.Data || after.Stat.Version != before.Stat.Version || after.Stat.Mzxid != before.Stat.Mzxid {
		t.Errorf("Get(/bi) after bad input = data %q version %d mzxid %s, want %q %d %s (unchanged)",
			after.Data, after.Stat.Version, after.Stat.Mzxid, before.Data, before.Stat.Version, before.Stat.Mzxid)
	}
	var ls struct {
		Children []struct {
			Name string `json:"name"`
		} `json:"children"`
	}
	grpcurlJSON(t, follower.grpcAddr, "paddock.v1.TreeService/List", `{"path":"/"}`, &ls)
	var names []string
	for _, ch := range ls.Children {
		if ch.Name != "paddock" { // the reserved subtree, if shown
			names = append(names, ch.Name)
		}
	}
	if got, want := strings.Join(names, ","), "bi,bi-max"; got != want {
		t.Errorf("List(/) after bad input = %s, want %s", got, want)
	}
	var sessions struct {
		Sessions []any `json:"sessions"`
	}
	grpcurlJSON(t, follower.grpcAddr, "paddock.v1.SessionService/ListSessions", `{}`, &sessions)
	if len(sessions.Sessions) != 0 {
		t.Errorf("ListSessions after bad input: %d sessions, want 0", len(sessions.Sessions))
	}

	// Every node is still up and agrees.
	for i, a := range c.agents {
		if !a.running() {
			t.Errorf("%s is down after bad input", a.id)
			continue
		}
		var got getResponse
		grpcurlJSON(t, a.grpcAddr, "paddock.v1.TreeService/Get", `{"path":"/bi"}`, &got)
		if got.Stat.Mzxid != before.Stat.Mzxid {
			t.Errorf("Get(/bi) on node %d: mzxid %s, want %s", i, got.Stat.Mzxid, before.Stat.Mzxid)
		}
	}
}
