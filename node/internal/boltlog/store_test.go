package boltlog

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// store is what both implementations offer.
type store interface {
	raft.LogStore
	raft.StableStore
	Close() error
}

// boltOptions are the options node opens its log with.
func boltOptions() *bbolt.Options {
	return &bbolt.Options{Timeout: 2 * time.Second, NoFreelistSync: true}
}

func openOurs(t testing.TB, path string) store {
	t.Helper()
	s, err := Open(path, boltOptions())
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	return s
}

func openTheirs(t testing.TB, path string) store {
	t.Helper()
	s, err := raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: boltOptions()})
	if err != nil {
		t.Fatalf("raftboltdb.New(%s): %v", path, err)
	}
	return s
}

var impls = []struct {
	name string
	open func(testing.TB, string) store
}{
	{"raftboltdb", openTheirs},
	{"boltlog", openOurs},
}

// sampleLogs returns the same logs on every call (one time.Now for the
// test binary), so that two stores can be given equal input. They cover every field of raft.Log: all types, nil, empty and
// binary data and extensions, zero, UTC, local and fixed-zone append times
// (with nanoseconds and a monotonic reading, which the encoding drops).
func sampleLogs() []*raft.Log {
	out := make([]*raft.Log, len(samples))
	for i, l := range samples {
		c := *l
		out[i] = &c
	}
	return out
}

var samples = func() []*raft.Log {
	zone := time.FixedZone("UTC+7", 7*3600)
	now := time.Now()
	big := bytes.Repeat([]byte{0xc1, 0, 0xff, 'x'}, 40_000)
	return []*raft.Log{
		{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: []byte("config"), AppendedAt: now},
		{Index: 2, Term: 1, Type: raft.LogNoop},
		{Index: 3, Term: 2, Type: raft.LogCommand, Data: []byte{}, Extensions: []byte{}, AppendedAt: now.UTC()},
		{Index: 4, Term: 2, Type: raft.LogCommand, Data: []byte{0, 1, 2, 0xff}, Extensions: []byte("ext"), AppendedAt: time.Date(2022, 7, 8, 22, 47, 48, 999999999, zone)},
		{Index: 5, Term: 3, Type: raft.LogBarrier, AppendedAt: time.Unix(0, 1)},
		{Index: 6, Term: 3, Type: raft.LogCommand, Data: big, AppendedAt: now.Add(time.Hour)},
		{Index: 7, Term: 1<<63 + 5, Type: raft.LogAddPeerDeprecated, Data: bytes.Repeat([]byte("d"), 200), Extensions: bytes.Repeat([]byte("e"), 300)},
		{Index: 1<<40 + 8, Term: 4, Type: raft.LogCommand, Data: []byte("far")},
	}
}()

// diffLogs describes the first difference between two reads of the same
// logs, "" if there is none (reflect.DeepEqual, so nil and empty slices and
// time zones count).
func diffLogs(a, b []raft.Log) string {
	if len(a) != len(b) {
		return fmt.Sprintf("%d logs vs %d", len(a), len(b))
	}
	for i := range a {
		if !reflect.DeepEqual(a[i], b[i]) {
			return fmt.Sprintf("log %d: index %d/%d term %d/%d type %v/%v data %d bytes (nil %t)/%d (nil %t) ext %q/%q at %v (%#v)/%v (%#v)",
				i, a[i].Index, b[i].Index, a[i].Term, b[i].Term, a[i].Type, b[i].Type,
				len(a[i].Data), a[i].Data == nil, len(b[i].Data), b[i].Data == nil, a[i].Extensions, b[i].Extensions,
				a[i].AppendedAt, a[i].AppendedAt.Location(), b[i].AppendedAt, b[i].AppendedAt.Location())
		}
	}
	return ""
}

// readAll reads every index of logs from s.
func readAll(t *testing.T, s store, logs []*raft.Log) []raft.Log {
	t.Helper()
	out := make([]raft.Log, len(logs))
	for i, l := range logs {
		if err := s.GetLog(l.Index, &out[i]); err != nil {
			t.Fatalf("GetLog(%d): %v", l.Index, err)
		}
	}
	return out
}

// sameLog reports whether got is want as stored: every field equal, the
// time equal as an instant (the encoding keeps no monotonic reading).
func sameLog(got raft.Log, want *raft.Log) bool {
	return got.Index == want.Index && got.Term == want.Term && got.Type == want.Type &&
		bytes.Equal(got.Data, want.Data) && bytes.Equal(got.Extensions, want.Extensions) &&
		got.AppendedAt.Equal(want.AppendedAt)
}

