package robust

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paddock/paddock/client"
	"github.com/paddock/paddock/e2e/robust/check"
	"github.com/paddock/paddock/farm"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// The farm workload's farm and its joiners.
const (
	farmPath = "/farm"
	// farmSlots is how many joiners run at once: slot 0's stays joined
	// for the whole run, the others come and go.
	farmSlots = 3
	// farmSettleTimeout bounds the wait for the exporter's file, the
	// joiners' local files and the farm to agree at the end.
	farmSettleTimeout = 20 * time.Second
)

// farmLoad is the farm workload: joiners (farm.Join, each with its own
// client and sessions, and its own local JSON file that it changes now
// and then) that come and go, leaving cleanly or killed, a writer that
// sets hosts' fields remotely (farm.SetField), and one exporter
// (farm.Export to a JSON file) that runs through every fault. It records
// what check.Farm needs: the joiners' starts and ends, every value given
// to a field, and every write of the exporter's file.
type farmLoad struct {
	rec       *recorder
	endpoints []string
	dir       string
	json      farm.Format
	dest      string
	// values numbers the values written, so that each is unique.
	values atomic.Int64

	mu      sync.Mutex
	joiners []*check.FarmJoiner
	writes  []check.FarmWrite
	files   []check.FarmFile
	seen    []check.FarmSeen
	kept    []*joiner // joiners still running when the workload stopped
	errs    []string  // what no farm call should ever do
	final   check.FarmHistory

	wg       sync.WaitGroup // the slots and the writer
	exporter struct {
		cancel context.CancelFunc
		cl     *client.Client
		done   chan struct{}
	}
	stopOnce sync.Once
}

func newFarmLoad(rec *recorder, endpoints []string, dir string) (*farmLoad, error) {
	f, err := farm.ParseFormat("json")
	if err != nil {
		return nil, err
	}
	dir = filepath.Join(dir, "farm")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &farmLoad{rec: rec, endpoints: endpoints, dir: dir, json: f, dest: filepath.Join(dir, "export.json")}, nil
}

func (fl *farmLoad) fail(format string, args ...any) {
	fl.mu.Lock()
	fl.errs = append(fl.errs, fmt.Sprintf(format, args...))
	fl.mu.Unlock()
}

func (fl *farmLoad) addWrite(host, field, value string) {
	fl.mu.Lock()
	fl.writes = append(fl.writes, check.FarmWrite{Host: host, Field: field, Value: value, Call: fl.rec.now()})
	fl.mu.Unlock()
}

// start starts the exporter, the joiners' slots and the remote writer;
// the slots and the writer stop changing anything when stop closes.
func (fl *farmLoad) start(ctx context.Context, seed int64, stop <-chan struct{}) error {
	rng := rand.New(rand.NewPCG(uint64(seed), 0xfa))
	// The exporter's client, set up as `paddock farm export` sets it up.
	cl, err := newClientWith(ctx, fl.endpoints, rng.IntN(len(fl.endpoints)), client.Config{ReadAttemptTimeout: farm.ReadAttempt})
	if err != nil {
		return err
	}
	// Nothing fails once a goroutine has started: stop does not wait
	// for goroutines that were never started.
	wcl, err := newClient(ctx, fl.endpoints, rng.IntN(len(fl.endpoints)))
	if err != nil {
		cl.Close()
		return err
	}
	ectx, cancel := context.WithCancel(ctx)
	fl.exporter.cl, fl.exporter.cancel, fl.exporter.done = cl, cancel, make(chan struct{})
	go func() {
		defer close(fl.exporter.done)
		err := farm.Export(ectx, farm.ExportConfig{Tree: recordingTree{cl, fl}, Farm: farmPath, Dest: fl.dest, Format: recordingFormat{fl.json, fl}})
		if ectx.Err() == nil {
			fl.fail("export returned before it was stopped: %v", err)
		}
	}()
	for i := range farmSlots {
		srng := rand.New(rand.NewPCG(uint64(seed), uint64(0xfa0+i)))
		fl.wg.Go(func() { fl.slot(ctx, i, srng, stop) })
	}
	wrng := rand.New(rand.NewPCG(uint64(seed), 0xfaf))
	fl.wg.Go(func() {
		defer wcl.Close()
		fl.setter(ctx, wcl, wrng, stop)
	})
	return nil
}

