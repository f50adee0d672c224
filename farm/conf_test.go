package farm

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestDecodeConf(t *testing.T) {
	tests := []struct {
		in   string
		want Conf
	}{
		{"", Conf{}},
		{" \n\t", Conf{}},
		{"{}", Conf{}},
		{` {"a": "1"} ` + "\n", Conf{"a": "1"}},
		{`{"n": 1.50, "big": 123456789012345678901234567890, "t": true, "z": null}`,
			Conf{"n": json.Number("1.50"), "big": json.Number("123456789012345678901234567890"), "t": true, "z": nil}},
		{`{"a": {"b": {"c": "d"}}, "l": [{"k": "v"}, 1]}`,
			Conf{"a": Conf{"b": Conf{"c": "d"}}, "l": []any{Conf{"k": "v"}, json.Number("1")}}},
		{`{"a": "1", "a": "2"}`, Conf{"a": "2"}},
	}
	for _, tt := range tests {
		got, err := DecodeConf([]byte(tt.in))
		if err != nil {
			t.Errorf("DecodeConf(%q) error %v", tt.in, err)
			continue
		}
		if !got.Equal(tt.want) {
			t.Errorf("DecodeConf(%q) = %#v, want %#v", tt.in, got, tt.want)
		}
	}
}

func TestDecodeConfBad(t *testing.T) {
	for _, in := range []string{
		"null", "[]", `["a"]`, "1", `"s"`, "true",
		"{", `{"a":}`, "{'a': 1}",
		`{"a": 1} x`, `{"a": 1}{}`, `{} []`, `{"a": 1}}`,
	} {
		if c, err := DecodeConf([]byte(in)); !errors.Is(err, ErrBadConf) {
			t.Errorf("DecodeConf(%q) = %v, %v, want ErrBadConf", in, c, err)
		}
	}
}

func TestConfEncode(t *testing.T) {
	c := Conf{"b": "2", "a": Conf{"z": json.Number("1.50"), "y": []any{true, nil}}, "c": "<&>"}
	want := `{"a":{"y":[true,null],"z":1.50},"b":"2","c":"\u003c\u0026\u003e"}`
	if got := string(c.Encode()); got != want {
		t.Errorf("Encode() = %s, want %s", got, want)
	}
	back, err := DecodeConf(c.Encode())
	if err != nil || !back.Equal(c) {
		t.Errorf("DecodeConf(Encode(%v)) = %v, %v", c, back, err)
	}
}

func TestConfEqualClone(t *testing.T) {
	if !(Conf{}).Equal(nil) || !Conf(nil).Equal(Conf{}) {
		t.Error("Conf{}.Equal(nil) = false, want true")
	}
	if (Conf{"a": "1"}).Equal(Conf{"a": json.Number("1")}) {
		t.Error(`{"a": "1"}.Equal({"a": 1}) = true, want false (a string is not a number)`)
	}
	c := Conf{"a": Conf{"b": "1"}, "l": []any{Conf{"c": "2"}}}
	d := c.Clone()
	if !d.Equal(c) {
		t.Fatalf("Clone() = %v, want %v", d, c)
	}
	d["a"].(Conf)["b"] = "x"
	d["l"].([]any)[0].(Conf)["c"] = "y"
	if c["a"].(Conf)["b"] != "1" || c["l"].([]any)[0].(Conf)["c"] != "2" {
		t.Errorf("changing a clone changed the original: %v", c)
	}
	if Conf(nil).Clone() != nil {
		t.Error("Conf(nil).Clone() != nil")
	}
}

func TestNormalize(t *testing.T) {
	in := map[string]any{"a": map[string]any{"b": []any{map[string]any{"c": "d"}}}}
	want := Conf{"a": Conf{"b": []any{Conf{"c": "d"}}}}
	if got := Normalize(in); !got.Equal(want) {
		t.Errorf("Normalize(%v) = %#v, want %#v", in, got, want)
	}
}

func readme() Conf {
	return Conf{"hostname": "db-01.example.com", "enabled": "0", "mysql": Conf{"replication_delay": "0"}, "n": json.Number("3")}
}

func TestLookup(t *testing.T) {
	tests := []struct {
		field string
		want  any
		ok    bool
	}{
		{"hostname", "db-01.example.com", true},
		{"mysql", Conf{"replication_delay": "0"}, true},
		{"mysql.replication_delay", "0", true},
		{"n", json.Number("3"), true},
		{"missing", nil, false},
		{"mysql.missing", nil, false},
		{"hostname.x", nil, false}, // through a string
		{"mysql.replication_delay.x", nil, false},
		{"", nil, false},
		{"mysql.", nil, false},
		{".mysql", nil, false},
		{"mysql..replication_delay", nil, false},
	}
	c := readme()
	for _, tt := range tests {
		got, ok := c.Lookup(tt.field)
		if ok != tt.ok || !equalValue(got, tt.want) {
			t.Errorf("Lookup(%q) = %v, %v, want %v, %v", tt.field, got, ok, tt.want, tt.ok)
		}
	}
}