// TestStoreBehaviour runs the same checks against raft-boltdb and this
// package, and then checks that both gave identical answers.
func TestStoreBehaviour(t *testing.T) {
	type result struct {
		logs     []raft.Log
		getErr   string
		deleted  []uint64
		firstIdx uint64
		lastIdx  uint64
	}
	results := make(map[string]result)
	for _, impl := range impls {
		t.Run(impl.name, func(t *testing.T) {
			s := impl.open(t, filepath.Join(t.TempDir(), "raft.db"))
			defer s.Close()

			if first, err := s.FirstIndex(); err != nil || first != 0 {
				t.Fatalf("empty FirstIndex() = %d, %v; want 0", first, err)
			}
			if last, err := s.LastIndex(); err != nil || last != 0 {
				t.Fatalf("empty LastIndex() = %d, %v; want 0", last, err)
			}
			var l raft.Log
			if err := s.GetLog(1, &l); err != raft.ErrLogNotFound {
				t.Fatalf("empty GetLog(1) = %v, want raft.ErrLogNotFound", err)
			}

			logs := sampleLogs()
			if err := s.StoreLog(logs[0]); err != nil {
				t.Fatal(err)
			}
			if err := s.StoreLogs(logs[1:]); err != nil {
				t.Fatal(err)
			}
			if err := s.StoreLogs(nil); err != nil {
				t.Fatalf("StoreLogs(nil) = %v", err)
			}
			var res result
			res.logs = readAll(t, s, logs)
			for i, got := range res.logs {
				if !sameLog(got, logs[i]) {
					t.Fatalf("GetLog(%d) = %+v, want %+v", logs[i].Index, got, *logs[i])
				}
			}
			if first, err := s.FirstIndex(); err != nil || first != 1 {
				t.Fatalf("FirstIndex() = %d, %v; want 1", first, err)
			}
			if last, err := s.LastIndex(); err != nil || last != 1<<40+8 {
				t.Fatalf("LastIndex() = %d, %v; want %d", last, err, uint64(1<<40+8))
			}
			if err := s.GetLog(100, &l); err != raft.ErrLogNotFound {
				t.Fatalf("GetLog(100) = %v, want raft.ErrLogNotFound", err)
			}

			// A log overwritten at the same index.
			repl := &raft.Log{Index: 4, Term: 9, Type: raft.LogCommand, Data: []byte("new")}
			if err := s.StoreLogs([]*raft.Log{repl}); err != nil {
				t.Fatal(err)
			}
			var got raft.Log
			if err := s.GetLog(4, &got); err != nil || !sameLog(got, repl) {
				t.Fatalf("GetLog(4) after overwrite = %+v, %v; want %+v", got, err, *repl)
			}

			if err := s.DeleteRange(2, 5); err != nil {
				t.Fatal(err)
			}
			for _, l := range logs {
				var got raft.Log
				switch err := s.GetLog(l.Index, &got); {
				case err == raft.ErrLogNotFound:
					res.deleted = append(res.deleted, l.Index)
				case err != nil:
					t.Fatalf("GetLog(%d) after DeleteRange: %v", l.Index, err)
				}
			}
			if want := []uint64{2, 3, 4, 5}; !reflect.DeepEqual(res.deleted, want) {
				t.Fatalf("after DeleteRange(2, 5) missing %v, want %v", res.deleted, want)
			}
			if err := s.DeleteRange(1, 1); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteRange(1<<40+8, 1<<41); err != nil {
				t.Fatal(err)
			}
			res.firstIdx, _ = s.FirstIndex()
			res.lastIdx, _ = s.LastIndex()
			if res.firstIdx != 6 || res.lastIdx != 7 {
				t.Fatalf("after deletes First/LastIndex = %d/%d, want 6/7", res.firstIdx, res.lastIdx)
			}

			// Stable store.
			if _, err := s.Get([]byte("missing")); err == nil || err.Error() != "not found" {
				t.Fatalf(`Get(missing) = %v, want "not found"`, err)
			}
			if _, err := s.GetUint64([]byte("missing")); err == nil || err.Error() != "not found" {
				t.Fatalf(`GetUint64(missing) = %v, want "not found"`, err)
			}
			res.getErr = func() string { _, err := s.Get([]byte("missing")); return err.Error() }()
			if err := s.Set([]byte("k"), []byte("v1")); err != nil {
				t.Fatal(err)
			}
			if err := s.Set([]byte("k"), []byte("v2")); err != nil {
				t.Fatal(err)
			}
			if v, err := s.Get([]byte("k")); err != nil || string(v) != "v2" {
				t.Fatalf("Get(k) = %q, %v; want v2", v, err)
			}
			if err := s.Set([]byte("empty"), []byte{}); err != nil {
				t.Fatal(err)
			}
			if v, err := s.Get([]byte("empty")); err != nil || len(v) != 0 {
				t.Fatalf("Get(empty) = %q, %v; want empty", v, err)
			}
			if err := s.SetUint64([]byte("CurrentTerm"), 1<<62+3); err != nil {
				t.Fatal(err)
			}
			if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 1<<62+3 {
				t.Fatalf("GetUint64(CurrentTerm) = %d, %v; want %d", v, err, uint64(1<<62+3))
			}
			results[impl.name] = res
		})
	}
	theirs, ours := results["raftboltdb"], results["boltlog"]
	if d := diffLogs(theirs.logs, ours.logs); d != "" {
		t.Fatalf("raftboltdb and boltlog read different logs: %s", d)
	}
	theirs.logs, ours.logs = nil, nil
	if !reflect.DeepEqual(theirs, ours) {
		t.Fatalf("raftboltdb and boltlog disagree:\n%+v\n%+v", theirs, ours)
	}
}

