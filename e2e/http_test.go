package e2e

import (
	"encoding/json"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
	"time"
)

// curlResponse is one HTTP response as curl received it.
type curlResponse struct {
	code   int
	header textproto.MIMEHeader
	body   string
}

// curl GETs http://addr+path with curl and parses the response.
func curl(t *testing.T, addr, path string) curlResponse {
	t.Helper()
	if curlBin == "" {
		t.Fatal("curl is not on PATH")
	}
	// -i prints the status line and headers before the body; --max-time
	// so a hung server fails the call, not the test binary.
	r := run(t, nil, curlBin, "-sS", "-i", "--max-time", "5", "http://"+addr+path)
	if r.code != 0 {
		t.Fatalf("curl %s%s: %v", addr, path, r)
	}
	head, body, ok := strings.Cut(r.stdout, "\r\n\r\n")
	if !ok {
		t.Fatalf("curl %s%s: no header/body separator in %q", addr, path, r.stdout)
	}
	lines := strings.Split(head, "\r\n")
	// "HTTP/1.1 200 OK"
	fields := strings.Fields(lines[0])
	if len(fields) < 2 {
		t.Fatalf("curl %s%s: bad status line %q", addr, path, lines[0])
	}
	code, err := strconv.Atoi(fields[1])
	if err != nil {
		t.Fatalf("curl %s%s: bad status line %q", addr, path, lines[0])
	}
	h := textproto.MIMEHeader{}
	for _, l := range lines[1:] {
		if k, v, ok := strings.Cut(l, ":"); ok {
			h.Add(textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(k)), strings.TrimSpace(v))
		}
	}
	return curlResponse{code: code, header: h, body: body}
}

func TestHTTP(t *testing.T) {
	t.Parallel()
	c := startCluster(t)

	for _, a := range c.agents {
		for _, path := range []string{"/healthz", "/readyz"} {
			resp := curl(t, a.httpAddr, path)
			if resp.code != http.StatusOK {
				t.Errorf("GET %s on %s: status = %d, want %d (body %q)", path, a.id, resp.code, http.StatusOK, resp.body)
			}
			if got := resp.header.Get("Served-By"); got != a.id {
				t.Errorf("GET %s on %s: Served-By = %q, want %q", path, a.id, got, a.id)
			}
		}

		resp := curl(t, a.httpAddr, "/v1/cluster/status")
		if resp.code != http.StatusOK {
			t.Errorf("GET /v1/cluster/status on %s: status = %d, want %d (body %q)", a.id, resp.code, http.StatusOK, resp.body)
		}
		if got := resp.header.Get("Served-By"); got != a.id {
			t.Errorf("GET /v1/cluster/status on %s: Served-By = %q, want %q", a.id, got, a.id)
		}
		if ct := resp.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("GET /v1/cluster/status on %s: Content-Type = %q, want application/json", a.id, ct)
		}
		var st struct {
			ID       string `json:"id"`
			LeaderID string `json:"leaderId"`
			Ready    bool   `json:"ready"`
		}
		if err := json.Unmarshal([]byte(resp.body), &st); err != nil {
			t.Errorf("GET /v1/cluster/status on %s: body is not JSON: %v: %q", a.id, err, resp.body)
		}
		if st.ID != a.id || st.LeaderID == "" || !st.Ready {
			t.Errorf("GET /v1/cluster/status on %s: id %q, leaderId %q, ready %t; want id %q, a leader, ready", a.id, st.ID, st.LeaderID, st.Ready, a.id)
		}

		resp = curl(t, a.httpAddr, "/v1/cluster/members")
		var members struct {
			Members []struct {
				ID       string `json:"id"`
				GrpcAddr string `json:"grpcAddr"`
				HTTPAddr string `json:"httpAddr"`
			} `json:"members"`
		}
		if err := json.Unmarshal([]byte(resp.body), &members); err != nil {
			t.Errorf("GET /v1/cluster/members on %s: body is not JSON: %v: %q", a.id, err, resp.body)
		}
		if resp.code != http.StatusOK || len(members.Members) != len(c.agents) {
			t.Errorf("GET /v1/cluster/members on %s: status %d, %d members; want 200, %d", a.id, resp.code, len(members.Members), len(c.agents))
		}
		if got := resp.header.Get("Served-By"); got != a.id {
			t.Errorf("GET /v1/cluster/members on %s: Served-By = %q, want %q", a.id, got, a.id)
		}

		resp = curl(t, a.httpAddr, "/no/such/path")
		if resp.code != http.StatusNotFound {
			t.Errorf("GET /no/such/path on %s: status = %d, want %d", a.id, resp.code, http.StatusNotFound)
		}
		if got := resp.header.Get("Served-By"); got != a.id {
			t.Errorf("GET /no/such/path on %s: Served-By = %q, want %q", a.id, got, a.id)
		}
	}

	// Registration is asynchronous: every member's addresses show up
	// eventually, on every node.
	for _, a := range c.agents {
		ok, last := poll(10*time.Second, func() (bool, string) {
			resp := curl(t, a.httpAddr, "/v1/cluster/members")
			var members struct {
				Members []struct {
					ID       string `json:"id"`
					GrpcAddr string `json:"grpcAddr"`
					HTTPAddr string `json:"httpAddr"`
				} `json:"members"`
			}
			_ = json.Unmarshal([]byte(resp.body), &members)
			want := map[string]string{}
			for _, b := range c.agents {
				want[b.id] = b.grpcAddr + " " + b.httpAddr
			}
			for _, m := range members.Members {
				if want[m.ID] == m.GrpcAddr+" "+m.HTTPAddr {
					delete(want, m.ID)
				}
			}
			return len(want) == 0, resp.body
		})
		if !ok {
			t.Errorf("GET /v1/cluster/members on %s: want every member's grpc and http address, last %s", a.id, last)
		}
	}

	// With two of three nodes gone the survivor has no leader: /readyz
	// says 503 while /healthz stays 200.
	l := c.leader()
	survivor := (l + 1) % 3
	for i := range c.agents {
		if i != survivor {
			c.kill9(i)
		}
	}
	s := c.agents[survivor]
	ok, last := poll(15*time.Second, func() (bool, string) {
		resp := curl(t, s.httpAddr, "/readyz")
		return resp.code == http.StatusServiceUnavailable, strconv.Itoa(resp.code) + " " + resp.body
	})
	if !ok {
		t.Errorf("GET /readyz on %s without quorum: last %s, want 503", s.id, last)
	}
	if resp := curl(t, s.httpAddr, "/healthz"); resp.code != http.StatusOK {
		t.Errorf("GET /healthz on %s without quorum: status = %d, want %d", s.id, resp.code, http.StatusOK)
	}
}
