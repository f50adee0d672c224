package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/paddock/paddock/client"
	"github.com/paddock/paddock/farm"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// FarmOptions of RunFarm; zero fields take defaults.
type FarmOptions struct {
	// Hosts is the farm's size: how many joiners the load generator
	// registers (default 1000).
	Hosts int
	// Changes is how many `farm set`s the exporter must reflect, one at a
	// time (default 300).
	Changes int
	// Concurrency is how many registrations are in flight at once
	// (default 50).
	Concurrency int
	// Joins is how many real `paddock farm join` processes are timed, one
	// after the other (default 3).
	Joins int
	// SessionTTL is the joiners' session timeout (default 10s, join's).
	SessionTTL time.Duration
	// Writes is how many times the load generator serialises DEST itself
	// to time it (default 50).
	Writes int
	// Dir holds DEST, the joins' configurations and the exporter's log
	// (default: a temporary directory, removed at the end).
	Dir string
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

func (o FarmOptions) withDefaults() (FarmOptions, error) {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.Hosts, 1000)
	def(&o.Changes, 300)
	def(&o.Concurrency, 50)
	def(&o.Joins, 3)
	def(&o.Writes, 50)
	if o.SessionTTL == 0 {
		o.SessionTTL = 10 * time.Second
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Hosts < 0 || o.Changes < 0 || o.Concurrency < 0 || o.Joins < 0 || o.Writes < 0 || o.SessionTTL < 0 {
		return o, errors.New("bench: farm: hosts, changes, concurrency, joins, writes and session ttl must be > 0")
	}
	return o, nil
}

// FarmResults are the figures of RunFarm.
type FarmResults struct {
	Hosts, Changes, Concurrency int
	// Leader is the node that led when the exporter started; the
	// exporter's first endpoint was ExportNode and the changes went
	// through SetNode (the two followers).
	Leader, ExportNode, SetNode int
	// Register is each simulated joiner's registration (session, znode,
	// size), sorted; RegisterTotal is all of them, wall clock.
	Register      []time.Duration
	RegisterTotal time.Duration
	// SizeLost counts registrations whose raise of the farm's size failed
	// (compare-and-set lost too often to other joiners): Join logs those
	// and raises the size at its next step, and so does not wait for it.
	SizeLost int
	// Joins are the real `farm join` processes, each from its start to
	// its znode being visible through a poll of the farm.
	Joins []time.Duration
	// SetToFile is, per change, from the start of farm.SetField to the
	// exporter's DEST holding the new value; AckToFile from SetField's
	// return. Both sorted.
	SetToFile, AckToFile []time.Duration
	// ExporterCPU is the exporter's utime + stime over the changes.
	ExporterCPU time.Duration
	// Stats are the exporter's counters from its exit log: FullReads,
	// HostReads, Writes over its whole life (one full read and one write
	// at start).
	FullReads, HostReads, Writes uint64
	// DestBytes is DEST's size.
	DestBytes int64
	// SerialiseCPU is the load generator's CPU per write of DEST for
	// the whole farm, json, measured in-process through the exporter's
	// own Format.Write.
	SerialiseCPU time.Duration
}

// farmPaddock is what RunFarm needs of the cluster: Paddock's, whose
// binary runs the exporter and the joins.
func farmPaddock(c Cluster) (*paddockCluster, error) {
	p, ok := c.(*paddockCluster)
	if !ok {
		return nil, fmt.Errorf("bench: farm: %s has no farms: Paddock only", c.Name())
	}
	return p, nil
}

// RunFarm benchmarks a farm on the Paddock cluster c (see doc.go, Farms):
// it registers o.Hosts joiners through farm.Register, times o.Joins real
// `paddock farm join` processes, starts a real `paddock farm export` of
// the farm to a JSON file and times o.Changes `farm.SetField`s until the
// file holds each, and times the serialisation of DEST in-process.
func RunFarm(ctx context.Context, c Cluster, o FarmOptions) (*FarmResults, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	p, err := farmPaddock(c)
	if err != nil {
		return nil, err
	}
	if o.Dir == "" {
		if o.Dir, err = os.MkdirTemp("", "paddock-bench-farm-"); err != nil {
			return nil, fmt.Errorf("bench: farm: %w", err)
		}
		defer os.RemoveAll(o.Dir)
	}
	res := &FarmResults{Hosts: o.Hosts, Changes: o.Changes, Concurrency: o.Concurrency}
	f := &farmRun{p: p, o: o, res: res, path: fmt.Sprintf("/bench-farm-%x", time.Now().UnixNano())}

	// First, while this process does nothing else.
	fmt.Fprintf(o.Log, "farm: serialising DEST of %d hosts %d times\n", o.Hosts, o.Writes)
	if res.SerialiseCPU, err = serialiseCPU(o.Dir, farmConfs(o.Hosts), o.Writes); err != nil {
		return nil, err
	}
	cl, err := client.New(ctx, client.Config{Endpoints: p.endpoints})
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	f.cl = cl
	fmt.Fprintf(o.Log, "farm: registering %d joiners, %d at a time\n", o.Hosts, o.Concurrency)
	sessions, err := f.register(ctx)
	defer closeSessions(sessions)
	if err != nil {
		return res, err
	}
	fmt.Fprintf(o.Log, "farm: %d real farm join processes\n", o.Joins)
	if err := f.joins(ctx); err != nil {
		return res, err
	}
	fmt.Fprintf(o.Log, "farm: exporter and %d changes\n", o.Changes)
	return res, f.export(ctx)
}

// farmRun is one RunFarm.
type farmRun struct {
	p    *paddockCluster
	o    FarmOptions
	res  *FarmResults
	cl   *client.Client
	path string // the farm znode
}

// hostName is joiner i's name: fixed width, so every host's line in DEST
// has the same length.
func hostName(i int) string { return fmt.Sprintf("host%05d", i) }

// seqField is the field the changes set; seqValue(0) is every host's at
// start and seqValue(k) the k-th change's, unique in the run and of one
// width, so the file's size does not change.
const seqField = "seq"

func seqValue(k int) string { return fmt.Sprintf("%08d", k) }

// hostConf is a plausible host configuration (ZkFarmer's README shape).
func hostConf(i int) farm.Conf {
	return farm.Conf{
		"hostname": hostName(i) + ".example.com",
		"enabled":  "1",
		"weight":   "100",
		seqField:   seqValue(0),
		"mysql":    map[string]any{"port": "3306", "replication_delay": "0"},
	}
}

// farmConfs is the farm of n hosts as an exporter holds it.
func farmConfs(n int) farm.Conf {
	c := make(farm.Conf, n)
	for i := range n {
		c[hostName(i)] = map[string]any(hostConf(i))
	}
	return c
}

// serialiseCPU is the process CPU per write of confs to a JSON DEST
// through the exporter's Format.Write, one host's seq changed before each
// write so that every write rewrites the file.
func serialiseCPU(dir string, confs farm.Conf, writes int) (time.Duration, error) {
	format, err := farm.ParseFormat("json")
	if err != nil {
		return 0, err
	}
	dest := filepath.Join(dir, "serialise.json")
	defer os.Remove(dest)
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range confs {
			if !yield(n) {
				return
			}
		}
	})
	if len(names) == 0 || writes == 0 {
		return 0, nil
	}
	before, err := selfCPU()
	if err != nil {
		return 0, err
	}
	for k := range writes {
		confs[names[k%len(names)]].(map[string]any)[seqField] = seqValue(k + 1)
		if _, err := format.Write(dest, confs); err != nil {
			return 0, fmt.Errorf("bench: farm: write %s: %w", dest, err)
		}
	}
	after, err := selfCPU()
	if err != nil {
		return 0, err
	}
	return (after - before) / time.Duration(writes), nil
}