// TestCrossCompatible writes a file with each implementation and reads it
// with the other: the raft.Log values read must be identical, field for
// field, to what the writer itself reads back.
func TestCrossCompatible(t *testing.T) {
	for _, dir := range []struct {
		name        string
		write, read func(testing.TB, string) store
	}{
		{"raftboltdb to boltlog", openTheirs, openOurs},
		{"boltlog to raftboltdb", openOurs, openTheirs},
	} {
		t.Run(dir.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "raft.db")
			logs := sampleLogs()
			w := dir.write(t, path)
			if err := w.StoreLogs(logs); err != nil {
				t.Fatal(err)
			}
			if err := w.DeleteRange(3, 3); err != nil {
				t.Fatal(err)
			}
			logs = append(logs[:2:2], logs[3:]...)
			if err := w.SetUint64([]byte("CurrentTerm"), 7); err != nil {
				t.Fatal(err)
			}
			if err := w.Set([]byte("LastVoteCand"), []byte("node-2")); err != nil {
				t.Fatal(err)
			}
			want := readAll(t, w, logs)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}

			r := dir.read(t, path)
			defer r.Close()
			got := readAll(t, r, logs)
			if d := diffLogs(got, want); d != "" {
				t.Fatalf("reader and writer read different logs: %s", d)
			}
			var l raft.Log
			if err := r.GetLog(3, &l); err != raft.ErrLogNotFound {
				t.Fatalf("GetLog(3) = %v, want raft.ErrLogNotFound", err)
			}
			if first, err := r.FirstIndex(); err != nil || first != 1 {
				t.Fatalf("FirstIndex() = %d, %v; want 1", first, err)
			}
			if last, err := r.LastIndex(); err != nil || last != logs[len(logs)-1].Index {
				t.Fatalf("LastIndex() = %d, %v; want %d", last, err, logs[len(logs)-1].Index)
			}
			if v, err := r.GetUint64([]byte("CurrentTerm")); err != nil || v != 7 {
				t.Fatalf("GetUint64(CurrentTerm) = %d, %v; want 7", v, err)
			}
			if v, err := r.Get([]byte("LastVoteCand")); err != nil || string(v) != "node-2" {
				t.Fatalf("Get(LastVoteCand) = %q, %v; want node-2", v, err)
			}
			// The reader can write on: raft appends to a log it reopened.
			next := &raft.Log{Index: logs[len(logs)-1].Index + 1, Term: 5, Type: raft.LogCommand, Data: []byte("after")}
			if err := r.StoreLog(next); err != nil {
				t.Fatal(err)
			}
			if err := r.GetLog(next.Index, &l); err != nil || !sameLog(l, next) {
				t.Fatalf("GetLog(%d) = %+v, %v; want %+v", next.Index, l, err, *next)
			}
		})
	}
}

