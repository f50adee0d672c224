package fsm

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
)

// Limits of the request id table. Like the other limits they are constants,
// not settings: every replica must expire and evict the same entries at the
// same point of the log, or their states (and the results of retries)
// would differ.
const (
	// MaxRequestIDLength is the longest request id accepted, in bytes.
	MaxRequestIDLength = 64
	// RequestIDWindow is how long a request id is remembered, measured in
	// command time: an entry is forgotten once a later command's time is
	// more than the window past its own. A client retries within it.
	RequestIDWindow = 5 * time.Minute
	// MaxRequestIDs caps the entries kept; the oldest go first.
	MaxRequestIDs = 100_000
	// MaxRequestIDBytes caps the ids and encoded results kept, with
	// requestOverhead counted per entry; the oldest go first.
	MaxRequestIDBytes = 64 << 20
	// maxReplayResult is the largest encoded result kept. A larger one (a
	// huge Multi, already too large for a gRPC response) is replaced by an
	// ErrTooLarge error naming the index that applied the command, so a
	// retry still applies nothing and the snapshot records stay bounded.
	maxReplayResult = MaxDataSize
	// requestOverhead is what an entry costs besides its packed id and
	// result: the entry (48 bytes with its fingerprint), its index slot
	// and its queue slot.
	requestOverhead = 104
)

// opField is the Command oneof that names the operation.
var opField = (&raftv1.Command{}).ProtoReflect().Descriptor().Oneofs().ByName("op")

// opNumber is the field number of cmd's operation, 0 if it has none.
func opNumber(cmd *raftv1.Command) int32 {
	fd := cmd.ProtoReflect().WhichOneof(opField)
	if fd == nil {
		return 0
	}
	return int32(fd.Number())
}

// opName names an operation number for error messages.
func opName(n int32) string {
	if fd := opField.Fields().ByNumber(protoreflect.FieldNumber(n)); fd != nil {
		return string(fd.Name())
	}
	return fmt.Sprintf("op %d", n)
}

// checkRequestID checks the size of a command's request id (empty means
// none).
func checkRequestID(id []byte) error {
	if len(id) > MaxRequestIDLength {
		return fmt.Errorf("%w: request id of %d bytes, limit %d", ErrBadArgument, len(id), MaxRequestIDLength)
	}
	return nil
}

// request is one entry of the table. It is never modified once added, so
// a snapshot may share it.
//
// It is compact, for a table of up to MaxRequestIDs entries: rec holds the
// id's key (see appendRequestKey) followed by the encoded
// ProposeResponse, in one allocation that the byID map's key shares. The
// result is bytes, not messages, so that a replay hands out fresh
// messages. fp is the command's fingerprint (see fingerprint): 8 bytes,
// which keep the entry in Go's 48-byte size class.
type request struct {
	index  uint64
	timeMs int64
	fp     uint64
	op     int32
	keyLen uint8
	rec    string
}

func newRequest(id []byte, index uint64, timeMs int64, op int32, fp uint64, result []byte) *request {
	var kb [maxRequestKeyLength]byte
	key := appendRequestKey(kb[:0], id)
	var b strings.Builder
	b.Grow(len(key) + len(result))
	b.Write(key)
	b.Write(result)
	return &request{index: index, timeMs: timeMs, fp: fp, op: op, keyLen: uint8(len(key)), rec: b.String()}
}

// fingerprint identifies what cmd asks for, apart from its request id and
// the leader's time: the first 8 bytes of the SHA-256 of its
// deterministic encoding with request_id and time_unix_ms cleared. A retry
// of the same request has the same fingerprint; reusing the id for
// another path or body changes it. buf is scratch space, returned grown.
//
// cmd is modified and restored: it is the caller's own, decoded from the
// entry. An encoding failure (which a decoded command cannot have) gives
// the fingerprint of no bytes, the same on every replica.
func fingerprint(cmd *raftv1.Command, buf []byte) (uint64, []byte) {
	id, t := cmd.RequestId, cmd.TimeUnixMs
	cmd.RequestId, cmd.TimeUnixMs = nil, 0
	b, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend(buf[:0], cmd)
	cmd.RequestId, cmd.TimeUnixMs = id, t
	if err != nil {
		b = b[:0]
	}
	sum := sha256.Sum256(b)
	return binary.BigEndian.Uint64(sum[:8]), b
}

