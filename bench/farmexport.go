package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/paddock/paddock/client"
	"github.com/paddock/paddock/farm"
)

// changeTimeout bounds one change's way to DEST, and the exporter's
// first write.
const changeTimeout = 30 * time.Second

// export starts a real `paddock farm export FARM DEST.json` on a
// follower, then makes o.Changes changes through farm.SetField on the
// other follower, one at a time: each is timed until an fsnotify event
// for DEST arrives after which DEST holds the change's value.
func (f *farmRun) export(ctx context.Context) error {
	leader, err := f.p.Leader(ctx)
	if err != nil {
		return err
	}
	n := len(f.p.endpoints)
	expNode, setNode := (leader+1)%n, (leader+2)%n
	if leader < 0 {
		expNode, setNode = 0, 1%n
	}
	f.res.Leader, f.res.ExportNode, f.res.SetNode = leader, expNode, setNode
	setter, err := client.New(ctx, client.Config{Endpoints: f.p.endpoints[setNode : setNode+1]})
	if err != nil {
		return err
	}
	defer setter.Close()

	dest := filepath.Join(f.o.Dir, "farm.json")
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("bench: farm: %w", err)
	}
	defer w.Close()
	if err := w.Add(f.o.Dir); err != nil {
		return fmt.Errorf("bench: farm: watch %s: %w", f.o.Dir, err)
	}
	eps := append(append([]string{}, f.p.endpoints[expNode:]...), f.p.endpoints[:expNode]...)
	logPath := filepath.Join(f.o.Dir, "export.log")
	exp, err := f.p.startChild(logPath, "farm", "export", "--endpoints", strings.Join(eps, ","), f.path, dest)
	if err != nil {
		return err
	}
	defer exp.stop()
	fail := func(err error) error {
		return fmt.Errorf("bench: farm: %w (exporter log %s:\n%s)", err, logPath, logTail(logPath))
	}
	if _, err := waitDest(ctx, w, exp, dest, func(b []byte) bool {
		var m map[string]json.RawMessage
		return json.Unmarshal(b, &m) == nil && len(m) == f.o.Hosts
	}); err != nil {
		return fail(fmt.Errorf("the exporter's first write of %d hosts: %w", f.o.Hosts, err))
	}

	pid := exp.cmd.Process.Pid
	cpu0, err := cpuSeconds(pid)
	if err != nil {
		return err
	}
	var setLat, ackLat []time.Duration
	for k := 1; k <= f.o.Changes; k++ {
		// A prime stride spreads the changes over the farm.
		host := farm.HostPath(f.path, hostName(k*7919%f.o.Hosts))
		want := []byte(`"` + seqValue(k) + `"`)
		t0 := time.Now()
		if _, err := farm.SetField(ctx, setter, host, seqField, seqValue(k)); err != nil {
			return fmt.Errorf("bench: farm: set %s %s: %w", host, seqField, err)
		}
		t1 := time.Now()
		seen, err := waitDest(ctx, w, exp, dest, func(b []byte) bool { return bytes.Contains(b, want) })
		if err != nil {
			return fail(fmt.Errorf("change %d (%s): %w", k, host, err))
		}
		setLat = append(setLat, seen.Sub(t0))
		ackLat = append(ackLat, max(seen.Sub(t1), 0))
	}
	cpu1, err := cpuSeconds(pid)
	if err != nil {
		return err
	}
	f.res.ExporterCPU = time.Duration((cpu1 - cpu0) * float64(time.Second))
	f.res.SetToFile, f.res.AckToFile = sorted(setLat), sorted(ackLat)
	if fi, err := os.Stat(dest); err == nil {
		f.res.DestBytes = fi.Size()
	}
	if err := exp.stop(); err != nil {
		return err
	}
	f.res.FullReads, f.res.HostReads, f.res.Writes, err = exportStats(logPath)
	return err
}

