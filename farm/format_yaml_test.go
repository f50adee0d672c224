package farm

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
)

func TestYAMLEncode(t *testing.T) {
	tests := []struct {
		name string
		in   Conf
		want string
	}{
		{"empty", Conf{}, "{}\n"},
		{"nil", nil, "{}\n"},
		{"readme", dbFarm(), `1.2.3.4:
  enabled: "0"
  hostname: db-01.example.com
  mysql:
    replication_delay: "0"
1.2.3.5:
  enabled: "0"
  hostname: db-02.example.com
  mysql:
    replication_delay: "1"
`},
		{"typed-looking strings quoted", Conf{
			"a": "0", "b": "true", "c": "yes", "d": "null", "e": "1.5", "f": "", "g": "~", "h": "1:20", "i": "0x1F", "j": "Off",
		}, `a: "0"
b: "true"
c: "yes"
d: "null"
e: "1.5"
f: ""
g: "~"
h: "1:20"
i: "0x1F"
j: "Off"
`},
		{"other types plain", Conf{
			"int": json.Number("3"), "float": json.Number("-1.5e3"), "t": true, "nil": nil,
		}, `float: -1.5e3
int: 3
nil: null
t: true
`},
		{"keys that look typed", Conf{"1": "x", "true": "w", "n": "z"}, `"1": x
"n": z
"true": w
`},
		{"empty dict and list, nested list", Conf{"d": Conf{}, "l": []any{}, "m": []any{"a", Conf{"k": "v"}}}, `d: {}
l: []
m:
  - a
  - k: v
`},
		{"quotes and escapes", Conf{"a": `"$x" \ it's`, "b": "a\tb\x01"}, `a: '"$x" \ it''s'
b: "a\tb\x01"
`},
		{"multi-line", Conf{"a": "one\ntwo\n"}, "a: |\n  one\n  two\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := yamlFormat{}.Encode(tt.in)
			if err != nil {
				t.Fatalf("Encode(%v) error %v", tt.in, err)
			}
			if string(got) != tt.want {
				t.Errorf("Encode(%v) =\n%s\nwant\n%s", tt.in, got, tt.want)
			}
		})
	}
}

func TestYAMLEncodeBadValue(t *testing.T) {
	for _, c := range []Conf{
		{"a": json.Number("abc")},
		{"a": 3}, // an int is no Conf value: parsers give json.Number
		{"a": "\xff"},
	} {
		if b, err := (yamlFormat{}).Encode(c); err == nil {
			t.Errorf("Encode(%v) = %q, want an error", c, b)
		}
	}
}

func TestYAMLDecode(t *testing.T) {
	tests := []struct {
		name, in string
		want     Conf
	}{
		{"empty", "", Conf{}},
		{"comment only", "# nothing\n", Conf{}},
		{"null document", "~\n", Conf{}},
		{"flow", "{a: 1, b: x}", Conf{"a": json.Number("1"), "b": "x"}},
		{"readme", "1.2.3.4:\n  hostname: db-01.example.com\n  enabled: '0'\n  mysql: {replication_delay: \"0\"}\n",
			Conf{"1.2.3.4": Conf{"hostname": "db-01.example.com", "enabled": "0", "mysql": Conf{"replication_delay": "0"}}}},
		{"scalars", "s: text\nq: \"0\"\ni: 12\nf: 1.5\nb: true\nB: False\nn: null\nt: ~\ne:\n",
			Conf{"s": "text", "q": "0", "i": json.Number("12"), "f": json.Number("1.5"), "b": true, "B": false, "n": nil, "t": nil, "e": nil}},
		{"yaml 1.1 booleans are strings", "a: yes\nb: off\nc: y\n", Conf{"a": "yes", "b": "off", "c": "y"}},
		{"big int keeps its digits", "a: 123456789012345678901234567890\n", Conf{"a": json.Number("123456789012345678901234567890")}},
		{"yaml number spellings", "hex: 0x1F\noct: 0o17\nplus: +3\nunder: 1_000\ndot: .5\nexp: 1.5E+3\n",
			Conf{"hex": json.Number("31"), "oct": json.Number("15"), "plus": json.Number("3"), "under": json.Number("1000"), "dot": json.Number("0.5"), "exp": json.Number("1.5E+3")}},
		{"timestamp stays text", "d: 2001-12-14\n", Conf{"d": "2001-12-14"}},
		{"custom tag stays text", "a: !foo bar\n", Conf{"a": "bar"}},
		{"binary", "a: !!binary aGk=\n", Conf{"a": "hi"}},
		{"sequence", "l:\n  - a\n  - 1\n  - {k: v}\n", Conf{"l": []any{"a", json.Number("1"), Conf{"k": "v"}}}},
		{"keys are text", "1: a\ntrue: b\n~: c\n1.5: d\n", Conf{"1": "a", "true": "b", "~": "c", "1.5": "d"}},
		{"anchors and merge", "base: &b {x: \"1\", y: \"2\"}\nhost:\n  <<: *b\n  y: \"3\"\nalias: *b\n",
			Conf{"base": Conf{"x": "1", "y": "2"}, "host": Conf{"x": "1", "y": "3"}, "alias": Conf{"x": "1", "y": "2"}}},
		{"merge of a list", "a: &a {x: \"1\"}\nb: &b {y: \"2\"}\nc:\n  <<: [*a, *b]\n",
			Conf{"a": Conf{"x": "1"}, "b": Conf{"y": "2"}, "c": Conf{"x": "1", "y": "2"}}},
		{"document markers", "---\na: b\n...\n", Conf{"a": "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeYAML([]byte(tt.in))
			if err != nil {
				t.Fatalf("decodeYAML(%q) error %v", tt.in, err)
			}
			if !got.Equal(tt.want) {
				t.Errorf("decodeYAML(%q) = %#v, want %#v", tt.in, got, tt.want)
			}
		})
	}
}

func TestYAMLDecodeBad(t *testing.T) {
	for _, in := range []string{
		"- a\n- b\n",         // a list
		"just text\n",        // a scalar
		"a: [\n",             // syntax
		"a: 1\n---\nb: 2\n",  // two documents
		"a: 1\n---\n[\n",     // a broken second document
		"a: 1\na: 2\n",       // duplicate key
		"? [a, b]\n: c\n",    // a key that is not a scalar
		"a: .inf\n",          // no JSON form
		"a: .nan\n",          // no JSON form
		"a: !!binary /w==\n", // not UTF-8
		"a:\n  <<: x\n",      // merge of a scalar
		laughs,               // aliases expanding to billions of values
	} {
		if c, err := decodeYAML([]byte(in)); !errors.Is(err, ErrBadConf) {
			t.Errorf("decodeYAML(%q) = %v, %v, want ErrBadConf", in, c, err)
		}
	}
}

// laughs is the "billion laughs" document: 9 levels of 10 aliases.
var laughs = func() string {
	s := "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n"
	for i := 1; i <= 9; i++ {
		s += fmt.Sprintf("l%d: &l%d [*l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	return s
}()
