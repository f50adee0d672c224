package node

import (
	"context"
	"errors"
	"testing"
	"time"
)

// waiting is the number of requests waiting for id's lock.
func (l *wsLocks) waiting(id string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.m[id]; e != nil {
		return len(e.waiters)
	}
	return 0
}

// untilWaiting polls until k requests wait for id's lock.
func untilWaiting(t *testing.T, l *wsLocks, id string, k int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for l.waiting(id) != k {
		if time.Now().After(deadline) {
			t.Fatalf("%d waiters of %s, want %d", l.waiting(id), id, k)
		}
		time.Sleep(time.Millisecond)
	}
}

type acquired struct {
	token uint64
	err   error
	at    time.Time
}

func acquireAsync(l *wsLocks, ctx context.Context, id string, ttl, wait time.Duration) <-chan acquired {
	ch := make(chan acquired, 1)
	go func() {
		t, err := l.acquire(ctx, id, ttl, wait)
		ch <- acquired{t, err, time.Now()}
	}()
	return ch
}

func recvAcquired(t *testing.T, ch <-chan acquired) acquired {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(10 * time.Second):
		t.Fatal("acquire did not return")
		return acquired{}
	}
}

func TestWebSessionLocksReleaseWakesWaiter(t *testing.T) {
	l := newWSLocks(0)
	defer l.close()
	ctx := context.Background()
	t1, err := l.acquire(ctx, "s", time.Minute, time.Second)
	if err != nil || t1 == 0 {
		t.Fatalf("acquire: %d, %v", t1, err)
	}
	ch := acquireAsync(l, ctx, "s", time.Minute, 30*time.Second)
	untilWaiting(t, l, "s", 1)
	released := time.Now()
	if !l.release("s", t1) {
		t.Fatal("release: not held")
	}
	a := recvAcquired(t, ch)
	if a.err != nil || a.token == 0 || a.token == t1 {
		t.Fatalf("waiter got %d, %v (first token %d)", a.token, a.err, t1)
	}
	// Woken by the release, not by a poll: well within the wait.
	if d := a.at.Sub(released); d > time.Second {
		t.Fatalf("waiter woke %v after the release", d)
	}
	if l.release("s", t1) {
		t.Fatal("released a token twice")
	}
	if !l.holds("s", a.token) {
		t.Fatal("waiter does not hold the lock")
	}
	l.release("s", a.token)
	if n := l.size(); n != 0 {
		t.Fatalf("%d entries left after the last release", n)
	}
}

func TestWebSessionLocksFIFO(t *testing.T) {
	l := newWSLocks(0)
	defer l.close()
	ctx := context.Background()
	tok, _ := l.acquire(ctx, "s", time.Minute, time.Second)
	var chans []<-chan acquired
	for i := range 3 {
		chans = append(chans, acquireAsync(l, ctx, "s", time.Minute, 30*time.Second))
		untilWaiting(t, l, "s", i+1)
	}
	for i, ch := range chans {
		l.release("s", tok)
		a := recvAcquired(t, ch)
		if a.err != nil {
			t.Fatalf("waiter %d: %v", i, a.err)
		}
		for j := i + 1; j < len(chans); j++ {
			select {
			case <-chans[j]:
				t.Fatalf("waiter %d granted before waiter %d's release", j, i)
			default:
			}
		}
		tok = a.token
	}
	l.release("s", tok)
}

func TestWebSessionLocksLeaseExpiry(t *testing.T) {
	l := newWSLocks(0)
	defer l.close()
	ctx := context.Background()
	ttl := 200 * time.Millisecond
	start := time.Now()
	t1, _ := l.acquire(ctx, "s", ttl, time.Second)
	a := recvAcquired(t, acquireAsync(l, ctx, "s", time.Minute, 10*time.Second))
	if a.err != nil {
		t.Fatal(a.err)
	}
	if d := a.at.Sub(start); d < ttl || d > ttl+2*time.Second {
		t.Fatalf("granted %v after a lease of %v", d, ttl)
	}
	if l.holds("s", t1) || l.release("s", t1) {
		t.Fatal("the expired holder still holds")
	}
	if _, err := l.beginWrite("s", t1, false); !errors.Is(err, ErrWebSessionLockLost) {
		t.Fatalf("write with the expired token: %v, want ErrWebSessionLockLost", err)
	}
	if w, err := l.beginWrite("s", t1, true); err != nil || w.held {
		t.Fatalf("retry of an applied write: %+v, %v", w, err)
	}
}

