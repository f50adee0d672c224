package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

// Results are one system's rows of a run.
type Results struct {
	// System is the Cluster's Name.
	System string
	// Nodes is the cluster's size: with each row's Leader it says where
	// the row's clients were (see Placement).
	Nodes int
	// Rows are one per workload and concurrency level (or watcher count),
	// in the order they ran.
	Rows []Row
}

// Row is one measured workload at one concurrency level.
//
// A negative CPUPer1kOps, RSSBytes or DiskBytes means not measured: the
// cluster has no known server processes or data directories (a cluster
// reached by endpoints), or the figure means nothing for the workload
// (CPU of ephemeral cleanup, memory and restart). A restart row with
// negative P50 and P99 is a cluster that cannot be restarted.
type Row struct {
	// Workload is one of Workloads.
	Workload string
	// Clients is the concurrency, the watcher count for "watch", 1 for
	// "ephemeral-cleanup", 0 for "memory" and "restart", and the
	// contender processes for "election" and "election-server-kill".
	Clients int
	// Ops are the operations completed in the measured window: writes or
	// reads, events delivered for "watch", open-create-close cycles for
	// "session-churn", kills for "ephemeral-cleanup", "election" (of the
	// leading contender) and "election-server-kill" (of the leader
	// server), restarts for "restart", keys held for "memory", and
	// Lock + Unlock round trips for "lock".
	Ops int64
	// OpsPerSec is Ops over the measured window (0 where there is no
	// window: cleanup, memory, restart).
	OpsPerSec float64
	// P50 and P99 are latencies: per operation; write acknowledged ->
	// event arrived for "watch"; SIGKILL of the session's owner -> key gone
	// for "ephemeral-cleanup"; Start called -> a linearizable read served
	// by the node for "restart"; SIGKILL of the leading contender -> the
	// next one learns it leads for "election"; SIGKILL of the leader
	// server -> the cluster serves a linearizable read for
	// "election-server-kill".
	P50, P99 time.Duration
	// CPUPer1kOps is the servers' CPU seconds (utime + stime of every
	// server process, from /proc) in the measured window per 1,000 Ops.
	CPUPer1kOps float64
	// ClientCPUPer1kOps is the load generator's own CPU seconds (utime +
	// stime of this process, every client of the row in it) in the
	// measured window per 1,000 Ops: it shares the machine with the
	// servers, so a costly client protocol slows the servers too.
	ClientCPUPer1kOps float64
	// RSSBytes and DiskBytes are the memory workload's resident memory and
	// on-disk size, summed over the nodes.
	RSSBytes, DiskBytes int64
	// Leader is the node that led the cluster as the row started, around
	// which its clients were placed (see Placement), -1 for a leader that
	// is none of the cluster's nodes.
	Leader int
	// Stops are, for "election-server-kill", the leading contenders that
	// stopped (lost or gave up their leadership) while no contender was
	// killed: needless stops; for "election", those that stopped besides
	// the killed leaders.
	Stops int64
}

// metric is one figure of a row, a line of the markdown table.
type metric struct {
	name string
	// higherIsBetter is the metric's direction: it picks the best peer of
	// the ratio column.
	higherIsBetter bool
	// value is the row's figure, ok false when it was not measured.
	value  func(Row) (float64, bool)
	format func(float64) string
	// text, when set, shows the figure instead of format (with the row
	// at hand).
	text func(Row) string
}

var (
	mOpsPerSec = metric{"ops/s", true, func(r Row) (float64, bool) { return r.OpsPerSec, r.Ops > 0 }, fmtRate, nil}
	mEvents    = metric{"events/s", true, func(r Row) (float64, bool) { return r.OpsPerSec, r.Ops > 0 }, fmtRate, nil}
	mP50       = metric{"p50", false, func(r Row) (float64, bool) { return float64(r.P50), r.Ops > 0 && r.P50 >= 0 }, fmtNanos, nil}
	mP99       = metric{"p99", false, func(r Row) (float64, bool) { return float64(r.P99), r.Ops > 0 && r.P99 >= 0 }, fmtNanos, nil}
	mCPU       = metric{"CPU s / 1k ops", false, func(r Row) (float64, bool) { return r.CPUPer1kOps, r.Ops > 0 && r.CPUPer1kOps >= 0 }, fmtCPU, nil}
	mClientCPU = metric{"client CPU s / 1k ops", false, func(r Row) (float64, bool) { return r.ClientCPUPer1kOps, r.Ops > 0 && r.ClientCPUPer1kOps >= 0 }, fmtCPU, nil}
	mRSS       = metric{"RSS", false, func(r Row) (float64, bool) { return float64(r.RSSBytes), r.RSSBytes >= 0 }, fmtBytes, nil}
	mDisk      = metric{"disk", false, func(r Row) (float64, bool) { return float64(r.DiskBytes), r.DiskBytes >= 0 }, fmtBytes, nil}
	mServe     = metric{"time to serve", false, func(r Row) (float64, bool) { return float64(r.P99), r.Ops > 0 && r.P99 >= 0 }, fmtNanos, nil}
	mFailP50   = metric{"failover p50", false, mP50.value, fmtNanos, nil}
	mFailP99   = metric{"failover p99", false, mP99.value, fmtNanos, nil}
	mStops     = metric{"leaders stopped", false, func(r Row) (float64, bool) { return float64(r.Stops), r.Ops > 0 }, fmtRate,
		func(r Row) string { return fmt.Sprintf("%d in %d kills", r.Stops, r.Ops) }}
	mRecP50 = metric{"cluster serves again p50", false, mP50.value, fmtNanos, nil}
	mRecP99 = metric{"cluster serves again p99", false, mP99.value, fmtNanos, nil}
)

