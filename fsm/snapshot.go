package fsm

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"io"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
)

const snapshotFormat = 1

// snapshot is an immutable view of the state: one view per table, in
// the order of state.tables.
type snapshot struct {
	index  uint64
	tables []tableView
}

// capture takes the view. Callers hold mu for writing (cloning the tree
// writes to it).
func (f *FSM) capture() *snapshot {
	s := &snapshot{index: f.applied.Load()}
	for _, t := range f.state.tables() {
		s.tables = append(s.tables, t.capture())
	}
	return s
}

// Persist streams the view as length-delimited records: a header, each
// table's records (table by table, in the order of state.tables) and an
// end record counting them.
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

func newRecordWriter(w io.Writer) *recordWriter {
	return &recordWriter{bw: bufio.NewWriterSize(w, 1<<16), opts: proto.MarshalOptions{Deterministic: true}}
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
	rw := newRecordWriter(w)
	if err := rw.write(&raftv1.SnapshotHeader{Format: snapshotFormat, AppliedIndex: s.index}); err != nil {
		return err
	}
	var records uint64
	for _, t := range s.tables {
		if err := t.write(rw); err != nil {
			return err
		}
		records += t.records()
	}
	end := &raftv1.SnapshotRecord{Record: &raftv1.SnapshotRecord_End{End: &raftv1.SnapshotEnd{Records: records}}}
	if err := rw.write(end); err != nil {
		return err
	}
	return rw.bw.Flush()
}

// readSnapshot loads a snapshot into s, an emptyState not yet shared:
// each record goes to the table whose kind it is.
func (s *state) readSnapshot(r io.Reader) (uint64, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	opts := protodelim.UnmarshalOptions{MaxSize: MaxDataSize + MaxPathLength + 1024}
	var hdr raftv1.SnapshotHeader
	if err := opts.UnmarshalFrom(br, &hdr); err != nil {
		return 0, fmt.Errorf("fsm: read snapshot header: %w", err)
	}
	switch {
	case hdr.GetFormat() > snapshotFormat:
		return 0, fmt.Errorf("%w: snapshot at index %d has format %d, this binary reads format %d: upgrade paddock on this node",
			ErrUpgradeRequired, hdr.GetAppliedIndex(), hdr.GetFormat(), snapshotFormat)
	case hdr.GetFormat() != snapshotFormat:
		return 0, fmt.Errorf("fsm: snapshot format %d, want %d", hdr.GetFormat(), snapshotFormat)
	}
	tables := s.tables()
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
		if end := rec.GetEnd(); end != nil {
			if end.GetRecords() != records {
				return 0, fmt.Errorf("fsm: snapshot ends after %d records, read %d", end.GetRecords(), records)
			}
			ended = true
			continue
		}
		if rec.GetRecord() == nil && len(rec.ProtoReflect().GetUnknown()) > 0 {
			// A kind of record added after this binary: a newer
			// paddock wrote the snapshot.
			return 0, fmt.Errorf("%w: snapshot at index %d holds a kind of record this binary does not know: upgrade paddock on this node",
				ErrUpgradeRequired, hdr.GetAppliedIndex())
		}
		if err := restoreRecord(tables, &rec); err != nil {
			return 0, err
		}
	}
	for _, t := range tables {
		if err := t.restored(); err != nil {
			return 0, err
		}
	}
	return hdr.GetAppliedIndex(), nil
}

// restoreRecord hands rec to the table that owns its kind.
func restoreRecord(tables []table, rec *raftv1.SnapshotRecord) error {
	for _, t := range tables {
		if ok, err := t.restore(rec); ok {
			return err
		}
	}
	return fmt.Errorf("fsm: unknown snapshot record")
}

// StateHash is a digest of the whole state: the snapshot stream, so every
// table's records (the request id table included), for checking that replicas that applied the same log
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
