package farm

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// dbFarm is the db farm of ZkFarmer's README, as an export holds it.
func dbFarm() Conf {
	return Conf{
		"1.2.3.4": Conf{"hostname": "db-01.example.com", "enabled": "0", "mysql": Conf{"replication_delay": "0"}},
		"1.2.3.5": Conf{"hostname": "db-02.example.com", "enabled": "0", "mysql": Conf{"replication_delay": "1"}},
	}
}

// trickyConfs are configurations every format that reads must give back
// exactly, and the php format must make PHP give back exactly.
func trickyConfs() map[string]Conf {
	return map[string]Conf{
		"empty":  {},
		"readme": dbFarm(),
		"numeric strings": {
			"zero": "0", "one": "1", "float": "1.5", "neg": "-3", "exp": "1e5",
			"octal": "0o17", "hex": "0x1F", "lead0": "0123", "big": "123456789012345678901234567890",
			"inf": ".inf", "nan": ".NaN", "sexa": "1:20", "ip": "1.2.3.4",
		},
		"typed-looking strings": {
			"true": "true", "False": "False", "yes": "yes", "no": "no", "on": "on", "off": "OFF", "y": "y", "n": "n",
			"null": "null", "tilde": "~", "empty": "", "date": "2001-12-14", "time": "2001-12-14T21:59:43.10-05:00",
		},
		"quoting": {
			"dq": `say "hi"`, "sq": "it's", "bs": `C:\path\n`, "dollar": "$x ${y} {$z} $", "nl": "a\nb",
			"crlf": "a\r\nb", "tab": "a\tb", "trail nl": "a\n", "lead space": "  a", "trail space": "a  ",
			"ctl": "\x00\x01\x1f\x7f", "hexy": "\x01" + "2F", "colon": "a: b", "hash": "a #b", "dash": "- a",
			"brace": "{a}", "bracket": "[a]", "star": "*a", "amp": "&a", "bang": "!a", "pct": "%a", "at": "@a",
			"backtick": "`a`", "pipe": "|", "gt": ">", "php close": "?> <?php", "unicode": "héllo wörld ☃ 🐄",
			"bom": "\ufeffa", "ls": "a\u2028b", "nbsp": "a\u00a0",
		},
		"quoted keys": {
			"a b": "1", "a:b": "2", "a\"b": "3", "a$b": "4", "a\\b": "5", "a\nb": "6", "é": "7", "-": "8",
			"true": "9", "null": "10", "": "11", "x.y": "12",
		},
		"numbers and others": {
			"int": json.Number("42"), "neg": json.Number("-7"), "zero": json.Number("0"), "float": json.Number("1.5"),
			"exp": json.Number("1e5"), "Exp": json.Number("2.5E-3"), "big": json.Number("9223372036854775807"),
			"t": true, "f": false, "nil": nil,
		},
		"nested": {
			"a":          Conf{"b": Conf{"c": Conf{"d": "deep"}}, "empty": Conf{}},
			"list":       []any{"x", json.Number("1"), true, nil, Conf{"k": "v"}, []any{"y"}},
			"empty list": []any{},
		},
	}
}

func TestParseFormat(t *testing.T) {
	for _, name := range Formats {
		f, err := ParseFormat(name)
		if err != nil {
			t.Fatalf("ParseFormat(%q) error %v", name, err)
		}
		if f.Name() != name {
			t.Errorf("ParseFormat(%q).Name() = %q, want %q", name, f.Name(), name)
		}
	}
	for _, name := range []string{"", "xml", "JSON", "yml"} {
		if _, err := ParseFormat(name); !errors.Is(err, ErrBadFormat) {
			t.Errorf("ParseFormat(%q) error = %v, want ErrBadFormat", name, err)
		}
	}
}

