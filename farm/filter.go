package farm

import (
	"fmt"
	"strconv"
	"strings"
)

// Filter selects hosts by their configuration, as ZkFarmer's --filters:
// comma-separated predicates, all of which must hold. A predicate is
// `path` (the field exists), `!path` (it does not), or `path OP value`
// with OP one of = == != > < >= <=. Paths are dotted. When both sides are
// integers they are compared as numbers, otherwise as strings; a missing
// field fails every comparison, != included. The zero Filter (from "")
// matches every host.
type Filter struct {
	preds []predicate
	src   string
}

type predicate struct {
	field string
	op    string // "" exists, "!" missing, or a comparison
	value string
}

// operators in the order they are tried at one position: two-character
// ones first, so ">=" is not read as ">" followed by "=value".
var operators = []string{"==", "!=", ">=", "<=", "=", ">", "<"}

// ParseFilter parses a comma-separated list of predicates.
func ParseFilter(s string) (Filter, error) {
	f := Filter{src: s}
	for _, raw := range strings.Split(s, ",") {
		p := strings.TrimSpace(raw)
		if p == "" {
			if strings.TrimSpace(s) == "" {
				continue
			}
			return Filter{}, fmt.Errorf("%w: %q: empty predicate", ErrBadFilter, s)
		}
		pred, err := parsePredicate(p)
		if err != nil {
			return Filter{}, err
		}
		f.preds = append(f.preds, pred)
	}
	return f, nil
}

func parsePredicate(p string) (predicate, error) {
	if rest, ok := strings.CutPrefix(p, "!"); ok && !strings.ContainsAny(rest, "=<>!") {
		rest = strings.TrimSpace(rest)
		if _, err := splitField(rest); err != nil {
			return predicate{}, fmt.Errorf("%w: %q: bad field", ErrBadFilter, p)
		}
		return predicate{field: rest, op: "!"}, nil
	}
	i := strings.IndexAny(p, "=<>!")
	if i < 0 {
		if _, err := splitField(p); err != nil {
			return predicate{}, fmt.Errorf("%w: %q: bad field", ErrBadFilter, p)
		}
		return predicate{field: p}, nil
	}
	field := strings.TrimSpace(p[:i])
	for _, op := range operators {
		if strings.HasPrefix(p[i:], op) {
			if _, err := splitField(field); err != nil {
				return predicate{}, fmt.Errorf("%w: %q: bad field", ErrBadFilter, p)
			}
			return predicate{field: field, op: op, value: strings.TrimSpace(p[i+len(op):])}, nil
		}
	}
	return predicate{}, fmt.Errorf("%w: %q: want path, !path or path OP value with OP one of = == != > < >= <=", ErrBadFilter, p)
}

// String is the filter as it was parsed.
func (f Filter) String() string { return f.src }

// Empty reports whether f matches every host.
func (f Filter) Empty() bool { return len(f.preds) == 0 }

// Match reports whether c passes every predicate.
func (f Filter) Match(c Conf) bool {
	for _, p := range f.preds {
		if !p.match(c) {
			return false
		}
	}
	return true
}

func (p predicate) match(c Conf) bool {
	v, ok := c.Lookup(p.field)
	switch p.op {
	case "":
		return ok
	case "!":
		return !ok
	}
	if !ok {
		return false
	}
	cmp := compare(ValueString(v, true), p.value)
	switch p.op {
	case "=", "==":
		return cmp == 0
	case "!=":
		return cmp != 0
	case ">":
		return cmp > 0
	case "<":
		return cmp < 0
	case ">=":
		return cmp >= 0
	default: // "<="
		return cmp <= 0
	}
}

// compare compares a and b as integers when both are, else as strings.
func compare(a, b string) int {
	x, errA := strconv.ParseInt(strings.TrimSpace(a), 10, 64)
	y, errB := strconv.ParseInt(strings.TrimSpace(b), 10, 64)
	if errA == nil && errB == nil {
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	}
	return strings.Compare(a, b)
}
