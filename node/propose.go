package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/paddock/paddock/fsm"
	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
)

type requestIDKey struct{}

// WithRequestID returns ctx carrying a client's request id. The command
// Propose makes from ctx carries it, and the state machine applies a
// command with a given id at most once within fsm.RequestIDWindow: a retry,
// on any node, gets the first result (and zxid) back and changes nothing.
// One id names one command: code that proposes several commands for one
// request must not hand them all the same ctx.
func WithRequestID(ctx context.Context, id []byte) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the request id ctx carries, nil if none.
func RequestID(ctx context.Context) []byte {
	id, _ := ctx.Value(requestIDKey{}).([]byte)
	return id
}

func barrierCommand() *raftv1.Command {
	return &raftv1.Command{Op: &raftv1.Command_Barrier{Barrier: &raftv1.Barrier{}}}
}

// Propose applies cmd through raft, on the leader or forwarded to it, and
// returns the state machine's result. A domain failure is returned both
// in the Result and as the error. The request id of ctx (WithRequestID),
// if any, goes into a cmd that has none, and travels with it when it is
// forwarded.
func (n *Node) Propose(ctx context.Context, cmd *raftv1.Command) (*fsm.Result, error) {
	return n.propose(ctx, cmd, proposeAny)
}

// How propose hands a command to raft.
type proposeRoute int

const (
	proposeAny     proposeRoute = iota // here if this node leads, else forwarded
	proposeLeader                      // here, never forwarded
	proposeGrouped                     // here, never forwarded, through the group commit
)

// propose is Propose. Routed proposeLeader or proposeGrouped it never
// forwards: on a node that does not lead (or lost its place) it fails
// with ErrNotLeader, nothing appended, for callers whose checks only the
// leader may make (the web session locks).
func (n *Node) propose(ctx context.Context, cmd *raftv1.Command, route proposeRoute) (*fsm.Result, error) {
	leaderOnly := route != proposeAny
	defer n.metrics.observePropose(time.Now())
	if id := RequestID(ctx); len(id) > 0 && len(cmd.GetRequestId()) == 0 {
		cmd.RequestId = id
	}
	if err := n.validate(cmd); err != nil {
		return nil, err
	}
	if err := n.errIfHalted(); err != nil {
		return nil, err
	}
	c := n.newCall(ctx)
	defer c.release()
	start := time.Now()
	for {
		var res *fsm.Result
		var err error
		if route == proposeGrouped {
			res, err = n.proposeGroup(&c, cmd)
		} else if n.IsLeader() || leaderOnly {
			res, err = n.proposeCall(&c, cmd)
		} else {
			res, err = n.forward(&c, cmd)
		}
		// ErrNotLeader means nothing was appended: leadership moved
		// between the check and the call. Try again the other way.
		if errors.Is(err, ErrNotLeader) && !leaderOnly && sleepCtx(c.context(), 10*time.Millisecond) {
			continue
		}
		// ErrFeatureLevel appended nothing either. On a new cluster (or
		// right after a member joined) it means a member has not
		// registered its level yet, which takes a moment: wait for it
		// rather than fail a command that a healthy cluster supports.
		// (A forwarded command's refusal comes back in its result.)
		refused := errors.Is(err, fsm.ErrFeatureLevel) || (err == nil && errors.Is(res.Err, fsm.ErrFeatureLevel))
		if refused && time.Since(start) < registrationWait && n.registrationPending(cmd) &&
			sleepCtx(c.context(), 20*time.Millisecond) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return res, res.Err
	}
}

func (n *Node) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, n.cfg.RequestTimeout)
}

// proposeLocal appends cmd on this node, which must be the leader, and
// waits for its result until ctx ends.
func (n *Node) proposeLocal(ctx context.Context, cmd *raftv1.Command) (*fsm.Result, error) {
	c := call{n: n, ctx: ctx}
	return n.proposeCall(&c, cmd)
}

// proposeCall is proposeLocal for a call.
func (n *Node) proposeCall(c *call, cmd *raftv1.Command) (*fsm.Result, error) {
	// A slot is rarely waited for: the caller's context bounds that wait,
	// or RequestTimeout, which is the call's end or later.
	a, err := n.startApply(c.ctx, cmd, nil)
	if err != nil {
		return nil, err
	}
	return a.awaitCall(c)
}

// maxAppendEntries is raft's MaxAppendEntries, which with BatchApplyCh is
// also the room in raft's apply queue.
const maxAppendEntries = 512

