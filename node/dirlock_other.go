//go:build !unix

package node

import (
	"errors"
	"os"
)

// ErrDataDirLocked is returned by New when another node holds the data
// directory (never on this platform: it has no lock, see dirlock_unix.go).
var ErrDataDirLocked = errors.New("node: data dir is in use by another node")

func lockDataDir(string) (*os.File, error) { return nil, nil }
