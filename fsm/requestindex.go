package fsm

import "hash/maphash"

// requestIndex finds the request id table's entries by key: an
// open-addressing hash table with linear probing and backward-shift
// deletion. The table's churn (every add evicts the oldest entry once it
// is full) leaves no tombstones this way: Go's map keeps about 70 bytes
// per entry under that churn, twice what it needs when freshly filled;
// this keeps a pointer per slot at a load of at most 3/4 (about 21 bytes
// per entry at 100,000 entries). The seed is random, so ids chosen to
// collide cannot make probes long; the table's contents, not its layout,
// decide everything.
type requestIndex struct {
	seed  maphash.Seed
	slots []*request // a power of two long, or empty
	n     int
}

// minIndexSlots is the smallest table allocated; it never shrinks below.
const minIndexSlots = 64

func newRequestIndex() *requestIndex { return &requestIndex{seed: maphash.MakeSeed()} }

func (x *requestIndex) len() int { return x.n }

func (x *requestIndex) home(key string) int {
	return int(maphash.String(x.seed, key) & uint64(len(x.slots)-1))
}

// find returns the slot holding key, or the empty slot ending its probe.
func (x *requestIndex) find(key string) int {
	mask := len(x.slots) - 1
	i := x.home(key)
	for x.slots[i] != nil && x.slots[i].key() != key {
		i = (i + 1) & mask
	}
	return i
}

// get returns the entry with key, nil if none.
func (x *requestIndex) get(key string) *request {
	if x.n == 0 {
		return nil
	}
	return x.slots[x.find(key)]
}

// put adds r, replacing the entry with the same key if there is one.
func (x *requestIndex) put(r *request) {
	if (x.n+1)*4 > len(x.slots)*3 {
		x.resize(max(2*len(x.slots), minIndexSlots))
	}
	i := x.find(r.key())
	if x.slots[i] == nil {
		x.n++
	}
	x.slots[i] = r
}

// delete removes the entry with key, if any, and moves the entries after
// it back so that no probe crosses an empty slot to reach its entry.
func (x *requestIndex) delete(key string) {
	if x.n == 0 {
		return
	}
	i := x.find(key)
	if x.slots[i] == nil {
		return
	}
	x.slots[i] = nil
	x.n--
	mask := len(x.slots) - 1
	for j := (i + 1) & mask; x.slots[j] != nil; j = (j + 1) & mask {
		// The entry at j may fill the hole at i unless its home lies
		// cyclically in (i, j].
		if h := x.home(x.slots[j].key()); (j-h)&mask >= (j-i)&mask {
			x.slots[i], x.slots[j] = x.slots[j], nil
			i = j
		}
	}
	if len(x.slots) > minIndexSlots && x.n*8 < len(x.slots) {
		x.resize(len(x.slots) / 2)
	}
}

func (x *requestIndex) resize(size int) {
	old := x.slots
	x.slots = make([]*request, size)
	for _, r := range old {
		if r != nil {
			x.slots[x.find(r.key())] = r
		}
	}
}
