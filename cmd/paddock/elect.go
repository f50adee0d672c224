package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// Environment variables of the command that elect and lock run.
const (
	envElectionKey   = "PADDOCK_ELECTION_KEY"
	envElectionToken = "PADDOCK_ELECTION_TOKEN"
	envLockKey       = "PADDOCK_LOCK_KEY"
	envLockToken     = "PADDOCK_LOCK_TOKEN"
)

// heldEnv is the environment entries that tell CMD its key and token.
func heldEnv(keyVar, tokenVar string, c *paddockv1.Contender) []string {
	return []string{keyVar + "=" + c.GetKey(), tokenVar + "=" + strconv.FormatUint(c.GetToken(), 10)}
}

// waitPoll bounds each Campaign and Acquire call: long enough not to
// load the cluster, short enough to notice a problem (the session, the
// endpoints) within a session timeout. It is also how old the grant can
// be when it arrives (its request's send time is the last time the
// holding is known good), so it leaves half a session timeout for the
// first check.
func waitPoll(sessionTimeout time.Duration) time.Duration {
	return min(max(sessionTimeout/2, 500*time.Millisecond), 30*time.Second)
}

func newElectCmd() *cobra.Command {
	var (
		value           string
		observe, leader bool
	)
	cmd := &cobra.Command{
		Use:   "elect NAME [--value V] [--session-timeout D] [--grace D] [--lock-delay D] -- CMD [ARG...]",
		Short: "Run CMD while leading the election NAME; or print its leader (--leader, --observe)",
		Long: `Campaign in the election NAME with a new session, and once leader run CMD with
PADDOCK_ELECTION_KEY (the candidate's znode) and PADDOCK_ELECTION_TOKEN (its
fencing token, for tree writes' --fence elections/NAME:TOKEN) in its
environment, and PADDOCK_ENDPOINTS set to elect's endpoints. CMD runs in paddock's process group; SIGINT, SIGTERM and
SIGHUP are forwarded to it.

When CMD exits by itself, elect resigns (the next candidate leads at once)
and exits with CMD's status (128+N if signal N killed it). When leadership
is lost while CMD runs (another candidate leads, the session ended, or no
check confirmed it for a whole --session-timeout: the session may have
expired unseen), elect stops CMD (SIGTERM, then SIGKILL after --grace),
says why on stderr and exits 75. A signal before leading leaves the line
and exits 0.

--leader prints the current leader as "TOKEN KEY VALUE" (exit 1 when no
one leads); --observe prints it and then each change, one line each
("(none)" when no one leads), until SIGINT or SIGTERM. With -o json,
--leader prints the LeaderResponse and --observe one Contender per line
(null when no one leads).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if observe || leader {
				if cmd.ArgsLenAtDash() >= 0 {
					return errors.New("paddock: --leader and --observe take NAME only, no -- CMD")
				}
				return cobra.ExactArgs(1)(cmd, args)
			}
			return commandArgs("NAME")(cmd, args)
		},
	}
	o := newClientOptions(cmd)
	fs := cmd.Flags()
	fs.StringVar(&value, "value", "", "the candidate's value, what --leader prints while it leads")
	fs.BoolVar(&leader, "leader", false, "print the current leader of NAME and exit")
	fs.BoolVar(&observe, "observe", false, "print the leader of NAME and each change, until SIGINT or SIGTERM")
	hf := addHoldFlags(cmd)
	cmd.MarkFlagsMutuallyExclusive("leader", "observe")
	cmd.RunE = runE(func(cmd *cobra.Command, args []string) error {
		switch {
		case leader:
			return printLeader(cmd, o, args[0])
		case observe:
			return observeLeader(cmd, o, args[0])
		}
		if err := hf.check(); err != nil {
			return err
		}
		return elect(cmd, o, hf, args[0], []byte(value), args[cmd.ArgsLenAtDash():])
	})
	return cmd
}

// elect campaigns for name and runs argv while leading.
func elect(cmd *cobra.Command, o *clientOptions, hf *holdFlags, name string, value []byte, argv []string) error {
	c, err := o.dial(cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	prefix := "elect " + name
	ctx, cancel := o.opContext(cmd)
	s, err := c.NewSession(ctx, hf.sessionTimeout, hf.sessionOptions(cmd, prefix)...)
	cancel()
	if err != nil {
		return err
	}
	hd, stop := newHolder(cmd, o, c, s, hf.grace, prefix)
	defer stop()

	var (
		cand    *paddockv1.Contender
		granted time.Time
	)
	poll := waitPoll(s.Timeout())
	interrupted, err := hd.waitTurn(func(ctx context.Context) (bool, error) {
		ctx, cancel := context.WithTimeout(ctx, poll+o.timeout)
		defer cancel()
		sent := time.Now()
		resp, err := c.Campaign(ctx, &paddockv1.CampaignRequest{Name: name, Value: value, SessionId: s.ID(), TimeoutMs: poll.Milliseconds()})
		if err != nil {
			return false, err
		}
		cand, granted = resp.GetCandidate(), sent
		return resp.GetElected(), nil
	})
	h := &holding{
		what:    "leadership of " + name,
		granted: granted,
		env:     heldEnv(envElectionKey, envElectionToken, cand),
		check: func(ctx context.Context) (bool, string, error) {
			resp, err := c.Leader(ctx, &paddockv1.LeaderRequest{Name: name})
			if err != nil {
				return false, "", err
			}
			return leads(resp.GetLeader(), cand.GetToken(), resp.GetLockDelayMs())
		},
		wait: func(ctx context.Context, d time.Duration) {
			ctx, cancel := context.WithTimeout(ctx, d+o.timeout)
			defer cancel()
			c.PollLeader(ctx, &paddockv1.PollLeaderRequest{Name: name, KnownToken: cand.GetToken(), KnownModZxid: cand.GetModZxid(), TimeoutMs: max(d.Milliseconds(), 1)})
		},
		release: func(ctx context.Context) error {
			_, err := c.Resign(ctx, &paddockv1.ResignRequest{Name: name, Token: cand.GetToken()})
			return err
		},
	}
	if cand == nil {
		h = nil // nothing to resign
	}
	if err != nil || interrupted {
		hd.finish(h)
		return err
	}
	res, err := hd.run(h, argv)
	hd.finish(h)
	if err != nil {
		fmt.Fprintln(hd.stderr, cliError(err))
		return exitCodeError(res.code)
	}
	return res.exitError()
}

// leads says whether token leads given the leader a linearizable read
// returned, and who does instead.
func leads(leader *paddockv1.Contender, token uint64, lockDelayMs int64) (bool, string, error) {
	switch {
	case leader.GetToken() == token && token != 0:
		return true, "", nil
	case leader == nil && lockDelayMs > 0:
		return false, fmt.Sprintf("leadership lost: no one leads (lock-delay, %d ms more)", lockDelayMs), nil
	case leader == nil:
		return false, "leadership lost: no one leads", nil
	}
	return false, fmt.Sprintf("leadership lost: %s (token %d) leads", leader.GetKey(), leader.GetToken()), nil
}

// leaderLine is a leader as --leader and --observe print it in text:
// "TOKEN KEY VALUE", "(none)" when no one leads.
func leaderLine(c *paddockv1.Contender) string {
	if c == nil {
		return "(none)"
	}
	return fmt.Sprintf("%d %s %s", c.GetToken(), c.GetKey(), printableData(c.GetValue()))
}

// printLeader is elect --leader.
func printLeader(cmd *cobra.Command, o *clientOptions, name string) error {
	c, ctx, done, err := o.connect(cmd)
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.Leader(ctx, &paddockv1.LeaderRequest{Name: name})
	if err != nil {
		return err
	}
	err = o.emit(cmd, resp, func(w io.Writer) error {
		if resp.GetLeader() == nil {
			return nil
		}
		_, err := fmt.Fprintln(w, leaderLine(resp.GetLeader()))
		return err
	})
	if err != nil || resp.GetLeader() != nil {
		return err
	}
	if resp.GetLockDelayMs() > 0 {
		return fmt.Errorf("election %s has no leader (lock-delay: %d ms more)", name, resp.GetLockDelayMs())
	}
	return fmt.Errorf("election %s has no leader", name)
}

// observeLeader is elect --observe.
func observeLeader(cmd *cobra.Command, o *clientOptions, name string) error {
	c, err := o.dial(cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	held, stop := signalContext(cmd)
	defer stop()
	w := cmd.OutOrStdout()
	err = c.Observe(held, name, func(l *paddockv1.Contender) error {
		if o.output != "json" {
			_, err := fmt.Fprintln(w, leaderLine(l))
			return err
		}
		return writeContenderLine(w, l)
	})
	if held.Err() != nil && errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// writeContenderLine writes c as one line of compact JSON (NDJSON), null
// when nil.
func writeContenderLine(w io.Writer, c *paddockv1.Contender) error {
	if c == nil {
		_, err := fmt.Fprintln(w, "null")
		return err
	}
	b, err := jsonOptions.Marshal(c)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err = w.Write(buf.Bytes())
	return err
}
