package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/paddock/paddock/client"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

func newLockCmd() *cobra.Command {
	var (
		limit uint32
		value string
	)
	cmd := &cobra.Command{
		Use:   "lock NAME [-n N] [--value V] [--session-timeout D] [--grace D] [--lock-delay D] -- CMD [ARG...]",
		Short: "Run CMD while holding the lock NAME (one of its N slots with -n)",
		Long: `Wait for the lock NAME with a new session, run CMD holding it with
PADDOCK_LOCK_KEY (the holder's znode) and PADDOCK_LOCK_TOKEN (its fencing
token, for tree writes' --fence locks/NAME:TOKEN) and PADDOCK_ENDPOINTS
(lock's endpoints) in its environment, then
release it and exit with CMD's status (128+N if signal N killed it), as
etcdctl lock and consul lock do. With -n N the lock is a semaphore: N hold
it at once. The first holder fixes N; another N is refused while the lock
is held or waited for.

CMD runs in paddock's process group; SIGINT, SIGTERM and SIGHUP are
forwarded to it. When the lock is lost while CMD runs (the session ended,
or no check confirmed it for a whole --session-timeout: the session may
have expired unseen), lock stops CMD (SIGTERM, then SIGKILL after --grace),
says why on stderr and exits 75. A signal while waiting leaves the line
and exits 0.`,
		Args: commandArgs("NAME"),
	}
	o := newClientOptions(cmd)
	cmd.Flags().Uint32VarP(&limit, "limit", "n", 1, "how many may hold the lock at once (a semaphore)")
	cmd.Flags().StringVar(&value, "value", "", "the holder's value, for people reading the lock")
	hf := addHoldFlags(cmd)
	cmd.RunE = runE(func(cmd *cobra.Command, args []string) error {
		if err := hf.check(); err != nil {
			return err
		}
		if limit == 0 {
			return fmt.Errorf("bad -n %d: want >= 1", limit)
		}
		c, err := o.dial(cmd)
		if err != nil {
			return err
		}
		defer c.Close()
		l := lockRun{o: o, hf: hf, name: args[0], limit: limit, value: []byte(value), prefix: "lock " + args[0]}
		return l.run(cmd, c, args[cmd.ArgsLenAtDash():], nil)
	})
	return cmd
}

// lockRun is one `paddock lock` or `paddock farm exec`: take a slot of a
// lock, run CMD, give it back.
type lockRun struct {
	o      *clientOptions
	hf     *holdFlags
	name   string
	limit  uint32
	value  []byte
	prefix string
}

// heldHooks are what farm exec does around CMD while holding: before
// runs once the lock is held (an error stops there: CMD does not run);
// after runs once CMD has ended or been stopped, or before failed, and
// before the release.
type heldHooks struct {
	before func() error
	after  func() error
}

// run waits for the lock, runs argv holding it and releases it, with the
// exit status of `paddock lock`.
func (l *lockRun) run(cmd *cobra.Command, c *client.Client, argv []string, hooks *heldHooks) error {
	ctx, cancel := l.o.opContext(cmd)
	s, err := c.NewSession(ctx, l.hf.sessionTimeout, l.hf.sessionOptions(cmd, l.prefix)...)
	cancel()
	if err != nil {
		return err
	}
	hd, stop := newHolder(cmd, l.o, c, s, l.hf.grace, l.prefix)
	defer stop()

	var (
		place   *paddockv1.Contender
		granted time.Time
	)
	poll := waitPoll(s.Timeout())
	interrupted, err := hd.waitTurn(func(ctx context.Context) (bool, error) {
		ctx, cancel := context.WithTimeout(ctx, poll+l.o.timeout)
		defer cancel()
		sent := time.Now()
		resp, err := c.Acquire(ctx, &paddockv1.AcquireRequest{Name: l.name, SessionId: s.ID(), Limit: l.limit, TimeoutMs: poll.Milliseconds(), Value: l.value})
		if err != nil {
			return false, err
		}
		place, granted = resp.GetHolder(), sent
		return resp.GetAcquired(), nil
	})
	var h *holding
	if place != nil {
		h = &holding{
			what:    "lock " + l.name,
			granted: granted,
			env:     heldEnv(envLockKey, envLockToken, place),
			check: func(ctx context.Context) (bool, string, error) {
				resp, err := c.GetLock(ctx, &paddockv1.GetLockRequest{Name: l.name})
				if err != nil {
					return false, "", err
				}
				return holds(resp, place.GetToken())
			},
			release: func(ctx context.Context) error {
				_, err := c.Release(ctx, &paddockv1.ReleaseRequest{Name: l.name, Token: place.GetToken()})
				return err
			},
		}
	}
	if err != nil || interrupted {
		hd.finish(h)
		return err
	}
	if hooks != nil && hooks.before != nil {
		if err := hooks.before(); err != nil {
			if hooks.after != nil {
				if aerr := hooks.after(); aerr != nil {
					fmt.Fprintln(hd.stderr, cliError(aerr))
				}
			}
			hd.finish(h)
			return err
		}
	}
	res, runErr := hd.run(h, argv)
	var afterErr error
	if hooks != nil && hooks.after != nil {
		afterErr = hooks.after()
	}
	hd.finish(h)
	if runErr != nil {
		fmt.Fprintln(hd.stderr, cliError(runErr))
		return exitCodeError(res.code)
	}
	if afterErr != nil {
		fmt.Fprintln(hd.stderr, cliError(afterErr))
		if res.lost == "" && res.code == 0 {
			return exitCodeError(1)
		}
	}
	return res.exitError()
}

// holds says whether token is among a lock's holders, given a
// linearizable read of the lock, and who holds instead when it is not.
func holds(resp *paddockv1.GetLockResponse, token uint64) (bool, string, error) {
	for _, h := range resp.GetHolders() {
		if h.GetToken() == token && token != 0 {
			return true, "", nil
		}
	}
	for _, w := range resp.GetWaiters() {
		if w.GetToken() == token {
			// Holders never go back in line: the lock's state is not one
			// this holder can be in.
			return false, fmt.Sprintf("lock lost: token %d is waiting again", token), nil
		}
	}
	return false, fmt.Sprintf("lock lost: token %d no longer holds (%d holder(s) of %d)", token, len(resp.GetHolders()), resp.GetLimit()), nil
}
