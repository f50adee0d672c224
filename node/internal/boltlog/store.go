package boltlog

import (
	"encoding/binary"
	"errors"
	"sync"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
	"go.etcd.io/bbolt"
)

// ErrKeyNotFound is returned by Get and GetUint64 for a key the stable
// store does not hold. Its text is raft-boltdb's ("not found"):
// hashicorp/raft recognises a missing term or vote by that text alone.
var ErrKeyNotFound = errors.New("not found")

// The buckets, as raft-boltdb names them.
var (
	logsBucket = []byte("logs")
	confBucket = []byte("conf")
)

var (
	_ raft.LogStore    = (*Store)(nil)
	_ raft.StableStore = (*Store)(nil)
)

// fileMode is the mode a new database file is created with (raft-boltdb's).
const fileMode = 0o600

// entryOverhead is a generous guess at the bytes an encoded raft.Log takes
// beyond its Data and Extensions (field names, integers, time), used only
// to size a StoreLogs call's buffer up front.
const entryOverhead = 128

// maxKeptBuffer is the largest encode buffer kept between StoreLogs calls:
// enough for a batch of typical entries, small enough that one batch of
// large values does not pin its size in memory for the store's life.
const maxKeptBuffer = 1 << 20

// Store is a raft log store and stable store in one bbolt file, in
// raft-boltdb/v2's format (see the package doc). It is safe for concurrent
// use.
type Store struct {
	db *bbolt.DB

	// encHandle and decHandle are configured in Open and never modified
	// afterwards, which go-msgpack requires of a handle shared between
	// encoders and decoders.
	encHandle codec.MsgpackHandle
	decHandle codec.MsgpackHandle

	// mu serialises StoreLogs, which owns the fields below it while it
	// holds mu.
	mu  sync.Mutex
	enc *codec.Encoder
	// buf holds every entry a StoreLogs call encodes, back to back; bbolt
	// refers to those bytes until the call's transaction ends.
	buf []byte
	// out is where enc writes one entry. A field rather than a local so
	// that handing its address to the encoder costs no allocation.
	out []byte
	// stored counts the entries stored since the mapped pages were last
	// released (releaseEvery).
	stored int

	// decoders holds *codec.Decoder values for GetLog.
	decoders sync.Pool
}

// Open opens (creating if needed) the store at path with bbolt's options
// opts (nil for bbolt's defaults), creating its buckets unless opts says
// read-only. Unlike raft-boltdb, which overrides it with its own NoSync
// option, opts.NoSync is honoured.
func Open(path string, opts *bbolt.Options) (*Store, error) {
	db, err := bbolt.Open(path, fileMode, opts)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db}
	s.encHandle.TimeNotBuiltin = true
	s.enc = codec.NewEncoderBytes(&s.out, &s.encHandle)
	s.decoders.New = func() any { return codec.NewDecoderBytes(nil, &s.decHandle) }
	if opts == nil || !opts.ReadOnly {
		if err := s.createBuckets(); err != nil {
			db.Close()
			return nil, err
		}
	}
	return s, nil
}

func (s *Store) createBuckets() error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(logsBucket); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(confBucket)
		return err
	})
}

// Close closes the database file. The store must not be used afterwards.
func (s *Store) Close() error {
	return s.db.Close()
}

// FirstIndex returns the lowest index in the log, 0 if it is empty.
func (s *Store) FirstIndex() (uint64, error) {
	tx, err := s.db.Begin(false)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	k, _ := tx.Bucket(logsBucket).Cursor().First()
	if k == nil {
		return 0, nil
	}
	return binary.BigEndian.Uint64(k), nil
}

// LastIndex returns the highest index in the log, 0 if it is empty.
func (s *Store) LastIndex() (uint64, error) {
	tx, err := s.db.Begin(false)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	k, _ := tx.Bucket(logsBucket).Cursor().Last()
	if k == nil {
		return 0, nil
	}
	return binary.BigEndian.Uint64(k), nil
}

