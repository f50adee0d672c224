package fsm

import (
	"strings"
	"testing"
)

func TestHasRequestID(t *testing.T) {
	h := newHarness(t)
	const id = "0123456789abcdef0123456789abcdef"
	if h.f.HasRequestID([]byte(id)) {
		t.Fatal("an id never used is known")
	}
	h.must(withID(cmdCreate("/a", nil), id))
	if !h.f.HasRequestID([]byte(id)) {
		t.Fatal("an applied command's id is not known")
	}
	// A refused command's id is remembered too: its retry gets the refusal.
	h.apply(withID(cmdCreate("/a", nil), "other-id"))
	if !h.f.HasRequestID([]byte("other-id")) {
		t.Fatal("a refused command's id is not known")
	}
	for _, bad := range []string{"", strings.Repeat("x", MaxRequestIDLength+1), "never"} {
		if h.f.HasRequestID([]byte(bad)) {
			t.Fatalf("id %q is known", bad)
		}
	}
}