// metrics lists the figures a workload's rows show, one table line each.
func metrics(workload string) []metric {
	switch workload {
	case WorkloadWatch:
		return []metric{mP50, mP99, mEvents, mCPU, mClientCPU}
	case WorkloadEphemeralCleanup:
		return []metric{mP50, mP99}
	case WorkloadMemory:
		return []metric{mRSS, mDisk}
	case WorkloadRestart:
		return []metric{mServe}
	case WorkloadElection:
		return []metric{mFailP50, mFailP99}
	case WorkloadElectionServerKill:
		return []metric{mStops, mRecP50, mRecP99}
	default:
		return []metric{mOpsPerSec, mP50, mP99, mCPU, mClientCPU}
	}
}

func fmtRate(v float64) string { return fmt.Sprintf("%.0f", v) }
func fmtCPU(v float64) string  { return fmt.Sprintf("%.3f", v) }

func fmtNanos(v float64) string {
	ms := v / float64(time.Millisecond)
	switch {
	case ms < 10:
		return fmt.Sprintf("%.3f ms", ms)
	case ms < 1000:
		return fmt.Sprintf("%.1f ms", ms)
	default:
		return fmt.Sprintf("%.2f s", ms/1000)
	}
}

func fmtBytes(v float64) string { return fmt.Sprintf("%.1f MiB", v/(1<<20)) }

// ratio is paddock's figure over the best peer's: the highest for a
// metric where higher is better, else the lowest. ok is false when there
// is no paddock figure or no peer figure to compare with.
func ratio(m metric, paddock float64, peers []float64) (float64, bool) {
	if len(peers) == 0 {
		return 0, false
	}
	best := peers[0]
	for _, p := range peers[1:] {
		if (m.higherIsBetter && p > best) || (!m.higherIsBetter && p < best) {
			best = p
		}
	}
	if best == 0 {
		return 0, false
	}
	return paddock / best, true
}

// PaddockSystem is the Cluster name the ratio column compares the others
// with.
const PaddockSystem = "paddock"

