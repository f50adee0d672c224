package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The contender protocol: a contender process (ContenderCluster) prints
// one line per event on stdout, "KIND UNIXNANOS[ DETAIL]", where
// UNIXNANOS is the moment the contender learned it (time.Now in the
// contender: the runner is on the same machine and clock).
const (
	// ContenderCandidate: in line (its session is open and its
	// candidate registered); DETAIL is "session=DURATION", the session
	// timeout the system granted.
	ContenderCandidate = "candidate"
	// ContenderElected: it leads (its campaign returned): the moment a
	// CMD would start.
	ContenderElected = "elected"
	// ContenderStopped: it led and stopped (a CMD would be stopped);
	// DETAIL is why. It ends its session and campaigns again.
	ContenderStopped = "stopped"
	// ContenderLost: it was in line and lost its place (its session
	// ended); DETAIL is why. It campaigns again.
	ContenderLost = "lost"
)

// WriteContenderLine writes one line of the contender protocol to w.
func WriteContenderLine(w io.Writer, kind string, t time.Time, detail string) error {
	line := kind + " " + strconv.FormatInt(t.UnixNano(), 10)
	if detail != "" {
		line += " " + strings.ReplaceAll(detail, "\n", " ")
	}
	_, err := io.WriteString(w, line+"\n")
	return err
}

// parseContenderLine reads a line of the contender protocol.
func parseContenderLine(line string) (kind string, at time.Time, detail string, err error) {
	f := strings.SplitN(strings.TrimRight(line, "\n"), " ", 3)
	if len(f) < 2 {
		return "", time.Time{}, "", fmt.Errorf("bench: contender said %q", line)
	}
	switch f[0] {
	case ContenderCandidate, ContenderElected, ContenderStopped, ContenderLost:
	default:
		return "", time.Time{}, "", fmt.Errorf("bench: contender said %q: unknown event", line)
	}
	ns, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return "", time.Time{}, "", fmt.Errorf("bench: contender said %q: %w", line, err)
	}
	if len(f) == 3 {
		detail = f[2]
	}
	return f[0], time.Unix(0, ns), detail, nil
}

const (
	// electionContenders is how many contender processes each election
	// workload runs.
	electionContenders = 3
	// steadyTimeout bounds the wait for one leader with every other
	// contender in line.
	steadyTimeout = time.Minute
)

// contenderEvent is a line of a contender, or its exit (exited true).
type contenderEvent struct {
	slot, gen int
	kind      string
	at        time.Time
	detail    string
	exited    bool
	err       error // the exit status, or a protocol error
}

// contenderProc is one contender process.
type contenderProc struct {
	cmd    *exec.Cmd
	gen    int
	stderr *lockedBuffer
	exited chan struct{} // closed once reaped
	killed bool
}

// contenders runs electionContenders contender processes of one
// election, a slot each, and tracks what each last said.
type contenders struct {
	r    *runner
	cc   ContenderCluster
	name string

	events chan contenderEvent
	done   chan struct{} // closed by close: readers stop sending
	wg     sync.WaitGroup

	procs []*contenderProc
	// state is each slot's last event kind ("" for a process that has
	// said nothing yet or was killed).
	state []string
	// session is the session timeout the contenders reported.
	session string
	// stops are the ContenderStopped events seen, with their slot.
	stops []contenderEvent
}

func newContenders(r *runner, cc ContenderCluster, name string) *contenders {
	return &contenders{
		r: r, cc: cc, name: name,
		events: make(chan contenderEvent, 256),
		done:   make(chan struct{}),
		procs:  make([]*contenderProc, electionContenders),
		state:  make([]string, electionContenders),
	}
}

