package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// listDataPage is the JSON of a ListResponse with data.
type listDataPage struct {
	Children []struct {
		Name string `json:"name"`
		Data []byte `json:"data"` // base64 in JSON
	} `json:"children"`
	NextPageToken string `json:"next_page_token"`
	ListingZxid   string `json:"listing_zxid"`
}

func (p listDataPage) names() []string {
	var out []string
	for _, c := range p.Children {
		out = append(out, c.Name)
	}
	return out
}

// TestListData lists a farm's children with their data through the CLI
// (text and -o json) and the HTTP gateway of a follower: two values of
// 700 KiB put the last child on a second page; a change to it between the
// pages makes the second page a 410.
func TestListData(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	all := c.endpoints()
	big := strings.Repeat("b", 700<<10)
	tree(t, all, "create", "/ld")
	tree(t, all, "create", "/ld/h1", `{"host":"web1"}`)
	tree(t, all, "create", "/ld/h2", "two\nlines")
	for _, name := range []string{"/ld/h3", "/ld/h4"} {
		if r := run(t, strings.NewReader(big), paddockBin, "tree", "create", "--endpoints", all, name, "-"); r.code != 0 {
			t.Fatalf("tree create %s - (700 KiB on stdin): %v", name, r)
		}
	}

	want := "h1\t{\"host\":\"web1\"}\nh2\t\"two\\nlines\"\nh3\t" + big + "\nh4\t" + big + "\n"
	for _, flag := range []string{"--data", "-d"} {
		if got := tree(t, all, "ls", flag, "/ld"); got != want {
			t.Errorf("tree ls %s /ld = %.200q..., want %.200q...", flag, got, want)
		}
	}
	long := tree(t, all, "ls", "-l", "-d", "/ld")
	if !strings.Contains(long, "DATA\n") || !strings.Contains(long, `{"host":"web1"}`) {
		t.Errorf("tree ls -l -d /ld = %.300q..., want a DATA column", long)
	}

	// -o json: proto names (listing_zxid) or, from a CLI that still
	// writes protojson's JSON names, listingZxid.
	var js listDataPage
	out := tree(t, all, "ls", "--data", "-o", "json", "/ld")
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &js); err != nil || json.Unmarshal([]byte(out), &raw) != nil {
		t.Fatalf("tree ls --data -o json /ld: %v: %.300q", err, out)
	}
	zxid := raw["listing_zxid"]
	if zxid == nil {
		zxid = raw["listingZxid"]
	}
	if got := fmt.Sprint(js.names()); got != "[h1 h2 h3 h4]" || string(js.Children[0].Data) != `{"host":"web1"}` ||
		string(js.Children[3].Data) != big || len(zxid) < 3 || string(zxid) == `"0"` {
		t.Errorf("tree ls --data -o json /ld: children %s, listing_zxid %s; want h1..h4 with data at one zxid", got, zxid)
	}
	treeFails(t, all, "NotFound", "ls", "--data", "/missing")

	// HTTP, on a follower: the same listing in two pages.
	f := c.agents[(c.leader()+1)%len(c.agents)]
	get := func(token string) (curlResponse, listDataPage) {
		t.Helper()
		path := "/v1/tree/ld?children=true&with_data=true"
		if token != "" {
			path += "&page_token=" + url.QueryEscape(token)
		}
		resp := curl(t, f.httpAddr, path)
		var p listDataPage
		if resp.code == http.StatusOK {
			if err := json.Unmarshal([]byte(resp.body), &p); err != nil {
				t.Fatalf("GET %s: %v: %.300q", path, err, resp.body)
			}
		}
		return resp, p
	}
	r1, p1 := get("")
	if r1.code != http.StatusOK || fmt.Sprint(p1.names()) != "[h1 h2 h3]" || p1.NextPageToken == "" || string(p1.Children[1].Data) != "two\nlines" {
		t.Fatalf("GET /v1/tree/ld?children=true&with_data=true: %d, children %v, next %q; want 200, [h1 h2 h3] and a next page (%.300q)",
			r1.code, p1.names(), p1.NextPageToken, r1.body)
	}
	r2, p2 := get(p1.NextPageToken)
	if r2.code != http.StatusOK || fmt.Sprint(p2.names()) != "[h4]" || p2.NextPageToken != "" || p2.ListingZxid != p1.ListingZxid {
		t.Fatalf("page 2: %d, children %v, next %q, listing_zxid %q; want 200, [h4], the last page, at %q (%.300q)",
			r2.code, p2.names(), p2.NextPageToken, p2.ListingZxid, p1.ListingZxid, r2.body)
	}

	tree(t, all, "set", "/ld/h4", "changed")
	r3, _ := get(p1.NextPageToken)
	var st struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal([]byte(r3.body), &st); err != nil || r3.code != http.StatusGone || st.Code != 11 ||
		!strings.Contains(st.Message, "listing of /ld at zxid "+p1.ListingZxid) {
		t.Errorf("page 2 after /ld/h4 changed: %d %q; want 410, code 11 (OUT_OF_RANGE), naming the listing at zxid %s", r3.code, r3.body, p1.ListingZxid)
	}
	if r, _ := get("bm90IGEgdG9rZW4"); r.code != http.StatusBadRequest {
		t.Errorf("GET with a garbage page_token: %d %q, want 400", r.code, r.body)
	}
	// The CLI lists the new state.
	if got := tree(t, all, "ls", "-d", "/ld"); !strings.HasSuffix(got, "\nh4\tchanged\n") {
		t.Errorf("tree ls -d /ld after the change = ...%q, want it to end with h4's new data", got[max(0, len(got)-40):])
	}
}
