package node

import (
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/paddock/paddock/fsm"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
)

// metrics are one node's Prometheus series, in a registry of its own: an
// in-process test cluster runs several nodes in one process, and a global
// registry would refuse their identical series.
//
// State that raft or the FSM already keeps (term, indexes, counts) is read
// when scraped, by stateCollector; only what exists nowhere else (latencies,
// the forwarded count) is recorded on the hot path.
type metrics struct {
	reg       *prometheus.Registry
	apply     prometheus.Histogram
	batch     prometheus.Histogram
	propose   prometheus.Histogram
	forwarded *prometheus.CounterVec
	// applied counts the commands this node's state machine applied, by
	// operation (paddock_applied_commands_total{op}); appliedOp holds its
	// counters by the operation's field number in Command.
	applied   *prometheus.CounterVec
	appliedOp map[protowire.Number]prometheus.Counter
	// grpc is the gRPC server series (paddock_grpc_server_*: started and
	// handled counts by service, method and code, handling time, stream
	// messages), shared by every gRPC server of the node: the internal
	// one on the raft address and rpc's client server.
	grpc *GRPCServerMetrics
	// wsDelayed counts delayed web session writes by outcome, and
	// wsDelayWindow times them from answer to commit.
	wsDelayed     *prometheus.CounterVec
	wsDelayWindow prometheus.Histogram
	// groupCommit counts the commands of each group-commit round.
	groupCommit prometheus.Histogram
}

// Values of paddock_forwarded_requests_total's kind label.
const (
	fwdWrite     = "write"      // InternalService.Propose
	fwdRead      = "read"       // one read in an InternalService.Read batch
	fwdReadIndex = "read_index" // InternalService.ReadIndex: one round, shared by the reads waiting
	fwdKeepAlive = "keepalive"  // InternalService.KeepAlive: one batch
	// InternalService.WebSession: one web session call
	fwdWebSession = "web_session"
)

func newMetrics(n *Node) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		apply: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "paddock_apply_duration_seconds",
			Help: "Time the state machine took to apply one batch of raft log entries.",
			// 25µs to ~0.8s: a batch is usually well under a millisecond.
			Buckets: prometheus.ExponentialBuckets(25e-6, 2, 16),
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "paddock_apply_batch_entries",
			Help:    "Raft log entries per batch applied to the state machine.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		propose: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "paddock_propose_duration_seconds",
			Help: "Time from a write's proposal on this node (forwarded to the leader or not) to its result.",
			// 250µs to ~8s: commit needs a quorum fsync.
			Buckets: prometheus.ExponentialBuckets(250e-6, 2, 16),
		}),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paddock_forwarded_requests_total",
			Help: "Requests this node sent to the leader, by kind: write, read (a read the leader serves, counted one by one though sent in batches), read_index (one round shared by the reads waiting), keepalive (one batch), web_session (one web session call).",
		}, []string{"kind"}),
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paddock_applied_commands_total",
			Help: "Commands this node's state machine applied, by operation (the Command field's name: create, set, web_session_write, barrier, ...; unknown for an entry without one), failed ones included.",
		}, []string{"op"}),
		// 250µs to ~8s: reads answer in well under a millisecond, writes
		// wait for a quorum fsync, Poll waits up to its timeout.
		grpc: newGRPCServerMetrics(prometheus.ExponentialBuckets(250e-6, 2, 16)),
		wsDelayed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paddock_web_session_delayed_writes_total",
			Help: "Delayed PHP web session writes on this leader, by outcome: acked (held in memory, by the leader and its backups, and answered), not_backed_up (a backup did not hold it: answered once committed), write_through (asked delayed but written through: pending memory full, or the leader catching up), dropped (sessions whose acknowledged writes this leader did not commit: leadership ended first, and the next leader commits them only if it holds them as a backup; or the commit, or a takeover, was refused), taken_over (sessions whose writes this node held as a backup and committed as the new leader).",
		}, []string{"outcome"}),
		wsDelayWindow: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "paddock_web_session_delayed_window_seconds",
			Help: "Time from a delayed PHP web session write's answer to its commit (the first answered write of each commit): how long it is in memory only, the leader's and its backups' (--web-session-flush-delay, 100 ms by default, plus the commit).",
			// 250µs to ~8s.
			Buckets: prometheus.ExponentialBuckets(250e-6, 2, 16),
		}),
		groupCommit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "paddock_group_commit_commands",
			Help:    "Commands per group-commit round on this leader (write-through PHP web session writes): those that arrived during the round before, handed to raft together.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
	}
	for _, o := range []string{wsDelayedAcked, wsDelayedThrough, wsDelayedDropped, wsDelayedNotBackedUp, wsDelayedTakenOver} {
		m.wsDelayed.WithLabelValues(o)
	}
	// Every kind's series exists from the start, at zero.
	for _, k := range []string{fwdWrite, fwdRead, fwdReadIndex, fwdKeepAlive, fwdWebSession} {
		m.forwarded.WithLabelValues(k)
	}
	m.appliedOp = map[protowire.Number]prometheus.Counter{0: m.applied.WithLabelValues("unknown")}
	ops := (&raftv1.Command{}).ProtoReflect().Descriptor().Oneofs().ByName("op").Fields()
	for i := range ops.Len() {
		f := ops.Get(i)
		m.appliedOp[f.Number()] = m.applied.WithLabelValues(string(f.Name()))
	}
	m.reg.MustRegister(
		m.apply, m.batch, m.propose, m.forwarded, m.applied, m.wsDelayed, m.wsDelayWindow, m.groupCommit,
		&stateCollector{n: n},
		m.grpc,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// observePropose records a proposal that began at start; deferred by Propose.
func (m *metrics) observePropose(start time.Time) { m.propose.Observe(time.Since(start).Seconds()) }

// Metrics is the node's Prometheus registry: its raft, state machine,
// latency and gRPC server series. The rpc package serves it at /metrics.
func (n *Node) Metrics() *prometheus.Registry { return n.metrics.reg }

// GRPCMetrics is the node's gRPC server series, registered in Metrics; a
// gRPC server of the node records its calls with its interceptors (rpc's
// client server does; the node's internal server does too).
func (n *Node) GRPCMetrics() *GRPCServerMetrics { return n.metrics.grpc }

// timedFSM is the state machine raft drives: fsm.FSM timed per batch. The
// clock lives here because the fsm package is pure; Snapshot and Restore
// pass straight through.
type timedFSM struct {
	*fsm.FSM
	m *metrics
}

var _ raft.BatchingFSM = (*timedFSM)(nil)

// ApplyBatch applies logs and records how long that took.
func (t *timedFSM) ApplyBatch(logs []*raft.Log) []any {
	start := time.Now()
	out := t.FSM.ApplyBatch(logs)
	t.m.apply.Observe(time.Since(start).Seconds())
	t.m.batch.Observe(float64(len(logs)))
	for _, l := range logs {
		if l.Type == raft.LogCommand {
			t.m.countApplied(l.Data)
		}
	}
	return out
}

// countApplied counts one applied command by its operation, read off the
// encoding (the first field of the op oneof) without decoding it.
func (m *metrics) countApplied(data []byte) {
	c, ok := m.appliedOp[commandOp(data)]
	if !ok {
		c = m.appliedOp[0]
	}
	c.Inc()
}

// commandOp is the field number of an encoded Command's operation, 0 if
// it has none or does not decode.
func commandOp(b []byte) protowire.Number {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0
		}
		b = b[n:]
		if num >= firstOpField && typ == protowire.BytesType {
			return num
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return 0
		}
		b = b[n:]
	}
	return 0
}