// start starts the process of slot i (a new generation).
func (cs *contenders) start(i int) error {
	argv := cs.cc.ContenderCommand(cs.name, cs.r.o.SessionTTL, i)
	if len(argv) == 0 {
		return errors.New("empty contender command")
	}
	gen := 1
	if old := cs.procs[i]; old != nil {
		gen = old.gen + 1
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = childProcAttr()
	p := &contenderProc{cmd: cmd, gen: gen, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", strings.Join(argv, " "), err)
	}
	cs.procs[i] = p
	cs.state[i] = ""
	send := func(ev contenderEvent) {
		select {
		case cs.events <- ev:
		case <-cs.done:
		}
	}
	cs.wg.Go(func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			kind, at, detail, err := parseContenderLine(sc.Text())
			send(contenderEvent{slot: i, gen: gen, kind: kind, at: at, detail: detail, err: err})
		}
		// Wait only once stdout has been read: it closes the pipe.
		err := cmd.Wait()
		close(p.exited)
		send(contenderEvent{slot: i, gen: gen, exited: true, err: err})
	})
	return nil
}

// kill SIGKILLs slot i's process and returns the moment just before the
// signal.
func (cs *contenders) kill(i int) (time.Time, error) {
	p := cs.procs[i]
	p.killed = true
	cs.state[i] = ""
	t := time.Now()
	if err := p.cmd.Process.Kill(); err != nil {
		return t, fmt.Errorf("kill contender %d: %w", i, err)
	}
	return t, nil
}

// close kills every process and waits for them and their readers.
func (cs *contenders) close() {
	for _, p := range cs.procs {
		if p != nil {
			p.killed = true
			_ = p.cmd.Process.Kill()
		}
	}
	close(cs.done)
	cs.wg.Wait()
}

// next returns the next event of a current process, applied to state.
// A process that exits without being killed, or says something the
// protocol does not know, is an error. It gives up at deadline.
func (cs *contenders) next(ctx context.Context, deadline time.Time) (contenderEvent, error) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		select {
		case ev := <-cs.events:
			p := cs.procs[ev.slot]
			if ev.gen != p.gen {
				continue // an earlier process of the slot
			}
			if ev.exited {
				if p.killed {
					continue
				}
				return ev, fmt.Errorf("contender %d exited (%v): %s", ev.slot, ev.err, p.stderr)
			}
			if ev.err != nil {
				return ev, fmt.Errorf("contender %d: %w; stderr: %s", ev.slot, ev.err, p.stderr)
			}
			if p.killed {
				continue // said before the kill took effect
			}
			cs.state[ev.slot] = ev.kind
			switch ev.kind {
			case ContenderCandidate:
				if s, ok := strings.CutPrefix(ev.detail, "session="); ok && s != cs.session {
					cs.session = s
					cs.r.logf("election: contenders' sessions are granted %s", s)
				}
			case ContenderStopped:
				cs.stops = append(cs.stops, ev)
				cs.r.logf("election: leading contender %d stopped: %s", ev.slot, ev.detail)
			case ContenderLost:
				cs.r.logf("election: contender %d lost its place in line: %s", ev.slot, ev.detail)
			}
			return ev, nil
		case <-timer.C:
			return contenderEvent{}, fmt.Errorf("no contender event in time (states %q)%s", cs.state, cs.stderrs())
		case <-ctx.Done():
			return contenderEvent{}, ctx.Err()
		}
	}
}

// stderrs is what the current processes wrote on stderr, for errors.
func (cs *contenders) stderrs() string {
	var b strings.Builder
	for i, p := range cs.procs {
		if p == nil {
			continue
		}
		if s := strings.TrimSpace(p.stderr.String()); s != "" {
			if len(s) > 2000 {
				s = "..." + s[len(s)-2000:]
			}
			fmt.Fprintf(&b, "; contender %d stderr: %s", i, s)
		}
	}
	return b.String()
}

// drainUntil applies every event that arrives until t.
func (cs *contenders) drainUntil(ctx context.Context, t time.Time) error {
	for time.Now().Before(t) {
		if _, err := cs.next(ctx, t); err != nil {
			if ctx.Err() == nil && !time.Now().Before(t) {
				return nil
			}
			return err
		}
	}
	return nil
}