func (r *request) key() string    { return r.rec[:r.keyLen] }
func (r *request) result() string { return r.rec[r.keyLen:] }

// id is the request id as the client sent it.
func (r *request) id() string { return string(appendRequestID(nil, r.key())) }

func (r *request) size() int { return len(r.rec) + requestOverhead }

// Request id keys. The table keys an entry by its id packed when it has
// one of the forms clients generate: 32 lowercase hex digits (the Go
// client's) or a lowercase UUID (8-4-4-4-12 hex digits), each 16 bytes
// packed. Any other id is kept as it is. A tag byte first keeps the forms
// apart, so keys are as distinct as ids, and a key gives back its id
// exactly (for snapshots and messages).
const (
	keyRaw byte = iota
	keyHex
	keyUUID
	// maxRequestKeyLength is the longest key: a tag and the longest id.
	maxRequestKeyLength = 1 + MaxRequestIDLength
)

// uuidDashes are the positions of a UUID's dashes, and uuidGroups the
// bytes each group of hex digits packs to.
var (
	uuidDashes = [...]int{8, 13, 18, 23}
	uuidGroups = [...]int{4, 2, 2, 2, 6}
)

// appendRequestKey appends the key of id, which is at most
// MaxRequestIDLength bytes. The hex forms were checked, so decoding them
// cannot fail.
func appendRequestKey(dst, id []byte) []byte {
	switch {
	case len(id) == 32 && lowerHex(id):
		dst, _ = hex.AppendDecode(append(dst, keyHex), id)
		return dst
	case len(id) == 36 && isUUID(id):
		dst = append(dst, keyUUID)
		for _, g := range uuidGroups {
			dst, _ = hex.AppendDecode(dst, id[:2*g])
			id = id[min(2*g+1, len(id)):] // and the dash
		}
		return dst
	}
	return append(append(dst, keyRaw), id...)
}

// appendRequestID appends the id a key was made from.
func appendRequestID(dst []byte, key string) []byte {
	b := []byte(key[1:])
	switch key[0] {
	case keyHex:
		return hex.AppendEncode(dst, b)
	case keyUUID:
		for i, g := range uuidGroups {
			if i > 0 {
				dst = append(dst, '-')
			}
			dst = hex.AppendEncode(dst, b[:g])
			b = b[g:]
		}
		return dst
	}
	return append(dst, b...)
}

