package node

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// deadlines is the leader's generic deadline tracker: a set of keyed
// deadlines of one kind (sessions, TTL nodes, ...), each with a value the
// kind needs to act on it. It is active only while this node leads and
// has applied its barrier (leaderTimers.run): at term start it is rebuilt
// from the replicated state (the kind's load), and when leadership ends it
// forgets everything, since the next leader rebuilds its own. It never
// changes state itself: a due key is fired, and the kind's fire proposes
// a command through raft. A fire that fails (no quorum, a timeout) leaves
// the key due, and it is fired again at the next tick; a fire that
// succeeds removes the key, unless the key was set again meanwhile.
//
// A new kind is a key type, a load (the deadlines a new leader starts
// with, read from the fsm), and a fire (the command to propose); the
// kind keeps the set current by calling set and remove as it learns of
// changes (from the commands this leader applies, or the fsm's events).
type deadlines[K comparable, V any] struct {
	name string
	// load lists every key's deadline and value at term start. It runs
	// under mu (so no set can slip between it and activation) and may
	// read the fsm, never wait on raft.
	load func(now time.Time) map[K]deadline[V]
	// fire proposes what a due key calls for. nil means done (the
	// command was applied, or refused by the state machine because the
	// key no longer needs it); an error means try again.
	fire func(ctx context.Context, k K, v V) error

	// on is read without mu by hot paths (the fsm's event sink) to skip
	// all work while this node does not lead.
	on atomic.Bool

	mu     sync.Mutex
	active bool
	at     map[K]*deadlineEntry[V]
	// floor holds, while inactive, the earliest deadline a key may get
	// when the tracker starts (a session renewed while the barrier was
	// pending must not lose that renewal).
	floor map[K]time.Time
	// gen numbers every set, so a fire's outcome knows whether its key
	// was set again (or removed and set again) meanwhile.
	gen uint64
}

// deadline is one key's deadline and the value its fire needs.
type deadline[V any] struct {
	At  time.Time
	Val V
}

type deadlineEntry[V any] struct {
	deadline[V]
	gen    uint64
	firing bool
}

// errFiring means the key is due and its command is being proposed: it
// can no longer be extended.
var errFiring = errors.New("node: deadline passed")

func newDeadlines[K comparable, V any](name string, load func(time.Time) map[K]deadline[V], fire func(context.Context, K, V) error) *deadlines[K, V] {
	return &deadlines[K, V]{name: name, load: load, fire: fire, floor: map[K]time.Time{}}
}

// start rebuilds the set from the kind's state: each key at its loaded
// deadline, or at its floor if that is later.
func (d *deadlines[K, V]) start(now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	// on before load: an event the sink sees from now on waits for mu and
	// lands on top of what load read.
	d.on.Store(true)
	d.at = map[K]*deadlineEntry[V]{}
	for k, dl := range d.load(now) {
		if f, ok := d.floor[k]; ok && f.After(dl.At) {
			dl.At = f
		}
		d.at[k] = &deadlineEntry[V]{deadline: dl}
	}
	d.floor = map[K]time.Time{}
	d.active = true
}

// stop forgets every deadline: leadership ended.
func (d *deadlines[K, V]) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.on.Store(false)
	d.active = false
	d.at = nil
	d.floor = map[K]time.Time{}
}

// set gives k a deadline, replacing any it had, even one being fired
// (the running fire's outcome then leaves the new deadline alone). It
// does nothing while inactive: start loads the state.
func (d *deadlines[K, V]) set(k K, at time.Time, v V) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.active {
		return
	}
	e := d.at[k]
	if e == nil {
		e = &deadlineEntry[V]{}
		d.at[k] = e
	}
	d.gen++
	e.At, e.Val, e.firing, e.gen = at, v, false, d.gen
}

// extend moves k's deadline to at, for a renewal (a key the tracker
// does not hold yet is added with a zero value: the renewal may have
// overtaken the hook that adds it). While inactive it records at as the
// key's floor for start. It fails with errFiring once the key is due.
func (d *deadlines[K, V]) extend(k K, at time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.active {
		if f, ok := d.floor[k]; !ok || at.After(f) {
			d.floor[k] = at
		}
		return nil
	}
	e := d.at[k]
	if e == nil {
		d.gen++
		e = &deadlineEntry[V]{gen: d.gen}
		d.at[k] = e
	}
	if e.firing {
		return errFiring
	}
	e.At = at
	return nil
}

// remove drops k: whatever it timed is gone.
func (d *deadlines[K, V]) remove(k K) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.active {
		delete(d.at, k)
	}
}

// get returns k's deadline, and false if the tracker holds none for it
// (or is inactive).
func (d *deadlines[K, V]) get(k K) (deadline[V], bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.at[k]
	if !ok {
		return deadline[V]{}, false
	}
	return e.deadline, true
}

// snapshot returns the keys not being fired, with their deadlines.
func (d *deadlines[K, V]) snapshot() map[K]deadline[V] {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[K]deadline[V], len(d.at))
	for k, e := range d.at {
		if !e.firing {
			out[k] = e.deadline
		}
	}
	return out
}

// tick fires every key past its deadline, each in its own goroutine
// counted by wg.
func (d *deadlines[K, V]) tick(ctx context.Context, now time.Time, wg *sync.WaitGroup) {
	type due struct {
		k   K
		v   V
		gen uint64
	}
	var fired []due
	d.mu.Lock()
	for k, e := range d.at {
		if !e.firing && now.After(e.At) {
			e.firing = true
			fired = append(fired, due{k, e.Val, e.gen})
		}
	}
	d.mu.Unlock()
	for _, f := range fired {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := d.fire(ctx, f.k, f.v)
			d.fired(f.k, f.gen, err)
		}()
	}
}

// fired records a fire's outcome: done keys go, failed ones are due again.
func (d *deadlines[K, V]) fired(k K, gen uint64, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.at[k]
	if !d.active || e == nil || e.gen != gen {
		return // set again, or removed, meanwhile
	}
	if err != nil {
		e.firing = false
		return
	}
	delete(d.at, k)
}

// timerSet is one kind of deadline as the leader's loop sees it.
type timerSet interface {
	start(now time.Time)
	stop()
	tick(ctx context.Context, now time.Time, wg *sync.WaitGroup)
}

// leaderTimers runs every kind of deadline on one timer loop while this
// node leads. after, if set, runs after each tick's fires were launched
// (the sessions' checkpoints).
type leaderTimers struct {
	sets  []timerSet
	after []func(ctx context.Context, now time.Time)
	every time.Duration
}

// run starts every set, ticks them until ctx ends (leadership lost or
// shutdown), waits for the fires in flight and stops the sets.
func (l *leaderTimers) run(ctx context.Context) {
	now := time.Now()
	for _, s := range l.sets {
		s.start(now)
	}
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		for _, s := range l.sets {
			s.stop()
		}
	}()
	tick := time.NewTicker(l.every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			for _, s := range l.sets {
				s.tick(ctx, now, &wg)
			}
			for _, f := range l.after {
				f(ctx, now)
			}
		}
	}
}