// dump returns every bucket's keys and values in a bbolt file.
func dump(t *testing.T, path string) map[string]map[string]string {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out := make(map[string]map[string]string)
	err = db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			m := make(map[string]string)
			out[string(name)] = m
			return b.ForEach(func(k, v []byte) error {
				m[string(k)] = string(v)
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSameBytes stores the same logs and keys with both implementations
// and compares the files' buckets key by key, byte for byte.
func TestSameBytes(t *testing.T) {
	logs := sampleLogs()
	dumps := make([]map[string]map[string]string, len(impls))
	for i, impl := range impls {
		path := filepath.Join(t.TempDir(), "raft.db")
		s := impl.open(t, path)
		// Twice, in batches of different sizes: the second call reuses
		// the first's buffer.
		for _, batch := range [][]*raft.Log{logs[:5], logs[5:], logs[2:], logs} {
			if err := s.StoreLogs(batch); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.SetUint64([]byte("CurrentTerm"), 12); err != nil {
			t.Fatal(err)
		}
		if err := s.Set([]byte("LastVoteCand"), []byte("n1")); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		dumps[i] = dump(t, path)
	}
	theirs, ours := dumps[0], dumps[1]
	if len(theirs["logs"]) != len(logs) || len(theirs["conf"]) != 2 || len(theirs) != 2 {
		t.Fatalf("raftboltdb's file holds %d buckets, %d logs, %d conf keys; want 2, %d, 2",
			len(theirs), len(theirs["logs"]), len(theirs["conf"]), len(logs))
	}
	for bucket, kv := range theirs {
		for k, v := range kv {
			if ours[bucket][k] != v {
				t.Errorf("bucket %s key %x: ours %x, raftboltdb %x", bucket, k, ours[bucket][k], v)
			}
		}
	}
	if !reflect.DeepEqual(theirs, ours) {
		t.Fatalf("files differ: buckets %d vs %d, logs %d vs %d, conf %d vs %d",
			len(theirs), len(ours), len(theirs["logs"]), len(ours["logs"]), len(theirs["conf"]), len(ours["conf"]))
	}
}

// TestEncodeOutgrowsBuffer drives encode with a buffer too small for the
// entries: values already handed out must keep their bytes when the
// buffer is replaced, and a value in a fresh array must still be whole.
func TestEncodeOutgrowsBuffer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	s := openOurs(t, path).(*Store)
	defer s.Close()
	refPath := filepath.Join(t.TempDir(), "ref.db")
	ref := openTheirs(t, refPath)

	buf := make([]byte, 0, 40)
	var vals [][]byte
	var copies [][]byte
	for i := range 50 {
		l := &raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(i)}, i*7)}
		var val []byte
		var err error
		if buf, val, err = s.encode(buf, l); err != nil {
			t.Fatal(err)
		}
		vals = append(vals, val)
		copies = append(copies, append([]byte(nil), val...))
	}
	for i := range vals {
		if !bytes.Equal(vals[i], copies[i]) {
			t.Fatalf("value %d changed after later entries were encoded", i)
		}
		if cap(vals[i]) != len(vals[i]) {
			t.Fatalf("value %d has spare capacity %d: an append could overwrite the next", i, cap(vals[i])-len(vals[i]))
		}
	}

	// And the encodings are raft-boltdb's.
	for i := range vals {
		l := &raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(i)}, i*7)}
		if err := ref.StoreLog(l); err != nil {
			t.Fatal(err)
		}
	}
	if err := ref.Close(); err != nil {
		t.Fatal(err)
	}
	want := dump(t, refPath)["logs"]
	for i, v := range vals {
		var key [8]byte
		key[7] = byte(i + 1)
		if want[string(key[:])] != string(v) {
			t.Fatalf("entry %d encodes to %x, raftboltdb wrote %x", i+1, v, want[string(key[:])])
		}
	}
}

// TestGetLogCopies checks that a log read stays intact once the database
// is closed (its map released): nothing may point into the file's memory.
func TestGetLogCopies(t *testing.T) {
	s := openOurs(t, filepath.Join(t.TempDir(), "raft.db"))
	logs := sampleLogs()
	if err := s.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, s, logs)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if !sameLog(got[i], logs[i]) {
			t.Fatalf("log %d after Close = %+v, want %+v", logs[i].Index, got[i], *logs[i])
		}
	}
}

// TestConcurrentUse stores and reads from several goroutines at once; run
// with -race it checks the shared handles, the pooled decoders and the
// reused encode buffer.
func TestConcurrentUse(t *testing.T) {
	s := openOurs(t, filepath.Join(t.TempDir(), "raft.db"))
	defer s.Close()
	const writers, batches, perBatch = 3, 20, 16
	entry := func(w, b, i int) *raft.Log {
		idx := uint64(w*batches*perBatch + b*perBatch + i + 1)
		return &raft.Log{Index: idx, Term: uint64(w + 1), Type: raft.LogCommand,
			Data: fmt.Appendf(nil, "w%d b%d i%d %s", w, b, i, bytes.Repeat([]byte("x"), i*13)), AppendedAt: time.Unix(int64(idx), 0)}
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers*2)
	for w := range writers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for b := range batches {
				batch := make([]*raft.Log, perBatch)
				for i := range batch {
					batch[i] = entry(w, b, i)
				}
				if err := s.StoreLogs(batch); err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for b := range batches {
				for i := range perBatch {
					var l raft.Log
					err := s.GetLog(entry(w, b, i).Index, &l)
					if err != nil && !errors.Is(err, raft.ErrLogNotFound) {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for w := range writers {
		for b := range batches {
			for i := range perBatch {
				want := entry(w, b, i)
				var got raft.Log
				if err := s.GetLog(want.Index, &got); err != nil || !sameLog(got, want) {
					t.Fatalf("GetLog(%d) = %+v, %v; want %+v", want.Index, got, err, *want)
				}
			}
		}
	}
}
