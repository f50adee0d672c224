package fsm

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/google/btree"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
)

const snapshotFormat = 1

// snapshot is an immutable view of the state: a tree clone and copies of
// the (small) session and member tables and of the request id queue.
type snapshot struct {
	index    uint64
	tree     *btree.BTreeG[*znode]
	sessions []session
	members  []*raftv1.RegisterMember
	requests []*request
}

// capture takes the view. Callers hold mu for writing: btree's Clone
// replaces the tree's copy-on-write context, so two clones at once race.
func (f *FSM) capture() *snapshot {
	s := &snapshot{index: f.applied.Load(), tree: f.tree.Clone()}
	for _, id := range slices.Sorted(maps.Keys(f.sessions)) {
		s.sessions = append(s.sessions, *f.sessions[id])
	}
	for _, id := range slices.Sorted(maps.Keys(f.members)) {
		s.members = append(s.members, f.members[id])
	}
	s.requests = f.requests.live()
	return s
}

// Persist streams the view as length-delimited records: a header, the
// znodes in tree order (a parent always before its children), sessions,
// members and request ids (oldest first: the queue order replicas expire
// them in).
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.write(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("fsm: persist snapshot: %w", err)
	}
	return sink.Close()
}

// Release is a no-op: the view is garbage collected.
func (s *snapshot) Release() {}

// recordWriter writes length-delimited records (the format protodelim
// reads) through one reused buffer: a snapshot of 100k znodes otherwise
// allocates a buffer per record, garbage the collector then chases while
// the node is serving writes.
type recordWriter struct {
	bw   *bufio.Writer
	opts proto.MarshalOptions
	buf  []byte
}

func (rw *recordWriter) write(m proto.Message) error {
	b, err := rw.opts.MarshalAppend(rw.buf[:0], m)
	if err != nil {
		return err
	}
	rw.buf = b
	var n [binary.MaxVarintLen64]byte
	if _, err := rw.bw.Write(protowire.AppendVarint(n[:0], uint64(len(b)))); err != nil {
		return err
	}
	_, err = rw.bw.Write(b)
	return err
}

func (s *snapshot) write(w io.Writer) error {
	rw := &recordWriter{bw: bufio.NewWriterSize(w, 1<<16), opts: proto.MarshalOptions{Deterministic: true}}
	if err := rw.write(&raftv1.SnapshotHeader{Format: snapshotFormat, AppliedIndex: s.index}); err != nil {
		return err
	}
	var err error
	records := uint64(s.tree.Len() + len(s.sessions) + len(s.members) + len(s.requests))
	// One record and one Znode message are refilled for every znode.
	zn := &raftv1.Znode{}
	rec := &raftv1.SnapshotRecord{Record: &raftv1.SnapshotRecord_Znode{Znode: zn}}
	s.tree.Ascend(func(n *znode) bool {
		*zn = raftv1.Znode{
			Path: n.path, Data: n.data,
			Czxid: n.czxid, Mzxid: n.mzxid, Pzxid: n.pzxid(),
			Ctime: n.ctime, Mtime: n.mtime,
			Version: n.version, Cversion: n.cversion(),
			EphemeralOwner: n.session(), Sequence: n.seq(),
			TtlMs: n.ttlMs(), Container: n.container(),
		}
		err = rw.write(rec)
		return err == nil
	})
	if err != nil {
		return err
	}
	for _, ss := range s.sessions {
		rec.Record = &raftv1.SnapshotRecord_Session{Session: &raftv1.SessionRecord{
			Id: ss.id, TimeoutMs: ss.timeoutMs, Ctime: ss.ctime, RemainingMs: ss.remainingMs,
		}}
		if err := rw.write(rec); err != nil {
			return err
		}
	}
	for _, m := range s.members {
		rec.Record = &raftv1.SnapshotRecord_Member{Member: m}
		if err := rw.write(rec); err != nil {
			return err
		}
	}
	// One record, and its id and result buffers, are refilled for every
	// request id.
	rr := &raftv1.RequestRecord{}
	rec.Record = &raftv1.SnapshotRecord_Request{Request: rr}
	var id, result []byte
	for _, r := range s.requests {
		id = appendRequestID(id[:0], r.key())
		result = append(result[:0], r.result()...)
		*rr = raftv1.RequestRecord{RequestId: id, Index: r.index, TimeUnixMs: r.timeMs, Op: r.op, Result: result}
		if err := rw.write(rec); err != nil {
			return err
		}
	}
	rec.Record = &raftv1.SnapshotRecord_End{End: &raftv1.SnapshotEnd{Records: records}}
	if err := rw.write(rec); err != nil {
		return err
	}
	return rw.bw.Flush()
}