func TestSetField(t *testing.T) {
	tests := []struct {
		field string
		value any
		want  Conf
	}{
		{"enabled", "1", Conf{"hostname": "db-01.example.com", "enabled": "1", "mysql": Conf{"replication_delay": "0"}, "n": json.Number("3")}},
		{"new", "x", Conf{"hostname": "db-01.example.com", "enabled": "0", "mysql": Conf{"replication_delay": "0"}, "n": json.Number("3"), "new": "x"}},
		{"mysql.replication_delay", "5", Conf{"hostname": "db-01.example.com", "enabled": "0", "mysql": Conf{"replication_delay": "5"}, "n": json.Number("3")}},
		{"mysql.role", "primary", Conf{"hostname": "db-01.example.com", "enabled": "0", "mysql": Conf{"replication_delay": "0", "role": "primary"}, "n": json.Number("3")}},
		{"a.b.c", "d", Conf{"hostname": "db-01.example.com", "enabled": "0", "mysql": Conf{"replication_delay": "0"}, "n": json.Number("3"), "a": Conf{"b": Conf{"c": "d"}}}},
		{"hostname.short", "db-01", Conf{"hostname": Conf{"short": "db-01"}, "enabled": "0", "mysql": Conf{"replication_delay": "0"}, "n": json.Number("3")}},
		{"mysql", "off", Conf{"hostname": "db-01.example.com", "enabled": "0", "mysql": "off", "n": json.Number("3")}},
	}
	for _, tt := range tests {
		c := readme()
		if err := c.SetField(tt.field, tt.value); err != nil {
			t.Errorf("SetField(%q, %v) error %v", tt.field, tt.value, err)
			continue
		}
		if !c.Equal(tt.want) {
			t.Errorf("SetField(%q, %v) = %v, want %v", tt.field, tt.value, c, tt.want)
		}
	}
	for _, field := range []string{"", ".", "a.", ".a", "a..b"} {
		c := readme()
		if err := c.SetField(field, "x"); !errors.Is(err, ErrBadField) {
			t.Errorf("SetField(%q) error = %v, want ErrBadField", field, err)
		}
		if !c.Equal(readme()) {
			t.Errorf("SetField(%q) changed the conf to %v", field, c)
		}
	}
}

func TestUnsetField(t *testing.T) {
	tests := []struct {
		field string
		was   bool
		want  Conf
	}{
		{"enabled", true, Conf{"hostname": "db-01.example.com", "mysql": Conf{"replication_delay": "0"}, "n": json.Number("3")}},
		{"mysql.replication_delay", true, Conf{"hostname": "db-01.example.com", "enabled": "0", "mysql": Conf{}, "n": json.Number("3")}},
		{"mysql", true, Conf{"hostname": "db-01.example.com", "enabled": "0", "n": json.Number("3")}},
		{"missing", false, readme()},
		{"mysql.missing", false, readme()},
		{"missing.x", false, readme()},
		{"hostname.x", false, readme()},
	}
	for _, tt := range tests {
		c := readme()
		was, err := c.UnsetField(tt.field)
		if err != nil || was != tt.was {
			t.Errorf("UnsetField(%q) = %v, %v, want %v, nil", tt.field, was, err, tt.was)
		}
		if !c.Equal(tt.want) {
			t.Errorf("UnsetField(%q) left %v, want %v", tt.field, c, tt.want)
		}
	}
	for _, field := range []string{"", "a.", "a..b"} {
		c := readme()
		if _, err := c.UnsetField(field); !errors.Is(err, ErrBadField) {
			t.Errorf("UnsetField(%q) error = %v, want ErrBadField", field, err)
		}
	}
}

func TestValueString(t *testing.T) {
	tests := []struct {
		v    any
		ok   bool
		want string
	}{
		{nil, false, "None"},
		{"x", false, "None"},
		{nil, true, "None"},
		{"", true, ""},
		{"db-01", true, "db-01"},
		{json.Number("1.50"), true, "1.50"},
		{true, true, "true"},
		{Conf{"b": "<&>", "a": json.Number("1")}, true, `{"a":1,"b":"<&>"}`},
		{[]any{"x", nil}, true, `["x",null]`},
	}
	for _, tt := range tests {
		if got := ValueString(tt.v, tt.ok); got != tt.want {
			t.Errorf("ValueString(%#v, %v) = %q, want %q", tt.v, tt.ok, got, tt.want)
		}
	}
}

// TestDecodeConfBadMessage: the error says what is wrong with the data in
// the user's words, not the JSON decoder's.
func TestDecodeConfBadMessage(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"not json", "farm: bad configuration: not JSON (syntax error at byte 2)"},
		{`{"a": "1"`, "farm: bad configuration: not JSON (it ends too soon)"},
		{`{"a": "1"} x`, "farm: bad configuration: data after the JSON object"},
		{`["a"]`, "farm: bad configuration: not a JSON object"},
	} {
		_, err := DecodeConf([]byte(tt.in))
		if err == nil || err.Error() != tt.want {
			t.Errorf("DecodeConf(%q) = %v, want %q", tt.in, err, tt.want)
		}
	}
}
