package fsm

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
)

// Result is what applying one entry produced: the index of the entry that
// made the change, the response (one of the paddock.v1 response messages,
// without header, or nil) and the domain error, if the command failed and
// changed nothing.
//
// A command whose request id the state machine has seen is Replayed: it
// changed nothing, and Index, Resp and Err are those of the entry that
// first carried the id, so the caller sees the original zxid.
type Result struct {
	Index    uint64
	Resp     proto.Message
	Err      error
	Replayed bool
}

// Sink receives what every applied batch changed. It is called after the
// state lock is released, on the apply goroutine, and must not block.
type Sink interface {
	// Applied reports the events of a batch and the last index applied.
	// events is the state machine's buffer, reused for the next batch:
	// a sink copies what it keeps of it (the Events themselves, whose
	// paths and data are immutable, may be kept).
	Applied(index uint64, events []Event)
	// Restored reports that the whole state was replaced by a snapshot.
	Restored(index uint64)
}

// FSM is the replicated state machine. It implements raft.BatchingFSM.
type FSM struct {
	sink Sink

	mu sync.RWMutex
	// state is every table; a restore replaces it whole.
	state *state
	// level is the highest feature level applied (FeatureLevel).
	level uint32
	// fatal is the error that stopped the state machine; failed is
	// closed when it is set.
	fatal  error
	failed chan struct{}
	// fpBuf is the apply goroutine's scratch buffer for fingerprints
	// (under mu).
	fpBuf []byte
	// cmd is the apply goroutine's decode target (under mu), reused
	// entry after entry: Unmarshal resets it, and what the state keeps of
	// a command (paths, data, ids) the decoder allocates afresh, so no
	// table can alias it. Nothing may keep a pointer to it or to its
	// messages past the entry.
	cmd raftv1.Command
	// events holds the buffer a batch's events are gathered in between
	// batches: the sinks copy what they keep (Sink), so one buffer serves
	// every batch instead of a slice regrown for each. It is taken and
	// put back atomically because the sinks run out of mu.
	events atomic.Pointer[eventBuf]

	applied atomic.Uint64

	// webSessionApplied is WithWebSessionHook's function, or nil.
	webSessionApplied func(WebSessionChange)
}

var _ raft.BatchingFSM = (*FSM)(nil)

// New returns an empty state machine holding the root and /paddock. sink
// may be nil.
func New(sink Sink, opts ...Option) *FSM {
	f := &FSM{sink: sink, state: newState(defaultRequestLimits), level: FeatureLevel, failed: make(chan struct{})}
	for _, o := range opts {
		o(f)
	}
	return f
}

// Apply applies one entry; raft uses ApplyBatch, this serves tests and
// callers without batching.
func (f *FSM) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies entries in order and returns one *Result per entry
// (nil for configuration entries). From an entry the state machine cannot
// understand on, it applies nothing (see Failed): that entry's result and
// every later one's is the fatal error.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	results := make([]any, len(logs))
	// One allocation for the batch's results rather than one each: they
	// are short-lived (raft hands them to the futures and drops them).
	block := make([]Result, len(logs))
	buf := f.events.Swap(nil)
	if buf == nil {
		buf = &eventBuf{}
	}
	events := buf.ev[:0]
	var last uint64
	f.mu.Lock()
	for i, l := range logs {
		if f.fatal != nil {
			if l.Type == raft.LogCommand {
				block[i] = Result{Index: l.Index, Err: fmt.Errorf("%w: entry %d (this node stopped: %v)", ErrNotApplied, l.Index, f.fatal)}
				results[i] = &block[i]
			}
			continue
		}
		if l.Type == raft.LogCommand {
			c := applyCtx{index: l.Index, term: l.Term, events: events, webSessionApplied: f.webSessionApplied}
			block[i] = f.applyEntry(&c, l.Data)
			results[i] = &block[i]
			events = c.events
		}
		if f.fatal == nil {
			last = l.Index
		}
	}
	// Published under mu, which capture holds: a snapshot's index always
	// matches its tree.
	if last > f.applied.Load() {
		f.applied.Store(last)
	}
	f.mu.Unlock()
	if f.sink != nil {
		f.sink.Applied(f.applied.Load(), events)
	}
	buf.put(events)
	f.events.Store(buf)
	return results
}

// eventBuf is a batch's event buffer, kept between batches.
type eventBuf struct{ ev []Event }

// maxKeptEvents caps the buffer kept: a batch that deleted a huge subtree
// does not pin its buffer.
const maxKeptEvents = 4096

// put keeps ev's array for the next batch, emptied so that it does not
// hold on to paths and data the tree has dropped since.
//
// Past len(ev) too: a txn that failed appended its events to the spare
// capacity (its own until commit, then dropped), and a later batch with
// fewer events would never overwrite them, so they would keep a deleted
// znode's data alive (TestEventBufferKeepsNoDroppedData). A failed txn
// wrote from the batch's length at the time, never past the final one,
// and each write is contiguous, so what they left starts at len(ev) and
// ends at the first empty slot (every event has a path): the array
// beyond is still empty, as put left it or as append allocated it.
func (b *eventBuf) put(ev []Event) {
	if cap(ev) > maxKeptEvents {
		b.ev = nil
		return
	}
	n := len(ev)
	for all := ev[:cap(ev)]; n < len(all) && (all[n].Path != "" || all[n].PrevData != nil); n++ {
	}
	clear(ev[:n])
	b.ev = ev[:0]
}