// waitDest waits until an event on dest arrives after which dest's
// content satisfies ok (the rename of the exporter's temporary file over
// it shows as a create), and returns that event's arrival time.
func waitDest(ctx context.Context, w *fsnotify.Watcher, exp *child, dest string, ok func([]byte) bool) (time.Time, error) {
	t := time.NewTimer(changeTimeout)
	defer t.Stop()
	for {
		select {
		case ev := <-w.Events:
			now := time.Now()
			if filepath.Clean(ev.Name) != dest {
				continue
			}
			if b, err := os.ReadFile(dest); err == nil && ok(b) {
				return now, nil
			}
		case err := <-w.Errors:
			return time.Time{}, fmt.Errorf("fsnotify: %w", err)
		case <-exp.done:
			return time.Time{}, errors.New("the exporter exited")
		case <-t.C:
			return time.Time{}, fmt.Errorf("%s not as expected after %v", dest, changeTimeout)
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}

// statsLine is the exporter's last log line, with farm.ExportStats.
var statsLine = regexp.MustCompile(`farm: export: stopped" full_reads=(\d+) host_reads=(\d+) writes=(\d+)`)

// exportStats reads the exporter's counters from its log.
func exportStats(logPath string) (full, host, writes uint64, err error) {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("bench: farm: %w", err)
	}
	m := statsLine.FindSubmatch(b)
	if m == nil {
		return 0, 0, 0, fmt.Errorf("bench: farm: no counters in the exporter's log %s:\n%s", logPath, logTail(logPath))
	}
	var v [3]uint64
	for i := range v {
		v[i], _ = strconv.ParseUint(string(m[i+1]), 10, 64)
	}
	return v[0], v[1], v[2], nil
}

func sorted(d []time.Duration) []time.Duration {
	s := append([]time.Duration(nil), d...)
	slices.Sort(s)
	return s
}

// FarmMarkdown writes r as a markdown table, one figure a line.
func FarmMarkdown(w io.Writer, r *FarmResults) error {
	d := func(v time.Duration) string { return fmtNanos(float64(v)) }
	pct := func(s []time.Duration) string {
		return d(percentile(s, 0.5)) + " / " + d(percentile(s, 0.99))
	}
	var joins []string
	for _, j := range r.Joins {
		joins = append(joins, d(j))
	}
	perChange := time.Duration(0)
	if r.Changes > 0 {
		perChange = r.ExporterCPU / time.Duration(r.Changes)
	}
	rows := [][2]string{
		{"hosts", fmt.Sprint(r.Hosts)},
		{fmt.Sprintf("register %d joiners, %d at a time: total", r.Hosts, r.Concurrency), d(r.RegisterTotal)},
		{"register, per joiner: p50 / p99", pct(r.Register)},
		{"registrations whose size raise lost (Join retries it later)", fmt.Sprint(r.SizeLost)},
		{"real `farm join`, start to znode visible", strings.Join(joins, ", ")},
		{fmt.Sprintf("`farm set` start to DEST written (%d changes): p50 / p99", r.Changes), pct(r.SetToFile)},
		{"`farm set` acknowledged to DEST written: p50 / p99", pct(r.AckToFile)},
		{"exporter CPU per change", d(perChange)},
		{fmt.Sprintf("serialising DEST (json, %d hosts), CPU per write", r.Hosts), d(r.SerialiseCPU)},
		{"exporter full reads / host reads / writes", fmt.Sprintf("%d / %d / %d", r.FullReads, r.HostReads, r.Writes)},
		{"DEST size", fmt.Sprintf("%.0f KiB", float64(r.DestBytes)/1024)},
	}
	var b strings.Builder
	b.WriteString("| farm | paddock |\n|---|---:|\n")
	for _, row := range rows {
		fmt.Fprintf(&b, "| %s | %s |\n", row[0], row[1])
	}
	fmt.Fprintf(&b, "\nExporter's first endpoint node %d, changes through node %d; leader was node %d.\n",
		r.ExportNode, r.SetNode, r.Leader)
	_, err := io.WriteString(w, b.String())
	return err
}
