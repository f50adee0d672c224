package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/paddock/paddock/bench"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// contendArgv is the command line of this program's contend subcommand
// (os.Executable, so a test binary runs itself, as holdArgv).
func contendArgv(system, endpoints, name string, ttl time.Duration) []string {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	return []string{exe, "contend", "--system", system, "--endpoints", endpoints, "--election", name, "--ttl", ttl.String()}
}

// contendPause is how long a contender waits before it retries after an
// error.
const contendPause = 100 * time.Millisecond

// contendMain runs the contend subcommand: a contender of the election
// workloads (bench.ContenderCluster) for etcd or ZooKeeper, speaking the
// contender protocol on stdout until it is killed (or gets SIGTERM or
// SIGINT). It returns the process's exit code.
func contendMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("contend", flag.ContinueOnError)
	fs.SetOutput(stderr)
	system := fs.String("system", "", "etcd or zookeeper")
	endpoints := fs.String("endpoints", "", "comma-separated client addresses")
	name := fs.String("election", "", "name of the election")
	ttl := fs.Duration("ttl", 2*time.Second, "session timeout")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *endpoints == "" || *name == "" {
		fmt.Fprintln(stderr, "bench: contend: --endpoints and --election are required")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	eps := strings.Split(*endpoints, ",")
	var once func(context.Context) error
	switch *system {
	case "etcd":
		cli, err := newEtcdClient(eps)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer cli.Close()
		once = func(ctx context.Context) error { return etcdContendOnce(ctx, cli, *name, *ttl, stdout) }
	case "zookeeper":
		once = func(ctx context.Context) error { return zkContendOnce(ctx, eps, *name, *ttl, stdout) }
	default:
		fmt.Fprintf(stderr, "bench: contend: unknown system %q\n", *system)
		return 2
	}
	for ctx.Err() == nil {
		if err := once(ctx); err != nil && ctx.Err() == nil {
			fmt.Fprintf(stderr, "bench: contend: %v\n", err)
			sleepCtx(ctx, contendPause)
		}
	}
	return 0
}

// sleepCtx waits for d or ctx's end.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// etcdElectionPrefix is the key prefix of election name.
func etcdElectionPrefix(name string) string { return "/bench/" + name }

// etcdContendOnce runs one session of an etcd contender: a lease of ttl
// (whole seconds, etcd's unit; the grant's TTL is reported) kept alive by
// a concurrency.Session, Election.Campaign, and once elected lead until
// Observe shows another leader or the session is done: the client closes
// its keepalive when no keepalive was answered for the lease's TTL, or
// the lease is gone. It then revokes the lease and returns.
func etcdContendOnce(ctx context.Context, cli *clientv3.Client, name string, ttl time.Duration, out io.Writer) error {
	secs := int64((ttl + time.Second - 1) / time.Second)
	grant, err := cli.Grant(ctx, secs)
	if err != nil {
		return fmt.Errorf("etcd grant: %w", err)
	}
	s, err := concurrency.NewSession(cli, concurrency.WithLease(grant.ID), concurrency.WithContext(ctx))
	if err != nil {
		_, _ = cli.Revoke(context.WithoutCancel(ctx), grant.ID)
		return fmt.Errorf("etcd session: %w", err)
	}
	defer s.Close() // revokes the lease, bounded by its TTL
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.Done():
			cancel()
		case <-sctx.Done():
		}
	}()
	e := concurrency.NewElection(s, etcdElectionPrefix(name))
	key := fmt.Sprintf("%s/%x", etcdElectionPrefix(name), s.Lease())
	campaigned := make(chan error, 1)
	go func() { campaigned <- e.Campaign(sctx, fmt.Sprintf("pid %d", os.Getpid())) }()
	// Campaign puts the key and then waits for the ones before it: the
	// contender is in line once its key exists.
	elected := false
