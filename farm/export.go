package farm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// ExportConfig configures Export.
type ExportConfig struct {
	// Tree is the cluster.
	Tree Tree
	// Farm is the farm znode's path.
	Farm string
	// Dest is the local file (or DJB directory) kept in sync.
	Dest string
	// Format writes Dest.
	Format Format
	// Filter keeps only the hosts that pass it.
	Filter Filter
	// OnChanged runs after Dest changed (--changed-cmd).
	OnChanged func()
	// WaitMin and WaitMax (--wait MIN:MAX): after a change, Dest is
	// written once the farm has been quiet for WaitMin, or WaitMax after
	// the first change at the latest. Zero writes at once.
	WaitMin, WaitMax time.Duration
	// Once writes Dest once and returns.
	Once bool
	// Stats, when set, counts what Export does (for tests and benchmarks).
	Stats *ExportStats
	// Log receives what Export does; nil discards.
	Log *slog.Logger
}

// ExportStats counts an Export's work. Per change of one host an exporter
// reads that host only: FullReads grows only at start and on a gap in the
// farm's history.
type ExportStats struct {
	// FullReads counts reads of the whole farm.
	FullReads atomic.Uint64
	// HostReads counts reads of one host after its change.
	HostReads atomic.Uint64
	// Writes counts writes that changed Dest (each ran OnChanged).
	Writes atomic.Uint64
}