// selfCPU is this process's user + system CPU so far.
func selfCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("bench: farm: getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// register registers o.Hosts joiners through Join's own registration
// step (a session each, farm.Register, farm.RaiseSizeToHosts), at most
// o.Concurrency at once, and returns their sessions (to close at the end).
func (f *farmRun) register(ctx context.Context) ([]*client.Session, error) {
	var (
		mu       sync.Mutex
		sessions []*client.Session
		errs     []error
		next     = make(chan int)
		wg       sync.WaitGroup
	)
	lat := make([]time.Duration, f.o.Hosts)
	start := time.Now()
	for range min(f.o.Concurrency, f.o.Hosts) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				t0 := time.Now()
				s, sizeErr, err := f.registerOne(ctx, i)
				lat[i] = time.Since(t0)
				mu.Lock()
				if sizeErr != nil {
					f.res.SizeLost++
				}
				if s != nil {
					sessions = append(sessions, s)
				}
				if err != nil {
					errs = append(errs, err)
				}
				mu.Unlock()
			}
		}()
	}
	for i := range f.o.Hosts {
		next <- i
	}
	close(next)
	wg.Wait()
	f.res.RegisterTotal = time.Since(start)
	slices.Sort(lat)
	f.res.Register = lat
	if len(errs) > 0 {
		return sessions, fmt.Errorf("bench: farm: %d of %d registrations failed, first: %w", len(errs), f.o.Hosts, errs[0])
	}
	return sessions, nil
}