func TestFormatFor(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "conf.json") // a directory despite its extension
	if err := os.Mkdir(existing, 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, name, want string
	}{
		{dir, "", "dir"},
		{existing, "", "dir"},
		{filepath.Join(dir, "missing"), "dir", "dir"},
		{"/x/db.json", "", "json"},
		{"/x/db.JSON", "", "json"},
		{"/x/db.yaml", "", "yaml"},
		{"/x/db.yml", "", "yaml"},
		{"/x/db.php", "", "php"},
		{"/x/db.txt", "yaml", "yaml"},
		{"/x/db.php", "json", "json"},
		{"/x/db.txt", "", ""},
		{"/x/db", "", ""},
		{"/x/db.json", "xml", ""},
	}
	for _, tt := range tests {
		t.Run(tt.path+"/"+tt.name, func(t *testing.T) {
			f, err := FormatFor(tt.path, tt.name)
			if tt.want == "" {
				if !errors.Is(err, ErrBadFormat) {
					t.Fatalf("FormatFor(%q, %q) error = %v, want ErrBadFormat", tt.path, tt.name, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("FormatFor(%q, %q) error %v", tt.path, tt.name, err)
			}
			if f.Name() != tt.want {
				t.Errorf("FormatFor(%q, %q) = %s, want %s", tt.path, tt.name, f.Name(), tt.want)
			}
		})
	}
}

// TestFileRoundTrip writes every tricky configuration with each format
// that reads, and reads it back.
func TestFileRoundTrip(t *testing.T) {
	// dir: TestDirRoundTrip, as keys and values follow the DJB rules.
	for _, name := range []string{"json", "yaml"} {
		f, _ := ParseFormat(name)
		for cname, c := range trickyConfs() {
			t.Run(name+"/"+cname, func(t *testing.T) {
				p := filepath.Join(t.TempDir(), "conf."+name)
				changed, err := f.Write(p, c)
				if err != nil || !changed {
					t.Fatalf("Write = %v, %v, want true, nil", changed, err)
				}
				got, err := f.Read(p)
				if err != nil {
					t.Fatalf("Read error %v", err)
				}
				if !got.Equal(c) {
					t.Errorf("Read(Write(%v)) = %v", c, got)
				}
				changed, err = f.Write(p, c)
				if err != nil || changed {
					t.Errorf("second Write = %v, %v, want false, nil", changed, err)
				}
			})
		}
	}
}

func TestReadMissing(t *testing.T) {
	p := filepath.Join(t.TempDir(), "missing")
	for _, name := range []string{"json", "yaml", "dir"} {
		f, _ := ParseFormat(name)
		if _, err := f.Read(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s.Read(missing) error = %v, want fs.ErrNotExist", name, err)
		}
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	want := os.FileMode(0o666) &^ currentUmask(t)

	changed, err := writeFileAtomic(p, []byte("one"))
	if err != nil || !changed {
		t.Fatalf("writeFileAtomic(new) = %v, %v, want true, nil", changed, err)
	}
	if fi := stat(t, p); fi.Mode().Perm() != want {
		t.Errorf("new file mode = %v, want %v (0666 less the umask)", fi.Mode().Perm(), want)
	}

	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	changed, err = writeFileAtomic(p, []byte("one"))
	if err != nil || changed {
		t.Errorf("writeFileAtomic(same) = %v, %v, want false, nil", changed, err)
	}
	if fi := stat(t, p); !fi.ModTime().Equal(old) {
		t.Errorf("unchanged file's mtime = %v, want %v", fi.ModTime(), old)
	}

	// A replaced file keeps the mode an operator gave it.
	if err := os.Chmod(p, 0o640); err != nil {
		t.Fatal(err)
	}
	if changed, err := writeFileAtomic(p, []byte("two")); err != nil || !changed {
		t.Fatalf("writeFileAtomic(other) = %v, %v, want true, nil", changed, err)
	}
	if fi := stat(t, p); fi.Mode().Perm() != 0o640 {
		t.Errorf("replaced file mode = %v, want 0640", fi.Mode().Perm())
	}
	assertFile(t, p, "two")

	// A symlink is written through.
	link := filepath.Join(dir, "link")
	if err := os.Symlink("f", link); err != nil {
		t.Fatal(err)
	}
	if changed, err := writeFileAtomic(link, []byte("three")); err != nil || !changed {
		t.Fatalf("writeFileAtomic(link) = %v, %v, want true, nil", changed, err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("link after write: %v, %v, want a symlink still", fi, err)
	}
	assertFile(t, p, "three")

	// No temporary file is left behind.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("directory holds %d entries, want 2 (f, link): %v", len(entries), entries)
	}
}

// currentUmask is the process's umask as the kernel reports it (not
// through umask(), which it checks).
func currentUmask(t *testing.T) os.FileMode {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status to read the umask from: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			if err != nil {
				t.Fatalf("umask %q: %v", v, err)
			}
			return os.FileMode(m)
		}
	}
	t.Skip("no Umask line in /proc/self/status")
	return 0
}

func stat(t *testing.T, p string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

func assertFile(t *testing.T, p, want string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != want {
		t.Errorf("ReadFile(%s) = %q, want %q", p, b, want)
	}
}