// recordingFormat is the exporter's format, recording each write.
type recordingFormat struct {
	farm.Format
	fl *farmLoad
}

func (f recordingFormat) Write(p string, c farm.Conf) (bool, error) {
	call := f.fl.rec.now()
	changed, err := f.Format.Write(p, c)
	if err == nil {
		f.fl.mu.Lock()
		f.fl.files = append(f.fl.files, check.FarmFile{Call: call, Return: f.fl.rec.now(), Hosts: flatHosts(c)})
		f.fl.mu.Unlock()
	}
	return changed, err
}

// recordingTree is the exporter's client, recording what each answer
// tells it of the hosts.
type recordingTree struct {
	*client.Client
	fl *farmLoad
}

// hostName is the host a path names in the farm, "" for another path.
func hostName(p string) string {
	if path.Dir(p) != farmPath {
		return ""
	}
	return path.Base(p)
}

func (t recordingTree) seen(host string, present bool) {
	t.fl.mu.Lock()
	t.fl.seen = append(t.fl.seen, check.FarmSeen{At: t.fl.rec.now(), Host: host, Present: present})
	t.fl.mu.Unlock()
}

func (t recordingTree) Poll(ctx context.Context, req *paddockv1.PollRequest) (*paddockv1.PollResponse, error) {
	r, err := t.Client.Poll(ctx, req)
	for _, e := range r.GetEvents() {
		if h := hostName(e.GetPath()); h != "" {
			switch e.GetKind() {
			case paddockv1.EventKind_EVENT_KIND_CREATED, paddockv1.EventKind_EVENT_KIND_DATA_CHANGED:
				t.seen(h, true)
			case paddockv1.EventKind_EVENT_KIND_DELETED:
				t.seen(h, false)
			}
		}
	}
	return r, err
}

func (t recordingTree) Get(ctx context.Context, req *paddockv1.GetRequest) (*paddockv1.GetResponse, error) {
	r, err := t.Client.Get(ctx, req)
	if h := hostName(req.GetPath()); h != "" {
		switch {
		case err == nil:
			t.seen(h, true)
		case client.IsNotFound(err):
			t.seen(h, false)
		}
	}
	return r, err
}

// List of the farm in one page (the workload's farm is small) tells of
// every host: those listed are present, the others gone.
func (t recordingTree) List(ctx context.Context, req *paddockv1.ListRequest) (*paddockv1.ListResponse, error) {
	r, err := t.Client.List(ctx, req)
	if err != nil || req.GetPath() != farmPath || req.GetPageToken() != "" || r.GetNextPageToken() != "" {
		return r, err
	}
	listed := make(map[string]bool)
	for _, c := range r.GetChildren() {
		listed[c.GetName()] = true
	}
	t.fl.mu.Lock()
	for _, j := range t.fl.joiners {
		listed[j.Name] = listed[j.Name] // every name joined so far
	}
	t.fl.mu.Unlock()
	for _, name := range slices.Sorted(maps.Keys(listed)) {
		t.seen(name, listed[name])
	}
	return r, err
}

// joiner is one farm.Join running under one name.
type joiner struct {
	rec    *check.FarmJoiner
	conf   string
	cl     *client.Client
	cancel context.CancelFunc
	done   chan struct{} // closed when Join has returned
	err    error         // Join's, once done

	mu   sync.Mutex
	sess *farmSession // the last session Join opened
}

