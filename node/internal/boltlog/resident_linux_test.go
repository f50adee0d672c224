package boltlog

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
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