func lowerHex(b []byte) bool {
	for _, c := range b {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// isUUID reports whether b (36 bytes) is a lowercase UUID.
func isUUID(b []byte) bool {
	prev := 0
	for _, d := range uuidDashes {
		if b[d] != '-' || !lowerHex(b[prev:d]) {
			return false
		}
		prev = d + 1
	}
	return lowerHex(b[prev:])
}

// requestLimits bound the table; tests lower them.
type requestLimits struct {
	windowMs   int64
	maxEntries int
	maxBytes   int
}

var defaultRequestLimits = requestLimits{
	windowMs:   RequestIDWindow.Milliseconds(),
	maxEntries: MaxRequestIDs,
	maxBytes:   MaxRequestIDBytes,
}

// requestTable remembers, for recent commands that carried a request id,
// the result they produced. Entries are queued in apply order, which is
// the order they expire and are evicted in.
//
// A command whose id is in the table and not expired is replayed: it gets
// the first result again and changes nothing. Expiry and eviction happen
// only when an entry is added, judged by the adding command's time and
// the table's contents, both the same on every replica; commands without
// an id never touch the table.
type requestTable struct {
	limits requestLimits
	byID   *requestIndex
	// queue holds entries oldest first from head on. A slot whose entry
	// is no longer byID's (an expired id that was used again) is dead and
	// is skipped; dead slots never change what the table decides.
	queue []*request
	head  int
	bytes int
	// pr, respBuf and recBuf are encode's scratch space.
	pr              raftv1.ProposeResponse
	respBuf, recBuf []byte
}

func newRequestTable(limits requestLimits) *requestTable {
	return &requestTable{limits: limits, byID: newRequestIndex()}
}

// expired reports whether r is past the window at time now. A command
// time before r's (a new leader whose clock is behind) expires nothing.
func (t *requestTable) expired(r *request, now int64) bool {
	return now-r.timeMs > t.limits.windowMs
}

// lookup returns the live entry for id at time now.
func (t *requestTable) lookup(id []byte, now int64) (*request, bool) {
	var kb [maxRequestKeyLength]byte
	r := t.byID.get(string(appendRequestKey(kb[:0], id)))
	if r == nil || t.expired(r, now) {
		return nil, false
	}
	return r, true
}

// front returns the oldest live entry, dropping dead slots before it.
func (t *requestTable) front() *request {
	for t.head < len(t.queue) {
		r := t.queue[t.head]
		if t.byID.get(r.key()) == r {
			return r
		}
		t.pop()
	}
	return nil
}

// pop removes the head slot, compacting the queue once half of it is
// spent so its memory follows the live entries.
func (t *requestTable) pop() {
	t.queue[t.head] = nil
	t.head++
	if t.head == len(t.queue) {
		t.queue, t.head = t.queue[:0], 0
	} else if t.head >= 1024 && t.head*2 >= len(t.queue) {
		n := copy(t.queue, t.queue[t.head:])
		clear(t.queue[n:])
		t.queue, t.head = t.queue[:n], 0
	}
}

func (t *requestTable) remove(r *request) {
	t.byID.delete(r.key())
	t.bytes -= r.size()
}

// add remembers r, first dropping the entries that are expired at r's
// time and then the oldest until r fits the caps.
func (t *requestTable) add(r *request) {
	for f := t.front(); f != nil; f = t.front() {
		if !t.expired(f, r.timeMs) && t.byID.len() < t.limits.maxEntries && t.bytes+r.size() <= t.limits.maxBytes {
			break
		}
		t.remove(f)
		t.pop()
	}
	if old := t.byID.get(r.key()); old != nil {
		// An expired entry behind a younger head: its slot goes dead.
		t.remove(old)
	}
	t.load(r)
}

// load appends r without pruning: Restore uses it to rebuild the table as
// the snapshot had it.
func (t *requestTable) load(r *request) {
	t.byID.put(r)
	t.queue = append(t.queue, r)
	t.bytes += r.size()
}

// live returns the live entries, oldest first.
func (t *requestTable) live() []*request {
	out := make([]*request, 0, t.byID.len())
	for _, r := range t.queue[t.head:] {
		if t.byID.get(r.key()) == r {
			out = append(out, r)
		}
	}
	return out
}

// replay returns the result the command first produced, with the index of
// the entry that applied it (so the caller sees the original zxid). A
// command with another operation or fingerprint (fp) is not a retry: it
// is refused with ErrRequestIDReused and changes nothing.
func (s *state) replay(index uint64, cmd *raftv1.Command, fp uint64, r *request) *Result {
	if op := opNumber(cmd); op != r.op {
		return &Result{Index: index, Err: fmt.Errorf("%w: request id %q was used for a %s at zxid %d, not for a %s; use a new id for each request",
			ErrRequestIDReused, r.id(), opName(r.op), r.index, opName(op))}
	}
	if fp != r.fp {
		return &Result{Index: index, Err: fmt.Errorf("%w: request id %q was used for a %s with another path or body at zxid %d; use a new id for each request",
			ErrRequestIDReused, r.id(), opName(r.op), r.index)}
	}
	var pr raftv1.ProposeResponse
	err := proto.Unmarshal([]byte(r.result()), &pr)
	var res *Result
	if err == nil {
		res, err = DecodeResult(cmd, &pr)
	}
	if err != nil {
		// Restore checked every result; this is a bug, not bad input.
		return &Result{Index: index, Err: fmt.Errorf("%w: request id %q: stored result: %v", ErrBadEntry, r.id(), err)}
	}
	res.Index = r.index
	res.Replayed = true
	return res
}

// remember adds the result of a command that carried a request id, with
// its fingerprint fp.
func (s *state) remember(cmd *raftv1.Command, fp uint64, res *Result) {
	b, err := s.requests.encode(res)
	if err != nil || len(b) > maxReplayResult {
		msg := fmt.Sprintf("%v: result of request id %q, applied at index %d, is too large to replay", ErrTooLarge, cmd.GetRequestId(), res.Index)
		if err != nil {
			msg = fmt.Sprintf("%v: result of request id %q, applied at index %d, cannot be kept: %v", ErrTooLarge, cmd.GetRequestId(), res.Index, err)
		}
		b, _ = proto.Marshal(&raftv1.ProposeResponse{
			Index: res.Index, ErrorCode: raftv1.ErrorCode_ERROR_CODE_TOO_LARGE, ErrorMessage: msg, FailedOp: -1,
		})
	}
	s.requests.add(newRequest(cmd.GetRequestId(), res.Index, cmd.GetTimeUnixMs(), opNumber(cmd), fp, b))
}

// encode returns res's wire form (EncodeResult's, marshalled) in the
// table's scratch space, valid until the next call: newRequest copies it.
// The table is the apply goroutine's, so one message and two buffers
// serve every command instead of fresh ones each.
func (t *requestTable) encode(res *Result) ([]byte, error) {
	pr := &t.pr
	proto.Reset(pr)
	var err error
	t.respBuf, err = encodeResult(pr, res, t.respBuf)
	if err != nil {
		return nil, err
	}
	t.recBuf, err = proto.MarshalOptions{Deterministic: true}.MarshalAppend(t.recBuf[:0], pr)
	b := t.recBuf
	pr.Response = nil
	if cap(t.respBuf) > maxKeptScratch {
		t.respBuf = nil
	}
	if cap(t.recBuf) > maxKeptScratch {
		t.recBuf = nil
	}
	return b, err
}

// maxKeptScratch caps the scratch buffers kept: a huge Multi's result
// does not stay allocated.
const maxKeptScratch = 64 << 10

// requestView is the table's live entries, oldest first; entries are
// immutable, so the view shares them.
type requestView []*request

func (t *requestTable) capture() tableView { return requestView(t.live()) }

func (v requestView) records() uint64 { return uint64(len(v)) }

// write writes the entries oldest first: the queue order replicas expire
// them in. One record, and its id and result buffers, are refilled for
// every request id.
func (v requestView) write(rw *recordWriter) error {
	rr := &raftv1.RequestRecord{}
	rec := &raftv1.SnapshotRecord{Record: &raftv1.SnapshotRecord_Request{Request: rr}}
	var id, result []byte
	for _, r := range v {
		id = appendRequestID(id[:0], r.key())
		result = append(result[:0], r.result()...)
		*rr = raftv1.RequestRecord{RequestId: id, Index: r.index, TimeUnixMs: r.timeMs, Op: r.op, Result: result, Fingerprint: r.fp}
		if err := rw.write(rec); err != nil {
			return err
		}
	}
	return nil
}

// restore adds a snapshot's request record, checking it the way Apply
// would have made it.
func (t *requestTable) restore(rec *raftv1.SnapshotRecord) (bool, error) {
	rr := rec.GetRequest()
	if rr == nil {
		return false, nil
	}
	id := rr.GetRequestId()
	if len(id) == 0 {
		return true, fmt.Errorf("fsm: snapshot: request record without an id")
	}
	if err := checkRequestID(id); err != nil {
		return true, fmt.Errorf("fsm: snapshot: %w", err)
	}
	r := newRequest(id, rr.GetIndex(), rr.GetTimeUnixMs(), rr.GetOp(), rr.GetFingerprint(), rr.GetResult())
	if t.byID.get(r.key()) != nil {
		return true, fmt.Errorf("fsm: snapshot: request id %q appears twice", id)
	}
	if err := proto.Unmarshal(rr.GetResult(), &raftv1.ProposeResponse{}); err != nil {
		return true, fmt.Errorf("fsm: snapshot: request id %q: result: %w", id, err)
	}
	t.load(r)
	return true, nil
}

func (t *requestTable) restored() error { return nil }

// RequestIDs is the number of request ids remembered.
func (f *FSM) RequestIDs() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.requests.byID.len()
}