// farmSession is a joiner's session, recording its close: Join closes
// the sessions it opens, through their Close method, when it stops using
// them and when it returns.
type farmSession struct {
	*client.Session
	rec *recorder
	// closing is set once Close was called: then closedAt is when, and
	// acked when (if) the cluster acknowledged the close.
	mu              sync.Mutex
	closing         bool
	closedAt, acked time.Duration
	closeErr        error
}

// Close closes the session and records when, and whether the cluster
// acknowledged it.
func (s *farmSession) Close(ctx context.Context) error {
	at := s.rec.now()
	err := s.Session.Close(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closing || s.closeErr != nil {
		s.closing, s.closedAt, s.closeErr = true, at, err
		s.acked = s.rec.now()
	}
	return err
}

// join starts a joiner of name with a new local file holding a fresh
// value of field n, on a client that tries node slot first.
func (fl *farmLoad) join(ctx context.Context, slot int, name string) (*joiner, error) {
	dir, err := os.MkdirTemp(fl.dir, name+"-")
	if err != nil {
		return nil, err
	}
	j := &joiner{conf: filepath.Join(dir, "conf.json"), done: make(chan struct{})}
	v := fmt.Sprintf("%s-%d", name, fl.values.Add(1))
	fl.addWrite(name, "n", v)
	if _, err := fl.json.Write(j.conf, farm.Conf{"n": v}); err != nil {
		return nil, err
	}
	if j.cl, err = newClient(ctx, fl.endpoints, slot); err != nil {
		return nil, err
	}
	j.rec = &check.FarmJoiner{Name: name, Timeout: sessionTimeout, Start: fl.rec.now(), Leave: check.Stayed}
	fl.mu.Lock()
	fl.joiners = append(fl.joiners, j.rec)
	fl.mu.Unlock()
	jctx, cancel := context.WithCancel(ctx)
	j.cancel = cancel
	go func() {
		defer close(j.done)
		j.err = farm.Join(jctx, farm.JoinConfig{
			Tree: j.cl, Farm: farmPath, Name: name, Conf: j.conf, Format: fl.json,
			NewSession: func(ctx context.Context) (farm.Session, error) {
				cs, err := j.cl.NewSession(ctx, sessionTimeout)
				if err != nil {
					return nil, err
				}
				s := &farmSession{Session: cs, rec: fl.rec}
				j.mu.Lock()
				j.sess = s
				j.mu.Unlock()
				return s, nil
			},
		})
	}()
	return j, nil
}

// touch gives the joiner's field n a new value in its local file.
func (fl *farmLoad) touch(j *joiner) {
	c, err := fl.json.Read(j.conf)
	if err != nil {
		fl.fail("read %s's local file: %v", j.rec.Name, err)
		return
	}
	v := fmt.Sprintf("%s-%d", j.rec.Name, fl.values.Add(1))
	c["n"] = v
	fl.addWrite(j.rec.Name, "n", v)
	if _, err := fl.json.Write(j.conf, c); err != nil {
		fl.fail("write %s's local file: %v", j.rec.Name, err)
	}
}

// kill stops the joiner as kill -9 would: its client goes first, so
// that its sessions' keepalives stop and nothing is closed or deleted.
func (fl *farmLoad) kill(j *joiner) {
	at := fl.rec.now()
	j.cl.Close()
	j.cancel()
	<-j.done
	fl.mu.Lock()
	j.rec.Leave, j.rec.LeftAt = check.Killed, at
	fl.mu.Unlock()
}

// leave stops the joiner as a stopped `paddock farm join` does: Join
// closes its session when it returns (it is closed here if Join did
// not). The leave is dated by the close's acknowledgement; a close whose
// outcome is unknown makes it a kill from the close's send time.
func (fl *farmLoad) leave(ctx context.Context, j *joiner) {
	j.cancel()
	<-j.done
	if j.err != nil && !errors.Is(j.err, context.Canceled) {
		fl.fail("join %s returned %v when stopped", j.rec.Name, j.err)
	}
	j.mu.Lock()
	s := j.sess
	j.mu.Unlock()
	leave, at := check.LeftClean, fl.rec.now()
	if s != nil {
		s.mu.Lock()
		closing := s.closing
		s.mu.Unlock()
		if !closing {
			cctx, cancel := context.WithTimeout(ctx, opTimeout)
			s.Close(cctx)
			cancel()
		}
		s.mu.Lock()
		if s.closeErr == nil {
			at = s.acked
		} else {
			leave, at = check.Killed, s.closedAt
		}
		s.mu.Unlock()
	}
	fl.mu.Lock()
	j.rec.Leave, j.rec.LeftAt = leave, at
	fl.mu.Unlock()
	j.cl.Close()
}

// slot runs joiners one after another until stop: each changes its
// local file every 300-700 ms, lives 1-3 s (slot 0's for ever), then
// is killed or leaves, and the next one joins 0.2-0.8 s later, under the
// same name or a new one. The joiner running when stop closes is kept.
func (fl *farmLoad) slot(ctx context.Context, slot int, rng *rand.Rand, stop <-chan struct{}) {
	name := fmt.Sprintf("h%d", slot)
	for gen := 0; ; gen++ {
		if gen > 0 && rng.IntN(2) == 0 {
			name = fmt.Sprintf("h%d-%d", slot, gen)
		}
		j, err := fl.join(ctx, slot, name)
		if err != nil {
			fl.fail("start joiner %s: %v", name, err)
			return
		}
		var until <-chan time.Time
		if slot > 0 {
			until = time.After(time.Duration(1000+rng.IntN(2000)) * time.Millisecond)
		}
		for alive := true; alive; {
			select {
			case <-stop:
				fl.mu.Lock()
				fl.kept = append(fl.kept, j)
				fl.mu.Unlock()
				return
			case <-ctx.Done():
				fl.kill(j)
				return
			case <-j.done:
				fl.fail("join %s returned before it was stopped: %v", name, j.err)
				j.err = nil // reported
				fl.leave(ctx, j)
				return
			case <-until:
				alive = false
			case <-time.After(time.Duration(300+rng.IntN(400)) * time.Millisecond):
				fl.touch(j)
			}
		}
		if rng.IntN(2) == 0 {
			fl.kill(j)
		} else {
			fl.leave(ctx, j)
		}
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(200+rng.IntN(600)) * time.Millisecond):
		}
	}
}

