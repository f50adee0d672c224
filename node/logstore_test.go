package node

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// TestOpenLogStoreRefusesWAL checks that a data dir holding a raft-wal log
// from an earlier build is refused with a typed error, and that nothing is
// created beside it: an empty bolt log would make the node forget its
// term, vote and entries.
func TestOpenLogStoreRefusesWAL(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, walDir), 0o750); err != nil {
		t.Fatal(err)
	}
	s, err := openLogStore(dir)
	if !errors.Is(err, ErrLogStoreUnsupported) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("openLogStore(dir with wal/) = %v, want ErrLogStoreUnsupported", err)
	}
	if _, err := os.Stat(filepath.Join(dir, boltFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("%s was created beside the wal log (stat: %v)", boltFile, err)
	}
}

func TestDataDirLocked(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DataDir: dir, Logger: hclog.NewNullLogger()}
	st, err := openStorage(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openStorage(cfg); !errors.Is(err, ErrDataDirLocked) {
		t.Fatalf("second open: %v, want ErrDataDirLocked", err)
	}
	st.close()
	st, err = openStorage(cfg)
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	st.close()
}

// TestLogStoreReopensAfterTailTruncation is what a follower does when a new
// leader overwrites its unreplicated tail: delete the tail, append the new
// entries, and later restart (kill -9 in CI's seed 1009). Every entry must
// still be readable after reopening, or raft.NewRaft fails at start.
// hashicorp/raft-wal v0.4.0, the log store before this one, failed it:
// "sealed segment has no index block" (ErrLogStoreUnsupported).
func TestLogStoreReopensAfterTailTruncation(t *testing.T) {
	dir := t.TempDir()
	s, err := openLogStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	entry := func(i, term uint64) *raft.Log {
		return &raft.Log{Index: i, Term: term, Type: raft.LogCommand, Data: fmt.Appendf(nil, "%d:%d", i, term)}
	}
	var first []*raft.Log
	for i := uint64(1); i <= 10; i++ {
		first = append(first, entry(i, 1))
	}
	if err := s.StoreLogs(first); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(8, 10); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs([]*raft.Log{entry(8, 2), entry(9, 2)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = openLogStore(dir)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	for i := uint64(1); i <= 9; i++ {
		want := entry(i, 1)
		if i >= 8 {
			want = entry(i, 2)
		}
		var got raft.Log
		if err := s.GetLog(i, &got); err != nil {
			t.Fatalf("after reopen, entry %d: %v", i, err)
		}
		if got.Term != want.Term || string(got.Data) != string(want.Data) {
			t.Fatalf("after reopen, entry %d = term %d %q, want term %d %q", i, got.Term, got.Data, want.Term, want.Data)
		}
	}
	if last, err := s.LastIndex(); err != nil || last != 9 {
		t.Fatalf("last index %d, %v; want 9", last, err)
	}
}
