package fsm

import (
	"strings"
	"unicode/utf8"
)

// Limits enforced by the state machine. They are constants, not settings,
// so that every replica judges every entry alike.
const (
	// MaxPathLength is the longest path accepted, in bytes.
	MaxPathLength = 4096
	// MaxDataSize is the largest znode data accepted, in bytes.
	MaxDataSize = 1 << 20
	// ReservedPath is the subtree that clients cannot change.
	ReservedPath = "/paddock"
	// sequenceDigits is the width of the %010d sequential suffix.
	sequenceDigits = 10
)

// ValidatePath checks path against ZooKeeper's rules: absolute, no empty,
// "." or ".." segments, no trailing slash (but for "/"), valid UTF-8 without
// control or reserved characters, and at most MaxPathLength bytes. A
// sequential path may end in "/" since the suffix completes it.
func ValidatePath(path string, sequential bool) error {
	if sequential {
		path += "0000000000"
	}
	if path == "" {
		return errorf(ErrBadPath, "empty")
	}
	if len(path) > MaxPathLength {
		return errorf(ErrBadPath, "longer than %d bytes", MaxPathLength)
	}
	if path[0] != '/' {
		return errorf(ErrBadPath, "%q is not absolute", path)
	}
	if path == "/" {
		return nil
	}
	if path[len(path)-1] == '/' {
		return errorf(ErrBadPath, "%q ends with a slash", path)
	}
	if !utf8.ValidString(path) {
		return errorf(ErrBadPath, "%q is not valid UTF-8", path)
	}
	for _, r := range path {
		if badRune(r) {
			return errorf(ErrBadPath, "%q contains character %U", path, r)
		}
	}
	for seg := range strings.SplitSeq(path[1:], "/") {
		switch seg {
		case "":
			return errorf(ErrBadPath, "%q has an empty segment", path)
		case ".", "..":
			return errorf(ErrBadPath, "%q has a relative segment %q", path, seg)
		}
	}
	return nil
}

// badRune reports the characters ZooKeeper's PathUtils refuses.
func badRune(r rune) bool {
	return r == 0 ||
		(r > 0x00 && r <= 0x1f) ||
		(r >= 0x7f && r <= 0x9f) ||
		(r >= 0xd800 && r <= 0xf8ff) ||
		(r >= 0xfff0 && r <= 0xffff)
}

// splitPath returns the parent path and last segment of a valid path. The
// root's parent is "".
func splitPath(path string) (parent, name string) {
	if path == "/" {
		return "", ""
	}
	i := strings.LastIndexByte(path, '/')
	if i == 0 {
		return "/", path[1:]
	}
	return path[:i], path[i+1:]
}

// isReserved reports whether path is ReservedPath or below it.
func isReserved(path string) bool {
	return path == ReservedPath || strings.HasPrefix(path, ReservedPath+"/")
}

// checkWritable validates a path that a client wants to change.
func checkWritable(path string, sequential bool) error {
	if err := ValidatePath(path, sequential); err != nil {
		return err
	}
	name := path
	if sequential {
		// The suffix completes the last name: "/paddock/" + seq is below
		// the reserved path, "/paddock" + seq is a sibling of it.
		name += "0"
	}
	if isReserved(name) {
		return errorf(ErrReservedPath, "%s", path)
	}
	return nil
}

// checkData validates znode data.
func checkData(data []byte) error {
	if len(data) > MaxDataSize {
		return errorf(ErrTooLarge, "%d bytes, limit %d", len(data), MaxDataSize)
	}
	return nil
}