poll:
	for {
		resp, err := cli.Get(sctx, key, clientv3.WithCountOnly())
		if err == nil && resp.Count > 0 {
			break
		}
		select {
		case err := <-campaigned:
			if err != nil {
				return lostOrErr(ctx, out, s.Done(), fmt.Errorf("etcd campaign: %w", err))
			}
			elected = true // before the poll saw the key
			break poll
		case <-sctx.Done():
			return lostOrErr(ctx, out, s.Done(), fmt.Errorf("etcd campaign: %w", sctx.Err()))
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := bench.WriteContenderLine(out, bench.ContenderCandidate, time.Now(), fmt.Sprintf("session=%v", time.Duration(grant.TTL)*time.Second)); err != nil {
		return err
	}
	if !elected {
		if err := <-campaigned; err != nil {
			return lostOrErr(ctx, out, s.Done(), fmt.Errorf("etcd campaign: %w", err))
		}
	}
	if err := bench.WriteContenderLine(out, bench.ContenderElected, time.Now(), ""); err != nil {
		return err
	}
	reason := etcdLead(sctx, e, s, key)
	if ctx.Err() != nil {
		return nil
	}
	return bench.WriteContenderLine(out, bench.ContenderStopped, time.Now(), reason)
}

// lostOrErr reports a contender's lost place (ContenderLost) when its
// session is done, and otherwise returns err (nil once ctx has ended).
func lostOrErr(ctx context.Context, out io.Writer, done <-chan struct{}, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	select {
	case <-done:
		return bench.WriteContenderLine(out, bench.ContenderLost, time.Now(), "session done")
	default:
		return err
	}
}

// etcdSessionDone is why an etcd leader stops when its session is done.
const etcdSessionDone = "session done (lease keepalive unanswered for its TTL, or lease gone)"

// etcdLead watches a leader until it must stop and returns why.
func etcdLead(ctx context.Context, e *concurrency.Election, s *concurrency.Session, key string) string {
	for {
		octx, cancel := context.WithCancel(ctx)
		ch := e.Observe(octx)
		for resp := range ch {
			if len(resp.Kvs) == 0 || string(resp.Kvs[0].Key) != key {
				cancel()
				return "another leader"
			}
		}
		cancel()
		// The channel closes when ctx ends (the session is done, which
		// cancels ctx) or when a read fails: observe again.
		select {
		case <-s.Done():
			return etcdSessionDone
		case <-ctx.Done():
			// ctx ends with the session too (the contender cancels
			// it then): say so rather than nothing.
			select {
			case <-s.Done():
				return etcdSessionDone
			default:
				return ""
			}
		case <-time.After(contendPause):
		}
	}
}

// zkElectionPath is the parent znode of election name's candidates.
func zkElectionPath(name string) string { return "/bench/" + name }

// zkSessionLogger records the session timeout the server negotiated, which
// go-zookeeper only logs.
type zkSessionLogger struct{ granted chan time.Duration }

func (l zkSessionLogger) Printf(format string, args ...any) {
	var id int64
	var ms int
	if _, err := fmt.Sscanf(fmt.Sprintf(format, args...), "authenticated: id=%d, timeout=%d", &id, &ms); err == nil {
		select {
		case l.granted <- time.Duration(ms) * time.Millisecond:
		default:
		}
	}
}

// zkContendOnce runs one session of the ZooKeeper recipe: an ephemeral
// sequential candidate under the election's znode, the lowest leads,
// every other watches the one just before it (herd-free). Once elected it
// leads until its candidate is gone, its session expires, or it has been
// disconnected for the session timeout (it cannot confirm its session:
// the rule paddock elect follows, rather than Curator's default of giving
// up at the first disconnection). It then closes the session and
// returns.
func zkContendOnce(ctx context.Context, servers []string, name string, ttl time.Duration, out io.Writer) error {
	log := zkSessionLogger{granted: make(chan time.Duration, 1)}
	conn, events, err := zk.Connect(servers, ttl, zk.WithLogger(log))
	if err != nil {
		return fmt.Errorf("zookeeper connect: %w", err)
	}
	defer conn.Close()
	// states receives every session state change; the rest of events is
	// drained.
	states := make(chan zk.State, 64)
	go func() {
		for ev := range events {
			if ev.Type == zk.EventSession {
				select {
				case states <- ev.State:
				default:
				}
			}
		}
	}()
	var granted time.Duration
	for granted == 0 {
		select {
		case granted = <-log.granted:
		case <-ctx.Done():
			return nil
		case <-time.After(time.Minute):
			return fmt.Errorf("zookeeper connect %v: no session in a minute", servers)
		}
	}
	parent := zkElectionPath(name)
	if _, err := conn.Create(parent, nil, 0, zk.WorldACL(zk.PermAll)); err != nil && !errors.Is(err, zk.ErrNodeExists) {
		return fmt.Errorf("zookeeper create %s: %w", parent, err)
	}
	me, err := conn.Create(parent+"/c-", []byte(fmt.Sprintf("pid %d", os.Getpid())), zk.FlagEphemeral|zk.FlagSequence, zk.WorldACL(zk.PermAll))
	if err != nil {
		return fmt.Errorf("zookeeper create candidate: %w", err)
	}
	mine := me[len(parent)+1:]
	if err := bench.WriteContenderLine(out, bench.ContenderCandidate, time.Now(), fmt.Sprintf("session=%v", granted)); err != nil {
		return err
	}
	for {
		children, _, err := conn.Children(parent)
		if err != nil {
			return zkLostOrErr(ctx, out, conn, fmt.Errorf("zookeeper children %s: %w", parent, err))
		}
		slices.Sort(children) // one prefix, ten-digit sequence numbers
		i := slices.Index(children, mine)
		if i < 0 {
			return zkLostOrErr(ctx, out, conn, fmt.Errorf("zookeeper: candidate %s is gone", me))
		}
		if i == 0 {
			break
		}
		ok, _, ch, err := conn.ExistsW(parent + "/" + children[i-1])
		if err != nil {
			return zkLostOrErr(ctx, out, conn, fmt.Errorf("zookeeper exists %s: %w", children[i-1], err))
		}
		if !ok {
			continue
		}
		select {
		case ev := <-ch:
			if ev.Err != nil {
				return zkLostOrErr(ctx, out, conn, fmt.Errorf("zookeeper watch: %w", ev.Err))
			}
		case <-ctx.Done():
			return nil
		}
	}
	if err := bench.WriteContenderLine(out, bench.ContenderElected, time.Now(), ""); err != nil {
		return err
	}
	reason := zkLead(ctx, conn, me, granted, states)
	if ctx.Err() != nil {
		return nil
	}
	return bench.WriteContenderLine(out, bench.ContenderStopped, time.Now(), reason)
}

// zkLostOrErr reports a lost place when the session has expired, and
// otherwise returns err (nil once ctx has ended).
func zkLostOrErr(ctx context.Context, out io.Writer, conn *zk.Conn, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	if conn.State() == zk.StateExpired || errors.Is(err, zk.ErrSessionExpired) {
		return bench.WriteContenderLine(out, bench.ContenderLost, time.Now(), "session expired")
	}
	return err
}

// zkLead watches a ZooKeeper leader until it must stop and returns why.
func zkLead(ctx context.Context, conn *zk.Conn, me string, timeout time.Duration, states <-chan zk.State) string {
	ok, _, ch, err := conn.ExistsW(me)
	switch {
	case err != nil:
		return "cannot watch its candidate: " + err.Error()
	case !ok:
		return "its candidate is gone"
	}
	unconfirmed := time.NewTimer(time.Hour)
	unconfirmed.Stop()
	if conn.State() != zk.StateHasSession {
		unconfirmed.Reset(timeout)
	}
	for {
		select {
		case ev := <-ch:
			if ev.Err != nil {
				return "watch ended: " + ev.Err.Error()
			}
			if ev.Type == zk.EventNodeDeleted {
				return "its candidate is gone"
			}
			if ok, _, ch, err = conn.ExistsW(me); err != nil || !ok {
				return fmt.Sprintf("its candidate is gone (%v)", err)
			}
		case st := <-states:
			switch st {
			case zk.StateExpired:
				return "session expired"
			case zk.StateDisconnected:
				unconfirmed.Reset(timeout)
			case zk.StateHasSession:
				unconfirmed.Stop()
			}
		case <-unconfirmed.C:
			return fmt.Sprintf("disconnected for the session timeout (%v)", timeout)
		case <-ctx.Done():
			return ""
		}
	}
}