// GetLog reads the entry at index idx into log, or returns
// raft.ErrLogNotFound. Nothing in log refers to the database's memory
// afterwards: the decoder copies byte slices out of its input.
func (s *Store) GetLog(idx uint64, log *raft.Log) error {
	tx, err := s.db.Begin(false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var key [8]byte
	binary.BigEndian.PutUint64(key[:], idx)
	val := tx.Bucket(logsBucket).Get(key[:])
	if val == nil {
		return raft.ErrLogNotFound
	}
	dec := s.decoders.Get().(*codec.Decoder)
	dec.ResetBytes(val)
	err = dec.Decode(log)
	// Drop the decoder's reference to the mapped file before pooling it.
	dec.ResetBytes(noBytes)
	s.decoders.Put(dec)
	return err
}

// noBytes is an empty input for a pooled decoder (ResetBytes ignores nil).
var noBytes = []byte{}

// StoreLog stores one entry.
func (s *Store) StoreLog(log *raft.Log) error {
	return s.StoreLogs([]*raft.Log{log})
}

// StoreLogs stores entries in one transaction, replacing any entry at the
// same index.
func (s *Store) StoreLogs(logs []*raft.Log) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	tx, err := s.db.Begin(true)
	if err != nil {
		return err
	}
	// Deferred after Unlock, so it runs first: the next caller reuses buf
	// only once this transaction has let go of it.
	defer tx.Rollback()

	need := 0
	for _, l := range logs {
		need += len(l.Data) + len(l.Extensions) + entryOverhead
	}
	buf := s.buf[:0]
	if cap(buf) < need {
		buf = make([]byte, 0, need)
	}
	defer func() {
		if cap(buf) <= maxKeptBuffer {
			s.buf = buf[:0]
		}
	}()

	bucket := tx.Bucket(logsBucket)
	var key [8]byte
	for _, l := range logs {
		var val []byte
		if buf, val, err = s.encode(buf, l); err != nil {
			return err
		}
		binary.BigEndian.PutUint64(key[:], l.Index)
		if err := bucket.Put(key[:], val); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	// Appends read the tree's right edge through the map, and the leader
	// reads entries a lagging follower needs: release those pages now and
	// then, so that the resident set holds the log's recent pages only.
	if s.stored += len(logs); s.stored >= releaseEvery {
		s.stored = 0
		s.releaseMapped()
	}
	return nil
}

// encode appends l's encoding to buf and returns buf and the encoding.
// Bytes already in buf are never moved or overwritten: bbolt still refers
// to them. If the encoding does not fit in buf's spare capacity, the
// encoder moves it to a new array of its own, and buf is replaced by a
// larger empty one for the entries after it.
func (s *Store) encode(buf []byte, l *raft.Log) (_, val []byte, err error) {
	s.out = buf[len(buf):]
	s.enc.ResetBytes(&s.out)
	err = s.enc.Encode(l)
	val, s.out = s.out, nil
	if err != nil {
		return buf, nil, err
	}
	n, spare := len(buf), cap(buf)-len(buf)
	if len(val) > 0 && len(val) <= spare && &buf[:n+1][n] == &val[0] {
		return buf[:n+len(val)], val[:len(val):len(val)], nil
	}
	return make([]byte, 0, 2*cap(buf)+len(val)), val[:len(val):len(val)], nil
}

// DeleteRange deletes the entries from index lo to hi, both included.
//
// Raft calls it to compact the log after a snapshot, deleting most of it.
// The walk reads every deleted entry's page through bbolt's memory map,
// which leaves them in the process's resident set although nothing reads
// them again; with a log of 100,000 entries that is some 30 MB per node.
// After a compaction of at least dropAfterDeleting entries the mapped
// pages are released (releaseMapped), as after every releaseEvery entries
// stored; the ones still in use fault back in from the page cache on
// their next read.
func (s *Store) DeleteRange(lo, hi uint64) error {
	tx, err := s.db.Begin(true)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var from [8]byte
	binary.BigEndian.PutUint64(from[:], lo)
	c := tx.Bucket(logsBucket).Cursor()
	for k, _ := c.Seek(from[:]); k != nil && binary.BigEndian.Uint64(k) <= hi; k, _ = c.Next() {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if hi >= lo && hi-lo+1 >= dropAfterDeleting {
		s.releaseMapped()
	}
	return nil
}

// dropAfterDeleting is the smallest DeleteRange after which the store
// releases its mapped pages: a compaction, not the truncation of a few
// conflicting entries.
const dropAfterDeleting = 1024

// releaseEvery is how many entries StoreLogs stores between two releases
// of the mapped pages: often enough that the pages an append or a
// lagging follower's catch-up read do not pile up (a few MB of entries),
// rarely enough that the syscall and the faults back in cost nothing
// measurable.
const releaseEvery = 8192

// releaseMapped drops the file's mapped pages from the resident set. It
// holds a read transaction, which keeps bbolt from remapping the file
// (a remap takes the mapping's lock for writing), so the address and size
// it passes on are those of the live mapping.
func (s *Store) releaseMapped() {
	_ = s.db.View(func(tx *bbolt.Tx) error {
		dropResident(s.db.Info().Data, tx.Size())
		return nil
	})
}

// Set stores a stable-store key.
func (s *Store) Set(k, v []byte) error {
	tx, err := s.db.Begin(true)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := tx.Bucket(confBucket).Put(k, v); err != nil {
		return err
	}
	return tx.Commit()
}

// Get returns a copy of a stable-store key's value, or ErrKeyNotFound.
func (s *Store) Get(k []byte) ([]byte, error) {
	tx, err := s.db.Begin(false)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	v := tx.Bucket(confBucket).Get(k)
	if v == nil {
		return nil, ErrKeyNotFound
	}
	return append([]byte(nil), v...), nil
}

// SetUint64 stores a stable-store key holding an integer.
func (s *Store) SetUint64(key []byte, val uint64) error {
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], val)
	return s.Set(key, v[:])
}

// GetUint64 returns a stable-store key's integer, or ErrKeyNotFound.
func (s *Store) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(v), nil
}
