package farm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"
)

// dirFormat is a DJB directory, as daemontools' envdir reads one: each
// directory is a dict, each regular file a key whose value is the file's
// content with surrounding white space trimmed. Names starting with a dot
// are ignored (editors' swap files, our own temporary files), symlinks are
// followed. What cannot be a value is skipped without an error, as
// ZkFarmer does: a file that is not UTF-8 text, a FIFO, socket or device,
// a dangling symlink. Write leaves those alone too, so writing back what
// was read changes nothing.
type dirFormat struct{}

func (dirFormat) Name() string { return "dir" }

func (dirFormat) Encode(Conf) ([]byte, error) {
	return nil, fmt.Errorf("%w: dir format cannot be printed (it is a directory: export or join with a path)", ErrBadFormat)
}

func (dirFormat) Read(p string) (Conf, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%w: %s is not a directory", ErrBadConf, p)
	}
	return readDir(p, []os.FileInfo{fi})
}

// readDir reads one directory; parents are the directories above it, to
// refuse a symlink back to one of them rather than recurse forever.
func readDir(dir string, parents []os.FileInfo) (Conf, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	c := Conf{}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue // a dangling symlink, or removed since the listing
		}
		if err != nil {
			return nil, err
		}
		if fi.IsDir() {
			for _, a := range parents {
				if os.SameFile(a, fi) {
					return nil, fmt.Errorf("%w: %s: a symlink loop (it leads back to a directory above it)", ErrBadConf, p)
				}
			}
			sub, err := readDir(p, append(parents[:len(parents):len(parents)], fi))
			if err != nil {
				return nil, err
			}
			c[name] = sub
			continue
		}
		v, ok, err := readValue(p, fi)
		if err != nil {
			return nil, err
		}
		if ok {
			c[name] = v
		}
	}
	return c, nil
}

// readValue is the value of the non-directory p (fi is its os.Stat), and
// false when it is no value: not a regular file, or not UTF-8.
func readValue(p string, fi os.FileInfo) (string, bool, error) {
	if !fi.Mode().IsRegular() {
		return "", false, nil
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	if !utf8.Valid(b) {
		return "", false, nil
	}
	return strings.TrimSpace(string(b)), true, nil
}

// Write makes the directory p hold c. Keys are checked first: one that
// cannot be a file name is an error and nothing is written. Each file is
// replaced atomically; a new sub-directory is built under a dot name and
// renamed into place whole; a file that must become a directory (or the
// reverse) is replaced; entries whose keys are gone are removed last,
// after every new value is in place, so a reader never sees a host
// vanish before the host that replaces it appears.
func (dirFormat) Write(p string, c Conf) (bool, error) {
	if err := checkDirConf(c, ""); err != nil {
		return false, err
	}
	w := &dirWriter{}
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(p, 0o777); err != nil {
			return false, err
		}
		w.changed = true
	case err != nil:
		return false, err
	case !fi.IsDir():
		return false, fmt.Errorf("farm: %s is not a directory", p)
	}
	if err := w.writeDir(p, c); err != nil {
		return w.changed, err
	}
	for _, g := range w.gone {
		if err := os.RemoveAll(g); err != nil {
			return w.changed, err
		}
		w.changed = true
	}
	return w.changed, nil
}

// dirKeyOK reports whether k can name a file of a DJB directory.
func dirKeyOK(k string) bool {
	return k != "" && k != "." && k != ".." && !strings.HasPrefix(k, ".") && !strings.ContainsAny(k, "/\x00")
}

// storable is c without the keys that cannot name a file (a field set to
// a/b from anywhere), and the dotted paths of those left out: what Join
// and Export write, so that one such field does not stop every write.
func (dirFormat) storable(c Conf) (Conf, []string) {
	var dropped []string
	var walk func(c Conf, where string) Conf
	walk = func(c Conf, where string) Conf {
		out := make(Conf, len(c))
		for k, v := range c {
			if !dirKeyOK(k) {
				dropped = append(dropped, subPath(where, k))
				continue
			}
			if sub, ok := v.(Conf); ok {
				v = walk(sub, subPath(where, k))
			}
			out[k] = v
		}
		return out
	}
	out := walk(c, "")
	sort.Strings(dropped)
	return out, dropped
}