// setter sets a field (r, or the dotted m.v) of a running joiner's host
// every 150-400 ms until stop, whatever the outcome.
func (fl *farmLoad) setter(ctx context.Context, cl *client.Client, rng *rand.Rand, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(150+rng.IntN(250)) * time.Millisecond):
		}
		fl.mu.Lock()
		var names []string
		for _, j := range fl.joiners {
			if j.Leave == check.Stayed {
				names = append(names, j.Name)
			}
		}
		fl.mu.Unlock()
		if len(names) == 0 {
			continue
		}
		name := names[rng.IntN(len(names))]
		field := "r"
		if rng.IntN(3) == 0 {
			field = "m.v"
		}
		v := fmt.Sprintf("r%d", fl.values.Add(1))
		fl.addWrite(name, field, v)
		cctx, cancel := context.WithTimeout(ctx, opTimeout)
		_, err := farm.SetField(cctx, cl, farm.HostPath(farmPath, name), field, v)
		cancel()
		if unexpected(err) {
			fl.fail("set %s %s: %v", name, field, err)
		}
	}
}

// settle waits (stop closed, the cluster healed) until the exporter's
// file equals the farm, every kept joiner's local file equals its host,
// and the farm holds the kept joiners only, or farmSettleTimeout has
// passed; then it records the final file and farm for the checker.
func (fl *farmLoad) settle(ctx context.Context) error {
	fl.wg.Wait()
	cl, err := newClient(ctx, fl.endpoints, 0)
	if err != nil {
		return err
	}
	defer cl.Close()
	deadline := time.Now().Add(farmSettleTimeout)
	for {
		at := fl.rec.now()
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		snap, err := farm.Read(rctx, cl, farmPath, nil)
		cancel()
		if err != nil {
			return fmt.Errorf("robust: read the farm: %w", err)
		}
		hosts := check.FarmHosts{}
		for name, h := range snap.Hosts {
			hosts[name] = flatConf(h.Conf)
		}
		file := check.FarmHosts{}
		if c, err := fl.json.Read(fl.dest); err == nil {
			file = flatHosts(c)
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("robust: read the exported file: %w", err)
		}
		fl.mu.Lock()
		agree := hostsEqual(file, hosts) && len(hosts) == len(fl.kept)
		for _, j := range fl.kept {
			c, err := fl.json.Read(j.conf)
			if err != nil {
				fl.mu.Unlock()
				return fmt.Errorf("robust: read %s's local file: %w", j.rec.Name, err)
			}
			j.rec.Local = flatConf(c)
			agree = agree && confEqual(j.rec.Local, hosts[j.rec.Name])
		}
		if agree || time.Now().After(deadline) {
			fl.final = check.FarmHistory{FinalFile: file, FinalFarm: hosts, End: at}
			fl.mu.Unlock()
			return nil
		}
		fl.mu.Unlock()
		if !sleep(ctx, 100*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// stop ends the exporter and the kept joiners, closing their sessions.
func (fl *farmLoad) stop() {
	fl.stopOnce.Do(func() {
		fl.wg.Wait()
		if fl.exporter.cancel != nil {
			fl.exporter.cancel()
			<-fl.exporter.done
			fl.exporter.cl.Close()
		}
		fl.mu.Lock()
		kept := fl.kept
		fl.mu.Unlock()
		for _, j := range kept {
			j.cancel()
			<-j.done
			j.cl.Close() // Join closed its session when it returned
		}
	})
}

// history is what the workload recorded, for check.Farm; call it after
// settle and stop.
func (fl *farmLoad) history() (check.FarmHistory, []string) {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	h := fl.final
	for _, j := range fl.joiners {
		h.Joiners = append(h.Joiners, *j)
	}
	h.Writes = slices.Clone(fl.writes)
	h.Seen = slices.Clone(fl.seen)
	for _, f := range fl.files {
		if f.Call < h.End {
			h.Files = append(h.Files, f)
		}
	}
	if b, err := json.MarshalIndent(h, "", "  "); err == nil {
		// For a look at a failed run (PADDOCK_ROBUST_KEEP).
		os.WriteFile(filepath.Join(fl.dir, "history.json"), b, 0o644)
	}
	return h, slices.Clone(fl.errs)
}

// flatHosts is an exported farm ({host: conf}) flattened.
func flatHosts(c farm.Conf) check.FarmHosts {
	out := make(check.FarmHosts, len(c))
	for name, v := range c {
		conf, _ := v.(farm.Conf)
		out[name] = flatConf(conf)
	}
	return out
}

// flatConf is c with its nested dicts' fields as dotted paths and values
// as ZkFarmer prints them; an empty dict holds no value and is left out.
func flatConf(c farm.Conf) check.FarmConf {
	out := check.FarmConf{}
	var walk func(prefix string, c farm.Conf)
	walk = func(prefix string, c farm.Conf) {
		for k, v := range c {
			if sub, ok := v.(farm.Conf); ok {
				walk(prefix+k+".", sub)
				continue
			}
			out[prefix+k] = farm.ValueString(v, true)
		}
	}
	walk("", c)
	return out
}

func confEqual(a, b check.FarmConf) bool { return maps.Equal(a, b) }

func hostsEqual(a, b check.FarmHosts) bool {
	return maps.EqualFunc(a, b, confEqual)
}
