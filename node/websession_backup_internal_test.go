package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/paddock/paddock/fsm"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

func testBackup() *wsBackup {
	n := &Node{log: hclog.NewNullLogger()}
	n.cfg.WebSessionDelayedMaxBytes = 2 << 10 // a backup's cap: twice, 4 KiB
	return newWSBackup(n)
}

func heldVersion(b *wsBackup, id string) uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e := b.m[id]; e != nil {
		return e.w.GetVersion()
	}
	return 0
}

// at is a node's current term.
func at(term uint64) func() uint64 { return func() uint64 { return term } }

// heldSeq numbers the test's writes as a leader would: each later than the one before.
var heldSeq uint64

// hw is a write of id at version over base, checked at applied index
// after, with request id "r-id".
func hw(id string, base, version, after uint64) *raftv1.HeldWebSession {
	heldSeq++
	return &raftv1.HeldWebSession{Id: id, Base: base, Version: version, Data: []byte("d"), AfterIndex: after, RequestId: []byte("r-" + id), Seq: heldSeq}
}

// flush is a request id of the leader's own commits.
var flush = newFlushID()

// A backup keeps each session's latest write (by term, then seq), and
// lets go of it once an entry past the index it was checked at writes
// the session at its version or later, or deletes it, or an entry of a
// later term writes it; never for an older entry, whatever its version
// (a session deleted and written again starts its versions over). It
// remembers the request id of a write the leader's own commit, or the
// write itself, reached; not of one another write overtook.
func TestWSBackupKeepsAndLetsGo(t *testing.T) {
	ctx := context.Background()
	b := testBackup()
	mustHold := func(term uint64, ws ...*raftv1.HeldWebSession) {
		t.Helper()
		if err := b.hold(ctx, term, at(term), ws); err != nil {
			t.Fatalf("hold: %v", err)
		}
	}
	check := func(id string, want uint64) {
		t.Helper()
		if got := heldVersion(b, id); got != want {
			t.Fatalf("%s: holds version %d, want %d", id, got, want)
		}
	}
	apply := func(id string, index, term, version uint64, rid []byte) {
		b.applied(fsm.WebSessionChange{ID: id, Index: index, Term: term, Version: version, RequestID: rid})
	}
	older := hw("a", 1, 2, 10)
	mustHold(2, hw("a", 1, 3, 10), hw("b", 0, 1, 10))
	mustHold(2, older) // sent before the one it holds
	check("a", 3)
	apply("a", 11, 2, 2, flush) // an earlier write of the chain commits
	check("a", 3)
	apply("a", 9, 2, 7, flush) // an entry older than the write, at a higher version
	apply("a", 10, 2, 0, nil)
	check("a", 3)
	apply("a", 12, 2, 3, flush)
	check("a", 0)
	// A session deleted and made again: its new write (version 1) is
	// later than the old chain's version 7.
	mustHold(2, hw("c", 5, 7, 20))
	mustHold(2, hw("c", 0, 1, 22))
	check("c", 1)
	apply("c", 21, 2, 7, flush) // the old chain's commit, applied late here
	apply("c", 22, 2, 0, nil)   // and the delete
	check("c", 1)
	apply("c", 23, 2, 1, []byte("r-c")) // it went through: its own request id
	check("c", 0)
	// A write that did not reach every backup, then another at the same
	// version and index: the later one is kept.
	mustHold(2, hw("l", 4, 5, 24))
	mustHold(2, hw("l", 4, 5, 24))
	check("l", 5)
	// Another write went through at that version: let go, not remembered.
	apply("l", 25, 2, 5, []byte("another"))
	check("l", 0)
	mustHold(2, hw("a", 3, 4, 30))
	apply("a", 31, 3, 1, flush) // a later term wrote it
	check("a", 0)
	mustHold(3, hw("a", 1, 2, 40))
	if err := b.hold(ctx, 2, at(3), []*raftv1.HeldWebSession{hw("a", 1, 5, 50)}); !errors.Is(err, errHoldRefused) {
		t.Fatalf("hold of an ended term: %v, want errHoldRefused", err)
	}
	check("a", 2)
	apply("a", 41, 3, 0, nil) // deleted
	check("a", 0)
	check("b", 1)
	// A snapshot drops the writes checked before its index, not those
	// after it.
	mustHold(3, hw("h", 0, 1, 120))
	b.Restored(100)
	check("b", 0)
	check("h", 1)
	apply("h", 121, 3, 1, flush)
	if k, bytes := b.held(); k != 0 || bytes != 0 {
		t.Fatalf("after a snapshot and h's commit: %d held, %d bytes", k, bytes)
	}
	// A write that creates a session checked before the snapshot, or
	// before a delete this backup applied, is refused: its commit and the
	// session's destroy may have come first.
	if err := b.hold(ctx, 3, at(3), []*raftv1.HeldWebSession{hw("i", 0, 1, 99)}); !errors.Is(err, errHoldRefused) {
		t.Fatalf("a creation checked before the snapshot: %v, want errHoldRefused", err)
	}
	apply("j", 130, 3, 0, nil) // j deleted, none held
	if err := b.hold(ctx, 3, at(3), []*raftv1.HeldWebSession{hw("j", 0, 1, 125)}); !errors.Is(err, errHoldRefused) {
		t.Fatalf("a creation checked before the session's delete: %v, want errHoldRefused", err)
	}
	mustHold(3, hw("j", 0, 1, 131))
	check("j", 1)
	apply("j", 132, 3, 1, flush)
	// The cap: nothing of a hold that does not fit is kept.
	big := &raftv1.HeldWebSession{Id: "big", Base: 0, Version: 1, Data: make([]byte, 5<<10), AfterIndex: 200, Seq: 1000}
	if err := b.hold(ctx, 3, at(3), []*raftv1.HeldWebSession{hw("d", 0, 1, 200), big}); !errors.Is(err, errHoldRefused) {
		t.Fatalf("hold past the cap: %v, want errHoldRefused", err)
	}
	check("d", 0)
	// A hold whose leader gave up is not taken.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.hold(cctx, 3, at(3), []*raftv1.HeldWebSession{hw("e", 0, 1, 200)}); !errors.Is(err, errHoldRefused) {
		t.Fatalf("hold after its caller gave up: %v, want errHoldRefused", err)
	}
	check("e", 0)
	// Writes of a term that ended long ago go.
	mustHold(3, hw("f", 0, 1, 200))
	b.mu.Lock()
	b.m["f"].at = time.Now().Add(-2 * holdStale)
	b.swept = time.Time{}
	b.mu.Unlock()
	if err := b.hold(ctx, 4, at(4), []*raftv1.HeldWebSession{hw("g", 0, 1, 200)}); err != nil {
		t.Fatal(err)
	}
	check("f", 0)
	check("g", 1)
	// A leader's own writes, when its term ends, are kept whatever the cap.
	b.keepOwn(4, []*raftv1.HeldWebSession{big})
	check("big", 1)
	held, done := b.taken()
	if len(held) != 2 {
		t.Fatalf("taken: %d writes, want 2 (g, big)", len(held))
	}
	check("g", 1) // taken, still held
	for _, e := range held {
		b.dropTaken(e)
	}
	check("g", 0)
	// The writes the log reached by their own or the leader's commits
	// are remembered for their retries: a's version 3, c's 1, h's and
	// j's; not l's, which another write overtook.
	req := &paddockv1.WriteWebSessionRequest{Version: 2, Data: []byte("d")}
	if d, ok := done["r-a"]; !ok || d.id != "a" || d.version != 3 || d.fp != retryFingerprint(req) {
		t.Fatalf("done[r-a] = %+v (found %v), want a at version 3", d, ok)
	}
	if d, ok := done["r-c"]; !ok || d.version != 1 {
		t.Fatalf("done[r-c] = %+v (found %v), want version 1", d, ok)
	}
	if _, ok := done["r-l"]; ok || len(done) != 4 {
		t.Fatalf("done: %v, want r-a, r-c, r-h and r-j", done)
	}
	// A later leader's takeover of a held write is known by its request
	// id: the write's request id is remembered; another later-term write
	// lets go of it without.
	mustHold(6, hw("m", 2, 3, 400), hw("n", 2, 3, 400))
	b.mu.Lock()
	mID, nE := takeOverID(b.m["m"]), b.m["n"]
	b.mu.Unlock()
	apply("m", 401, 7, 3, mID)
	apply("n", 402, 7, 3, newFlushID())
	check("m", 0)
	check("n", 0)
	if _, done := b.taken(); done["r-m"].version != 3 || done["r-n"].version != 0 {
		t.Fatalf("after the takeovers: done[r-m] = %+v, done[r-n] = %+v; want m's only", done["r-m"], done["r-n"])
	}
	if bytesEqual := string(takeOverID(nE)) == string(mID); bytesEqual {
		t.Fatal("two held writes share a takeover id")
	}
	// A term's writes are refused once this node knows a later term,
	// read as the hold takes the lock.
	term := uint64(5)
	if err := b.hold(ctx, 5, func() uint64 { term++; return term }, []*raftv1.HeldWebSession{hw("k", 0, 1, 300)}); !errors.Is(err, errHoldRefused) {
		t.Fatalf("hold while this node's term moved on: %v, want errHoldRefused", err)
	}
}
