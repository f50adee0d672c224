package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock/paddock/client"
)

// What `paddock elect`, `paddock lock` and `paddock farm exec` share: a
// session kept alive, a command (CMD) run while the session leads an
// election or holds a lock, and when to stop it.
//
// CMD stays in paddock's process group, so that whatever stops the group
// (a terminal's Ctrl-C, a SIGSTOP of a paused VM) stops both alike; the
// signals paddock itself receives are forwarded to CMD. On Linux, CMD is
// SIGKILLed if paddock dies (kill -9): nothing would stop it once
// leadership is lost otherwise.

// exitLost is the exit status when the leadership or lock was lost (or
// could not be confirmed for a session timeout) while CMD ran: CMD was
// stopped. It is sysexits' EX_TEMPFAIL: try again later.
const exitLost = 75

// holdSignals are forwarded to CMD. SIGINT and SIGTERM also start the
// --grace countdown to SIGKILL.
var holdSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP}

// holdFlags are the flags of the commands that run CMD while holding.
type holdFlags struct {
	sessionTimeout time.Duration
	grace          time.Duration
	lockDelay      time.Duration
}

// addHoldFlags registers --session-timeout, --grace and --lock-delay.
func addHoldFlags(cmd *cobra.Command) *holdFlags {
	f := &holdFlags{}
	fs := cmd.Flags()
	fs.DurationVar(&f.sessionTimeout, "session-timeout", 10*time.Second, "timeout of the session that holds; CMD is stopped when it cannot be confirmed for this long")
	fs.DurationVar(&f.grace, "grace", 10*time.Second, "time CMD gets to exit after SIGTERM before SIGKILL")
	fs.DurationVar(&f.lockDelay, "lock-delay", 0, "the session's lock-delay: if it expires while holding, no one gets the slot for this long (default: the agent's --lock-delay; 0s: none)")
	return f
}

// check refuses durations that make no sense.
func (f *holdFlags) check() error {
	if f.sessionTimeout <= 0 {
		return fmt.Errorf("bad --session-timeout %v: want > 0", f.sessionTimeout)
	}
	if f.grace < 0 {
		return fmt.Errorf("bad --grace %v: want >= 0", f.grace)
	}
	if f.lockDelay < 0 {
		return fmt.Errorf("bad --lock-delay %v: want >= 0", f.lockDelay)
	}
	return nil
}

// sessionOptions are the options of the holding session: its state
// changes logged on stderr, and --lock-delay when given (0s asks for
// none, unset takes the agent's default).
func (f *holdFlags) sessionOptions(cmd *cobra.Command, prefix string) []client.SessionOption {
	stderr := cmd.ErrOrStderr()
	opts := []client.SessionOption{client.OnConnectionState(func(cs client.ConnState) {
		switch cs.State {
		case client.StateDisconnected:
			fmt.Fprintf(stderr, "paddock: %s: session disconnected since %s, retrying\n", prefix, cs.Since.Format(time.RFC3339))
		case client.StateConnected:
			fmt.Fprintf(stderr, "paddock: %s: session connected again\n", prefix)
		}
	})}
	if cmd.Flags().Changed("lock-delay") {
		d := f.lockDelay
		if d == 0 {
			d = -1
		}
		opts = append(opts, client.WithLockDelay(d))
	}
	return opts
}

// commandArgs checks a command line `NAME -- CMD...`: one argument
// (named name in messages) before the "--", and a CMD after it.
func commandArgs(name string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		at := cmd.ArgsLenAtDash()
		switch {
		case at < 0:
			return fmt.Errorf("paddock: want %s -- CMD [ARG...]: the command to run goes after --", name)
		case at != 1:
			return fmt.Errorf("paddock: want %s -- CMD [ARG...]: %d arguments before --: %q", name, at, args[:at])
		case at == len(args):
			return fmt.Errorf("paddock: want %s -- CMD [ARG...]: no command after --", name)
		}
		return nil
	}
}

// holding is a leadership or a lock that a session holds, as runHeld
// needs it.
type holding struct {
	// what names it in messages: "election batch", "lock deploy".
	what string
	// env is added to CMD's environment: the key and the token.
	env []string
	// granted is when the request that was granted it was sent: the last
	// time it was known held.
	granted time.Time
	// check says, with a linearizable read, whether the token still holds
	// and, when it does not, who holds instead.
	check func(ctx context.Context) (held bool, why string, err error)
	// wait returns after d at most, early when the holding may have
	// changed (PollLeader); nil waits d.
	wait func(ctx context.Context, d time.Duration)
	// release gives it up at once (Resign, Release); a token that no
	// longer holds is not an error.
	release func(ctx context.Context) error
}