// firstOpField is the lowest field number of Command's op oneof.
const firstOpField = 10

// Apply applies one log through ApplyBatch, so it is timed alike.
func (t *timedFSM) Apply(l *raft.Log) any { return t.ApplyBatch([]*raft.Log{l})[0] }

var (
	descRaftState = prometheus.NewDesc("paddock_raft_state",
		"1 for the raft state this node is in, 0 for the others.", []string{"state"}, nil)
	descTerm = prometheus.NewDesc("paddock_raft_term",
		"Current raft term.", nil, nil)
	descCommit = prometheus.NewDesc("paddock_raft_commit_index",
		"Highest raft log index known to be committed.", nil, nil)
	descApplied = prometheus.NewDesc("paddock_raft_applied_index",
		"Last raft log index applied to the state machine.", nil, nil)
	descLastLog = prometheus.NewDesc("paddock_raft_last_log_index",
		"Last raft log index stored on this node.", nil, nil)
	descLeaderKnown = prometheus.NewDesc("paddock_raft_leader_known",
		"1 when this node knows a leader, else 0.", nil, nil)
	descZnodes = prometheus.NewDesc("paddock_znodes",
		"Znodes in the tree, the root and /paddock included.", nil, nil)
	descSessions = prometheus.NewDesc("paddock_sessions",
		"Open client sessions.", nil, nil)
	descWatchers = prometheus.NewDesc("paddock_watchers",
		"Open watches (streams and long polls) on this node.", nil, nil)
	descFSMStopped = prometheus.NewDesc("paddock_fsm_stopped",
		"1 when the state machine stopped at a log entry this binary cannot apply (upgrade it), else 0.", nil, nil)
)

// raftStates are the values of paddock_raft_state's label, every one
// exported on every scrape so a query need not handle absent series.
var raftStates = []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown}

// stateCollector reads raft and state machine figures when scraped, so
// nothing is updated on the apply or propose path for them.
type stateCollector struct{ n *Node }

// Describe sends the descriptors of every series Collect sends.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRaftState, descTerm, descCommit, descApplied, descLastLog, descLeaderKnown, descZnodes, descSessions, descWatchers, descFSMStopped} {
		ch <- d
	}
}

// Collect reads the current figures.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	r, f := c.n.raft, c.n.fsm
	state := r.State()
	for _, s := range raftStates {
		v := 0.0
		if s == state {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descRaftState, prometheus.GaugeValue, v, stateLabel(s))
	}
	gauge := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	gauge(descTerm, r.CurrentTerm())
	gauge(descCommit, r.CommitIndex())
	gauge(descApplied, r.AppliedIndex())
	gauge(descLastLog, r.LastIndex())
	known := uint64(0)
	if _, id := r.LeaderWithID(); id != "" {
		known = 1
	}
	gauge(descLeaderKnown, known)
	znodes, sessions := f.Counts()
	gauge(descZnodes, uint64(znodes))
	gauge(descSessions, uint64(sessions))
	gauge(descWatchers, uint64(c.n.WatcherCount()))
	stopped := uint64(0)
	if f.Err() != nil {
		stopped = 1
	}
	gauge(descFSMStopped, stopped)
}

// stateLabel is a raft state's label value: lowercase, stable.
func stateLabel(s raft.RaftState) string {
	switch s {
	case raft.Follower:
		return "follower"
	case raft.Candidate:
		return "candidate"
	case raft.Leader:
		return "leader"
	}
	return "shutdown"
}