func TestWebSessionLocksWaitTimeout(t *testing.T) {
	l := newWSLocks(0)
	defer l.close()
	ctx := context.Background()
	tok, _ := l.acquire(ctx, "s", time.Minute, time.Second)
	a := recvAcquired(t, acquireAsync(l, ctx, "s", time.Minute, 100*time.Millisecond))
	if !errors.Is(a.err, ErrWebSessionLocked) || a.token != 0 {
		t.Fatalf("timed out wait: %d, %v", a.token, a.err)
	}
	if k := l.waiting("s"); k != 0 {
		t.Fatalf("%d waiters left", k)
	}
	// A canceled wait takes nothing either.
	cctx, cancel := context.WithCancel(ctx)
	ch := acquireAsync(l, cctx, "s", time.Minute, time.Minute)
	untilWaiting(t, l, "s", 1)
	cancel()
	if a := recvAcquired(t, ch); !errors.Is(a.err, context.Canceled) {
		t.Fatalf("canceled wait: %v", a.err)
	}
	l.release("s", tok)
	if n := l.size(); n != 0 {
		t.Fatalf("%d entries left", n)
	}
}

func TestWebSessionLocksGrace(t *testing.T) {
	grace := 300 * time.Millisecond
	start := time.Now()
	l := newWSLocks(grace)
	defer l.close()
	ctx := context.Background()
	// The holder from before the failover writes with its token.
	const oldToken = 12345
	w, err := l.beginWrite("old", oldToken, false)
	if err != nil {
		t.Fatalf("write with an unknown token in the grace: %v", err)
	}
	if _, ok := l.tryHold("old", time.Minute); ok {
		t.Fatal("expiry took a lock during a write")
	}
	l.endWrite(w, true)
	if l.size() != 0 {
		t.Fatal("the write left its lock held")
	}
	if _, ok := l.tryHold("x", time.Minute); ok {
		t.Fatal("expiry took a lock in the grace")
	}
	a := recvAcquired(t, acquireAsync(l, ctx, "s", time.Minute, 10*time.Second))
	if a.err != nil {
		t.Fatal(a.err)
	}
	if d := a.at.Sub(start); d < grace {
		t.Fatalf("lock granted %v after the start of a %v grace", d, grace)
	}
	// A wait that ends in the grace fails.
	l2 := newWSLocks(time.Minute)
	defer l2.close()
	if _, err := l2.acquire(ctx, "s", time.Minute, 50*time.Millisecond); !errors.Is(err, ErrWebSessionLocked) {
		t.Fatalf("acquire in the grace: %v", err)
	}
}

func TestWebSessionLocksLeaseWaitsForWrite(t *testing.T) {
	l := newWSLocks(0)
	defer l.close()
	ctx := context.Background()
	tok, _ := l.acquire(ctx, "s", 100*time.Millisecond, time.Second)
	w, err := l.beginWrite("s", tok, false)
	if err != nil {
		t.Fatal(err)
	}
	ch := acquireAsync(l, ctx, "s", time.Minute, 10*time.Second)
	untilWaiting(t, l, "s", 1)
	// The lease ends: the write in flight keeps the lock.
	deadline := time.Now().Add(5 * time.Second)
	for {
		l.mu.Lock()
		due := l.m["s"].leaseDue
		l.mu.Unlock()
		if due {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the lease did not end")
		}
		time.Sleep(time.Millisecond)
	}
	if !l.holds("s", tok) {
		t.Fatal("the lease ended under a write in flight")
	}
	l.endWrite(w, false) // keep_lock, but the lease is over
	a := recvAcquired(t, ch)
	if a.err != nil || l.holds("s", tok) {
		t.Fatalf("after the write: waiter %v, old holder still holds: %v", a.err, l.holds("s", tok))
	}
}

func TestWebSessionLocksClose(t *testing.T) {
	l := newWSLocks(0)
	ctx := context.Background()
	tok, _ := l.acquire(ctx, "s", time.Minute, time.Second)
	ch := acquireAsync(l, ctx, "s", time.Minute, time.Minute)
	untilWaiting(t, l, "s", 1)
	l.close()
	if a := recvAcquired(t, ch); !errors.Is(a.err, ErrNotLeader) {
		t.Fatalf("waiter after close: %v", a.err)
	}
	if _, err := l.acquire(ctx, "s", time.Minute, time.Second); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("acquire after close: %v", err)
	}
	if _, err := l.beginWrite("s", tok, false); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("write after close: %v", err)
	}
	if l.release("s", tok) {
		t.Fatal("released after close")
	}
}