// holder runs CMD while a session holds.
type holder struct {
	c       *client.Client
	s       *client.Session
	grace   time.Duration
	timeout time.Duration // --timeout: bounds the release and the close
	prefix  string        // "elect batch": starts every message
	// endpoints is given to CMD as PADDOCK_ENDPOINTS, so that the paddock
	// commands it runs (a fenced write) reach the same cluster.
	endpoints string
	stdin     io.Reader
	stdout    io.Writer
	stderr    io.Writer
	sigs      <-chan os.Signal // forwarded to CMD
}

// newHolder returns a holder for cmd's streams and o's endpoints and
// --timeout, catching holdSignals until stop is called.
func newHolder(cmd *cobra.Command, o *clientOptions, c *client.Client, s *client.Session, grace time.Duration, prefix string) (h *holder, stop func()) {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, holdSignals...)
	return &holder{c: c, s: s, grace: grace, timeout: o.timeout, prefix: prefix, endpoints: o.endpoints,
		stdin: cmd.InOrStdin(), stdout: cmd.OutOrStdout(), stderr: cmd.ErrOrStderr(), sigs: sigs}, func() { signal.Stop(sigs) }
}

// heldResult is how CMD's run ended.
type heldResult struct {
	code int    // CMD's exit status, 128+N when killed by signal N
	lost string // why the holding was lost (CMD was then stopped), "" if not
}

// exitError is the command's error for r: nil for status 0, else the
// status (the messages have been printed).
func (r heldResult) exitError() error {
	switch {
	case r.lost != "":
		return exitCodeError(exitLost)
	case r.code != 0:
		return exitCodeError(r.code)
	}
	return nil
}

// run starts argv and waits for its end, forwarding signals, and stops it
// (SIGTERM, then SIGKILL after grace) when the holding is lost: the check
// says another holds, the session ended, or no check succeeded for a
// session timeout (it may have expired unseen: Curator's rule for a
// suspended connection). It does not release the holding.
func (hd *holder) run(h *holding, argv []string) (heldResult, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), h.env...)
	if hd.endpoints != "" {
		cmd.Env = append(cmd.Env, "PADDOCK_ENDPOINTS="+hd.endpoints)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = hd.stdin, hd.stdout, hd.stderr
	cmd.SysProcAttr = childSysProcAttr()
	// Output copied through pipes (not a terminal or file) is not waited
	// for long once CMD has exited: a grandchild may hold it.
	cmd.WaitDelay = time.Second
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lost := hd.watch(ctx, h)
	// Pdeathsig fires when the thread that started CMD ends, not the
	// process: that thread is kept (locked to this goroutine) until CMD
	// has ended.
	started := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		cmd.Wait()
		close(done)
	}()
	if err := <-started; err != nil {
		return heldResult{code: startFailure(err)}, fmt.Errorf("%s: %w", hd.prefix, err)
	}

	var res heldResult
	var kill <-chan time.Time
	stopping := func(sig os.Signal) {
		cmd.Process.Signal(sig)
		if kill == nil && (sig == syscall.SIGINT || sig == syscall.SIGTERM) {
			kill = time.After(hd.grace)
		}
	}
	for {
		select {
		case <-done:
			res.code = exitStatus(cmd.ProcessState)
			return res, nil
		case why := <-lost:
			lost = nil
			res.lost = why
			fmt.Fprintf(hd.stderr, "paddock: %s: %s: stopping the command (SIGTERM, SIGKILL after %v)\n", hd.prefix, why, hd.grace)
			stopping(syscall.SIGTERM)
		case sig := <-hd.sigs:
			stopping(sig)
		case <-kill:
			cmd.Process.Signal(syscall.SIGKILL)
		}
	}
}

// startFailure is the shell's status for a command that could not be
// started: 127 not found, 126 otherwise.
func startFailure(err error) int {
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
		return 127
	}
	return 126
}

// exitStatus is a finished process's status as a shell reports it:
// its exit code, or 128+N when signal N killed it.
func exitStatus(st *os.ProcessState) int {
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return st.ExitCode()
}