// Export keeps Dest equal to the farm (the hosts passing Filter, by name,
// with their configurations) until ctx ends, or once.
//
// It reads the whole farm at one zxid and writes Dest, then follows the
// farm with a long poll from that zxid: a host created or changed is read
// again, alone, at the event's zxid or later; a host deleted is dropped.
// The whole farm is read again only when the poll cannot go on without a
// gap (COMPACTED, SNAPSHOT_RESTORED, FUTURE_ZXID) or when the farm znode
// itself is created or deleted. Dest is rewritten, and OnChanged run, only
// when its content changes.
//
// While the cluster cannot be reached, Dest keeps its last content and
// Export retries with backoff, resuming from the last zxid it saw. It
// returns nil when ctx ends; an error when Dest cannot be written the
// first time, or, with Once, when the farm cannot be read.
func Export(ctx context.Context, cfg ExportConfig) error {
	if cfg.Tree == nil || cfg.Format == nil || cfg.Farm == "" || cfg.Dest == "" {
		return errors.New("farm: export: tree, format, farm and dest are required")
	}
	cfg.Farm = path.Clean(cfg.Farm)
	e := &exporter{cfg: cfg, log: cfg.Log, stats: cfg.Stats}
	if e.log == nil {
		e.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if e.stats == nil {
		e.stats = &ExportStats{}
	}
	if cfg.Once {
		if err := e.readFarm(ctx); err != nil {
			return fmt.Errorf("farm: export: read %s: %w", cfg.Farm, err)
		}
		return e.write()
	}
	if !e.readFarmRetrying(ctx) {
		return nil
	}
	if err := e.write(); err != nil {
		return err
	}
	return e.follow(ctx)
}

// exporter is one Export, run by one goroutine.
type exporter struct {
	cfg   ExportConfig
	log   *slog.Logger
	stats *ExportStats
	// hosts is the whole farm, unfiltered, as of zxid.
	hosts map[string]Conf
	zxid  uint64
}

// follow polls the farm after e.zxid and applies its changes until ctx
// ends, writing Dest once they settle (WaitMin, WaitMax).
func (e *exporter) follow(ctx context.Context) error {
	var pending bool          // hosts changed since Dest was written
	var first, last time.Time // the first and the last pending change
	attempt, writeFailures := 0, 0
	for {
		wait := exportPollTimeout
		if pending {
			due := e.due(first, last)
			if !time.Now().Before(due) {
				if err := e.write(); err != nil {
					// A full disk, say: the farm is still followed
					// meanwhile, and the write tried again.
					d := backoff(writeFailures)
					e.log.Warn("farm: export: write failed; retrying", "dest", e.cfg.Dest, "err", err, "in", d)
					writeFailures++
					first = time.Now().Add(d)
					last = first
				} else {
					pending, writeFailures = false, 0
				}
				continue
			}
			wait = min(wait, time.Until(due))
		}
		resp, err := e.cfg.Tree.Poll(ctx, &paddockv1.PollRequest{
			Path: e.cfg.Farm, Recursive: true, AfterZxid: e.zxid, TimeoutMs: pollMillis(wait),
		})
		if ctx.Err() != nil {
			return nil
		}
		changed := false
		switch {
		case err != nil && isGap(err):
			e.log.Warn("farm: export: the farm's history has a gap; reading it again", "farm", e.cfg.Farm, "err", err)
			if !e.readFarmRetrying(ctx) {
				return nil
			}
			changed = true
		case err != nil:
			d := backoff(attempt)
			if pending {
				d = max(min(d, time.Until(e.due(first, last))), 0)
			}
			e.log.Warn("farm: export: poll failed; keeping the last file and retrying", "farm", e.cfg.Farm, "err", err, "in", d)
			attempt++
			if !sleep(ctx, d) {
				return nil
			}
			continue
		default:
			attempt = 0
			reread, ch, err := e.apply(ctx, resp.GetEvents())
			changed = ch // hosts read before a failure are applied
			if err != nil {
				// e.zxid stays: the next poll delivers these events again.
				e.log.Warn("farm: export: reading a changed host failed; retrying", "farm", e.cfg.Farm, "err", err)
				if !sleep(ctx, backoff(0)) {
					return nil
				}
			} else if reread {
				if !e.readFarmRetrying(ctx) {
					return nil
				}
				changed = true
			} else if z := resp.GetHeader().GetZxid(); z > e.zxid {
				e.zxid = z
			}
		}
		if changed {
			now := time.Now()
			if !pending {
				first, pending = now, true
			}
			last = now
		}
	}
}

// due is when pending changes are written: WaitMin after the last one,
// WaitMax after the first at the latest.
func (e *exporter) due(first, last time.Time) time.Time {
	d := last.Add(e.cfg.WaitMin)
	if e.cfg.WaitMax > 0 {
		if m := first.Add(e.cfg.WaitMax); m.Before(d) {
			d = m
		}
	}
	return d
}

// apply brings hosts up to date with events. It reports whether the farm
// must be read again (the farm znode was created or deleted) and whether
// a host changed.
func (e *exporter) apply(ctx context.Context, events []*paddockv1.Event) (reread, changed bool, err error) {
	prefix := strings.TrimSuffix(e.cfg.Farm, "/") + "/"
	type change struct {
		deleted bool
		zxid    uint64
	}
	changes := map[string]change{}
	var order []string
	for _, ev := range events {
		if ev.GetPath() == e.cfg.Farm {
			switch ev.GetKind() {
			case paddockv1.EventKind_EVENT_KIND_CREATED, paddockv1.EventKind_EVENT_KIND_DELETED:
				reread = true
			}
			continue
		}
		name, ok := strings.CutPrefix(ev.GetPath(), prefix)
		if !ok || name == "" || strings.Contains(name, "/") {
			continue
		}
		var c change
		switch ev.GetKind() {
		case paddockv1.EventKind_EVENT_KIND_CREATED, paddockv1.EventKind_EVENT_KIND_DATA_CHANGED:
			c = change{zxid: ev.GetZxid()}
		case paddockv1.EventKind_EVENT_KIND_DELETED:
			c = change{deleted: true, zxid: ev.GetZxid()}
		default:
			continue
		}
		if _, seen := changes[name]; !seen {
			order = append(order, name)
		}
		changes[name] = c
	}
	if reread {
		return true, false, nil
	}
	for _, name := range order {
		c := changes[name]
		if c.deleted {
			if _, ok := e.hosts[name]; ok {
				delete(e.hosts, name)
				changed = true
			}
			continue
		}
		g, err := e.cfg.Tree.Get(ctx, &paddockv1.GetRequest{Path: HostPath(e.cfg.Farm, name), Read: &paddockv1.ReadOptions{
			// The event's zxid is all it must reflect: any replica that has
			// applied it will do.
			Consistency: paddockv1.ReadConsistency_READ_CONSISTENCY_SERIALIZABLE, MinZxid: c.zxid,
		}})
		e.stats.HostReads.Add(1)
		if status.Code(err) == codes.NotFound {
			// Deleted since: its event follows.
			if _, ok := e.hosts[name]; ok {
				delete(e.hosts, name)
				changed = true
			}
			continue
		}
		if err != nil {
			return false, changed, err
		}
		conf, err := DecodeConf(g.GetData())
		if err != nil {
			conf = Conf{}
		}
		if old, ok := e.hosts[name]; !ok || !old.Equal(conf) {
			e.hosts[name] = conf
			changed = true
		}
	}
	return false, changed, nil
}

// readFarm reads the whole farm.
func (e *exporter) readFarm(ctx context.Context) error {
	s, err := Read(ctx, e.cfg.Tree, e.cfg.Farm, nil)
	if err != nil {
		return err
	}
	e.stats.FullReads.Add(1)
	e.hosts = make(map[string]Conf, len(s.Hosts))
	for name, h := range s.Hosts {
		e.hosts[name] = h.Conf
	}
	e.zxid = s.Zxid
	return nil
}

// readFarmRetrying reads the whole farm, retrying until it can or ctx
// ends (false).
func (e *exporter) readFarmRetrying(ctx context.Context) bool {
	for attempt := 0; ; attempt++ {
		err := e.readFarm(ctx)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		e.log.Warn("farm: export: reading the farm failed; retrying", "farm", e.cfg.Farm, "err", err, "in", backoff(attempt))
		if !sleep(ctx, backoff(attempt)) {
			return false
		}
	}
}

// write writes the hosts passing the filter to Dest (common is not a
// host, see Snapshot.Export), and runs OnChanged when that changed it.
func (e *exporter) write() error {
	out := make(Conf, len(e.hosts))
	for name, c := range e.hosts {
		if name != CommonName && e.cfg.Filter.Match(c) {
			out[name] = c
		}
	}
	out, dropped := storable(e.cfg.Format, out)
	if len(dropped) > 0 {
		e.log.Warn("farm: export: fields the format cannot hold are left out", "dest", e.cfg.Dest, "fields", strings.Join(dropped, ", "))
	}
	changed, err := e.cfg.Format.Write(e.cfg.Dest, out)
	if err != nil {
		return fmt.Errorf("farm: export: write %s: %w", e.cfg.Dest, err)
	}
	if changed {
		e.stats.Writes.Add(1)
		e.log.Info("farm: export: written", "dest", e.cfg.Dest, "hosts", len(out), "zxid", e.zxid)
		if e.cfg.OnChanged != nil {
			e.cfg.OnChanged()
		}
	}
	return nil
}
