package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/paddock/paddock/fsm"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
)

// Config is one node's configuration. Zero fields take the defaults of
// DefaultConfig.
type Config struct {
	// ID is the node's raft server id.
	ID string
	// DataDir holds raft.db and snapshots/.
	DataDir string
	// RaftAddr is the raft address to bind and advertise.
	RaftAddr string
	// GRPCAddr and HTTPAddr are the client addresses this node registers.
	GRPCAddr string
	HTTPAddr string
	// Bootstrap is the initial voter set; used only when DataDir is empty.
	Bootstrap []raft.Server

	// SnapshotThreshold is how many entries since the last snapshot start
	// a new one; TrailingLogs how many entries are kept after it.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64

	// HeartbeatTimeout and ElectionTimeout tune raft (defaults 1s).
	HeartbeatTimeout time.Duration
	ElectionTimeout  time.Duration

	// MinSessionTimeout, MaxSessionTimeout clamp requested session
	// timeouts; DefaultSessionTimeout is used when none is asked for.
	MinSessionTimeout     time.Duration
	MaxSessionTimeout     time.Duration
	DefaultSessionTimeout time.Duration
	// SessionCheckpointInterval is how often the leader checkpoints the
	// remaining time of idle sessions.
	SessionCheckpointInterval time.Duration
	// LockDelay is the lock-delay of sessions opened without one (0:
	// none): see OpenSessionWithDelay.
	LockDelay time.Duration

	// MaxValueSize caps znode data (at most fsm.MaxDataSize).
	MaxValueSize int
	// WebSessionMaxBytes caps a PHP web session's data (at most
	// fsm.MaxDataSize; default DefaultWebSessionMaxBytes).
	WebSessionMaxBytes int
	// WebSessionDelayedMaxBytes caps the bytes of the delayed web session
	// writes the leader holds not yet committed: each session's id and
	// data plus 256 per session (default
	// DefaultWebSessionDelayedMaxBytes); a delayed write beyond it goes
	// through.
	WebSessionDelayedMaxBytes int
	// WebSessionFlushDelay is how long the leader waits, once a delayed
	// web session write is pending, before it commits the pending writes
	// (gathering more per round). Zero: at once. DefaultConfig (the
	// agent's) has DefaultWebSessionFlushDelay.
	WebSessionFlushDelay time.Duration
	// WebSessionLockGrace is how long a new leader grants no web session
	// lock (holders from before the failover present their tokens
	// meanwhile). Zero means ElectionTimeout + 2 s; negative, none (tests).
	WebSessionLockGrace time.Duration
	// RequestTimeout bounds requests whose context has no deadline.
	RequestTimeout time.Duration

	// WatchHistory is how many recent events the node keeps so that a
	// watch can start or resume in the past; WatchSlowLag how many of them
	// a watcher blocked in a send may fall behind before it is dropped
	// (default half the history, so it can still resume while it
	// reconnects). WatchProgressInterval is how often an idle watch is
	// told the zxid it is up to date with; negative turns it off.
	// WatchHistoryBytes also bounds the history by the paths and previous
	// data it keeps alive (large values would otherwise make the event
	// bound hold gigabytes); whichever bound is hit first evicts.
	WatchHistory          int
	WatchHistoryBytes     int64
	WatchSlowLag          int
	WatchProgressInterval time.Duration

	// UnsafeLocalReads is for robustness testing only: it breaks
	// linearizability on purpose, so that a checker can show it catches
	// the break. Linearizable reads are then served from this node's local
	// state, as serializable ones are: they still wait for min_zxid, but
	// take no read index and are never forwarded to the leader, so a
	// follower cut off from the leader answers with stale data. Never use
	// it in production.
	UnsafeLocalReads bool

	// FeatureLevel is for tests only (no flag sets it): the feature level
	// this node claims to support, recorded in the member table and
	// applied by its state machine, standing for a binary of another
	// release. Zero means fsm.FeatureLevel.
	FeatureLevel uint32
	// OpFeatureLevel is for tests only: it replaces fsm.OpFeatureLevel
	// when this node, as leader, decides which level a command needs
	// (and stamps it), so a test can give a command a level above the
	// base one. Nil means fsm.OpFeatureLevel.
	OpFeatureLevel func(*raftv1.Command) (uint32, bool)

	// Transport replaces the network transport on RaftAddr (tests use
	// raft's in-memory transport to cut links). The node then serves its
	// internal service only on the listeners given to ServeInternal.
	Transport raft.Transport
	// DialPeer connects to the internal service of the peer whose raft
	// address is raftAddr. Nil dials raftAddr over TCP, where the peer's
	// listener routes gRPC to its internal server. Nodes with an in-memory
	// Transport set it to reach the listener each peer serves
	// ServeInternal on.
	DialPeer func(ctx context.Context, raftAddr string) (net.Conn, error)
	// Logger receives raft's and the node's logs.
	Logger hclog.Logger
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		SnapshotThreshold:         8192,
		SnapshotInterval:          30 * time.Second,
		TrailingLogs:              10240,
		HeartbeatTimeout:          time.Second,
		ElectionTimeout:           time.Second,
		MinSessionTimeout:         2 * time.Second,
		MaxSessionTimeout:         60 * time.Second,
		DefaultSessionTimeout:     10 * time.Second,
		SessionCheckpointInterval: 2 * time.Second,
		MaxValueSize:              fsm.MaxDataSize,
		WebSessionMaxBytes:        DefaultWebSessionMaxBytes,
		WebSessionDelayedMaxBytes: DefaultWebSessionDelayedMaxBytes,
		WebSessionFlushDelay:      DefaultWebSessionFlushDelay,
		RequestTimeout:            10 * time.Second,
		// 65,536 events is about 20 MB with small values, and at 1,000
		// writes/s (two events each: the znode and its parent) half a
		// minute of changes: room for a client to fail over to another
		// node and resume.
		WatchHistory: 1 << 16,
		// 64 MiB of previous data: room for all 65,536 events with
		// values up to 1 KiB, or 64 changes of 1 MiB values.
		WatchHistoryBytes:     64 << 20,
		WatchProgressInterval: 10 * time.Second,
	}
}

