package farm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// JoinConfig configures Join.
type JoinConfig struct {
	// Tree is the cluster.
	Tree Tree
	// NewSession opens the session that owns the host's ephemeral znode;
	// Join opens another when one ends (expired after a long partition).
	// Unused with Common. Join owns the sessions it opens: it closes each
	// one when it stops using it and when it returns (so the znode goes at
	// once), through a Close(context.Context) error method when the
	// session has one, as *client.Session does.
	NewSession func(ctx context.Context) (Session, error)
	// Farm is the farm znode's path (/services/db).
	Farm string
	// Name is the host's znode name (its IPv4 address by default, see
	// DefaultName); ignored with Common, which uses CommonName.
	Name string
	// Conf is the local configuration: a file or a DJB directory.
	Conf string
	// Format reads and writes Conf.
	Format Format
	// Common keeps the persistent FARM/common instead of an ephemeral
	// host znode, and leaves size alone.
	Common bool
	// OneWay (import) only copies local changes to the farm: remote
	// changes are not written to Conf.
	OneWay bool
	// Hostname, when not empty, is set as the hostname field of a Conf
	// that has none (a value the user put there is never rewritten).
	// Ignored with Common (no host's) and OneWay (Conf is never written).
	Hostname string
	// OnChanged runs after a remote change was written to Conf
	// (--changed-cmd).
	OnChanged func()
	// Log receives what Join does; nil discards.
	Log *slog.Logger
}

// HostnameField is the field Join sets from JoinConfig.Hostname.
const HostnameField = "hostname"

// rescanEvery is the period of the local rescan that backs the file
// system notifications up.
const rescanEvery = 500 * time.Millisecond

// closeTimeout bounds the closing of a session when Join stops.
const closeTimeout = 5 * time.Second

// errRemoteMoved: a compare-and-set lost to another writer; sync again at
// once, with the remote side read.
var errRemoteMoved = errors.New("farm: join: the znode changed meanwhile")

// errLocalMoved: the local copy changed after it was read for the sync
// that is now writing the remote content to it: sync again at once
// rather than write over that change.
var errLocalMoved = errors.New("farm: join: the local configuration changed meanwhile")

