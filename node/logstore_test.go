package node

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// TestOpenLogStoreKinds checks which store openLogStore opens for a
// configured kind and what the data dir already holds, and that it refuses
// to open an empty store beside an existing one of the other kind.
func TestOpenLogStoreKinds(t *testing.T) {
	log := hclog.NewNullLogger()
	// seed creates dir holding a log of kind with one entry at index 7.
	seed := func(t *testing.T, kind string) string {
		t.Helper()
		dir := t.TempDir()
		s, got, err := openLogStore(dir, kind, log)
		if err != nil || got != kind {
			t.Fatalf("openLogStore(new dir, %q) = %q, %v", kind, got, err)
		}
		if err := s.StoreLog(&raft.Log{Index: 7, Term: 2, Type: raft.LogCommand, Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	tests := []struct {
		name     string
		holds    string // "" for a new dir
		kind     string
		want     string
		mismatch bool
	}{
		{name: "new dir defaults to wal", want: LogStoreWAL},
		{name: "new dir, boltdb asked", kind: LogStoreBoltDB, want: LogStoreBoltDB},
		{name: "wal dir detected", holds: LogStoreWAL, want: LogStoreWAL},
		{name: "boltdb dir detected", holds: LogStoreBoltDB, want: LogStoreBoltDB},
		{name: "boltdb dir, boltdb asked", holds: LogStoreBoltDB, kind: LogStoreBoltDB, want: LogStoreBoltDB},
		{name: "boltdb dir, wal asked", holds: LogStoreBoltDB, kind: LogStoreWAL, mismatch: true},
		{name: "wal dir, boltdb asked", holds: LogStoreWAL, kind: LogStoreBoltDB, mismatch: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.holds != "" {
				dir = seed(t, tc.holds)
			}
			s, got, err := openLogStore(dir, tc.kind, log)
			if tc.mismatch {
				if !errors.Is(err, ErrLogStoreMismatch) {
					t.Fatalf("openLogStore = %q, %v; want ErrLogStoreMismatch", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("openLogStore = %q, %v; want %q", got, err, tc.want)
			}
			defer s.Close()
			last, err := s.LastIndex()
			if err != nil {
				t.Fatal(err)
			}
			if want := map[bool]uint64{true: 7, false: 0}[tc.holds != ""]; last != want {
				t.Fatalf("last index %d, want %d (the seeded log)", last, want)
			}
		})
	}
}

func TestOpenLogStoreRefuses(t *testing.T) {
	log := hclog.NewNullLogger()
	if _, _, err := openLogStore(t.TempDir(), "leveldb", log); err == nil {
		t.Fatal("unknown kind opened")
	}
	both := t.TempDir()
	for _, p := range []string{filepath.Join(both, boltFile), filepath.Join(both, walDir)} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := openLogStore(both, "", log); !errors.Is(err, ErrLogStoreMismatch) {
		t.Fatalf("dir with both stores: %v, want ErrLogStoreMismatch", err)
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