// applyEntry decodes and applies one command entry. A command with a
// request id seen within the window is replayed instead; otherwise its
// result, success or domain failure, is remembered under the id. An entry
// the state machine cannot understand stops it (fail), changing nothing.
func (f *FSM) applyEntry(c *applyCtx, data []byte) Result {
	cmd := &f.cmd
	err := f.decode(data)
	if err != nil {
		err = undecodable(c.index, err)
	} else {
		err = f.understand(c.index, cmd)
	}
	if err != nil {
		f.fail(err)
		return Result{Index: c.index, Err: err}
	}
	c.now = cmd.GetTimeUnixMs()
	s := f.state
	id := cmd.GetRequestId()
	var fp uint64
	if len(id) > 0 {
		if err := checkRequestID(id); err != nil {
			return Result{Index: c.index, Err: err}
		}
		fp, f.fpBuf = fingerprint(cmd, f.fpBuf)
		if cap(f.fpBuf) > 64<<10 {
			f.fpBuf = nil // a huge command's buffer is not kept
		}
		if r, ok := s.requests.lookup(id, c.now); ok {
			return *s.replay(c.index, cmd, fp, r)
		}
	}
	c.requestID = id
	resp, err := s.apply(c, cmd)
	if errors.Is(err, errUnknownOp) {
		// understand knows every operation apply does (TestOpFeatureLevel):
		// this is a bug, and stopping is the only safe answer.
		err = fmt.Errorf("%w: entry %d: %s has a feature level but no apply case", ErrUpgradeRequired, c.index, OpName(cmd))
		f.fail(err)
		return Result{Index: c.index, Err: err}
	}
	if err != nil {
		// The domain methods return a typed nil response with their error;
		// a failed command has no response, not a non-nil interface
		// holding a nil pointer.
		resp = nil
	}
	res := Result{Index: c.index, Resp: resp, Err: err}
	if len(id) > 0 {
		s.remember(cmd, fp, &res)
	}
	return res
}

// AppliedIndex is the last raft index applied (commands and configuration
// entries; raft's own no-op entries never reach the state machine).
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// Snapshot captures the state in O(sessions + members + request ids): the
// tree is a copy-on-write clone, request entries are shared (immutable).
// A stopped state machine refuses: its state is short of raft's applied
// index, and a snapshot labelled with that index would skip the entry it
// stopped at once a newer binary restored it.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fatal != nil {
		return nil, fmt.Errorf("fsm: no snapshot: %w", f.fatal)
	}
	return f.capture(), nil
}

// Restore replaces the state with a snapshot's: the whole state value is
// swapped, so no table can keep what it held before. A stopped state
// machine refuses: a snapshot from a newer leader may hold what this
// binary cannot read.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if err := f.Err(); err != nil {
		return fmt.Errorf("fsm: no restore: %w", err)
	}
	fresh := emptyState(defaultRequestLimits)
	index, err := fresh.readSnapshot(rc)
	if errors.Is(err, ErrUpgradeRequired) {
		// Written by a newer paddock: this replica can neither install
		// it nor follow the log past it, as for an entry.
		f.mu.Lock()
		f.fail(err)
		f.mu.Unlock()
	}
	if err != nil {
		return err
	}
	f.mu.Lock()
	fresh.requests.limits = f.state.requests.limits
	f.state = fresh
	f.applied.Store(index)
	f.mu.Unlock()
	if f.sink != nil {
		f.sink.Restored(index)
	}
	return nil
}

// The field numbers of the operations whose messages decode reuses.
var (
	createField = opField.Fields().ByName("create").Number()
	setField    = opField.Fields().ByName("set").Number()
)

// decode decodes an entry into f.cmd, as proto.Unmarshal does. Creates
// and sets, most entries, decode into the previous entry's operation
// message when it is of the same kind: reset, it is merged into exactly
// as a fresh one would be filled, and the decoder allocates every path,
// data and id afresh, so nothing the state kept of that entry (values,
// never the request message itself) is touched. Anything else, an entry
// naming any other operation or more than one, or one that does not
// parse, is decoded the ordinary way.
func (f *FSM) decode(data []byte) error {
	num := soleOp(data)
	switch w := f.cmd.Op.(type) {
	case *raftv1.Command_Create:
		if num == createField && w.Create != nil {
			proto.Reset(w.Create)
			f.cmd.Reset()
			f.cmd.Op = w
			return proto.UnmarshalOptions{Merge: true}.Unmarshal(data, &f.cmd)
		}
	case *raftv1.Command_Set:
		if num == setField && w.Set != nil {
			proto.Reset(w.Set)
			f.cmd.Reset()
			f.cmd.Op = w
			return proto.UnmarshalOptions{Merge: true}.Unmarshal(data, &f.cmd)
		}
	}
	return proto.Unmarshal(data, &f.cmd)
}

// opNumbers[n] tells whether n is the field number of an operation: a
// table, as the descriptor's lookup would cost more than the rest of
// soleOp.
var opNumbers = func() []bool {
	fields := opField.Fields()
	var top protowire.Number
	for i := range fields.Len() {
		top = max(top, fields.Get(i).Number())
	}
	t := make([]bool, top+1)
	for i := range fields.Len() {
		t[fields.Get(i).Number()] = true
	}
	return t
}()

// soleOp returns the field number of the operation an encoded Command
// names, 0 if it names none, names two different ones, has an operation's
// number with another wire type than a message's, or does not parse.
func soleOp(data []byte) protowire.Number {
	var op protowire.Number
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return 0
		}
		data = data[n:]
		n = protowire.ConsumeFieldValue(num, typ, data)
		if n < 0 {
			return 0
		}
		data = data[n:]
		if int(num) < len(opNumbers) && opNumbers[num] {
			// Another wire type than a message's makes it an unknown
			// field, not an operation: the ordinary decoding sees to it.
			if typ != protowire.BytesType || (op != 0 && op != num) {
				return 0
			}
			op = num
		}
	}
	return op
}
