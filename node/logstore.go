package node

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"go.etcd.io/bbolt"

	"github.com/paddock/paddock/node/internal/boltlog"
)

// ErrLogStoreUnsupported is returned by New when the data directory holds
// a raft log this version cannot open: a hashicorp/raft-wal log (wal/)
// written by earlier development builds. raft-wal v0.4.0, the newest on the
// module proxy, marks a segment sealed without writing its index when raft
// truncates the log's tail, so the log cannot be read after a restart
// (hashicorp/raft-wal#31, fixed in releases the proxy does not serve). A
// node cannot start with an empty log instead: it would forget its term,
// vote and entries. Remove the node's data dir and add it back to the
// cluster; the leader sends it a snapshot.
var ErrLogStoreUnsupported = errors.New("node: data dir holds a raft log this version cannot open")

// The raft log's file in the data directory, and the directory earlier
// builds kept a raft-wal log in.
const (
	boltFile = "raft.db"
	walDir   = "wal"
)

// raftStore is a raft log store and stable store that can be closed.
type raftStore interface {
	raft.LogStore
	raft.StableStore
	Close() error
}

// storage is what a node keeps in its data directory: the lock, the raft
// log and stable store behind a cache, and the snapshots.
type storage struct {
	lock  *os.File
	store raftStore
	logs  *raft.LogCache
	snaps *raft.FileSnapshotStore
}

// openStorage locks cfg.DataDir and opens what it holds.
func openStorage(cfg Config) (_ *storage, err error) {
	st := &storage{}
	defer func() {
		if err != nil {
			st.close()
		}
	}()
	if st.lock, err = lockDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	if st.store, err = openLogStore(cfg.DataDir); err != nil {
		return nil, err
	}
	if st.logs, err = raft.NewLogCache(1024, st.store); err != nil {
		return nil, err
	}
	logw := cfg.Logger.StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true})
	if st.snaps, err = raft.NewFileSnapshotStore(cfg.DataDir, 2, logw); err != nil {
		return nil, fmt.Errorf("node: snapshot store: %w", err)
	}
	return st, nil
}

// close closes the log store and then releases the lock.
func (st *storage) close() {
	if st.store != nil {
		st.store.Close()
	}
	if st.lock != nil {
		st.lock.Close()
	}
}

// openLogStore opens (creating if needed) the raft log and stable store in
// dir: one bbolt file in raft-boltdb/v2's format.
func openLogStore(dir string) (raftStore, error) {
	hasWAL, err := exists(filepath.Join(dir, walDir))
	if err != nil {
		return nil, err
	}
	if hasWAL {
		return nil, fmt.Errorf("%w: %s holds a raft-wal log (%s/); remove the data dir and add the node back to the cluster",
			ErrLogStoreUnsupported, dir, walDir)
	}
	return openBolt(filepath.Join(dir, boltFile))
}

// openBolt opens the log with boltlog, which reads and writes
// raft-boltdb/v2's file format byte for byte (a data dir opens with either,
// so a downgrade needs nothing) without raft-boltdb's per-entry msgpack
// handle, encoder and buffer. NoFreelistSync trades a slower open after a
// crash for cheaper commits, which is what a raft log (append, truncate)
// wants.
func openBolt(path string) (raftStore, error) {
	s, err := boltlog.Open(path, &bbolt.Options{Timeout: 2 * time.Second, NoFreelistSync: true})
	if err != nil {
		return nil, fmt.Errorf("node: open raft store: %w", err)
	}
	return s, nil
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("node: data dir: %w", err)
	}
}
