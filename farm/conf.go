package farm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// Conf is a host's (or a farm's) configuration: a JSON object. Values are
// string, json.Number, bool, nil, []any or Conf (nested objects are Conf,
// never map[string]any: DecodeConf and the format parsers normalise them).
type Conf map[string]any

// DecodeConf parses a znode's data. Empty data (a farm created with zkCli)
// is an empty Conf; anything but one JSON object is ErrBadConf.
func DecodeConf(data []byte) (Conf, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return Conf{}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrBadConf, jsonProblem(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrBadConf)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: not a JSON object", ErrBadConf)
	}
	return Normalize(m), nil
}

// jsonProblem is a JSON decoding error in the user's words.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("not JSON (syntax error at byte %d)", syn.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "not JSON (it ends too soon)"
	}
	return err.Error()
}

// Encode is c as compact JSON with sorted keys: the form stored in znodes.
func (c Conf) Encode() []byte {
	b, err := json.Marshal(c)
	if err != nil {
		// Only values a parser produced reach here; none fails to encode.
		panic(fmt.Sprintf("farm: encode conf: %v", err))
	}
	return b
}

// Equal reports whether c and o hold the same configuration.
func (c Conf) Equal(o Conf) bool {
	if len(c) == 0 && len(o) == 0 {
		return true
	}
	return reflect.DeepEqual(c, o)
}

// Clone returns a deep copy of c.
func (c Conf) Clone() Conf {
	if c == nil {
		return nil
	}
	return cloneValue(c).(Conf)
}

func cloneValue(v any) any {
	switch v := v.(type) {
	case Conf:
		out := make(Conf, len(v))
		for k, x := range v {
			out[k] = cloneValue(x)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = cloneValue(x)
		}
		return out
	default:
		return v
	}
}

// Normalize turns every nested map[string]any of m into a Conf.
func Normalize(m map[string]any) Conf {
	out := make(Conf, len(m))
	for k, v := range m {
		out[k] = normalizeValue(v)
	}
	return out
}

func normalizeValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		return Normalize(v)
	case Conf:
		return Normalize(v)
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = normalizeValue(x)
		}
		return out
	default:
		return v
	}
}

// splitField splits a dotted field path (mysql.replication_delay).
func splitField(field string) ([]string, error) {
	parts := strings.Split(field, ".")
	for _, p := range parts {
		if p == "" {
			return nil, fmt.Errorf("%w: %q: empty segment", ErrBadField, field)
		}
	}
	return parts, nil
}

// Lookup returns the value at a dotted field path, and whether it is there.
func (c Conf) Lookup(field string) (any, bool) {
	parts, err := splitField(field)
	if err != nil {
		return nil, false
	}
	var cur any = c
	for _, p := range parts {
		m, ok := cur.(Conf)
		if !ok {
			return nil, false
		}
		if cur, ok = m[p]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// SetField sets the value at a dotted field path, creating the dicts on
// the way and replacing any non-dict found there (as ZkFarmer does).
func (c Conf) SetField(field string, value any) error {
	parts, err := splitField(field)
	if err != nil {
		return err
	}
	cur := c
	for _, p := range parts[:len(parts)-1] {
		next, ok := cur[p].(Conf)
		if !ok {
			next = Conf{}
			cur[p] = next
		}
		cur = next
	}
	cur[parts[len(parts)-1]] = value
	return nil
}

// UnsetField removes the value at a dotted field path and reports whether
// it was there. Dicts left empty stay (an empty DJB directory).
func (c Conf) UnsetField(field string) (bool, error) {
	parts, err := splitField(field)
	if err != nil {
		return false, err
	}
	cur := c
	for _, p := range parts[:len(parts)-1] {
		next, ok := cur[p].(Conf)
		if !ok {
			return false, nil
		}
		cur = next
	}
	last := parts[len(parts)-1]
	_, ok := cur[last]
	delete(cur, last)
	return ok, nil
}

// ValueString is v as ZkFarmer prints a field: strings as they are,
// numbers and booleans as JSON, dicts and lists as compact JSON, a missing
// value as None.
func ValueString(v any, ok bool) string {
	if !ok || v == nil {
		return "None"
	}
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	default:
		// Not json.Marshal: it would print <, > and & as \u003c...
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			return fmt.Sprint(v)
		}
		return strings.TrimSuffix(buf.String(), "\n")
	}
}
