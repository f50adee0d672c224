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
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"go.etcd.io/bbolt"
)

// Log store kinds (Config.LogStore).
const (
	// LogStoreWAL is hashicorp/raft-wal: append-only segment files with one
	// fsync per batch, its metadata (and raft's term and vote) in a small
	// bbolt file. The default for new data directories.
	LogStoreWAL = "wal"
	// LogStoreBoltDB is raft-boltdb/v2: the log and raft's term and vote in
	// one bbolt file, two fsyncs per batch (data pages, then meta page).
	LogStoreBoltDB = "boltdb"
)

// ErrLogStoreMismatch is returned by New when the data directory holds a raft
// log of another kind than the one configured. Opening an empty store of
// the configured kind instead would make the node forget its term, vote and
// log: a raft safety violation, not just lost data.
var ErrLogStoreMismatch = errors.New("node: data dir holds a raft log of another kind")

// The files each kind keeps in the data directory.
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
	var kind string
	if st.store, kind, err = openLogStore(cfg.DataDir, cfg.LogStore, cfg.Logger); err != nil {
		return nil, err
	}
	cfg.Logger.Debug("raft log store", "kind", kind)
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

// openLogStore opens (creating if needed) the raft log and stable store of
// kind in dir. An empty kind picks whatever dir already holds, and
// LogStoreWAL for a new dir. It returns the kind it opened.
func openLogStore(dir, kind string, log hclog.Logger) (raftStore, string, error) {
	hasBolt, err := exists(filepath.Join(dir, boltFile))
	if err != nil {
		return nil, "", err
	}
	hasWAL, err := exists(filepath.Join(dir, walDir))
	if err != nil {
		return nil, "", err
	}
	switch {
	case hasBolt && hasWAL:
		return nil, "", fmt.Errorf("%w: %s has both %s and %s/; move the one not in use away",
			ErrLogStoreMismatch, dir, boltFile, walDir)
	case kind == "" && hasBolt:
		kind = LogStoreBoltDB
	case kind == "":
		kind = LogStoreWAL
	case kind == LogStoreWAL && hasBolt, kind == LogStoreBoltDB && hasWAL:
		return nil, "", fmt.Errorf("%w: %s is configured but %s holds a %s log; start with that log store (or none, to detect it)",
			ErrLogStoreMismatch, kind, dir, otherKind(kind))
	}
	switch kind {
	case LogStoreWAL:
		s, err := openWAL(filepath.Join(dir, walDir), log)
		return s, kind, err
	case LogStoreBoltDB:
		s, err := openBolt(filepath.Join(dir, boltFile))
		return s, kind, err
	default:
		return nil, "", fmt.Errorf("node: unknown log store %q (want %q or %q)", kind, LogStoreWAL, LogStoreBoltDB)
	}
}

func otherKind(kind string) string {
	if kind == LogStoreWAL {
		return LogStoreBoltDB
	}
	return LogStoreWAL
}

func openWAL(dir string, log hclog.Logger) (raftStore, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("node: raft wal dir: %w", err)
	}
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(dir, wal.WithLogger(log.Named("wal")), wal.WithMetaStore(meta))
	if err != nil {
		meta.Close()
		return nil, fmt.Errorf("node: open raft wal: %w", err)
	}
	return &walStore{WAL: w, meta: meta}, nil
}

// walStore closes the WAL's metadata database too: raft-wal v0.4.0's Close
// leaves it open (fixed upstream after the release, hashicorp/raft-wal#28),
// and its file lock would make reopening the data dir in the same process
// block for good.
type walStore struct {
	*wal.WAL
	meta *metadb.BoltMetaDB
}

func (s *walStore) Close() error {
	return errors.Join(s.WAL.Close(), s.meta.Close())
}

// openBolt opens a raft-boltdb store. NoFreelistSync trades a slower open
// after a crash for cheaper commits, which is what a raft log (append,
// truncate) wants.
func openBolt(path string) (raftStore, error) {
	s, err := raftboltdb.New(raftboltdb.Options{
		Path:        path,
		BoltOptions: &bbolt.Options{Timeout: 2 * time.Second, NoFreelistSync: true},
	})
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
