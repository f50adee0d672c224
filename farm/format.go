package farm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Format reads and writes configurations in local files: json, yaml, php
// (write only: `<?php return array(...);`) or dir (a DJB directory: each
// directory a dict, each file a key whose trimmed content is the value,
// dotfiles ignored).
type Format interface {
	// Name is the format's name as -f spells it.
	Name() string
	// Read reads the configuration at p. A file or directory that does
	// not exist is an error matching fs.ErrNotExist.
	Read(p string) (Conf, error)
	// Write makes p hold c, atomically per file (a temporary file renamed
	// over p; a new file gets the mode the umask gives, a replaced one
	// keeps its permission bits; a symlink is written through), and
	// reports whether anything changed: content that already equals c's
	// encoding is left alone.
	Write(p string, c Conf) (changed bool, err error)
	// Encode is c in the format, for stdout (get -f); dir cannot.
	Encode(c Conf) ([]byte, error)
}

// storer is a Format that cannot hold some keys (dir: a key that is no
// file name). storable returns c without them, and their dotted paths.
type storer interface {
	storable(c Conf) (Conf, []string)
}

// storable is c as f can write it: c itself, or, for a storer, c without
// the keys f cannot hold, and their dotted paths.
func storable(f Format, c Conf) (Conf, []string) {
	if s, ok := f.(storer); ok {
		return s.storable(c)
	}
	return c, nil
}

// Formats are the names -f accepts.
var Formats = []string{"json", "yaml", "php", "dir"}

// ParseFormat returns the format called name.
func ParseFormat(name string) (Format, error) {
	switch name {
	case "json":
		return jsonFormat{}, nil
	case "yaml":
		return yamlFormat{}, nil
	case "php":
		return phpFormat{}, nil
	case "dir":
		return dirFormat{}, nil
	}
	return nil, fmt.Errorf("%w: %q: want one of %s", ErrBadFormat, name, strings.Join(Formats, ", "))
}

// FormatFor returns the format named by name, or, when name is empty, the
// one p implies as ZkFarmer infers it: an existing directory is dir, else
// the extension (.json, .yaml or .yml, .php).
func FormatFor(p, name string) (Format, error) {
	if name != "" {
		return ParseFormat(name)
	}
	if fi, err := os.Stat(p); err == nil && fi.IsDir() {
		return ParseFormat("dir")
	}
	switch strings.ToLower(filepath.Ext(p)) {
	case ".json":
		return ParseFormat("json")
	case ".yaml", ".yml":
		return ParseFormat("yaml")
	case ".php":
		return ParseFormat("php")
	}
	return nil, fmt.Errorf("%w: cannot infer the format of %s (not a directory, no .json, .yaml, .yml or .php extension): give -f", ErrBadFormat, p)
}

type jsonFormat struct{}

func (jsonFormat) Name() string { return "json" }

func (jsonFormat) Read(p string) (Conf, error) {
	b, err := readConfFile(p)
	if err != nil {
		return nil, err
	}
	c, err := DecodeConf(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return c, nil
}

func (f jsonFormat) Encode(c Conf) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "    ")
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (f jsonFormat) Write(p string, c Conf) (bool, error) {
	b, err := f.Encode(c)
	if err != nil {
		return false, err
	}
	return writeFileAtomic(p, b)
}

// readConfFile reads a json or yaml configuration file. An empty one is
// ErrBadConf, not an empty configuration: the formats never write one
// (an empty configuration is "{}"), so it is a file being written, caught
// between its truncation and its write (`echo '{...}' > conf.json`), and
// taking it for {} would delete every field of the host's znode.
func readConfFile(p string) ([]byte, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, fmt.Errorf("%w: %s is empty (being written?); an empty configuration is {}", ErrBadConf, p)
	}
	return b, nil
}

// writeFileAtomic replaces p with b through a temporary file in the same
// directory (a dotfile, so a DJB reader skips it), synced then renamed over
// p, so a reader sees the old content or the new, never a part. Content
// that already equals b is not rewritten (changed is false, mtime kept).
// A new file gets mode 0666 less the umask, as os.Create gives; a file
// replaced keeps its permission bits (an operator's chmod 0640 on a file
// holding passwords survives the next export). A symlink at p is
// followed: its target is replaced and the link stays. Only a regular
// file's content is compared: a FIFO or device at p is replaced, never
// opened.
func writeFileAtomic(p string, b []byte) (bool, error) {
	if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		if target, err := filepath.EvalSymlinks(p); err == nil {
			p = target
		}
	}
	mode := 0o666 &^ umask()
	if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() {
		mode = fi.Mode().Perm()
		if fi.Size() == int64(len(b)) {
			if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, b) {
				return false, nil
			}
		}
	}
	dir, base := filepath.Split(p)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return false, err
	}
	name := tmp.Name()
	renamed := false
	defer func() {
		if !renamed {
			os.Remove(name)
		}
	}()
	// CreateTemp makes 0600 files; give the mode a plain create would.
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return false, err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Close(); err != nil {
		return false, err
	}
	if err := os.Rename(name, p); err != nil {
		return false, err
	}
	renamed = true
	return true, nil
}
