package farm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// phpFormat writes a PHP file returning the configuration as an array,
// in the shape of ZkFarmer's README:
//
//	<?php
//	return array
//	(
//	    "1.2.3.4" => array
//	    (
//	        "enabled" => "0",
//	        ...
//	    ),
//	);
//
// Keys are sorted, every dict is written in that block form (an empty one
// as array()), every element ends with a comma. It cannot be read back:
// reading PHP means running it.
type phpFormat struct{}

func (phpFormat) Name() string { return "php" }

func (phpFormat) Read(p string) (Conf, error) {
	return nil, fmt.Errorf("%w: php format cannot be read: %s (php is written by export only; give a json, yaml or dir configuration)", ErrBadFormat, p)
}

func (f phpFormat) Write(p string, c Conf) (bool, error) {
	b, err := f.Encode(c)
	if err != nil {
		return false, err
	}
	return writeFileAtomic(p, b)
}

func (phpFormat) Encode(c Conf) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("<?php\nreturn ")
	if err := phpValue(&buf, map[string]any(c), 0); err != nil {
		return nil, err
	}
	buf.WriteString(";\n")
	return buf.Bytes(), nil
}

const phpIndent = "    "

func phpValue(buf *bytes.Buffer, v any, depth int) error {
	switch v := v.(type) {
	case Conf:
		return phpValue(buf, map[string]any(v), depth)
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		// Keys are always written as strings, but PHP's own rule then
		// applies: a key "123" or "-5" (a decimal integer in PHP's int
		// range, without a leading zero or "+") becomes the integer
		// key 123 or -5 in the array; "0123", "1.5" and "-0" stay
		// strings. json_encode gives such a key back as the
		// string "123" unless the keys are exactly 0, 1, 2...: then the
		// array is a list to PHP.
		return phpArray(buf, len(keys), depth, func(i int) (string, any) {
			return phpString(keys[i]), v[keys[i]]
		})
	case []any:
		return phpArray(buf, len(v), depth, func(i int) (string, any) {
			return strconv.Itoa(i), v[i]
		})
	case string:
		buf.WriteString(phpString(v))
	case json.Number:
		buf.WriteString(phpNumber(v))
	case bool:
		buf.WriteString(strconv.FormatBool(v))
	case nil:
		buf.WriteString("null")
	default:
		return fmt.Errorf("farm: encode php: unsupported value of type %T", v)
	}
	return nil
}

// phpArray writes n elements in block form; elem gives the i-th key as
// PHP source and its value.
func phpArray(buf *bytes.Buffer, n, depth int, elem func(i int) (string, any)) error {
	if n == 0 {
		buf.WriteString("array()")
		return nil
	}
	outer := strings.Repeat(phpIndent, depth)
	inner := outer + phpIndent
	buf.WriteString("array\n")
	buf.WriteString(outer)
	buf.WriteString("(\n")
	for i := 0; i < n; i++ {
		k, v := elem(i)
		buf.WriteString(inner)
		buf.WriteString(k)
		buf.WriteString(" => ")
		if err := phpValue(buf, v, depth+1); err != nil {
			return err
		}
		buf.WriteString(",\n")
	}
	buf.WriteString(outer)
	buf.WriteString(")")
	return nil
}

// phpString is s as a PHP double-quoted string literal that PHP reads
// back byte for byte: the characters PHP interprets there are escaped
// (backslash, double quote, and $, which would interpolate a variable),
// newline, carriage return and tab by name, other control bytes, DEL and
// bytes that are not UTF-8 as \xNN (always two digits, so a following
// hex digit is never taken into the escape). Valid UTF-8 is written as is.
func phpString(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02X`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case r == '"':
			b.WriteString(`\"`)
		case r == '$':
			b.WriteString(`\$`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02X`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	b.WriteByte('"')
	return b.String()
}

// phpNumber is n as a PHP literal when PHP reads that literal as the same
// number: an integer within PHP's 64-bit int range, or a finite float.
// Anything else (an integer past PHP_INT_MAX would silently become a
// float, 1e400 would be INF) is written as a string, digits intact.
func phpNumber(n json.Number) string {
	s := string(n)
	if !jsonNumber.MatchString(s) {
		return phpString(s)
	}
	if !strings.ContainsAny(s, ".eE") {
		// PHP reads -9223372036854775808 as -(9223372036854775808), a
		// float: the int range of a literal is symmetric.
		if i, err := strconv.ParseInt(s, 10, 64); err == nil && i != math.MinInt64 {
			return s
		}
		return phpString(s)
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(f, 0) {
		return s
	}
	return phpString(s)
}