// leader is the slot that leads, or -1.
func (cs *contenders) leader() int {
	l := -1
	for i, s := range cs.state {
		if s == ContenderElected {
			l = i
		}
	}
	return l
}

// steady returns the leading slot once exactly one contender leads and
// every other is in line.
func (cs *contenders) steady(ctx context.Context) (int, error) {
	deadline := time.Now().Add(steadyTimeout)
	for {
		leaders, waiting := 0, 0
		for _, s := range cs.state {
			switch s {
			case ContenderElected:
				leaders++
			case ContenderCandidate:
				waiting++
			}
		}
		if leaders > 1 {
			return -1, fmt.Errorf("%d contenders lead at once (states %q)", leaders, cs.state)
		}
		if leaders == 1 && waiting == len(cs.state)-1 {
			return cs.leader(), nil
		}
		if _, err := cs.next(ctx, deadline); err != nil {
			return -1, fmt.Errorf("waiting for a leader and %d in line: %w", len(cs.state)-1, err)
		}
	}
}

// startContenders starts every slot and waits for a steady election.
func (r *runner) startContenders(ctx context.Context, cc ContenderCluster, name string) (*contenders, error) {
	cs := newContenders(r, cc, name)
	for i := range electionContenders {
		if err := cs.start(i); err != nil {
			cs.close()
			return nil, err
		}
	}
	if _, err := cs.steady(ctx); err != nil {
		cs.close()
		return nil, err
	}
	return cs, nil
}

// election measures failover: with electionContenders contender
// processes in one election, each round SIGKILLs the leading contender's
// process and times the kill to the moment another contender learns it
// leads (its "elected" line's own clock), then starts a new process in
// the killed one's slot and waits until it is in line again.
func (r *runner) election(ctx context.Context) (Row, error) {
	row := Row{Workload: WorkloadElection, Clients: electionContenders, CPUPer1kOps: -1, ClientCPUPer1kOps: -1, RSSBytes: -1, DiskBytes: -1}
	cc, ok := r.c.(ContenderCluster)
	if !ok {
		r.logf("election: not supported by this cluster")
		return row, nil
	}
	cs, err := r.startContenders(ctx, cc, r.id+"-election")
	if err != nil {
		return row, err
	}
	defer cs.close()
	rec := &recorder{}
	limit := 5*r.o.SessionTTL + hardTimeout
	for round := range r.o.ElectionRounds {
		l, err := cs.steady(ctx)
		if err != nil {
			return row, fmt.Errorf("round %d: %w", round, err)
		}
		killed, err := cs.kill(l)
		if err != nil {
			return row, err
		}
		deadline := killed.Add(limit)
		for {
			ev, err := cs.next(ctx, deadline)
			if err != nil {
				return row, fmt.Errorf("round %d: no new leader %v after contender %d was killed: %w", round, limit, l, err)
			}
			if ev.kind != ContenderElected {
				continue
			}
			if ev.at.Before(killed) {
				return row, fmt.Errorf("round %d: contender %d says it was elected at %v, before contender %d (the leader) was killed at %v",
					round, ev.slot, ev.at.Format(time.StampMicro), l, killed.Format(time.StampMicro))
			}
			d := ev.at.Sub(killed)
			rec.record(d)
			r.logf("election: round %d: contender %d killed, contender %d leads %v later", round, l, ev.slot, d.Round(time.Millisecond))
			break
		}
		<-cs.procs[l].exited
		if err := cs.start(l); err != nil {
			return row, err
		}
	}
	if _, err := cs.steady(ctx); err != nil {
		return row, err
	}
	if len(cs.stops) > 0 {
		r.logf("election: %d leading contenders stopped besides the killed ones", len(cs.stops))
	}
	m := merge([]*recorder{rec})
	row.Ops = int64(len(m.lat))
	row.P50, row.P99 = percentile(m.lat, 0.50), percentile(m.lat, 0.99)
	row.Stops = int64(len(cs.stops))
	return row, nil
}