// watch reports on the returned channel, once, why h is no longer held,
// until ctx ends. It checks h at once and then every quarter of the
// session timeout (waiting on h.wait in between), and fails it when the
// session ends or when no check has succeeded for a whole session
// timeout, counted from when the last successful check (or the grant)
// was sent.
func (hd *holder) watch(ctx context.Context, h *holding) chan string {
	lost := make(chan string, 1)
	report := func(why string) {
		select {
		case lost <- why:
		default:
		}
	}
	timeout := hd.s.Timeout()
	interval := max(timeout/4, 20*time.Millisecond)
	var (
		mu        sync.Mutex
		confirmed = h.granted
		lastErr   error
	)
	wait := h.wait
	if wait == nil {
		wait = func(ctx context.Context, d time.Duration) { sleepCtx(ctx, d) }
	}
	go func() {
		// The first check goes at once: the grant may be up to a Campaign
		// or Acquire poll old.
		for first := true; ctx.Err() == nil; first = false {
			if !first {
				start := time.Now()
				wait(ctx, interval)
				// A poll that returns at once (a lagging node) does not
				// make this a busy loop.
				sleepCtx(ctx, interval/4-time.Since(start))
			}
			sent := time.Now()
			cctx, cancel := context.WithTimeout(ctx, timeout)
			held, why, err := h.check(cctx)
			cancel()
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				mu.Lock()
				lastErr = err
				mu.Unlock()
			case held:
				mu.Lock()
				confirmed, lastErr = sent, nil
				mu.Unlock()
			default:
				report(why)
				return
			}
		}
	}()
	go func() {
		tick := time.NewTicker(min(interval/2, 100*time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-hd.s.Done():
				report(fmt.Sprintf("session %d ended: %v", hd.s.ID(), hd.s.Err()))
				return
			case <-tick.C:
			}
			mu.Lock()
			since, err := time.Since(confirmed), lastErr
			mu.Unlock()
			if since > timeout {
				why := fmt.Sprintf("%s not confirmed for %v, more than the session timeout %v: the session may have expired", h.what, since.Round(time.Millisecond), timeout)
				if err != nil {
					why += " (last check: " + cliError(err).Error() + ")"
				}
				report(why)
				return
			}
		}
	}()
	return lost
}

// finish releases h (when CMD ended by itself or was stopped) and closes
// the session, within --timeout in all. A release or close that fails is
// said on stderr: the session then ends by expiring.
func (hd *holder) finish(h *holding) {
	ctx, cancel := context.WithTimeout(context.Background(), hd.timeout)
	defer cancel()
	if h != nil && h.release != nil {
		if err := h.release(ctx); err != nil && !sessionGone(err) {
			fmt.Fprintf(hd.stderr, "paddock: %s: release: %v\n", hd.prefix, cliError(err))
		}
	}
	if err := hd.s.Close(ctx); err != nil {
		fmt.Fprintf(hd.stderr, "paddock: %s: close session %d: %v (it expires after its timeout)\n", hd.prefix, hd.s.ID(), cliError(err))
	}
}

// sessionGone reports an error saying the token or its session is gone
// already: nothing left to release.
func sessionGone(err error) bool {
	return status.Code(err) == codes.FailedPrecondition || status.Code(err) == codes.NotFound
}

// sleepCtx waits d (nothing when d <= 0) or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// waitTurn calls try (a Campaign or an Acquire that waits up to its own
// timeout) until it is granted, the session ends, or a signal arrives
// (interrupted true: the caller gives up its place and exits).
// Unavailable (no leader, a node restarting) and a call that ran out of
// time are retried; any other error is returned.
func (hd *holder) waitTurn(try func(ctx context.Context) (granted bool, err error)) (interrupted bool, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := make(chan struct{})
	var sig os.Signal // set by the goroutine before it ends
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		select {
		case sig = <-hd.sigs:
			cancel()
		case <-hd.s.Done():
			cancel()
		case <-stop:
		}
	}()
	// A signal that came with the grant still interrupts.
	defer func() {
		close(stop)
		<-ended
		if sig != nil {
			interrupted, err = true, nil
		}
	}()
	for {
		start := time.Now()
		granted, err := try(ctx)
		code := status.Code(err)
		switch {
		case err == nil && granted:
			return false, nil
		case ctx.Err() != nil && hd.s.Err() == nil:
			return true, nil // the signal; the deferred check confirms it
		case hd.s.Err() != nil:
			return false, fmt.Errorf("session %d ended while waiting: %w", hd.s.ID(), hd.s.Err())
		case err == nil:
			// Not yet: the call waited its time. One that returns at once
			// is not called in a busy loop.
			sleepCtx(ctx, 100*time.Millisecond-time.Since(start))
			continue
		case code == codes.Unavailable || code == codes.DeadlineExceeded:
			fmt.Fprintf(hd.stderr, "paddock: %s: %v, retrying\n", hd.prefix, cliError(err))
			sleepCtx(ctx, 200*time.Millisecond)
			continue
		}
		return false, err
	}
}