// applySlots bounds the commands this node has handed to raft and not yet
// seen answered. Those raft has not taken yet are a part of them, so
// raft's apply queue, with room for maxAppendEntries, always has room for
// the next: raft.Apply never waits, and startApply calls it with no
// timeout, which spares the timer raft would start per call. A caller
// waits for a slot instead, on its own context. The margin is for
// entries raft queues itself (a restore's no-op).
const applySlots = maxAppendEntries - 16

// acquireSlot takes one of applySlots, waiting until ctx ends, or for
// RequestTimeout if ctx has no deadline (the bound raft.Apply was given
// before): raft is then far behind, and the error is the one an apply
// that found no room in raft's queue for that long returned.
func (n *Node) acquireSlot(ctx context.Context) error {
	return n.acquireSlotUntil(ctx, time.Time{})
}

// acquireSlotUntil is acquireSlot for a call that ends at end (not zero)
// when ctx has no deadline.
func (n *Node) acquireSlotUntil(ctx context.Context, end time.Time) error {
	if n.trySlot() {
		return nil
	}
	var expired <-chan time.Time
	if _, ok := ctx.Deadline(); !ok {
		wait := n.cfg.RequestTimeout
		if !end.IsZero() {
			wait = time.Until(end)
		}
		t := time.NewTimer(wait)
		defer t.Stop()
		expired = t.C
	}
	select {
	case n.applySlots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-expired:
		return context.DeadlineExceeded
	}
}

