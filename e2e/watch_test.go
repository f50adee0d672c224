package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/paddock/paddock/client"
	"github.com/paddock/paddock/e2e/child"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// watchLines parses the NDJSON events `paddock tree watch -o json` printed
// so far; a last line without its newline is still being written.
func watchLines(t *testing.T, out string) []*paddockv1.Event {
	t.Helper()
	lines := strings.Split(out, "\n")
	var evs []*paddockv1.Event
	for _, l := range lines[:len(lines)-1] {
		ev := &paddockv1.Event{}
		if err := protojson.Unmarshal([]byte(l), ev); err != nil {
			t.Fatalf("tree watch printed %q: %v", l, err)
		}
		evs = append(evs, ev)
	}
	return evs
}

// TestWatchResumesAfterKill is the issue's acceptance test: a `paddock
// tree watch` on the leader while a writer makes 1,000 changes; the leader
// is killed mid-way; the watcher resumes on another node and what it
// printed is exactly the 1,000 changes, in order, none twice. The writer
// retries through the election with request ids, so a set whose reply was
// lost with the leader is not applied twice either (that would show as a
// version the watcher sees but no acknowledgement matches).
func TestWatchResumesAfterKill(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	a := c.leader()
	var others []int
	for i := range c.agents {
		if i != a {
			others = append(others, i)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := client.New(ctx, client.Config{Endpoints: strings.Split(c.endpoints(others...), ",")})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	created, err := cl.Create(ctx, &paddockv1.CreateRequest{Path: "/w"})
	if err != nil {
		t.Fatalf("Create(/w): %v", err)
	}

	// The watcher knows the leader first, the writer never does.
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	w, err := startProc("tree watch", stdout, stderr, paddockBin, "tree", "watch", "-o", "json",
		"--endpoints", c.endpoints(a, others[0]),
		"--from", fmt.Sprint(created.GetHeader().GetZxid()+1), "/w")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Kill)

	const changes = 1000
	acks := make([]uint64, 0, changes)
	var mu sync.Mutex
	writeErr := make(chan error, 1)
	go func() {
		for i := range changes {
			resp, err := cl.Set(ctx, &paddockv1.SetRequest{Path: "/w", Data: []byte(fmt.Sprint(i + 1))})
			if err != nil {
				writeErr <- fmt.Errorf("Set(/w) #%d: %w", i+1, err)
				return
			}
			mu.Lock()
			acks = append(acks, resp.GetHeader().GetZxid())
			mu.Unlock()
		}
		writeErr <- nil
	}()

	ok, last := poll(60*time.Second, func() (bool, string) {
		n := len(watchLines(t, stdout.String()))
		return n >= changes/3 || w.Exited(), fmt.Sprintf("%d events printed, watcher exited %t", n, w.Exited())
	})
	if !ok || w.Exited() {
		t.Fatalf("watcher before the kill: %s; stderr %q", last, stderr.String())
	}
	c.kill9(a)

	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
	ok, last = poll(60*time.Second, func() (bool, string) {
		n := len(watchLines(t, stdout.String()))
		return n >= changes || w.Exited(), fmt.Sprintf("%d events printed, watcher exited %t", n, w.Exited())
	})
	if !ok {
		t.Fatalf("watcher after the kill: %s; stderr %q", last, stderr.String())
	}
	w.Signal(syscall.SIGTERM)
	if !w.Wait(10 * time.Second) {
		t.Fatalf("tree watch did not exit on SIGTERM")
	}
	if code := w.ExitCode(); code != 0 {
		t.Errorf("tree watch exit code = %d, want 0; stderr %q", code, stderr.String())
	}

	evs := watchLines(t, stdout.String())
	if len(evs) != changes {
		t.Fatalf("watcher printed %d events, want %d", len(evs), changes)
	}
	for i, ev := range evs {
		want := fmt.Sprintf("zxid %d DATA_CHANGED /w version %d", acks[i], i+1)
		got := fmt.Sprintf("zxid %d %s %s version %d", ev.GetZxid(),
			strings.TrimPrefix(ev.GetKind().String(), "EVENT_KIND_"), ev.GetPath(), ev.GetStat().GetVersion())
		if got != want {
			t.Fatalf("event %d = %s, want %s", i, got, want)
		}
	}
}

// httpStream is a background `curl -N` on a streaming route.
type httpStream struct {
	p              *child.Proc
	stdout, stderr *syncBuffer
}

func startHTTPStream(t *testing.T, addr, path string) *httpStream {
	t.Helper()
	s := &httpStream{stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	var err error
	s.p, err = startProc("curl "+path, s.stdout, s.stderr, curlBin,
		"-sS", "-N", "-i", "--max-time", "60", "http://"+addr+path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.p.Kill)
	return s
}

// body is what the stream sent after its headers.
func (s *httpStream) body() string {
	_, body, _ := strings.Cut(s.stdout.String(), "\r\n\r\n")
	return body
}

// watchLine is one NDJSON line of the HTTP watch stream.
type watchLine struct {
	Result struct {
		Header struct {
			NodeID string `json:"node_id"`
			Zxid   string `json:"zxid"`
		} `json:"header"`
		Created bool `json:"created"`
		Events  []struct {
			Zxid string `json:"zxid"`
			Kind string `json:"kind"`
			Path string `json:"path"`
		} `json:"events"`
	} `json:"result"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (s *httpStream) lines(t *testing.T) []watchLine {
	t.Helper()
	raw := strings.Split(s.body(), "\n")
	var out []watchLine
	for _, l := range raw[:len(raw)-1] {
		var wl watchLine
		if err := json.Unmarshal([]byte(l), &wl); err != nil {
			t.Fatalf("watch stream line %q: %v", l, err)
		}
		out = append(out, wl)
	}
	return out
}

// metric returns the value of an unlabelled series in /metrics of addr.
func metric(t *testing.T, addr, name string) string {
	t.Helper()
	r := curl(t, addr, "/metrics")
	for _, l := range strings.Split(r.body, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			return v
		}
	}
	return ""
}

// TestHTTPWatch drives the watch routes with curl: an NDJSON stream that
// sees a follower's writes in order, a long poll that returns when a change
// comes, and one that returns none after its timeout with the zxid to poll
// after next.
func TestHTTPWatch(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	a, b := c.agents[0], c.agents[1]

	var created struct {
		Header struct {
			Zxid string `json:"zxid"`
		} `json:"header"`
	}
	r := curlDo(t, b.httpAddr, "POST", "/v1/tree/h", `{}`)
	if r.code != 200 {
		t.Fatalf("POST /v1/tree/h: %d %s", r.code, r.body)
	}
	if err := json.Unmarshal([]byte(r.body), &created); err != nil {
		t.Fatal(err)
	}
	start := atoi(created.Header.Zxid) + 1

	s := startHTTPStream(t, a.httpAddr, fmt.Sprintf("/v1/watch/h?recursive=true&start_zxid=%d", start))
	ok, last := poll(15*time.Second, func() (bool, string) {
		return len(s.lines(t)) >= 1, s.stdout.String()
	})
	if !ok {
		t.Fatalf("watch stream: no created line: %q %q", last, s.stderr.String())
	}
	if got := s.lines(t)[0]; !got.Result.Created || got.Result.Header.NodeID != a.id {
		t.Errorf("first line = %+v, want created by %s", got, a.id)
	}
	if !strings.Contains(s.stdout.String(), "Served-By: "+a.id+"\r\n") {
		t.Errorf("watch stream headers %q, want Served-By: %s", s.stdout.String(), a.id)
	}
	if v := metric(t, a.httpAddr, "paddock_watchers"); v != "1" {
		t.Errorf("paddock_watchers on %s = %q with one stream open, want 1", a.id, v)
	}

	for _, step := range []struct{ method, path, body string }{
		{"POST", "/v1/tree/h/x", `{"data":"` + b64("1") + `"}`},
		{"PUT", "/v1/tree/h/x", `{"data":"` + b64("2") + `"}`},
		{"DELETE", "/v1/tree/h/x", ""},
	} {
		if r := curlDo(t, b.httpAddr, step.method, step.path, step.body); r.code != 200 {
			t.Fatalf("%s %s: %d %s", step.method, step.path, r.code, r.body)
		}
	}
	want := []string{
		"CREATED /h/x", "CHILDREN_CHANGED /h", "DATA_CHANGED /h/x", "DELETED /h/x", "CHILDREN_CHANGED /h",
	}
	var got []string
	ok, _ = poll(15*time.Second, func() (bool, string) {
		got = got[:0]
		var zxid int64
		for _, l := range s.lines(t) {
			if l.Error != nil {
				t.Fatalf("watch stream error line: %+v", l.Error)
			}
			for _, ev := range l.Result.Events {
				if z := atoi(ev.Zxid); z < zxid || z < start {
					t.Fatalf("event zxid %d after %d (start %d)", z, zxid, start)
				} else {
					zxid = z
				}
				got = append(got, strings.TrimPrefix(ev.Kind, "EVENT_KIND_")+" "+ev.Path)
			}
		}
		return len(got) >= len(want), ""
	})
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("streamed events = %q, want %q", got, want)
	}

	// A long poll after the current zxid waits; a write wakes it.
	var cur struct {
		Header struct {
			Zxid string `json:"zxid"`
		} `json:"header"`
	}
	r = curlDo(t, a.httpAddr, "GET", "/v1/tree/h", "")
	if err := json.Unmarshal([]byte(r.body), &cur); err != nil || r.code != 200 {
		t.Fatalf("GET /v1/tree/h: %d %s %v", r.code, r.body, err)
	}
	after := atoi(cur.Header.Zxid)
	p := startHTTPStream(t, a.httpAddr, fmt.Sprintf("/v1/poll/h?recursive=true&after_zxid=%d&timeout_ms=30000", after))
	// The poll is waiting once the node counts it next to the stream.
	ok, last = poll(15*time.Second, func() (bool, string) {
		v := metric(t, a.httpAddr, "paddock_watchers")
		return v == "2", "paddock_watchers " + v + ", poll output " + p.stdout.String()
	})
	if !ok {
		t.Fatalf("long poll not waiting: %s", last)
	}
	if r := curlDo(t, b.httpAddr, "POST", "/v1/tree/h/y", `{}`); r.code != 200 {
		t.Fatalf("POST /v1/tree/h/y: %d %s", r.code, r.body)
	}
	if !p.p.Wait(15 * time.Second) {
		t.Fatalf("long poll did not return after a change: %q", p.stdout.String())
	}
	var polled struct {
		Header struct {
			Zxid string `json:"zxid"`
		} `json:"header"`
		Events []struct {
			Zxid string `json:"zxid"`
			Kind string `json:"kind"`
			Path string `json:"path"`
		} `json:"events"`
	}
	if err := json.Unmarshal([]byte(p.body()), &polled); err != nil {
		t.Fatalf("long poll body %q: %v", p.body(), err)
	}
	var kinds []string
	for _, ev := range polled.Events {
		kinds = append(kinds, strings.TrimPrefix(ev.Kind, "EVENT_KIND_")+" "+ev.Path)
	}
	if strings.Join(kinds, ", ") != "CREATED /h/y, CHILDREN_CHANGED /h" || atoi(polled.Header.Zxid) < atoi(polled.Events[0].Zxid) {
		t.Errorf("long poll = %s, want CREATED /h/y, CHILDREN_CHANGED /h up to its zxid", p.body())
	}

	// With nothing new, a poll returns after its timeout, with no events
	// and the zxid to poll after next.
	next := atoi(polled.Header.Zxid)
	r = curlDo(t, a.httpAddr, "GET", fmt.Sprintf("/v1/poll/h?recursive=true&after_zxid=%d&timeout_ms=300", next), "")
	var empty struct {
		Header struct {
			Zxid string `json:"zxid"`
		} `json:"header"`
		Events []json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal([]byte(r.body), &empty); err != nil || r.code != 200 {
		t.Fatalf("poll timeout: %d %s %v", r.code, r.body, err)
	}
	if len(empty.Events) != 0 || atoi(empty.Header.Zxid) < next {
		t.Errorf("poll timeout = %s, want no events and zxid >= %d", r.body, next)
	}

	// A zxid beyond the cluster's latest is refused with 410 and a
	// FUTURE_ZXID detail carrying the current zxid, on both routes.
	for _, path := range []string{"/v1/poll/x?after_zxid=999999999&timeout_ms=100", "/v1/watch/x?start_zxid=999999999"} {
		r := curlDo(t, a.httpAddr, "GET", path, "")
		type status struct {
			Details []struct {
				Reason      string `json:"reason"`
				CurrentZxid string `json:"current_zxid"`
			} `json:"details"`
		}
		// A stream's error comes wrapped in {"error": ...}.
		var e struct {
			status
			Error *status `json:"error"`
		}
		err := json.Unmarshal([]byte(r.body), &e)
		if e.Error != nil {
			e.status = *e.Error
		}
		if err != nil || r.code != 410 || len(e.Details) != 1 ||
			e.Details[0].Reason != "WATCH_CANCEL_REASON_FUTURE_ZXID" || atoi(e.Details[0].CurrentZxid) < next {
			t.Errorf("GET %s = %d %s, want 410 with a FUTURE_ZXID detail, current_zxid >= %d", path, r.code, r.body, next)
		}
	}

	// Bad input: a malformed path is a 400 on both routes.
	for _, path := range []string{"/v1/poll/a//b?timeout_ms=100", "/v1/watch/a//b"} {
		if r := curlDo(t, a.httpAddr, "GET", path, ""); r.code != 400 {
			t.Errorf("GET %s = %d %s, want 400", path, r.code, r.body)
		}
	}
}
