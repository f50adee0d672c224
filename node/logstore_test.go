package node

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
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

// TestLogStoreOpensRaftBoltDBDir opens a data dir whose raft.db was written
// by raft-boltdb/v2 (every build before node/internal/boltlog), and checks
// that raft-boltdb can open what the node wrote after it, so an upgrade
// and a downgrade both keep the node's log, term and vote.
func TestLogStoreOpensRaftBoltDBDir(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, boltFile)
	old, err := raftboltdb.NewBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 1, 12, 0, 0, 5, time.UTC)
	logs := []*raft.Log{
		{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: []byte("conf"), AppendedAt: at},
		{Index: 2, Term: 2, Type: raft.LogCommand, Data: []byte("cmd"), Extensions: []byte("x"), AppendedAt: at},
	}
	if err := old.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := old.SetUint64([]byte("CurrentTerm"), 2); err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := openLogStore(dir)
	if err != nil {
		t.Fatalf("open raft-boltdb's file: %v", err)
	}
	for _, want := range logs {
		var got raft.Log
		if err := s.GetLog(want.Index, &got); err != nil {
			t.Fatalf("GetLog(%d): %v", want.Index, err)
		}
		if got.Term != want.Term || got.Type != want.Type || string(got.Data) != string(want.Data) ||
			string(got.Extensions) != string(want.Extensions) || !got.AppendedAt.Equal(want.AppendedAt) {
			t.Fatalf("GetLog(%d) = %+v, want %+v", want.Index, got, *want)
		}
	}
	if term, err := s.GetUint64([]byte("CurrentTerm")); err != nil || term != 2 {
		t.Fatalf("GetUint64(CurrentTerm) = %d, %v; want 2", term, err)
	}
	next := &raft.Log{Index: 3, Term: 3, Type: raft.LogCommand, Data: []byte("new"), AppendedAt: at}
	if err := s.StoreLog(next); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 3); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	old, err = raftboltdb.NewBoltStore(path)
	if err != nil {
		t.Fatalf("raft-boltdb reopening the node's file: %v", err)
	}
	defer old.Close()
	var got raft.Log
	if err := old.GetLog(3, &got); err != nil || string(got.Data) != "new" || got.Term != 3 || !got.AppendedAt.Equal(at) {
		t.Fatalf("raft-boltdb GetLog(3) = %+v, %v; want %+v", got, err, *next)
	}
	if term, err := old.GetUint64([]byte("CurrentTerm")); err != nil || term != 3 {
		t.Fatalf("raft-boltdb GetUint64(CurrentTerm) = %d, %v; want 3", term, err)
	}
}
