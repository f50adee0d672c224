package fsm

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// badPaths are paths every operation must refuse with ErrBadPath.
var badPaths = []struct {
	name, path string
}{
	{"empty", ""},
	{"relative", "a"},
	{"relative nested", "a/b"},
	{"trailing slash", "/a/"},
	{"double slash", "//a"},
	{"inner double slash", "/a//b"},
	{"dot segment", "/a/./b"},
	{"dot last", "/a/."},
	{"dotdot segment", "/a/../b"},
	{"dotdot last", "/.."},
	{"NUL", "/a\x00b"},
	{"control char", "/a\x1fb"},
	{"newline", "/a\nb"},
	{"DEL U+007F", "/a\x7fb"},
	{"C1 control U+0085", "/a\u0085b"},
	{"private use U+E000", "/a\ue000"},
	{"specials U+FFF0", "/a\ufff0"},
	{"U+FFFF", "/a\uffff"},
	{"invalid UTF-8", "/a\xffb"},
	{"truncated UTF-8", "/a\xc3"},
	{"encoded surrogate", "/a\xed\xa0\x80"},
	{"over MaxPathLength", "/" + strings.Repeat("a", MaxPathLength)},
}

func TestValidatePath(t *testing.T) {
	good := []string{
		"/",
		"/a",
		"/a/b/c",
		"/a.b",
		"/...",
		"/a/.b",
		"/a/b..",
		"/zookeeper",
		"/ünïcødé/日本",
		"/a b",
		"/" + strings.Repeat("a", MaxPathLength-1),
	}
	for _, p := range good {
		t.Run("good "+trim(p), func(t *testing.T) {
			if err := ValidatePath(p, false); err != nil {
				t.Errorf("ValidatePath(%q, false) = %v, want nil", trim(p), err)
			}
		})
	}
	for _, tc := range badPaths {
		t.Run(tc.name, func(t *testing.T) {
			if err := ValidatePath(tc.path, false); !errors.Is(err, ErrBadPath) {
				t.Errorf("ValidatePath(%q, false) = %v, want %v", trim(tc.path), err, ErrBadPath)
			}
		})
	}
}

func TestValidatePathSequential(t *testing.T) {
	tests := []struct {
		path string
		ok   bool
	}{
		{"/", true}, // "/" + suffix: a child of the root
		{"/a/", true},
		{"/a/lock-", true},
		{"/a", true},
		{"", false},
		{"a/", false},
		{"//", false},
		{"/a//", false},
		{"/./", false},
		{"/" + strings.Repeat("a", MaxPathLength-1-sequenceDigits), true},
		{"/" + strings.Repeat("a", MaxPathLength-sequenceDigits), false},
	}
	for _, tc := range tests {
		t.Run(trim(tc.path), func(t *testing.T) {
			err := ValidatePath(tc.path, true)
			if got := err == nil; got != tc.ok {
				t.Errorf("ValidatePath(%q, true) = %v, want ok=%v", trim(tc.path), err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrBadPath) {
				t.Errorf("ValidatePath(%q, true) = %v, want %v", trim(tc.path), err, ErrBadPath)
			}
		})
	}
}

func TestSplitJoinPath(t *testing.T) {
	tests := []struct {
		path, parent, name string
	}{
		{"/", "", ""},
		{"/a", "/", "a"},
		{"/a/b", "/a", "b"},
		{"/a/b/c", "/a/b", "c"},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			parent, name := splitPath(tc.path)
			if parent != tc.parent || name != tc.name {
				t.Errorf("splitPath(%q) = (%q, %q), want (%q, %q)", tc.path, parent, name, tc.parent, tc.name)
			}
			if got := joinPath(parent, name); got != tc.path {
				t.Errorf("joinPath(%q, %q) = %q, want %q", parent, name, got, tc.path)
			}
			if n := newZnode(tc.path); n.parent() != tc.parent || n.name() != tc.name {
				t.Errorf("newZnode(%q) parent, name = (%q, %q), want (%q, %q)", tc.path, n.parent(), n.name(), tc.parent, tc.name)
			}
		})
	}
}

func TestCheckWritable(t *testing.T) {
	tests := []struct {
		path       string
		sequential bool
		want       error
	}{
		{"/a", false, nil},
		{"/paddock", false, ErrReservedPath},
		{"/paddock/x", false, ErrReservedPath},
		{"/paddock/", true, ErrReservedPath},
		{"/paddock/x-", true, ErrReservedPath},
		// The suffix completes the last name: these name siblings of
		// /paddock, not nodes below it.
		{"/paddock", true, nil},
		{"/paddock-", true, nil},
		{"/paddockx", false, nil},
		{"/paddock.d", false, nil},
		{"/a//b", false, ErrBadPath},
	}
	for _, tc := range tests {
		err := checkWritable(tc.path, tc.sequential)
		if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("checkWritable(%q, %v) = %v, want %v", tc.path, tc.sequential, err, tc.want)
		}
	}
}

// refValidPath is an independent statement of the path rules, for the
// fuzz target to compare ValidatePath with.
func refValidPath(p string) bool {
	if p == "" || len(p) > MaxPathLength || p[0] != '/' || !utf8.ValidString(p) {
		return false
	}
	if p == "/" {
		return true
	}
	for _, seg := range strings.Split(p[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	for _, r := range p {
		switch {
		case r < 0x20, r >= 0x7f && r < 0xa0, r >= 0xd800 && r < 0xf900, r >= 0xfff0 && r <= 0xffff:
			return false
		}
	}
	return true
}

func FuzzValidatePath(f *testing.F) {
	for _, p := range []string{"/", "/a", "/a/b", "/a/", "//", "/a/./b", "/..", "/a\x00", "/\x7f", "/\xff", "/日本", "/paddock/x", "a"} {
		f.Add(p, false)
		f.Add(p, true)
	}
	for _, tc := range badPaths {
		f.Add(tc.path, false)
	}
	f.Fuzz(func(t *testing.T, path string, sequential bool) {
		err := ValidatePath(path, sequential)
		if err != nil {
			if !errors.Is(err, ErrBadPath) {
				t.Fatalf("ValidatePath(%q, %v) = %v, want nil or %v", path, sequential, err, ErrBadPath)
			}
		}
		full := path
		if sequential {
			full += strings.Repeat("0", sequenceDigits)
		}
		if got, want := err == nil, refValidPath(full); got != want {
			t.Fatalf("ValidatePath(%q, %v) = %v, want ok=%v", path, sequential, err, want)
		}
		if err != nil {
			return
		}
		if full[0] != '/' || strings.Contains(full, "//") || (full != "/" && strings.HasSuffix(full, "/")) || !utf8.ValidString(full) {
			t.Fatalf("ValidatePath(%q, %v) accepted a path that breaks the rules", path, sequential)
		}
		parent, name := splitPath(full)
		if n := newZnode(full); n.parent() != parent || n.name() != name {
			t.Fatalf("newZnode(%q) parent, name = (%q, %q), want splitPath's (%q, %q)", full, n.parent(), n.name(), parent, name)
		}
		if full == "/" {
			return
		}
		if name == "" || strings.Contains(name, "/") {
			t.Fatalf("splitPath(%q) name = %q, want one non-empty segment", full, name)
		}
		if err := ValidatePath(parent, false); err != nil {
			t.Fatalf("ValidatePath(parent %q of %q) = %v, want nil", parent, full, err)
		}
	})
}

// trim shortens long paths in test names and messages.
func trim(p string) string {
	if len(p) > 40 {
		return p[:20] + "..." + p[len(p)-10:]
	}
	return p
}