// checkDirConf refuses a key that cannot name a file, and a value that
// has no file form. where is the dotted path of c.
func checkDirConf(c map[string]any, where string) error {
	for k, v := range c {
		if !dirKeyOK(k) {
			return fmt.Errorf("%w: key %q at %s cannot be a file name in a dir configuration (empty, starting with a dot, or holding / or NUL)", ErrBadConf, k, orRoot(where))
		}
		switch v := v.(type) {
		case Conf:
			if err := checkDirConf(v, subPath(where, k)); err != nil {
				return err
			}
		case map[string]any:
			if err := checkDirConf(v, subPath(where, k)); err != nil {
				return err
			}
		case string, json.Number, bool, nil, []any:
		default:
			return fmt.Errorf("%w: %s: unsupported value of type %T", ErrBadConf, subPath(where, k), v)
		}
	}
	return nil
}

type dirWriter struct {
	changed bool
	gone    []string // entries to remove once everything is written
}

func (w *dirWriter) writeDir(dir string, c map[string]any) error {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var err error
		switch v := c[k].(type) {
		case Conf:
			err = w.writeSubdir(dir, k, v)
		case map[string]any:
			err = w.writeSubdir(dir, k, v)
		default:
			err = w.writeValue(dir, k, v)
		}
		if err != nil {
			return err
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if _, ok := c[name]; ok || strings.HasPrefix(name, ".") {
			continue
		}
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p)
		if err != nil {
			continue // dangling: never read, so left alone
		}
		if !fi.IsDir() {
			if _, ok, err := readValue(p, fi); err != nil || !ok {
				continue // no value when read, so left alone
			}
		}
		w.gone = append(w.gone, p)
	}
	return nil
}

// writeSubdir makes dir/k the directory of c. A new one is filled under a
// dot name first and renamed into place whole.
func (w *dirWriter) writeSubdir(dir, k string, c map[string]any) error {
	p := filepath.Join(dir, k)
	fi, err := os.Stat(p)
	if err == nil && fi.IsDir() {
		return w.writeDir(p, c)
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	tmp, err := os.MkdirTemp(dir, "."+k+".tmp*")
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()
	// MkdirTemp makes 0700 directories; give the mode a plain mkdir would.
	if err := os.Chmod(tmp, 0o777&^umask()); err != nil {
		return err
	}
	fresh := &dirWriter{}
	if err := fresh.writeDir(tmp, c); err != nil {
		return err
	}
	// Whatever is at p (a file, a symlink, a dangling one) gives way.
	if _, err := os.Lstat(p); err == nil {
		if err := os.Remove(p); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, p); err != nil {
		return err
	}
	done = true
	w.changed = true
	return nil
}

// writeValue makes dir/k the file of v. Content equal to v's once both
// are trimmed is left alone (a "1" written by hand without a newline
// stays as it is).
func (w *dirWriter) writeValue(dir, k string, v any) error {
	content, err := dirFileContent(v)
	if err != nil {
		return err
	}
	p := filepath.Join(dir, k)
	fi, err := os.Stat(p)
	switch {
	case err == nil && fi.IsDir():
		// Move the directory (or the symlink to one) aside into a dot
		// directory, put the file in its place, then drop the old tree.
		aside, err := os.MkdirTemp(dir, "."+k+".old*")
		if err != nil {
			return err
		}
		if err := os.Rename(p, filepath.Join(aside, k)); err != nil {
			os.Remove(aside)
			return err
		}
		w.changed = true
		if _, err := writeFileAtomic(p, content); err != nil {
			return err
		}
		return os.RemoveAll(aside)
	case err == nil:
		if old, ok, err := readValue(p, fi); err == nil && ok && old == string(bytes.TrimSpace(content)) {
			return nil
		}
	}
	changed, err := writeFileAtomic(p, content)
	w.changed = w.changed || changed
	return err
}

// dirFileContent is v as a file: strings, numbers and booleans as
// ValueString prints them, with a newline so `cat` is pleasant; nil and
// "" as an empty file; a list as compact JSON.
func dirFileContent(v any) ([]byte, error) {
	var s string
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		s = v
	case json.Number, bool:
		s = ValueString(v, true)
	case []any:
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			return nil, fmt.Errorf("farm: encode list: %w", err)
		}
		return buf.Bytes(), nil // Encode ends it with a newline
	default:
		return nil, fmt.Errorf("%w: unsupported value of type %T", ErrBadConf, v)
	}
	if s == "" {
		return nil, nil
	}
	return []byte(s + "\n"), nil
}
