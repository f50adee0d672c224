package boltlog

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// benchOpen opens each implementation as node does, or with fsync off to
// leave only the CPU cost.
func benchOpen(b *testing.B, impl string, noSync bool) store {
	path := filepath.Join(b.TempDir(), "raft.db")
	opts := boltOptions()
	if impl == "raftboltdb" {
		s, err := raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: opts, NoSync: noSync})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	opts.NoSync = noSync
	s, err := Open(path, opts)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// benchBatch is a leader's batch: 64 commands of 200 bytes.
func benchBatch(first uint64) []*raft.Log {
	data := bytes.Repeat([]byte("v"), 200)
	now := time.Now()
	logs := make([]*raft.Log, 64)
	for i := range logs {
		logs[i] = &raft.Log{Index: first + uint64(i), Term: 3, Type: raft.LogCommand, Data: data, AppendedAt: now}
	}
	return logs
}

func BenchmarkStoreLogs(b *testing.B) {
	for _, impl := range []string{"raftboltdb", "boltlog"} {
		for _, sync := range []bool{true, false} {
			name := impl + "/fsync"
			if !sync {
				name = impl + "/nosync"
			}
			b.Run(name, func(b *testing.B) {
				s := benchOpen(b, impl, !sync)
				defer s.Close()
				batches := make([][]*raft.Log, 16)
				for i := range batches {
					batches[i] = benchBatch(0)
				}
				b.ReportAllocs()
				b.ResetTimer()
				next := uint64(1)
				for i := 0; i < b.N; i++ {
					batch := batches[i%len(batches)]
					for j, l := range batch {
						l.Index = next + uint64(j)
					}
					next += uint64(len(batch))
					if err := s.StoreLogs(batch); err != nil {
						b.Fatal(err)
					}
					// Keep the log as short as raft's snapshots would.
					if next > 8192 && i%16 == 0 {
						if err := s.DeleteRange(0, next-4096); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
		}
	}
}

func BenchmarkGetLog(b *testing.B) {
	for _, impl := range []string{"raftboltdb", "boltlog"} {
		b.Run(impl, func(b *testing.B) {
			s := benchOpen(b, impl, true)
			defer s.Close()
			const n = 1024
			for first := uint64(1); first <= n; first += 64 {
				if err := s.StoreLogs(benchBatch(first)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				var l raft.Log
				if err := s.GetLog(uint64(i%n)+1, &l); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
