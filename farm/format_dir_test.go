package farm

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// writeTree makes the files of tree under root: a path ending in / is a
// directory, "->target" a symlink, anything else a file's content.
func writeTree(t *testing.T, root string, tree map[string]string) {
	t.Helper()
	paths := make([]string, 0, len(tree))
	for p := range tree {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		content := tree[p]
		var err error
		switch {
		case strings.HasSuffix(p, "/"):
			err = os.MkdirAll(full, 0o755)
		case strings.HasPrefix(content, "->"):
			err = os.Symlink(content[2:], full)
		default:
			err = os.WriteFile(full, []byte(content), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// readTree is what is under root: directories as "path/", symlinks as
// "->target", files by content.
func readTree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			out[rel] = "->" + target
			return err
		case d.IsDir():
			out[rel+"/"] = ""
		default:
			b, err := os.ReadFile(p)
			out[rel] = string(b)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func equalTree(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestDirWriteRead(t *testing.T) {
	root := filepath.Join(t.TempDir(), "export")
	changed, err := dirFormat{}.Write(root, dbFarm())
	if err != nil || !changed {
		t.Fatalf("Write(missing root) = %v, %v, want true, nil", changed, err)
	}
	want := map[string]string{
		"1.2.3.4/": "", "1.2.3.4/hostname": "db-01.example.com\n", "1.2.3.4/enabled": "0\n",
		"1.2.3.4/mysql/": "", "1.2.3.4/mysql/replication_delay": "0\n",
		"1.2.3.5/": "", "1.2.3.5/hostname": "db-02.example.com\n", "1.2.3.5/enabled": "0\n",
		"1.2.3.5/mysql/": "", "1.2.3.5/mysql/replication_delay": "1\n",
	}
	if got := readTree(t, root); !equalTree(got, want) {
		t.Errorf("Write(%v) made %v, want %v", dbFarm(), got, want)
	}
	got, err := dirFormat{}.Read(root)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(dbFarm()) {
		t.Errorf("Read(Write(%v)) = %v", dbFarm(), got)
	}
}

// TestDirRoundTrip: a dir holds text, so every value reads back as the
// string ValueString gives (trimmed), nil and "" as "".
func TestDirRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		in, want Conf
	}{
		{"empty", Conf{}, Conf{}},
		{"strings", Conf{"a": "x", "q": `"$x" \ 'y'`, "u": "héllo ☃ 🐄", "nl": "one\ntwo", "ctl": "a\x01b", "empty": ""},
			Conf{"a": "x", "q": `"$x" \ 'y'`, "u": "héllo ☃ 🐄", "nl": "one\ntwo", "ctl": "a\x01b", "empty": ""}},
		{"trimmed", Conf{"a": "  x  ", "b": "x\n\n"}, Conf{"a": "x", "b": "x"}},
		{"numbers and others", Conf{"n": json.Number("1.5e3"), "t": true, "f": false, "nil": nil},
			Conf{"n": "1.5e3", "t": "true", "f": "false", "nil": ""}},
		{"list as JSON", Conf{"l": []any{"a<b", json.Number("1"), Conf{"k": "v"}}}, Conf{"l": `["a<b",1,{"k":"v"}]`}},
		{"keys", Conf{"a b": "1", "é": "2", "a:b": "3", "-x": "4", "x.y": "5", "a\\b": "6"},
			Conf{"a b": "1", "é": "2", "a:b": "3", "-x": "4", "x.y": "5", "a\\b": "6"}},
		{"nested and empty dicts", Conf{"a": Conf{"b": Conf{"c": "d"}, "e": Conf{}}}, Conf{"a": Conf{"b": Conf{"c": "d"}, "e": Conf{}}}},
		{"map[string]any", Conf{"a": map[string]any{"b": "c"}}, Conf{"a": Conf{"b": "c"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			if _, err := (dirFormat{}).Write(root, tt.in); err != nil {
				t.Fatalf("Write(%v) error %v", tt.in, err)
			}
			got, err := dirFormat{}.Read(root)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(tt.want) {
				t.Errorf("Read(Write(%v)) = %v, want %v", tt.in, got, tt.want)
			}
			if changed, err := (dirFormat{}).Write(root, tt.in); err != nil || changed {
				t.Errorf("second Write = %v, %v, want false, nil", changed, err)
			}
		})
	}
}

func TestDirRewrite(t *testing.T) {
	tests := []struct {
		name    string
		before  map[string]string
		conf    Conf
		want    map[string]string
		changed bool
	}{
		{"key removed",
			map[string]string{"a": "1\n", "b": "2\n", "d/": "", "d/x": "1\n"},
			Conf{"a": "1"},
			map[string]string{"a": "1\n"}, true},
		{"nested key removed",
			map[string]string{"d/x": "1\n", "d/y": "2\n"},
			Conf{"d": Conf{"x": "1"}},
			map[string]string{"d/": "", "d/x": "1\n"}, true},
		{"file becomes a dir",
			map[string]string{"a": "1\n"},
			Conf{"a": Conf{"b": "2"}},
			map[string]string{"a/": "", "a/b": "2\n"}, true},
		{"dir becomes a file",
			map[string]string{"a/b/c": "1\n"},
			Conf{"a": "2"},
			map[string]string{"a": "2\n"}, true},
		{"value changed",
			map[string]string{"a": "1\n", "b": "2\n"},
			Conf{"a": "1", "b": "3"},
			map[string]string{"a": "1\n", "b": "3\n"}, true},
		{"same values without newline",
			map[string]string{"a": "1", "b": "  x \n\n", "e": "", "d/c": "y"},
			Conf{"a": "1", "b": "x", "e": nil, "d": Conf{"c": "y"}},
			map[string]string{"a": "1", "b": "  x \n\n", "e": "", "d/": "", "d/c": "y"}, false},
		{"dotfiles left alone",
			map[string]string{".hidden": "h", ".git/config": "c", "d/.swp": "s", "a": "1\n"},
			Conf{"d": Conf{}},
			map[string]string{".hidden": "h", ".git/": "", ".git/config": "c", "d/": "", "d/.swp": "s"}, true},
		{"what cannot be read is left alone",
			map[string]string{"bin": "\xff\xfe", "dangling": "->nowhere", "a": "1"},
			Conf{},
			map[string]string{"bin": "\xff\xfe", "dangling": "->nowhere"}, true},
		{"a key replaces what could not be read",
			map[string]string{"bin": "\xff\xfe", "dangling": "->nowhere"},
			Conf{"bin": "x", "dangling": Conf{"y": "z"}},
			map[string]string{"bin": "x\n", "dangling/": "", "dangling/y": "z\n"}, true},
		{"symlinks are written through",
			map[string]string{"real": "1\n", "link": "->real", "realdir/x": "1\n", "linkdir": "->realdir"},
			Conf{"real": "2", "link": "2", "realdir": Conf{"x": "3"}, "linkdir": Conf{"x": "3"}},
			map[string]string{"real": "2\n", "link": "->real", "realdir/": "", "realdir/x": "3\n", "linkdir": "->realdir"}, true},
		{"a symlink to a dir becomes a file",
			map[string]string{"realdir/x": "1\n", "linkdir": "->realdir"},
			Conf{"realdir": Conf{"x": "1"}, "linkdir": "v"},
			map[string]string{"realdir/": "", "realdir/x": "1\n", "linkdir": "v\n"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, tt.before)
			changed, err := dirFormat{}.Write(root, tt.conf)
			if err != nil {
				t.Fatalf("Write(%v) error %v", tt.conf, err)
			}
			if changed != tt.changed {
				t.Errorf("Write(%v) changed = %v, want %v", tt.conf, changed, tt.changed)
			}
			if got := readTree(t, root); !equalTree(got, tt.want) {
				t.Errorf("Write(%v) over %v made %v, want %v", tt.conf, tt.before, got, tt.want)
			}
		})
	}
}

func TestDirUnchangedKeepsMtime(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{"enabled": "1", "mysql/delay": "0\n"})
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	for _, p := range []string{"enabled", "mysql/delay", "mysql", "."} {
		if err := os.Chtimes(filepath.Join(root, p), old, old); err != nil {
			t.Fatal(err)
		}
	}
	changed, err := dirFormat{}.Write(root, Conf{"enabled": "1", "mysql": Conf{"delay": json.Number("0")}})
	if err != nil || changed {
		t.Fatalf("Write(same) = %v, %v, want false, nil", changed, err)
	}
	for _, p := range []string{"enabled", "mysql/delay", "mysql", "."} {
		if fi := stat(t, filepath.Join(root, p)); !fi.ModTime().Equal(old) {
			t.Errorf("%s mtime = %v, want %v (untouched)", p, fi.ModTime(), old)
		}
	}
}

func TestDirBadKeys(t *testing.T) {
	for _, key := range []string{"", ".", "..", ".hidden", "a/b", "/", "a\x00b"} {
		for _, nested := range []bool{false, true} {
			conf := Conf{"aaa": "1", "zzz": Conf{"x": "2"}}
			if nested {
				conf["zzz"] = Conf{"x": "2", key: "3"}
			} else {
				conf[key] = "3"
			}
			t.Run(key, func(t *testing.T) {
				parent := t.TempDir()
				root := filepath.Join(parent, "missing")
				changed, err := dirFormat{}.Write(root, conf)
				if !errors.Is(err, ErrBadConf) || !strings.Contains(err.Error(), fmt.Sprintf("%q", key)) {
					t.Errorf("Write(%q) error = %v, want ErrBadConf naming the key", conf, err)
				}
				if changed {
					t.Errorf("Write(%q) changed = true, want false", conf)
				}
				if _, err := os.Lstat(root); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("Write(%q) created the root: %v", conf, err)
				}

				writeTree(t, parent, map[string]string{"existing/old": "1\n"})
				existing := filepath.Join(parent, "existing")
				if _, err := (dirFormat{}).Write(existing, conf); !errors.Is(err, ErrBadConf) {
					t.Errorf("Write(%q) error = %v, want ErrBadConf", conf, err)
				}
				if got, want := readTree(t, existing), map[string]string{"old": "1\n"}; !equalTree(got, want) {
					t.Errorf("Write(%q) changed an existing dir to %v, want %v", conf, got, want)
				}
			})
		}
	}
}

func TestDirModes(t *testing.T) {
	mask := currentUmask(t)
	root := filepath.Join(t.TempDir(), "a", "root")
	if _, err := (dirFormat{}).Write(root, Conf{"f": "1", "d": Conf{"g": "2", "e": Conf{}}}); err != nil {
		t.Fatal(err)
	}
	// A file becomes a directory: built under a temporary name first.
	if _, err := (dirFormat{}).Write(root, Conf{"f": Conf{"h": "3"}, "d": Conf{"g": "2", "e": Conf{}}}); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{
		".": 0o777 &^ mask, "..": 0o777 &^ mask, "d": 0o777 &^ mask, "d/e": 0o777 &^ mask, "f": 0o777 &^ mask,
		"d/g": 0o666 &^ mask, "f/h": 0o666 &^ mask,
	} {
		if got := stat(t, filepath.Join(root, p)).Mode().Perm(); got != want {
			t.Errorf("mode of %s = %v, want %v (umask %03o)", p, got, want, mask)
		}
	}
}

func TestDirRead(t *testing.T) {
	tests := []struct {
		name string
		tree map[string]string
		want Conf
	}{
		{"empty", map[string]string{}, Conf{}},
		{"trimmed values", map[string]string{"a": "  x\n", "b": "\n", "c": "", "d": "one\ntwo\n"}, Conf{"a": "x", "b": "", "c": "", "d": "one\ntwo"}},
		{"dotfiles ignored", map[string]string{".a": "1", ".d/x": "2", "b": "3", "e/.swp": "4"}, Conf{"b": "3", "e": Conf{}}},
		{"not utf-8 skipped", map[string]string{"bin": "\xff\xfe\x00", "txt": "ok"}, Conf{"txt": "ok"}},
		{"symlinks followed", map[string]string{"real": "1", "link": "->real", "d/x": "2", "dl": "->d", "abs": "->/nonexistent/x"},
			Conf{"real": "1", "link": "1", "d": Conf{"x": "2"}, "dl": Conf{"x": "2"}}},
		{"values stay text", map[string]string{"n": "12", "b": "true", "j": `{"a":1}`}, Conf{"n": "12", "b": "true", "j": `{"a":1}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, tt.tree)
			got, err := dirFormat{}.Read(root)
			if err != nil {
				t.Fatalf("Read(%v) error %v", tt.tree, err)
			}
			if !got.Equal(tt.want) {
				t.Errorf("Read(%v) = %v, want %v", tt.tree, got, tt.want)
			}
		})
	}
}

func TestDirReadBad(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"file": "x", "loop/a": "1", "loop/back": "->..", "root": "->."})
	tests := []struct {
		path string
		want error
	}{
		{filepath.Join(dir, "missing"), fs.ErrNotExist},
		{filepath.Join(dir, "file"), ErrBadConf},
		{filepath.Join(dir, "loop"), ErrBadConf},
	}
	for _, tt := range tests {
		if c, err := (dirFormat{}).Read(tt.path); !errors.Is(err, tt.want) {
			t.Errorf("Read(%s) = %v, %v, want %v", tt.path, c, err, tt.want)
		}
	}
}

func TestDirWriteOverFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "file")
	writeTree(t, filepath.Dir(p), map[string]string{"file": "x"})
	if changed, err := (dirFormat{}).Write(p, Conf{"a": "1"}); err == nil || changed {
		t.Errorf("Write(a file) = %v, %v, want an error", changed, err)
	}
	assertFile(t, p, "x")
}

func TestDirEncode(t *testing.T) {
	if b, err := (dirFormat{}).Encode(dbFarm()); !errors.Is(err, ErrBadFormat) {
		t.Errorf("Encode = %q, %v, want ErrBadFormat", b, err)
	}
}