// registerOne is what Join does to register host i: open a session,
// farm.Register, raise the farm's size (a failure of which, sizeErr, Join
// logs and retries later, so it is no failure here either).
func (f *farmRun) registerOne(ctx context.Context, i int) (s *client.Session, sizeErr, err error) {
	s, err = f.cl.NewSession(ctx, f.o.SessionTTL)
	if err != nil {
		return nil, nil, fmt.Errorf("open a session: %w", err)
	}
	mine := func(owner uint64) bool { return owner == s.ID() }
	if _, err := farm.Register(ctx, f.cl, f.path, hostName(i), hostConf(i), s.ID(), mine); err != nil {
		return s, nil, fmt.Errorf("register %s: %w", hostName(i), err)
	}
	return s, farm.RaiseSizeToHosts(ctx, f.cl, f.path), nil
}

// closeSessions closes the joiners' sessions, deleting their znodes.
func closeSessions(sessions []*client.Session) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch := make(chan *client.Session)
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range ch {
				_ = s.Close(ctx)
			}
		}()
	}
	for _, s := range sessions {
		ch <- s
	}
	close(ch)
	wg.Wait()
}

// joinTimeout bounds one real join's registration.
const joinTimeout = 30 * time.Second

// joins times o.Joins real `paddock farm join` processes one after the
// other: from the process's start to its znode's creation event, seen by
// a long poll of the farm that was waiting before the start. Each is
// stopped (SIGTERM: its znode goes) before the next.
func (f *farmRun) joins(ctx context.Context) error {
	for i := range f.o.Joins {
		name := fmt.Sprintf("join%d", i)
		conf := filepath.Join(f.o.Dir, name+".json")
		if err := os.WriteFile(conf, hostConf(f.o.Hosts+i).Encode(), 0o644); err != nil {
			return fmt.Errorf("bench: farm: %w", err)
		}
		e, err := f.cl.Exists(ctx, &paddockv1.ExistsRequest{Path: f.path})
		if err != nil {
			return err
		}
		after := e.GetHeader().GetZxid()
		logPath := filepath.Join(f.o.Dir, name+".log")
		start := time.Now()
		proc, err := f.p.startChild(logPath, "farm", "join", "--endpoints", strings.Join(f.p.endpoints, ","),
			"--name", name, "--hostname", name, f.path, conf)
		if err != nil {
			return err
		}
		seen, err := f.waitCreated(ctx, farm.HostPath(f.path, name), after)
		stopErr := proc.stop()
		if err != nil {
			return fmt.Errorf("bench: farm: %s: %w (log %s:\n%s)", name, err, logPath, logTail(logPath))
		}
		if stopErr != nil {
			return stopErr
		}
		f.res.Joins = append(f.res.Joins, seen.Sub(start))
	}
	return nil
}

// waitCreated long-polls the farm after zxid until p is created, and
// returns the time the event arrived.
func (f *farmRun) waitCreated(ctx context.Context, p string, after uint64) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	for {
		resp, err := f.cl.Poll(ctx, &paddockv1.PollRequest{Path: f.path, Recursive: true, AfterZxid: after, TimeoutMs: 1000})
		now := time.Now()
		if err != nil {
			return now, fmt.Errorf("poll %s: %w", f.path, err)
		}
		for _, ev := range resp.GetEvents() {
			if ev.GetPath() == p && ev.GetKind() == paddockv1.EventKind_EVENT_KIND_CREATED {
				return now, nil
			}
		}
		after = max(after, resp.GetHeader().GetZxid())
	}
}

// child is a process RunFarm started.
type child struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startChild starts the paddock binary with args, its stdout and stderr
// in logPath.
func (c *paddockCluster) startChild(logPath string, args ...string) (*child, error) {
	log, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("bench: farm: %w", err)
	}
	defer log.Close()
	cmd := exec.Command(c.bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: farm: start %s: %w", args[:2], err)
	}
	ch := &child{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(ch.done)
	}()
	return ch, nil
}

// stop SIGTERMs the child and waits for it (SIGKILL after
// paddockStopTimeout, reported).
func (ch *child) stop() error {
	_ = ch.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(paddockStopTimeout)
	defer t.Stop()
	select {
	case <-ch.done:
		return nil
	case <-t.C:
		_ = ch.cmd.Process.Kill()
		<-ch.done
		return fmt.Errorf("bench: farm: %s still running %v after SIGTERM; killed", ch.cmd.Args[1:3], paddockStopTimeout)
	}
}

// exited reports whether the child has exited.
func (ch *child) exited() bool {
	select {
	case <-ch.done:
		return true
	default:
		return false
	}
}