// Join registers the host in the farm and keeps its znode and its local
// configuration in sync, both ways, until ctx ends.
//
// It creates the farm path if missing, then the ephemeral FARM/NAME
// holding Conf (the persistent FARM/common with Common, whose existing
// content wins over Conf on start, as ZkFarmer's rule is), and raises the
// farm's size to its number of hosts. A znode of the same name owned by
// a session of this Join is replaced; one owned by another live session
// (another process or host using the name) is left alone, logged as an
// error, and tried again until it is gone.
//
// Then local changes (file system notifications, and a rescan every
// 500 ms) are written to the znode by compare-and-set at the version last
// synced; remote changes (a long poll on the znode) are written to Conf,
// and OnChanged runs. When both sides changed since they last agreed,
// the two are merged with Merge3 (local's changed fields applied on the
// remote content) and both get the result. Join remembers what each side
// held at the last sync and the znode's version, so its own writes are
// never taken for changes of the other side: no echo.
//
// If the session ends (expired after a long partition) Join opens a new
// one and registers again with the local copy winning, as it does when
// the znode is deleted. While the cluster cannot be reached it logs and
// retries with backoff; it never gives up. It returns nil when ctx ends,
// after closing its session, or an error for a configuration it cannot
// start from (Conf missing or unreadable on start, a missing field).
func Join(ctx context.Context, cfg JoinConfig) error {
	if cfg.Tree == nil || cfg.Format == nil || cfg.Farm == "" || cfg.Conf == "" {
		return errors.New("farm: join: tree, format, farm and conf are required")
	}
	name := cfg.Name
	if cfg.Common {
		name = CommonName
	} else if name == "" || cfg.NewSession == nil {
		return errors.New("farm: join: a name and a session factory are required")
	}
	cfg.Farm = path.Clean(cfg.Farm)
	j := &joiner{
		cfg:  cfg,
		log:  cfg.Log,
		path: HostPath(path.Clean(cfg.Farm), name),
		kick: make(chan struct{}, 1),
	}
	if j.log == nil {
		j.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return j.run(ctx)
}

// joiner is one Join. Its fields belong to the run goroutine; the remote
// poller only sends on kick.
type joiner struct {
	cfg  JoinConfig
	log  *slog.Logger
	path string
	kick chan struct{}

	sess       Session
	own        map[uint64]bool // the sessions this Join opened
	registered bool            // the znode exists and is ours
	sizeDue    bool            // the farm's size is still to be raised
	regZxid    uint64          // the zxid of the first registration, for the poller
	polling    bool            // the poller runs

	// What the two sides held when they last agreed (or, for OneWay,
	// what each side held last): the base of the next merge.
	local  Conf
	remote Conf
	ver    int32  // the znode's version holding remote
	mzxid  uint64 // the zxid of the znode's change to remote: with ver, tells a znode deleted and created again at the same version

	push     bool   // the local copy must be written up even if unchanged
	pull     bool   // remote must be written to Conf (an earlier write failed)
	localErr string // the last local read error logged, to log it once
	heldBy   uint64 // the foreign owner of the name last logged
}

func (j *joiner) run(ctx context.Context) error {
	local, err := j.cfg.Format.Read(j.cfg.Conf)
	if err != nil {
		return fmt.Errorf("farm: join: read %s: %w", j.cfg.Conf, err)
	}
	if j.cfg.Hostname != "" && !j.cfg.OneWay && !j.cfg.Common {
		if _, ok := local[HostnameField]; !ok {
			local[HostnameField] = j.cfg.Hostname
			if _, err := j.cfg.Format.Write(j.cfg.Conf, local); err != nil {
				return fmt.Errorf("farm: join: write %s: %w", j.cfg.Conf, err)
			}
		}
	}
	j.local = local
	defer j.closeSession()

	lw, err := newLocalWatch(j.cfg.Conf, j.cfg.Format.Name() == "dir")
	if err != nil {
		j.log.Warn("farm: join: cannot watch the local configuration; rescanning only", "conf", j.cfg.Conf, "err", err)
	} else {
		defer lw.close()
	}
	var localC <-chan struct{}
	if lw != nil {
		localC = lw.C
	}
	pollCtx, stopPoll := context.WithCancel(ctx)
	var polling sync.WaitGroup
	defer func() {
		stopPoll()
		polling.Wait()
	}()
	tick := time.NewTicker(rescanEvery)
	defer tick.Stop()

	remoteDirty := false
	attempt := 0
	var retry *time.Timer
	var retryC <-chan time.Time
	for {
		if retryC == nil {
			err := j.step(ctx, remoteDirty)
			switch {
			case ctx.Err() != nil:
				return nil
			case errors.Is(err, errRemoteMoved), errors.Is(err, errLocalMoved):
				remoteDirty = true
				continue
			case err != nil:
				level := slog.LevelWarn
				var held *NameHeldError
				if errors.As(err, &held) {
					level = slog.LevelDebug // logged as an error once per owner
				}
				j.log.Log(ctx, level, "farm: join: sync failed; retrying", "znode", j.path, "err", err, "in", backoff(attempt))
				retry = time.NewTimer(backoff(attempt))
				retryC = retry.C
				attempt++
				remoteDirty = true
			default:
				remoteDirty, attempt = false, 0
			}
			if j.registered && !j.polling {
				// One poller for the whole Join: it follows the path
				// across registrations.
				j.polling = true
				polling.Add(1)
				go func(after uint64) {
					defer polling.Done()
					j.poll(pollCtx, after)
				}(j.regZxid)
			}
		}
		var sessDone <-chan struct{}
		if j.sess != nil && j.registered {
			sessDone = j.sess.Done()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-localC:
		case <-tick.C:
		case <-j.kick:
			remoteDirty = true
		case <-sessDone:
			j.log.Warn("farm: join: session ended; registering again", "znode", j.path, "session", fmt.Sprintf("%#x", j.sess.ID()))
			j.registered = false
		case <-retryC:
			retryC = nil
		}
	}
}

// step brings both sides in line once: it registers when the znode is not
// (or no longer) ours, else writes whichever side changed to the other.
// remoteDirty says the znode may have changed.
func (j *joiner) step(ctx context.Context, remoteDirty bool) error {
	if j.sess != nil && isDone(j.sess) {
		j.registered = false
	}
	if !j.registered {
		return j.register(ctx)
	}
	if j.sizeDue {
		if err := j.raiseSize(ctx); err != nil {
			j.log.Warn("farm: join: size not raised yet; retrying", "farm", j.cfg.Farm, "err", err)
		}
	}
	if j.pull {
		if err := j.pullLocal(); err != nil {
			// The sync goes on: local changes still go up, and the
			// remote side is read again, since a change there (a field
			// the local format cannot hold, unset) may be what lets the
			// rewrite through. Until it does, the error is retried.
			if serr := j.sync(ctx, true); serr != nil || !j.pull {
				return serr
			}
			return err
		}
	}
	return j.sync(ctx, remoteDirty)
}

// sync is step once registered and with no local rewrite pending (or one
// that failed): it writes whichever side changed to the other.
func (j *joiner) sync(ctx context.Context, remoteDirty bool) error {
	local := j.readLocal()
	localChanged := j.push || !local.Equal(j.local)
	if !localChanged && !remoteDirty {
		return nil
	}
	remote, ver, mzxid := j.remote, j.ver, j.mzxid
	if remoteDirty {
		g, err := j.cfg.Tree.Get(ctx, &paddockv1.GetRequest{Path: j.path})
		if status.Code(err) == codes.NotFound {
			j.log.Warn("farm: join: znode deleted; registering again", "znode", j.path)
			j.registered = false
			return j.register(ctx)
		}
		if err != nil {
			return err
		}
		if !j.cfg.Common && g.GetStat().GetEphemeralOwner() != j.sess.ID() {
			j.registered = false
			return j.register(ctx)
		}
		if v, mz := g.GetStat().GetVersion(), g.GetStat().GetMzxid(); v != j.ver || mz != j.mzxid {
			r, err := DecodeConf(g.GetData())
			if err != nil {
				j.log.Warn("farm: join: znode holds no JSON object; writing the local copy over it", "znode", j.path, "err", err)
				r, localChanged, j.push = j.remote, true, true
			}
			remote, ver, mzxid = r, v, mz
		}
	}
	remoteChanged := !remote.Equal(j.remote)
	if !remoteChanged {
		j.ver, j.mzxid = ver, mzxid // a set to the same content
	}
	switch {
	case !localChanged && !remoteChanged:
		return nil
	case !localChanged:
		j.remote, j.ver, j.mzxid = remote, ver, mzxid
		if j.cfg.OneWay {
			return nil
		}
		j.log.Info("farm: join: remote change written to the local configuration", "znode", j.path, "version", ver)
		j.pull = true
		return j.pullLocal()
	}
	// The remote side may hold what the local one never took (OneWay,
	// or values a DJB directory reads back as strings): apply local's
	// changes to it rather than overwrite it. Unchanged, it is local.
	want := Merge3(j.local, local, remote)
	if remoteChanged {
		j.log.Info("farm: join: both sides changed; merged", "znode", j.path)
	}
	if !j.push && want.Equal(remote) {
		// The znode holds it already (local's changes were merged up
		// before a rewrite of the local copy failed): write nothing.
		j.remote, j.ver, j.mzxid = remote, ver, mzxid
		j.local = local
		if j.cfg.OneWay || want.Equal(local) {
			return nil
		}
		j.pull = true
		return j.pullLocal()
	}
	s, err := j.cfg.Tree.Set(ctx, &paddockv1.SetRequest{Path: j.path, Data: want.Encode(), Version: proto.Int32(ver)})
	switch {
	case isBadVersion(err):
		return errRemoteMoved
	case status.Code(err) == codes.NotFound:
		j.registered = false
		return j.register(ctx)
	case err != nil:
		return err
	}
	j.remote, j.ver, j.mzxid, j.push = want, s.GetStat().GetVersion(), s.GetStat().GetMzxid(), false
	// local is in want now: the base of the next merge.
	j.local = local
	if j.cfg.OneWay || want.Equal(local) {
		return nil
	}
	j.pull = true
	return j.pullLocal()
}

// pullLocal writes the remote content to Conf, running OnChanged; until it
// succeeds (a full disk), pull stays set and every step tries again.
// j.local is the local copy the remote content took in: when Conf holds
// something else now (echo 1 > DIR/enabled while the merge went up),
// nothing is written and errLocalMoved asks for another sync, which
// takes that change in. (A Conf that cannot be read is written over.)
func (j *joiner) pullLocal() error {
	if now, err := j.cfg.Format.Read(j.cfg.Conf); err == nil && !now.Equal(j.local) {
		j.pull = false
		return errLocalMoved
	}
	if err := j.writeLocal(j.remote); err != nil {
		return err
	}
	j.pull = false
	return nil
}

// readLocal reads Conf. An unreadable Conf (a half-written file, an
// editor's syntax error) is logged once and the last good copy kept.
func (j *joiner) readLocal() Conf {
	c, err := j.cfg.Format.Read(j.cfg.Conf)
	if err != nil {
		if msg := err.Error(); msg != j.localErr {
			j.log.Warn("farm: join: cannot read the local configuration; keeping the last good copy", "conf", j.cfg.Conf, "err", err)
			j.localErr = msg
		}
		return j.local
	}
	j.localErr = ""
	return c
}

// writeLocal writes c to Conf, then runs OnChanged if the content
// changed. The base becomes what Conf holds once written (a DJB
// directory turns numbers into strings), so the rewrite never goes back up
// as a local change.
func (j *joiner) writeLocal(c Conf) error {
	c = j.storable(c)
	changed, err := j.cfg.Format.Write(j.cfg.Conf, c)
	if err != nil {
		return fmt.Errorf("write %s: %w", j.cfg.Conf, err)
	}
	j.local = c
	if back, err := j.cfg.Format.Read(j.cfg.Conf); err == nil && sameContent(c, back) {
		// Not back when it holds more than the format's rewording of c:
		// a local edit landed since the write, and must go up.
		j.local = back
	}
	if changed && j.cfg.OnChanged != nil {
		j.cfg.OnChanged()
	}
	return nil
}

// storable is c without the fields Conf's format cannot hold (a/b in a
// DJB directory), logged: they stay on the znode only, since the local
// copy never had them to change.
func (j *joiner) storable(c Conf) Conf {
	c, dropped := storable(j.cfg.Format, c)
	if len(dropped) > 0 {
		j.log.Warn("farm: join: fields the local format cannot hold are left out of it", "conf", j.cfg.Conf, "fields", strings.Join(dropped, ", "))
	}
	return c
}

// sameContent reports whether back, Conf read back after c was written to
// it, holds c as the format words it (a DJB directory keeps every value
// as a trimmed string, a list as its JSON), leaf by leaf.
func sameContent(c, back Conf) bool {
	if len(c) != len(back) {
		return false
	}
	for k, v := range c {
		b, ok := back[k]
		if !ok {
			return false
		}
		vc, vDict := v.(Conf)
		bc, bDict := b.(Conf)
		switch {
		case vDict != bDict:
			return false
		case vDict:
			if !sameContent(vc, bc) {
				return false
			}
		case leafString(v) != leafString(b):
			return false
		}
	}
	return true
}

// leafString is a leaf as text, as a DJB file holds it.
func leafString(v any) string {
	if v == nil {
		return ""
	}
	return strings.TrimSpace(ValueString(v, true))
}

// register creates the znode holding the local copy (for common, adopts
// the existing one), opening a session first if there is none alive.
func (j *joiner) register(ctx context.Context) error {
	local := j.readLocal()
	if j.cfg.Common {
		return j.registerCommon(ctx, local)
	}
	if j.sess == nil || isDone(j.sess) {
		j.closeSession()
		s, err := j.cfg.NewSession(ctx)
		if err != nil {
			return fmt.Errorf("open a session: %w", err)
		}
		j.sess = s
		if j.own == nil {
			j.own = map[uint64]bool{}
		}
		j.own[s.ID()] = true
	}
	c, err := Register(ctx, j.cfg.Tree, j.cfg.Farm, j.cfg.Name, local, j.sess.ID(), func(owner uint64) bool { return j.own[owner] })
	var held *NameHeldError
	if errors.As(err, &held) && held.Owner != j.heldBy {
		j.log.Error("farm: join: the name is taken by another session (another process or host uses it); waiting for it to go",
			"znode", j.path, "session", fmt.Sprintf("%#x", held.Owner))
		j.heldBy = held.Owner
	}
	if err != nil {
		return err
	}
	j.registered, j.sizeDue, j.heldBy = true, true, 0
	j.regZxid = c.GetHeader().GetZxid()
	j.local, j.remote, j.ver, j.mzxid = local, local, c.GetStat().GetVersion(), c.GetStat().GetMzxid()
	j.log.Info("farm: join: registered", "znode", j.path, "session", fmt.Sprintf("%#x", j.sess.ID()))
	if err := j.raiseSize(ctx); err != nil {
		j.log.Warn("farm: join: size not raised yet; retrying", "farm", j.cfg.Farm, "err", err)
	}
	return nil
}

// registerCommon adopts FARM/common: its content wins on start (the local
// copy wins for OneWay); a missing one is created from the local copy.
func (j *joiner) registerCommon(ctx context.Context, local Conf) error {
	if err := EnsurePath(ctx, j.cfg.Tree, j.cfg.Farm); err != nil {
		return err
	}
	for {
		g, err := j.cfg.Tree.Get(ctx, &paddockv1.GetRequest{Path: j.path})
		if status.Code(err) == codes.NotFound {
			c, err := j.cfg.Tree.Create(ctx, &paddockv1.CreateRequest{Path: j.path, Data: local.Encode()})
			if status.Code(err) == codes.AlreadyExists {
				continue
			}
			if err != nil {
				return err
			}
			j.registered, j.regZxid = true, c.GetHeader().GetZxid()
			j.local, j.remote, j.ver, j.mzxid = local, local, c.GetStat().GetVersion(), c.GetStat().GetMzxid()
			return nil
		}
		if err != nil {
			return err
		}
		j.registered, j.regZxid = true, max(g.GetHeader().GetZxid(), 1)
		j.ver, j.mzxid = g.GetStat().GetVersion(), g.GetStat().GetMzxid()
		remote, err := DecodeConf(g.GetData())
		if err != nil || j.cfg.OneWay {
			// Local wins: the next step writes it up, over the znode's
			// content (as if the znode held local already, else the
			// merge would keep the znode's content: local has no change
			// of its own to apply).
			j.local, j.remote, j.push = local, local, true
			return nil
		}
		j.remote = remote
		if _, err := j.cfg.Format.Write(j.cfg.Conf, j.storable(remote)); err != nil {
			j.pull = true // try again, running OnChanged then
			return fmt.Errorf("write %s: %w", j.cfg.Conf, err)
		}
		j.local = j.readLocal()
		return nil
	}
}

// raiseSize raises the farm's size to its number of hosts.
func (j *joiner) raiseSize(ctx context.Context) error {
	err := RaiseSizeToHosts(ctx, j.cfg.Tree, j.cfg.Farm)
	if errors.Is(err, ErrBadConf) {
		// Data put there by hand: it can hold no size until it changes,
		// and trying again each rescan would only log it again.
		j.sizeDue = false
		j.log.Error("farm: join: the farm znode holds no JSON object: its size is not kept", "farm", j.cfg.Farm, "err", err)
		return nil
	}
	if err != nil {
		return err
	}
	j.sizeDue = false
	return nil
}

// poll follows the znode after zxid and kicks the run loop when it
// changed (its own writes included: the loop tells them by version).
func (j *joiner) poll(ctx context.Context, after uint64) {
	attempt := 0
	for ctx.Err() == nil {
		resp, err := j.cfg.Tree.Poll(ctx, &paddockv1.PollRequest{Path: j.path, AfterZxid: after, TimeoutMs: pollTimeout.Milliseconds()})
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if isGap(err) {
				// Events were lost: start again from now, and look.
				if e, err := j.cfg.Tree.Exists(ctx, &paddockv1.ExistsRequest{Path: j.path}); err == nil {
					after = e.GetHeader().GetZxid()
					j.kickRemote()
					continue
				}
			}
			j.log.Debug("farm: join: poll failed; retrying", "znode", j.path, "err", err)
			sleep(ctx, backoff(attempt))
			attempt++
			continue
		}
		attempt = 0
		if len(resp.GetEvents()) > 0 {
			j.kickRemote()
		}
		if z := resp.GetHeader().GetZxid(); z > after {
			after = z
		}
	}
}

func (j *joiner) kickRemote() {
	select {
	case j.kick <- struct{}{}:
	default:
	}
}

// closeSession closes the current session if Join opened it and it has a
// Close method.
func (j *joiner) closeSession() {
	if j.sess == nil {
		return
	}
	s := j.sess
	j.sess = nil
	if c, ok := s.(interface{ Close(context.Context) error }); ok {
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			j.log.Warn("farm: join: close session", "session", fmt.Sprintf("%#x", s.ID()), "err", err)
		}
	}
}

func isDone(s Session) bool {
	select {
	case <-s.Done():
		return true
	default:
		return false
	}
}