// readSnapshot loads a snapshot into f, which must be freshly reset and
// not yet shared. Children counts and the ephemeral index are derived.
func (f *FSM) readSnapshot(r io.Reader) (uint64, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	opts := protodelim.UnmarshalOptions{MaxSize: MaxDataSize + MaxPathLength + 1024}
	var hdr raftv1.SnapshotHeader
	if err := opts.UnmarshalFrom(br, &hdr); err != nil {
		return 0, fmt.Errorf("fsm: read snapshot header: %w", err)
	}
	if hdr.GetFormat() != snapshotFormat {
		return 0, fmt.Errorf("fsm: snapshot format %d, want %d", hdr.GetFormat(), snapshotFormat)
	}
	f.tree = newTree()
	var records uint64
	for ended := false; ; records++ {
		var rec raftv1.SnapshotRecord
		err := opts.UnmarshalFrom(br, &rec)
		if errors.Is(err, io.EOF) {
			if !ended {
				return 0, fmt.Errorf("fsm: snapshot cut short after %d records", records)
			}
			break
		}
		if ended {
			return 0, fmt.Errorf("fsm: snapshot has records after its end")
		}
		if err != nil {
			return 0, fmt.Errorf("fsm: read snapshot record: %w", err)
		}
		switch r := rec.GetRecord().(type) {
		case *raftv1.SnapshotRecord_Znode:
			if err := f.loadZnode(r.Znode); err != nil {
				return 0, err
			}
		case *raftv1.SnapshotRecord_Session:
			s := r.Session
			f.sessions[s.GetId()] = &session{id: s.GetId(), timeoutMs: s.GetTimeoutMs(), ctime: s.GetCtime(), remainingMs: s.GetRemainingMs()}
		case *raftv1.SnapshotRecord_Member:
			f.members[r.Member.GetId()] = r.Member
		case *raftv1.SnapshotRecord_Request:
			if err := f.loadRequest(r.Request); err != nil {
				return 0, err
			}
		case *raftv1.SnapshotRecord_End:
			if r.End.GetRecords() != records {
				return 0, fmt.Errorf("fsm: snapshot ends after %d records, read %d", r.End.GetRecords(), records)
			}
			ended = true
		default:
			return 0, fmt.Errorf("fsm: unknown snapshot record")
		}
	}
	if _, ok := f.tree.Get(newZnode("/")); !ok {
		return 0, fmt.Errorf("fsm: snapshot has no root")
	}
	return hdr.GetAppliedIndex(), nil
}

// loadZnode inserts a snapshot znode; its parent was inserted before it.
func (f *FSM) loadZnode(z *raftv1.Znode) error {
	if err := ValidatePath(z.GetPath(), false); err != nil {
		return fmt.Errorf("fsm: snapshot: %w", err)
	}
	n := newZnode(z.GetPath())
	n.data = z.GetData()
	n.czxid, n.mzxid = z.GetCzxid(), z.GetMzxid()
	n.ctime, n.mtime = z.GetCtime(), z.GetMtime()
	n.version = z.GetVersion()
	owner, err := ownerOf(z)
	if err != nil {
		return err
	}
	n.owner = owner
	if z.GetPzxid() != z.GetCzxid() || z.GetCversion() != 0 || z.GetSequence() != 0 {
		n.dir = &dirStat{pzxid: z.GetPzxid(), cversion: z.GetCversion(), seq: z.GetSequence()}
	}
	if parent := n.parent(); parent != "" {
		p, ok := f.tree.Get(newZnode(parent))
		if !ok {
			return fmt.Errorf("fsm: snapshot: %s comes before its parent", z.GetPath())
		}
		// p and its dir are private to this fresh tree: counting in
		// place is safe.
		if p.dir == nil {
			p.dir = p.dirCopy()
		}
		p.dir.numChildren++
	}
	if _, dup := f.tree.ReplaceOrInsert(n); dup {
		// Its parent was counted twice; f is discarded on error.
		return fmt.Errorf("fsm: snapshot: %s appears twice", z.GetPath())
	}
	if n.session() != 0 {
		set := f.ephemerals[n.owner]
		if set == nil {
			set = make(map[string]struct{})
			f.ephemerals[n.owner] = set
		}
		set[z.GetPath()] = struct{}{}
	}
	return nil
}

// StateHash is a digest of the whole state (the snapshot stream, request
// id table included), for checking that replicas that applied the same log
// agree. It leaves out the applied index (StateHashAndIndex returns the
// index the digest was taken at), so an entry that changes nothing, a
// barrier or a failed command without a request id, leaves the digest as
// it was. (A failed command with an id changes the table: a retry must get
// the same failure.)
func (f *FSM) StateHash() [32]byte {
	hash, _ := f.StateHashAndIndex()
	return hash
}

// StateHashAndIndex is StateHash with the applied index it was taken at:
// both come from one view captured under mu, so the index always matches
// the digest (AppliedIndex read before or after StateHash may not, while
// entries are being applied). Two replicas that report the same index
// must report the same digest.
func (f *FSM) StateHashAndIndex() (hash [32]byte, index uint64) {
	f.mu.Lock()
	s := f.capture()
	f.mu.Unlock()
	index, s.index = s.index, 0
	h := sha256.New()
	_ = s.write(h)
	copy(hash[:], h.Sum(nil))
	return hash, index
}