// trySlot takes one of applySlots if one is free.
func (n *Node) trySlot() bool {
	select {
	case n.applySlots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (n *Node) releaseSlot() { <-n.applySlots }

// applying is a command handed to raft on the leader. Its finish must be
// called exactly once: it releases the node's hold on the future (beginOp)
// and the command's slot (applySlots).
type applying struct {
	n   *Node
	cmd *raftv1.Command
	f   raft.ApplyFuture
}

// startApply stamps cmd with the leader's wall time and with the feature
// level of its operation, here and only here, and hands it to raft,
// waiting for a slot (applySlots) until ctx ends. raw, if not nil, is cmd
// as a follower encoded it: the stamps are appended to a copy of it
// instead of encoding cmd again (a field that occurs twice takes its last
// value). A command above the base feature level that a member does not
// support yet is refused with fsm.ErrFeatureLevel, nothing appended.
func (n *Node) startApply(ctx context.Context, cmd *raftv1.Command, raw []byte) (*applying, error) {
	data, err := n.prepareApply(cmd, raw)
	if err != nil {
		return nil, err
	}
	if err := n.acquireSlot(ctx); err != nil {
		return nil, err
	}
	return n.submitApply(cmd, data)
}

// prepareApply is the first half of startApply: the checks, the stamps
// and the encoding.
func (n *Node) prepareApply(cmd *raftv1.Command, raw []byte) ([]byte, error) {
	// A halted leader appends nothing more, forwarded writes included,
	// while it hands over and closes: it could not apply them.
	if err := n.errIfHalted(); err != nil {
		return nil, err
	}
	if err := n.checkFeatureLevel(cmd); err != nil {
		return nil, err
	}
	cmd.TimeUnixMs = time.Now().UnixMilli()
	data, err := encodeStamped(cmd, raw)
	if err != nil {
		return nil, fmt.Errorf("node: encode command: %w", err)
	}
	return data, nil
}

// submitApply is the second half of startApply: cmd, encoded as data,
// goes to raft. The caller holds a slot for it (acquireSlot), which the
// applying's finish releases, or submitApply if it fails.
func (n *Node) submitApply(cmd *raftv1.Command, data []byte) (*applying, error) {
	if !n.beginOp() {
		n.releaseSlot()
		return nil, ErrShuttingDown
	}
	return &applying{n: n, cmd: cmd, f: n.raft.Apply(data, 0)}, nil
}

// encodeStamped encodes cmd; given raw, cmd as it came encoded, it
// appends the leader's stamps (time and feature level) to a copy of raw.
func encodeStamped(cmd *raftv1.Command, raw []byte) ([]byte, error) {
	if raw == nil {
		return proto.Marshal(cmd)
	}
	t, level := uint64(cmd.GetTimeUnixMs()), uint64(cmd.GetFeatureLevel())
	size := len(raw) + protowire.SizeTag(timeField) + protowire.SizeVarint(t) +
		protowire.SizeTag(featureLevelField) + protowire.SizeVarint(level)
	b := make([]byte, 0, size)
	b = append(b, raw...)
	b = protowire.AppendTag(b, timeField, protowire.VarintType)
	b = protowire.AppendVarint(b, t)
	b = protowire.AppendTag(b, featureLevelField, protowire.VarintType)
	b = protowire.AppendVarint(b, level)
	return b, nil
}

// Field numbers of the leader's stamps in a Command.
const (
	timeField         = 1 // time_unix_ms
	featureLevelField = 3 // feature_level
)

// checkFeatureLevel stamps cmd with the level of its operation after
// checking, for a level above the base, that every member of the raft
// configuration (voters and non-voters) records it. Base commands need no
// record: every binary understands them, and a member that has not
// registered yet (a new cluster, a member still catching up) must not
// block them, its own registration least of all.
func (n *Node) checkFeatureLevel(cmd *raftv1.Command) error {
	level, ok := n.cfg.OpFeatureLevel(cmd)
	if !ok {
		return fmt.Errorf("%w: %s has no feature level", fsm.ErrBadArgument, fsm.OpName(cmd))
	}
	cmd.FeatureLevel = level
	if level <= fsm.BaseFeatureLevel {
		return nil
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return applyError(err)
	}
	servers := f.Configuration().Servers
	ids := make([]string, len(servers))
	for i, s := range servers {
		ids[i] = string(s.ID)
	}
	return n.fsm.CheckFeatureLevel(cmd, level, ids)
}

// registrationWait bounds how long Propose waits for the members of the
// raft configuration to register their feature level (registerLoop)
// before it returns fsm.ErrFeatureLevel.
const registrationWait = 5 * time.Second

// registrationPending reports whether cmd, refused for its feature level,
// may pass once registrations land: no member of the raft configuration
// is recorded here with a lower level than cmd needs (a member may be
// unrecorded, here or in the leader's state, which may be behind this
// node's for a moment).
func (n *Node) registrationPending(cmd *raftv1.Command) bool {
	level, ok := n.cfg.OpFeatureLevel(cmd)
	if !ok {
		return false
	}
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if m, ok := n.fsm.Member(string(s.ID)); ok && m.GetFeatureLevel() < level {
			return false
		}
	}
	return true
}

// await waits for a's result until ctx ends. The outcome is still
// collected (and the tracker told) when the caller stops waiting.
func (a *applying) await(ctx context.Context) (*fsm.Result, error) {
	c := call{n: a.n, ctx: ctx}
	return a.awaitCall(&c)
}

// awaitCall is await until c ends.
func (a *applying) awaitCall(c *call) (*fsm.Result, error) {
	type outcome struct {
		res *fsm.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := a.finish()
		done <- outcome{res, err}
	}()
	o, err := wait(c, done)
	if err != nil {
		return nil, err
	}
	return o.res, o.err
}

// finish waits for raft's answer and returns the state machine's result.
// The tracker learns of every session this leader opens or closes; a
// replayed command opened or closed nothing.
func (a *applying) finish() (*fsm.Result, error) {
	defer a.n.ops.Done()
	err := a.f.Error()
	a.n.releaseSlot()
	if err != nil {
		return nil, applyError(err)
	}
	res, ok := a.f.Response().(*fsm.Result)
	if !ok {
		return nil, fmt.Errorf("node: apply returned %T", a.f.Response())
	}
	if errors.Is(res.Err, fsm.ErrNotApplied) {
		// Committed after the entry this node stopped at: the other
		// replicas apply it, with an outcome this node does not know.
		return nil, fmt.Errorf("%w: %w", ErrUnknownOutcome, res.Err)
	}
	if !res.Replayed {
		a.n.sessions.applied(a.cmd, res)
	}
	return res, nil
}

// applyError maps raft's refusal of an apply to a node error.
func applyError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		return ErrNotLeader
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return ErrUnknownOutcome
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrShuttingDown
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return context.DeadlineExceeded
	}
	return fmt.Errorf("node: apply: %w", err)
}

// forward sends cmd to the leader: on the propose stream of this node's
// forwarder, or in a unary Propose where the stream cannot carry it.
func (n *Node) forward(c *call, cmd *raftv1.Command) (*fsm.Result, error) {
	n.metrics.forwarded.WithLabelValues(fwdWrite).Inc()
	data, err := proto.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("node: encode command: %w", err)
	}
	addr, known, err := n.knownLeader()
	if err == nil && !known {
		addr, err = n.leaderAddr(c.context())
	}
	if err != nil {
		return nil, err
	}
	conn, err := n.peers.get(addr)
	if err != nil {
		return nil, err
	}
	resp, err := n.fwd.proposeCall(c, addr, conn, data)
	if err != nil {
		return nil, err
	}
	return decodeResult(cmd, resp)
}