// serverKillSettle is how long election-server-kill keeps watching the
// contenders after the killed server serves again, on top of two session
// timeouts: a contender stops at most one session timeout after its last
// confirmation.
const serverKillSettle = time.Second

// electionServerKill counts needless stops: with electionContenders
// contenders in a steady election, each round SIGKILLs the server that
// leads the cluster (Killer), waits until the cluster serves a
// linearizable read again (the recovery time, P50 and P99 of the row),
// starts the server again, waits until it serves, and watches the
// contenders for two session timeouts more. No contender was killed, so
// every leading contender that stopped in the round (Row.Stops) stopped
// needlessly.
func (r *runner) electionServerKill(ctx context.Context) (Row, error) {
	row := Row{Workload: WorkloadElectionServerKill, Clients: electionContenders, CPUPer1kOps: -1, ClientCPUPer1kOps: -1, RSSBytes: -1, DiskBytes: -1}
	cc, ok := r.c.(ContenderCluster)
	killer, canKill := r.c.(Killer)
	if !ok || !canKill {
		r.logf("election-server-kill: not supported by this cluster")
		return row, nil
	}
	cls, err := r.pool(ctx, 1)
	if err != nil {
		return row, err
	}
	alive := fmt.Sprintf("/bench/%s-alive", r.id)
	if err := cls[0].Create(ctx, alive, r.value); err != nil {
		return row, fmt.Errorf("create %s: %w", alive, err)
	}
	r.closeClients() // their node is about to be killed; a later row reopens them
	serves := func(node int) func(context.Context) (bool, error) {
		return func(ctx context.Context) (bool, error) {
			cl, err := r.c.NewClient(ctx, node)
			if err != nil {
				return false, err
			}
			defer cl.Close()
			return true, cl.Get(ctx, alive, Linearizable)
		}
	}
	cs, err := r.startContenders(ctx, cc, r.id+"-server-kill")
	if err != nil {
		return row, err
	}
	defer cs.close()
	rec := &recorder{}
	for round := range r.o.ServerKills {
		if _, err := cs.steady(ctx); err != nil {
			return row, fmt.Errorf("round %d: %w", round, err)
		}
		var node int
		if err := pollUntil(ctx, restartLimit, pollAttempt, func(ctx context.Context) (bool, error) {
			n, err := r.c.Leader(ctx)
			node = n
			return n >= 0, err
		}); err != nil {
			return row, fmt.Errorf("round %d: no leader server: %w", round, err)
		}
		stopsBefore := len(cs.stops)
		killed := time.Now()
		if err := killer.Kill(node); err != nil {
			return row, fmt.Errorf("round %d: kill node %d: %w", round, node, err)
		}
		if err := pollUntil(ctx, restartLimit, pollAttempt, serves(-1)); err != nil {
			return row, fmt.Errorf("round %d: cluster not serving %v after node %d was killed: %w", round, restartLimit, node, err)
		}
		recovered := time.Since(killed)
		rec.record(recovered)
		if err := r.c.Start(node); err != nil {
			return row, fmt.Errorf("round %d: start node %d: %w", round, node, err)
		}
		if err := pollUntil(ctx, restartLimit, pollAttempt, serves(node)); err != nil {
			return row, fmt.Errorf("round %d: node %d not serving %v after start: %w", round, node, restartLimit, err)
		}
		if err := cs.drainUntil(ctx, time.Now().Add(2*r.o.SessionTTL+serverKillSettle)); err != nil {
			return row, fmt.Errorf("round %d: %w", round, err)
		}
		r.logf("election-server-kill: round %d: leader server %d killed, cluster served again %v later; %d leading contenders stopped",
			round, node, recovered.Round(time.Millisecond), len(cs.stops)-stopsBefore)
	}
	if _, err := cs.steady(ctx); err != nil {
		return row, err
	}
	m := merge([]*recorder{rec})
	row.Ops = int64(len(m.lat))
	row.P50, row.P99 = percentile(m.lat, 0.50), percentile(m.lat, 0.99)
	row.Stops = int64(len(cs.stops))
	return row, nil
}
