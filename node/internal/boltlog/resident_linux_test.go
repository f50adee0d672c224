package boltlog

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// mappedResident is the resident size, in kB, of this process's mappings
// of the file at path (/proc/self/smaps).
func mappedResident(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	defer f.Close()
	kb, in := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":"):
			in = len(fields) == 6 && fields[5] == path
		case in && len(fields) == 3 && fields[0] == "Rss:":
			n, err := strconv.Atoi(fields[1])
			if err != nil {
				t.Fatalf("smaps Rss line %q: %v", sc.Text(), err)
			}
			kb += n
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return kb
}

// TestReleasesMappedPages checks that the pages a compaction read through
// the memory map leave the resident set, and that every entry reads back
// unchanged afterwards, while readers run alongside.
func TestReleasesMappedPages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	s, err := Open(path, boltOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n, size = 6000, 2048 // some 12 MB of entries
	entry := func(i uint64) *raft.Log {
		return &raft.Log{Index: i, Term: 1, Type: raft.LogCommand,
			Data: append(fmt.Appendf(nil, "entry %d ", i), bytes.Repeat([]byte{byte(i)}, size)...), AppendedAt: time.Unix(int64(i), 0)}
	}
	for first := uint64(1); first <= n; first += 500 {
		batch := make([]*raft.Log, 0, 500)
		for i := first; i < first+500; i++ {
			batch = append(batch, entry(i))
		}
		if err := s.StoreLogs(batch); err != nil {
			t.Fatal(err)
		}
	}
	for i := uint64(1); i <= n; i++ { // fault every page in
		var l raft.Log
		if err := s.GetLog(i, &l); err != nil {
			t.Fatal(err)
		}
	}
	before := mappedResident(t, path)
	if before < 8*1024 {
		t.Fatalf("resident mapped pages after reading %d entries = %d kB, want the entries' pages (> 8 MB)", n, before)
	}

	// Readers of the kept tail run while the compaction releases pages.
	const keep = 4000
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for i := uint64(keep); i <= n; i++ {
				var l raft.Log
				if err := s.GetLog(i, &l); err != nil || !sameLog(l, entry(i)) {
					errs <- fmt.Errorf("GetLog(%d) during the release = %v, %v", i, l.Index, err)
					return
				}
			}
		})
	}
	if err := s.DeleteRange(1, keep-1); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if after := mappedResident(t, path); after >= before/2 {
		t.Errorf("resident mapped pages after DeleteRange(1, %d) = %d kB, was %d kB: want them released", keep-1, after, before)
	}
	for i := uint64(keep); i <= n; i++ {
		var l raft.Log
		if err := s.GetLog(i, &l); err != nil || !sameLog(l, entry(i)) {
			t.Fatalf("GetLog(%d) after the release = %+v, %v; want %+v", i, l, err, *entry(i))
		}
	}
	if first, err := s.FirstIndex(); err != nil || first != keep {
		t.Fatalf("FirstIndex = %d, %v; want %d", first, err, keep)
	}
}

// TestReleaseWhileRemapping releases the mapped pages (compactions of
// over dropAfterDeleting entries, and every releaseEvery entries stored)
// while another writer grows the file, so that bbolt remaps it, and
// readers read through the map: the release must only ever advise the
// live mapping (a stale address could be reused by the Go heap, whose
// pages DONTNEED would zero), and every entry must read back whole.
func TestReleaseWhileRemapping(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	s, err := Open(path, boltOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const batches, perBatch, size = 60, 256, 1024
	entry := func(i uint64) *raft.Log {
		return &raft.Log{Index: i, Term: 1, Type: raft.LogCommand,
			Data: append(fmt.Appendf(nil, "entry %d ", i), bytes.Repeat([]byte{byte(i)}, size)...), AppendedAt: time.Unix(int64(i), 0)}
	}
	var last atomic.Uint64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	done := make(chan struct{})
	wg.Go(func() {
		defer close(done)
		for b := range batches {
			batch := make([]*raft.Log, perBatch)
			for i := range batch {
				batch[i] = entry(uint64(b*perBatch + i + 1))
			}
			if err := s.StoreLogs(batch); err != nil {
				errs <- err
				return
			}
			last.Store(uint64((b + 1) * perBatch))
		}
	})
	wg.Go(func() { // compacts behind the writer
		var first uint64 = 1
		for {
			select {
			case <-done:
				return
			default:
			}
			if hi := last.Load(); hi > first+dropAfterDeleting+perBatch {
				upto := hi - perBatch
				if err := s.DeleteRange(first, upto); err != nil {
					errs <- err
					return
				}
				first = upto + 1
			}
			runtime.Gosched()
		}
	})
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				hi := last.Load()
				if hi == 0 {
					runtime.Gosched()
					continue
				}
				var l raft.Log
				err := s.GetLog(hi, &l)
				if errors.Is(err, raft.ErrLogNotFound) {
					// The compactor may have deleted hi since it was
					// read (it reads a later last): gone means below
					// the first index now.
					if first, ferr := s.FirstIndex(); ferr == nil && first > hi {
						continue
					}
				}
				if err != nil || !sameLog(l, entry(hi)) {
					errs <- fmt.Errorf("GetLog(%d) = %d, %v", hi, l.Index, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	lastIdx, err := s.LastIndex()
	if err != nil || lastIdx != batches*perBatch {
		t.Fatalf("LastIndex = %d, %v; want %d", lastIdx, err, batches*perBatch)
	}
	first, err := s.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	for i := first; i <= lastIdx; i++ {
		var l raft.Log
		if err := s.GetLog(i, &l); err != nil || !sameLog(l, entry(i)) {
			t.Fatalf("GetLog(%d) = %+v, %v", i, l.Index, err)
		}
	}
}
