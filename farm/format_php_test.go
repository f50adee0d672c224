package farm

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
)

func TestPHPEncode(t *testing.T) {
	tests := []struct {
		name string
		in   Conf
		want string
	}{
		{"empty", Conf{}, "<?php\nreturn array();\n"},
		{"readme", dbFarm(), `<?php
return array
(
    "1.2.3.4" => array
    (
        "enabled" => "0",
        "hostname" => "db-01.example.com",
        "mysql" => array
        (
            "replication_delay" => "0",
        ),
    ),
    "1.2.3.5" => array
    (
        "enabled" => "0",
        "hostname" => "db-02.example.com",
        "mysql" => array
        (
            "replication_delay" => "1",
        ),
    ),
);
`},
		{"types", Conf{
			"n": json.Number("-1.5e3"), "t": true, "f": false, "nil": nil, "d": Conf{}, "l": []any{"a", json.Number("2")},
		}, `<?php
return array
(
    "d" => array(),
    "f" => false,
    "l" => array
    (
        0 => "a",
        1 => 2,
    ),
    "n" => -1.5e3,
    "nil" => null,
    "t" => true,
);
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := phpFormat{}.Encode(tt.in)
			if err != nil {
				t.Fatalf("Encode(%v) error %v", tt.in, err)
			}
			if string(got) != tt.want {
				t.Errorf("Encode(%v) =\n%s\nwant\n%s", tt.in, got, tt.want)
			}
		})
	}
}

func TestPHPString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `""`},
		{"plain", `"plain"`},
		{`a"b`, `"a\"b"`},
		{`a\b`, `"a\\b"`},
		{`\n`, `"\\n"`},
		{"$x ${y} {$z}", `"\$x \${y} {\$z}"`},
		{"a\nb\rc\td", `"a\nb\rc\td"`},
		{"\x00\x01\x1f\x7f", `"\x00\x01\x1F\x7F"`},
		{"\x01" + "2F", `"\x012F"`}, // two digits: the 2 is not taken into the escape
		{"\x0b\x0c\x1b", `"\x0B\x0C\x1B"`},
		{"héllo ☃", `"héllo ☃"`},
		{"bad \xff\xfe utf8", `"bad \xFF\xFE utf8"`},
		{"?> <?php", `"?> <?php"`},
		{"'single'", `"'single'"`},
	}
	for _, tt := range tests {
		if got := phpString(tt.in); got != tt.want {
			t.Errorf("phpString(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestPHPNumber(t *testing.T) {
	tests := []struct{ in, want string }{
		{"0", "0"},
		{"-7", "-7"},
		{"1.5", "1.5"},
		{"1e5", "1e5"},
		{"2.5E-3", "2.5E-3"},
		{"9223372036854775807", "9223372036854775807"},
		{"-9223372036854775807", "-9223372036854775807"},
		{"-9223372036854775808", `"-9223372036854775808"`}, // PHP reads it as a float
		{"9223372036854775808", `"9223372036854775808"`},
		{"123456789012345678901234567890", `"123456789012345678901234567890"`},
		{"1e400", `"1e400"`},
		{"abc", `"abc"`},
		{"$1", `"\$1"`},
	}
	for _, tt := range tests {
		if got := phpNumber(json.Number(tt.in)); got != tt.want {
			t.Errorf("phpNumber(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestPHPRead(t *testing.T) {
	p := filepath.Join(t.TempDir(), "db.php")
	if _, err := (phpFormat{}).Write(p, dbFarm()); err != nil {
		t.Fatal(err)
	}
	if c, err := (phpFormat{}).Read(p); !errors.Is(err, ErrBadFormat) {
		t.Errorf("Read(%s) = %v, %v, want ErrBadFormat", p, c, err)
	}
}

// phpBinary is the php CLI, or skips the test (fails it with
// PADDOCK_PHP_REQUIRE=1, as CI sets).
func phpBinary(t *testing.T) string {
	t.Helper()
	php, err := exec.LookPath("php")
	if err != nil {
		if os.Getenv("PADDOCK_PHP_REQUIRE") == "1" {
			t.Fatalf("php not found and PADDOCK_PHP_REQUIRE=1: install php-cli (apt-get install -y php-cli)")
		}
		t.Skip("php not found: install php-cli (apt-get install -y php-cli)")
	}
	return php
}

// TestPHPByPHP has real PHP lint and load every tricky configuration, and
// compares what it gives back, through json_encode, with the input.
func TestPHPByPHP(t *testing.T) {
	php := phpBinary(t)
	confs := trickyConfs()
	// Bytes that are not UTF-8 reach PHP intact; json_encode would
	// refuse them, so this one is checked with bin2hex.
	confs["php keys"] = Conf{"123": "int key", "0123": "string key", "-5": "neg", "1.5": "float key", "-0": "minus zero"}
	for name, c := range confs {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "conf.php")
			if _, err := (phpFormat{}).Write(p, c); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(php, "-l", p).CombinedOutput(); err != nil {
				src, _ := os.ReadFile(p)
				t.Fatalf("php -l: %v\n%s\nfile:\n%s", err, out, src)
			}
			// JSON_PRESERVE_ZERO_FRACTION keeps 1.0 a float; an empty
			// array is [] to json_encode, a list or a dict alike.
			out, err := exec.Command(php, "-r", `echo json_encode(require $argv[1], JSON_PRESERVE_ZERO_FRACTION|JSON_THROW_ON_ERROR);`, p).Output()
			if err != nil {
				t.Fatalf("php require: %v: %s", err, stderr(err))
			}
			got := decodeJSON(t, out)
			if want := phpView(c); !reflect.DeepEqual(got, want) {
				t.Errorf("php gives back %s\nwant %s", out, mustJSON(t, want))
			}
		})
	}
	t.Run("not utf-8", func(t *testing.T) {
		c := Conf{"a": "x\xff\xfe\x00y", "b\x80": "k"}
		p := filepath.Join(t.TempDir(), "conf.php")
		if _, err := (phpFormat{}).Write(p, c); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(php, "-r", `$a = require $argv[1]; ksort($a); foreach ($a as $k => $v) echo bin2hex($k), "=", bin2hex($v), "\n";`, p).Output()
		if err != nil {
			t.Fatalf("php require: %v: %s", err, stderr(err))
		}
		if want := "61=78fffe0079\n6280=6b\n"; string(out) != want {
			t.Errorf("php gives back\n%s\nwant\n%s", out, want)
		}
	})
}

func stderr(err error) []byte {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.Stderr
	}
	return nil
}

func decodeJSON(t *testing.T, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return normalizeNumbers(v)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// phpView is c as PHP's json_encode shows it: an empty dict is [],
// numbers compare by value (PHP writes 1e5 back as 100000.0).
func phpView(v any) any {
	switch v := v.(type) {
	case Conf:
		if len(v) == 0 {
			return []any{}
		}
		out := map[string]any{}
		for k, x := range v {
			out[k] = phpView(x)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = phpView(x)
		}
		return out
	}
	return normalizeNumbers(v)
}

// normalizeNumbers turns a json.Number into an int64 when it is one
// (compared exactly), else a float64, so 1e5 and 100000.0 compare equal.
func normalizeNumbers(v any) any {
	switch v := v.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		f, err := v.Float64()
		if err != nil {
			return v.String()
		}
		return f
	case map[string]any:
		for k, x := range v {
			v[k] = normalizeNumbers(x)
		}
	case []any:
		for i, x := range v {
			v[i] = normalizeNumbers(x)
		}
	}
	return v
}
