package node

import (
	"sort"
	"sync/atomic"

	"github.com/paddock/paddock/fsm"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// entry is one event kept in the history, compact: its path and previous
// data are shared with the state machine's tree (or the znode versions it
// replaced), its Stat is a plain value, and nothing else is allocated for
// it. The API message is built when a watcher sends the event (history
// caches it for the newest events).
type entry struct {
	zxid uint64
	path string
	prev []byte
	stat fsm.Stat // zero for deletions
	kind paddockv1.EventKind
}

// entryOverhead approximates an event's wire size besides its path and
// data: zxid, kind, and the Stat's ten numbers.
const entryOverhead = 96

func newEntry(e fsm.Event) entry {
	return entry{zxid: e.Zxid, path: e.Path, prev: e.PrevData, stat: e.Stat, kind: eventKind(e.Type)}
}

// size is e's rough wire size without previous data, for the response
// byte budget.
func (e *entry) size() int { return entryOverhead + len(e.path) }

// message builds e as sent without prev_data.
func (e *entry) message() *paddockv1.Event {
	m := &paddockv1.Event{Zxid: e.zxid, Kind: e.kind, Path: e.path}
	if e.kind != paddockv1.EventKind_EVENT_KIND_DELETED {
		m.Stat = e.stat.Proto()
	}
	return m
}

// eventKind maps the fsm's event types to the API's kinds.
func eventKind(t fsm.EventType) paddockv1.EventKind {
	switch t {
	case fsm.EventCreated:
		return paddockv1.EventKind_EVENT_KIND_CREATED
	case fsm.EventDataChanged:
		return paddockv1.EventKind_EVENT_KIND_DATA_CHANGED
	case fsm.EventDeleted:
		return paddockv1.EventKind_EVENT_KIND_DELETED
	case fsm.EventChildrenChanged:
		return paddockv1.EventKind_EVENT_KIND_CHILDREN_CHANGED
	}
	return paddockv1.EventKind_EVENT_KIND_UNSPECIFIED
}

// hotEvents is how many of the newest events keep their built message in
// history.msgs: watchers that keep up send those, and share one message
// per event however many they are. Older events, sent only to a watcher
// that resumes from the past or lags, are built per send and not kept, so
// the cache stays small however long the history.
const hotEvents = 4096

// history is a ring of the most recent events, oldest first, in zxid
// order. It holds at most limit events and about maxBytes of paths and
// previous data (values of up to 1 MiB would otherwise let a count bound
// hold gigabytes), except that the events of one zxid are never split by
// eviction: a single entry emitting more than either bound grows the ring
// to hold them all (so that a watcher can still be served that zxid whole).
//
// Its owner (the hub) serializes push, grow and reset (under its write
// lock) with everything else; message may run concurrently with message
// (under the read lock), hence the atomic cache slots.
type history struct {
	buf      []entry
	head     int // position of the oldest event in buf
	n        int // events held
	limit    int
	bytes    int64 // memBytes of the events held
	maxBytes int64
	// pushed counts the events pushed since the last reset: the newest
	// held event is number pushed-1, the oldest pushed-n.
	pushed uint64
	// msgs caches the messages of the newest hotEvents events: event
	// number a in msgs[a%hotEvents]. Each is built once and never
	// modified (protobuf messages may be marshalled concurrently when
	// nobody writes them).
	msgs []atomic.Pointer[paddockv1.Event]
}

func newHistory(limit int, maxBytes int64) *history {
	return &history{
		buf: make([]entry, min(limit, 1024)), limit: limit, maxBytes: maxBytes,
		msgs: make([]atomic.Pointer[paddockv1.Event], hotEvents),
	}
}

// memBytes is what e keeps alive, roughly.
func (e *entry) memBytes() int64 { return int64(e.size() + len(e.prev)) }

func (r *history) at(i int) *entry { return &r.buf[(r.head+i)%len(r.buf)] }

// push appends e and returns the zxid of the newest event it evicted (0
// if none).
func (r *history) push(e entry) (evicted uint64) {
	for (r.n >= r.limit || r.bytes+e.memBytes() > r.maxBytes) && r.n > 0 && r.at(0).zxid != e.zxid {
		evicted = r.at(0).zxid
		r.bytes -= r.at(0).memBytes()
		*r.at(0) = entry{} // let the event's data go
		r.head = (r.head + 1) % len(r.buf)
		r.n--
	}
	if r.n == len(r.buf) {
		r.grow()
	}
	*r.at(r.n) = e
	r.n++
	r.bytes += e.memBytes()
	// The slot's previous event is now hotEvents behind: it goes cold.
	r.msgs[r.pushed%hotEvents].Store(nil)
	r.pushed++
	return evicted
}

// message returns the i-th held event's message, shared if it is hot.
func (r *history) message(i int) *paddockv1.Event {
	e := r.at(i)
	a := r.pushed - uint64(r.n) + uint64(i)
	if r.pushed-a > hotEvents {
		return e.message()
	}
	slot := &r.msgs[a%hotEvents]
	if m := slot.Load(); m != nil {
		return m
	}
	m := e.message()
	if !slot.CompareAndSwap(nil, m) {
		return slot.Load() // another watcher built it first
	}
	return m
}

// grow doubles the buffer (up to the limit, or past it for one giant
// zxid), keeping the order.
func (r *history) grow() {
	size := max(2*len(r.buf), 16)
	if len(r.buf) < r.limit {
		size = min(size, r.limit)
	}
	buf := make([]entry, size)
	for i := range r.n {
		buf[i] = *r.at(i)
	}
	r.buf, r.head = buf, 0
}

// reset drops every event.
func (r *history) reset() {
	clear(r.buf)
	for i := range r.msgs {
		r.msgs[i].Store(nil)
	}
	r.head, r.n, r.bytes, r.pushed = 0, 0, 0, 0
}

// after returns the position of the first event with a zxid above zxid.
func (r *history) after(zxid uint64) int {
	return sort.Search(r.n, func(i int) bool { return r.at(i).zxid > zxid })
}