func TestWebSessionLocksTokens(t *testing.T) {
	seen := map[uint64]bool{}
	for range 1000 {
		tok := newLockToken()
		if tok == 0 || seen[tok] {
			t.Fatalf("token %d: zero or repeated", tok)
		}
		seen[tok] = true
	}
}

func TestWebSessionIDEncoding(t *testing.T) {
	raw := make([]byte, 16)
	for i := range raw {
		raw[i] = 0xff
	}
	for _, c := range []struct {
		bits     int
		n        int
		alphabet string
	}{{4, 32, sidAlphabet4}, {5, 26, sidAlphabet5}, {6, 22, sidAlphabet6}} {
		id := encodeSessionID(raw, c.bits)
		if len(id) != c.n {
			t.Fatalf("%d bits: %q has %d characters, want %d", c.bits, id, len(id), c.n)
		}
		if id[0] != c.alphabet[len(c.alphabet)-1] {
			t.Fatalf("%d bits: all ones encode as %q", c.bits, id)
		}
	}
	if id := encodeSessionID([]byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0, 0, 0, 0, 0, 0, 0, 0xff}, 4); id != "0123456789abcdef00000000000000ff" {
		t.Fatalf("hex: %q", id)
	}
}

// TestWebSessionLocksStaleToken: after the grace period a token the table
// does not hold (its lease ran out and the lock went free) is refused,
// even with the lock free: another request may have destroyed and
// re-created the session meanwhile, at the same version. A write without
// a token (0) still goes ahead on a free lock, and holds it only while in
// flight: a release with token 0 frees nothing.
func TestWebSessionLocksStaleToken(t *testing.T) {
	l := newWSLocks(0)
	defer l.close()
	ctx := context.Background()
	tok, err := l.acquire(ctx, "s", time.Minute, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !l.release("s", tok) {
		t.Fatal("release of the holder's token failed")
	}
	if _, err := l.beginWrite("s", tok, false); !errors.Is(err, ErrWebSessionLockLost) {
		t.Fatalf("write with a token no longer held: %v, want ErrWebSessionLockLost", err)
	}
	if _, err := l.beginWrite("s", 12345, false); !errors.Is(err, ErrWebSessionLockLost) {
		t.Fatalf("write with a token never granted: %v, want ErrWebSessionLockLost", err)
	}
	// The retry of a write that was applied (and released the lock) goes
	// ahead, holding nothing: its proposal gets its first result back.
	// Refusing it told a client "refused" of a write that was applied
	// (the robustness suite's drop-responses runs).
	if w, err := l.beginWrite("s", tok, true); err != nil || w.held {
		t.Fatalf("retry of an applied write with its released token: %+v, %v", w, err)
	}
	w, err := l.beginWrite("s", 0, false)
	if err != nil || !w.held {
		t.Fatalf("write without a token on a free lock: %+v, %v", w, err)
	}
	if l.release("s", 0) {
		t.Fatal("a release with token 0 freed the lock of a write in flight")
	}
	if _, err := l.acquire(ctx, "s", time.Minute, 50*time.Millisecond); !errors.Is(err, ErrWebSessionLocked) {
		t.Fatalf("lock granted while a write without a token was in flight: %v", err)
	}
	l.endWrite(w, true)
	if _, err := l.acquire(ctx, "s", time.Minute, time.Second); err != nil {
		t.Fatalf("lock after the write ended: %v", err)
	}
}

// TestWebSessionLocksGraceAdoptsOne: in the grace period the table
// adopts one token it does not know per session, the holder from before
// the failover; a second one (a holder whose lease had run out) is
// refused, while the first is held and after it released, until the
// grace ends. Other sessions adopt their own.
func TestWebSessionLocksGraceAdoptsOne(t *testing.T) {
	l := newWSLocks(time.Minute)
	defer l.close()
	const first, second = 111, 222
	w, err := l.beginWrite("s", first, false)
	if err != nil {
		t.Fatalf("write with the first unknown token: %v", err)
	}
	if _, err := l.beginWrite("s", second, false); !errors.Is(err, ErrWebSessionLockLost) {
		t.Fatalf("write with a second unknown token while the first holds: %v, want ErrWebSessionLockLost", err)
	}
	l.endWrite(w, true) // released
	if _, err := l.beginWrite("s", second, false); !errors.Is(err, ErrWebSessionLockLost) {
		t.Fatalf("write with a second unknown token after the first released: %v, want ErrWebSessionLockLost", err)
	}
	// The first holder still may (a retry, a later write with keep_lock).
	w, err = l.beginWrite("s", first, false)
	if err != nil {
		t.Fatalf("the adopted token again: %v", err)
	}
	l.endWrite(w, true)
	// A write without a token is no holder: it goes ahead on a free lock.
	w, err = l.beginWrite("s", 0, false)
	if err != nil {
		t.Fatalf("write without a token: %v", err)
	}
	l.endWrite(w, true)
	// Another session adopts its own.
	w, err = l.beginWrite("t", second, false)
	if err != nil {
		t.Fatalf("write of another session with the second token: %v", err)
	}
	l.endWrite(w, true)
}

// TestWebSessionLocksReadRetry: a locked read retried with its request id
// (its answer lost) gets the lock it was granted back at once, whether
// granted free or handed over from a waiter; another request id, or no
// id, waits; once released, the id names no lock any more.
func TestWebSessionLocksReadRetry(t *testing.T) {
	l := newWSLocks(0)
	defer l.close()
	ctx := context.Background()
	r1 := WithRequestID(ctx, []byte("read-1"))
	t1, err := l.acquire(r1, "s", time.Minute, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := l.acquire(r1, "s", time.Minute, time.Millisecond); err != nil || got != t1 {
		t.Fatalf("the read retried = %d, %v; want its token %d at once", got, err, t1)
	}
	for _, c := range []context.Context{WithRequestID(ctx, []byte("read-2")), ctx} {
		if _, err := l.acquire(c, "s", time.Minute, 20*time.Millisecond); !errors.Is(err, ErrWebSessionLocked) {
			t.Fatalf("another read = %v, want ErrWebSessionLocked", err)
		}
	}

	// A waiter granted the lock by the release is found by its id too.
	r3 := WithRequestID(ctx, []byte("read-3"))
	ch := acquireAsync(l, r3, "s", time.Minute, 5*time.Second)
	untilWaiting(t, l, "s", 1)
	if !l.release("s", t1) {
		t.Fatal("release of the holder's token failed")
	}
	a := recvAcquired(t, ch)
	if a.err != nil {
		t.Fatal(a.err)
	}
	if got, err := l.acquire(r3, "s", time.Minute, time.Millisecond); err != nil || got != a.token {
		t.Fatalf("the waiter's read retried = %d, %v; want its token %d", got, err, a.token)
	}
	if !l.release("s", a.token) {
		t.Fatal("release of the waiter's token failed")
	}
	// Released: the same id takes the lock anew, with a new token.
	t4, err := l.acquire(r3, "s", time.Minute, time.Second)
	if err != nil || t4 == a.token {
		t.Fatalf("read with a released lock's id = %d, %v; want a new token", t4, err)
	}

	// An attempt and its retry both queued behind another holder get the
	// same token when the first of them is granted the lock.
	r5 := WithRequestID(ctx, []byte("read-5"))
	first := acquireAsync(l, r5, "s", time.Minute, 5*time.Second)
	untilWaiting(t, l, "s", 1)
	retry := acquireAsync(l, r5, "s", time.Minute, 5*time.Second)
	untilWaiting(t, l, "s", 2)
	other := acquireAsync(l, WithRequestID(ctx, []byte("read-6")), "s", time.Minute, 5*time.Second)
	untilWaiting(t, l, "s", 3)
	if !l.release("s", t4) {
		t.Fatal("release failed")
	}
	a1, a2 := recvAcquired(t, first), recvAcquired(t, retry)
	if a1.err != nil || a2.err != nil || a1.token != a2.token {
		t.Fatalf("queued attempts of one read = %v / %v; want one token", a1, a2)
	}
	untilWaiting(t, l, "s", 1) // the other read still waits
	// One attempt failing gives up its share, not the lock the other
	// answered; the last one releases it.
	if l.drop("s", a1.token) || !l.holds("s", a1.token) {
		t.Fatal("drop of a shared token released the lock")
	}
	if !l.drop("s", a1.token) {
		t.Fatal("drop of the last attempt's token did not release the lock")
	}
	if a := recvAcquired(t, other); a.err != nil || a.token == a1.token {
		t.Fatalf("the other read after the release = %v; want the lock", a)
	}
}
