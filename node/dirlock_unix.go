//go:build unix

package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// ErrDataDirLocked is returned by New when another process (or node) holds
// the data directory.
var ErrDataDirLocked = errors.New("node: data dir is in use by another node")

// lockDataDir takes an exclusive advisory lock on dir/LOCK, so a second
// node started on the same data dir fails at once instead of sharing (or
// waiting on) its raft log. The lock goes with the returned file.
func lockDataDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("node: data dir lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrDataDirLocked, dir)
		}
		return nil, fmt.Errorf("node: data dir lock: %w", err)
	}
	return f, nil
}
