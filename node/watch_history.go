package node

import (
	"sort"

	"github.com/paddock/paddock/fsm"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// entry is one event kept in the history.
type entry struct {
	// ev is the event as sent without prev_data. It is built once, in the
	// apply goroutine, and shared by every watcher that sends it: it is
	// never modified after that (protobuf messages may be marshalled
	// concurrently when nobody writes them).
	ev   *paddockv1.Event
	prev []byte
	kind kindSet
	size int // rough wire size, for the response byte budget
}

// entryOverhead approximates an event's wire size besides its path and
// data: zxid, kind, and the Stat's ten numbers.
const entryOverhead = 96

func newEntry(e fsm.Event) entry {
	k := eventKind(e.Type)
	return entry{
		ev:   &paddockv1.Event{Zxid: e.Zxid, Kind: k, Path: e.Path, Stat: e.Stat},
		prev: e.PrevData,
		kind: kindBit(k),
		size: entryOverhead + len(e.Path),
	}
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

// history is a ring of the most recent events, oldest first, in zxid
// order. It holds at most limit events and about maxBytes of paths and
// previous data (values of up to 1 MiB would otherwise let a count bound
// hold gigabytes), except that the events of one zxid are never split by
// eviction: a single entry emitting more than either bound grows the ring
// to hold them all (so that a watcher can still be served that zxid whole).
type history struct {
	buf      []entry
	head     int // position of the oldest event in buf
	n        int // events held
	limit    int
	bytes    int64 // memBytes of the events held
	maxBytes int64
}

func newHistory(limit int, maxBytes int64) *history {
	return &history{buf: make([]entry, min(limit, 1024)), limit: limit, maxBytes: maxBytes}
}

// memBytes is what e keeps alive, roughly.
func (e *entry) memBytes() int64 { return int64(e.size + len(e.prev)) }

func (r *history) at(i int) *entry { return &r.buf[(r.head+i)%len(r.buf)] }

// push appends e and returns the zxid of the newest event it evicted (0
// if none).
func (r *history) push(e entry) (evicted uint64) {
	for (r.n >= r.limit || r.bytes+e.memBytes() > r.maxBytes) && r.n > 0 && r.at(0).ev.GetZxid() != e.ev.GetZxid() {
		evicted = r.at(0).ev.GetZxid()
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
	return evicted
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
	r.head, r.n, r.bytes = 0, 0, 0
}

// after returns the position of the first event with a zxid above zxid.
func (r *history) after(zxid uint64) int {
	return sort.Search(r.n, func(i int) bool { return r.at(i).ev.GetZxid() > zxid })
}
