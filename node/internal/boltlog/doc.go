// Package boltlog is a raft.LogStore and raft.StableStore on bbolt that
// reads and writes the file format of hashicorp/raft-boltdb/v2 (v2.3.1)
// byte for byte, so a data dir written by either opens with the other.
//
// The format: bucket "logs" maps an entry's index (8 bytes, big endian) to
// the entry, a raft.Log encoded with go-msgpack/v2's MsgpackHandle with
// TimeNotBuiltin set (AppendedAt as time.Time's MarshalBinary bytes, which
// raft-boltdb writes unless MsgpackUseNewTimeFormat is set; we never set it) and
// every other setting at its default; entries are decoded with a default
// MsgpackHandle, which reads both time formats. Bucket "conf" holds the
// stable store's keys and values as given; a uint64 value is 8 bytes, big
// endian. A missing stable key is an error whose text is "not found",
// which is what hashicorp/raft tests for.
//
// Why not raft-boltdb itself: it builds a new msgpack handle (so the
// codec's per-type reflection cache starts empty), encoder and buffer for
// every entry it stores and a new handle and decoder for every entry it
// reads. At 128 writing clients that was about 4% of a leader's CPU and
// 40 MB of garbage per 8 s. Here both handles live as long as the store
// (a configured go-msgpack handle is safe for concurrent use), StoreLogs
// encodes every entry of a call into one reused buffer, and readers take
// decoders from a pool.
//
// bbolt keeps a reference to each value passed to Put until the
// transaction ends, so a StoreLogs call's buffer is only ever appended to
// while its transaction is open and is reused only by the next call; the
// store's write lock (mu) serialises callers, which bbolt's single writer
// would do anyway.
package boltlog