// withDefaults fills zero fields and validates.
func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	setDefault(&c.SnapshotThreshold, d.SnapshotThreshold)
	setDefault(&c.SnapshotInterval, d.SnapshotInterval)
	setDefault(&c.TrailingLogs, d.TrailingLogs)
	setDefault(&c.HeartbeatTimeout, d.HeartbeatTimeout)
	setDefault(&c.ElectionTimeout, d.ElectionTimeout)
	setDefault(&c.MinSessionTimeout, d.MinSessionTimeout)
	setDefault(&c.MaxSessionTimeout, d.MaxSessionTimeout)
	setDefault(&c.DefaultSessionTimeout, d.DefaultSessionTimeout)
	setDefault(&c.SessionCheckpointInterval, d.SessionCheckpointInterval)
	setDefault(&c.MaxValueSize, d.MaxValueSize)
	setDefault(&c.WebSessionMaxBytes, d.WebSessionMaxBytes)
	setDefault(&c.WebSessionDelayedMaxBytes, d.WebSessionDelayedMaxBytes)
	setDefault(&c.RequestTimeout, d.RequestTimeout)
	setDefault(&c.WatchHistory, d.WatchHistory)
	setDefault(&c.WatchHistoryBytes, d.WatchHistoryBytes)
	setDefault(&c.WatchSlowLag, c.WatchHistory/2)
	setDefault(&c.WatchProgressInterval, d.WatchProgressInterval)
	setDefault(&c.FeatureLevel, fsm.FeatureLevel)
	if c.OpFeatureLevel == nil {
		c.OpFeatureLevel = fsm.OpFeatureLevel
	}
	if c.Logger == nil {
		c.Logger = hclog.New(&hclog.LoggerOptions{Name: "paddock", Level: hclog.Warn})
	}
	switch {
	case c.ID == "":
		return c, errors.New("node: id is required")
	case c.DataDir == "":
		return c, errors.New("node: data dir is required")
	case c.RaftAddr == "" && c.Transport == nil:
		return c, errors.New("node: raft address is required")
	case c.WebSessionMaxBytes < 0 || c.WebSessionMaxBytes > fsm.MaxDataSize:
		return c, fmt.Errorf("node: web session max bytes %d is not in [1, %d]", c.WebSessionMaxBytes, fsm.MaxDataSize)
	case c.WebSessionDelayedMaxBytes < 0:
		return c, fmt.Errorf("node: web session delayed max bytes %d is negative", c.WebSessionDelayedMaxBytes)
	case c.WebSessionFlushDelay < 0 || c.WebSessionFlushDelay > time.Second:
		return c, fmt.Errorf("node: web session flush delay %v is not in [0, 1s]", c.WebSessionFlushDelay)
	case c.MaxValueSize > fsm.MaxDataSize:
		return c, fmt.Errorf("node: max value size %d is over the limit %d", c.MaxValueSize, fsm.MaxDataSize)
	case c.WatchHistory < 2:
		return c, fmt.Errorf("node: watch history %d is under 2 events", c.WatchHistory)
	case c.WatchHistoryBytes < 1:
		return c, fmt.Errorf("node: watch history bytes %d is under 1", c.WatchHistoryBytes)
	case c.WatchSlowLag < 1 || c.WatchSlowLag >= c.WatchHistory:
		return c, fmt.Errorf("node: watch slow lag %d is not in [1, watch history %d)", c.WatchSlowLag, c.WatchHistory)
	case c.MinSessionTimeout > c.MaxSessionTimeout:
		return c, fmt.Errorf("node: min session timeout %v is over the max %v", c.MinSessionTimeout, c.MaxSessionTimeout)
	}
	c.DefaultSessionTimeout = min(max(c.DefaultSessionTimeout, c.MinSessionTimeout), c.MaxSessionTimeout)
	return c, nil
}

func setDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// ParseBootstrap parses "n1=127.0.0.1:7001,n2=127.0.0.1:7002" into voters.
func ParseBootstrap(s string) ([]raft.Server, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []raft.Server
	seen := map[string]bool{}
	for part := range strings.SplitSeq(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("node: bootstrap entry %q is not id=host:port", part)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("node: bootstrap entry %q: %v", part, err)
		}
		if seen[id] {
			return nil, fmt.Errorf("node: bootstrap lists %q twice", id)
		}
		seen[id] = true
		out = append(out, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(addr)})
	}
	return out, nil
}

// webSessionGrace is the lock grace period of a new leader
// (WebSessionLockGrace).
func (c Config) webSessionGrace() time.Duration {
	switch {
	case c.WebSessionLockGrace < 0:
		return 0
	case c.WebSessionLockGrace == 0:
		return c.ElectionTimeout + 2*time.Second
	}
	return c.WebSessionLockGrace
}