// Markdown writes one table: a line per workload, concurrency level and
// metric, a column per system with its absolute figure, and the ratio
// paddock / best peer (for ops/s higher is better, so the best peer is the
// fastest; for latency, CPU and memory lower is better, so it is the
// leanest, and a ratio under 1 is a win). A figure a system did not
// measure is "n/a"; a row it did not run is "-".
func Markdown(w io.Writer, rs []*Results) error {
	var b strings.Builder
	b.WriteString("| workload | clients | metric |")
	for _, r := range rs {
		fmt.Fprintf(&b, " %s |", r.System)
	}
	b.WriteString(" paddock / best peer |\n|---|---:|---|")
	for range rs {
		b.WriteString("---:|")
	}
	b.WriteString("---:|\n")

	type key struct {
		workload string
		clients  int
	}
	rows := make([]map[key]Row, len(rs))
	var keys []key
	for i, r := range rs {
		rows[i] = map[key]Row{}
		for _, row := range r.Rows {
			k := key{row.Workload, row.Clients}
			if _, dup := rows[i][k]; dup {
				return fmt.Errorf("bench: %s has two %s rows with %d clients", r.System, row.Workload, row.Clients)
			}
			rows[i][k] = row
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	order := func(w string) int {
		if i := slices.Index(Workloads, w); i >= 0 {
			return i
		}
		return len(Workloads)
	}
	slices.SortStableFunc(keys, func(a, b key) int {
		if d := order(a.workload) - order(b.workload); d != 0 {
			return d
		}
		return a.clients - b.clients
	})
	for _, k := range keys {
		clients := "-"
		switch {
		case k.workload == WorkloadWatch:
			clients = fmt.Sprintf("%d watchers", k.clients)
		case k.workload == WorkloadElection || k.workload == WorkloadElectionServerKill:
			clients = fmt.Sprintf("%d contenders", k.clients)
		case k.clients > 0:
			clients = fmt.Sprint(k.clients)
		}
		for _, m := range metrics(k.workload) {
			fmt.Fprintf(&b, "| %s | %s | %s |", k.workload, clients, m.name)
			var (
				havePad bool
				padV    float64
				peers   []float64
			)
			for i, r := range rs {
				row, ran := rows[i][k]
				if !ran {
					b.WriteString(" - |")
					continue
				}
				v, ok := m.value(row)
				if !ok {
					b.WriteString(" n/a |")
					continue
				}
				if m.text != nil {
					fmt.Fprintf(&b, " %s |", m.text(row))
				} else {
					fmt.Fprintf(&b, " %s |", m.format(v))
				}
				if r.System == PaddockSystem && !havePad {
					havePad, padV = true, v
				} else {
					peers = append(peers, v)
				}
			}
			if x, ok := ratio(m, padV, peers); havePad && ok {
				fmt.Fprintf(&b, " %.2fx |\n", x)
			} else {
				b.WriteString(" - |\n")
			}
		}
	}
	if len(rs) > 0 {
		fmt.Fprintf(&b, "\nClients placed %s; leader was ", Placement)
		for i, r := range rs {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s (%s)", leaderNote(r.Rows), r.System)
		}
		b.WriteString(".\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// leaderNote says which node led during rows: "node 1", or "node 1, node
// 2 from write/16 on" when the leader moved between rows.
func leaderNote(rows []Row) string {
	node := func(l int) string {
		if l < 0 {
			return "none of the nodes"
		}
		return fmt.Sprintf("node %d", l)
	}
	if len(rows) == 0 {
		return "not known (no rows)"
	}
	note := node(rows[0].Leader)
	for i := 1; i < len(rows); i++ {
		if rows[i].Leader != rows[i-1].Leader {
			note += fmt.Sprintf(", %s from %s/%d on", node(rows[i].Leader), rows[i].Workload, rows[i].Clients)
		}
	}
	return note
}

// jsonFile is the layout of WriteJSON's file. Figures not measured are
// null.
type jsonFile struct {
	FsyncPerSec float64       `json:"fsync_per_sec"`
	Results     []jsonResults `json:"results"`
}

type jsonResults struct {
	System    string    `json:"system"`
	Nodes     int       `json:"nodes"`
	Placement string    `json:"placement"`
	Rows      []jsonRow `json:"rows"`
}

type jsonRow struct {
	Workload    string   `json:"workload"`
	Clients     int      `json:"clients"`
	Ops         int64    `json:"ops"`
	OpsPerSec   float64  `json:"ops_per_sec"`
	P50Ms       *float64 `json:"p50_ms"`
	P99Ms       *float64 `json:"p99_ms"`
	CPUPer1kOps *float64 `json:"cpu_s_per_1k_ops"`
	// ClientCPU is the load generator's own CPU (Row.ClientCPUPer1kOps).
	ClientCPU *float64 `json:"client_cpu_s_per_1k_ops"`
	RSSBytes  *int64   `json:"rss_bytes"`
	DiskBytes *int64   `json:"disk_bytes"`
	Leader    int      `json:"leader"`
	Stops     *int64   `json:"stops,omitempty"`
}

// nonNeg returns &v, or nil (JSON null) for a negative v: not measured.
func nonNeg[T int64 | float64](v T) *T {
	if v < 0 {
		return nil
	}
	return &v
}

// stopsOf is row.Stops for the election workloads' rows, else nil (left
// out of the JSON).
func stopsOf(row Row) *int64 {
	if row.Workload != WorkloadElection && row.Workload != WorkloadElectionServerKill {
		return nil
	}
	return &row.Stops
}

// WriteJSON writes rs and the disk's fdatasync rate to the file at path as
// JSON: {"fsync_per_sec": F, "results": [{"system": S, "nodes": N,
// "placement": Placement, "rows": [{workload, clients, ops, ops_per_sec,
// p50_ms, p99_ms, cpu_s_per_1k_ops, client_cpu_s_per_1k_ops, rss_bytes, disk_bytes, leader, and
// stops for the election workloads}]}]}, with null for figures not
// measured.
func WriteJSON(path string, rs []*Results, fsyncPerSec float64) error {
	f := jsonFile{FsyncPerSec: fsyncPerSec, Results: []jsonResults{}}
	for _, r := range rs {
		jr := jsonResults{System: r.System, Nodes: r.Nodes, Placement: Placement, Rows: []jsonRow{}}
		for _, row := range r.Rows {
			jr.Rows = append(jr.Rows, jsonRow{
				Workload: row.Workload, Clients: row.Clients,
				Ops: row.Ops, OpsPerSec: row.OpsPerSec,
				P50Ms:       nonNeg(float64(row.P50) / float64(time.Millisecond)),
				P99Ms:       nonNeg(float64(row.P99) / float64(time.Millisecond)),
				CPUPer1kOps: nonNeg(row.CPUPer1kOps),
				ClientCPU:   nonNeg(row.ClientCPUPer1kOps),
				RSSBytes:    nonNeg(row.RSSBytes),
				DiskBytes:   nonNeg(row.DiskBytes),
				Leader:      row.Leader,
				Stops:       stopsOf(row),
			})
		}
		f.Results = append(f.Results, jr)
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: json: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}