// proposeUnary forwards one encoded command in a unary Propose.
func proposeUnary(ctx context.Context, conn *grpc.ClientConn, data []byte) (*raftv1.ProposeResponse, error) {
	resp, err := raftv1.NewInternalServiceClient(conn).Propose(ctx, &raftv1.ProposeRequest{Command: data})
	if err != nil {
		return nil, fromPeer(err)
	}
	return resp, nil
}

// fromPeer turns a leader's gRPC error back into node errors where one
// fits, so this node reports them the way the leader would have.
func fromPeer(err error) error {
	s, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch {
	case s.Code() == codes.FailedPrecondition:
		return ErrNotLeader
	case s.Code() == codes.Unavailable:
		return fmt.Errorf("%w: leader: %s", ErrNoLeader, s.Message())
	case s.Code() == codes.DeadlineExceeded:
		return context.DeadlineExceeded
	case s.Code() == codes.Unknown:
		// peerStatus's code for ErrUnknownOutcome (and gRPC's for a
		// handler error it could not map: an outcome unknown too).
		return fmt.Errorf("%w: leader: %s", ErrUnknownOutcome, s.Message())
	}
	return err
}

// encodeResult is res in the wire form the leader answers a forward with.
func encodeResult(res *fsm.Result) (*raftv1.ProposeResponse, error) { return fsm.EncodeResult(res) }

// decodeResult rebuilds the leader's answer to a forwarded cmd.
func decodeResult(cmd *raftv1.Command, pr *raftv1.ProposeResponse) (*fsm.Result, error) {
	res, err := fsm.DecodeResult(cmd, pr)
	if err != nil {
		return nil, fmt.Errorf("node: decode leader response: %w", err)
	}
	return res, nil
}

// leaderConn returns a connection to the leader's internal service,
// waiting (within ctx) for a leader to be known.
func (n *Node) leaderConn(ctx context.Context) (*grpc.ClientConn, error) {
	addr, err := n.leaderAddr(ctx)
	if err != nil {
		return nil, err
	}
	return n.peers.get(addr)
}

// leaderAddr returns the leader's raft address, where it serves its
// peers, waiting (within ctx) for a leader to be known.
func (n *Node) leaderAddr(ctx context.Context) (string, error) {
	for {
		addr, known, err := n.knownLeader()
		if err != nil || known {
			return addr, err
		}
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return "", ErrNoLeader
		}
	}
}

// knownLeader returns the leader's raft address if this node knows it.
func (n *Node) knownLeader() (addr string, known bool, err error) {
	if n.closing.Load() {
		return "", false, ErrShuttingDown
	}
	a, id := n.raft.LeaderWithID()
	if id != "" && string(id) == n.cfg.ID {
		return "", false, ErrNotLeader // we just became leader; caller retries locally
	}
	return string(a), id != "" && a != "", nil
}

// peerConns keeps one open gRPC connection per peer raft address. Once
// closed it hands out none: a connection opened then would never be
// closed.
type peerConns struct {
	dial   func(ctx context.Context, raftAddr string) (net.Conn, error)
	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	closed bool
}

// newPeerConns dials peers with dial (Config.DialPeer), or over TCP if nil.
func newPeerConns(dial func(ctx context.Context, raftAddr string) (net.Conn, error)) *peerConns {
	if dial == nil {
		dial = dialPeer
	}
	return &peerConns{dial: dial, conns: map[string]*grpc.ClientConn{}}
}

func (p *peerConns) get(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrShuttingDown
	}
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	// passthrough: the address is the dialer's to interpret (an
	// in-memory raft address in tests), not a name to resolve.
	c, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithNoProxy(),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return p.dial(ctx, addr) }),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize), grpc.MaxCallSendMsgSize(MaxMessageSize)))
	if err != nil {
		return nil, fmt.Errorf("node: dial %s: %w", addr, err)
	}
	p.conns[addr] = c
	return c, nil
}

func (p *peerConns) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = map[string]*grpc.ClientConn{}
	p.closed = true
}

// MaxMessageSize is the gRPC message limit, set above fsm.MaxDataSize so
// that an oversized value gets the state machine's typed error, not gRPC's.
const MaxMessageSize = fsm.MaxDataSize + 1<<20
