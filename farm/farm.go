package farm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// CommonName is the child of a farm that join --common keeps: a
// configuration shared by the farm, not a host.
const CommonName = "common"

// Farm properties kept in the farm znode's JSON object.
const (
	// PropSize is the most hosts the farm has had, raised by join.
	PropSize = "size"
	// PropRunningFilter holds the filters that select running hosts.
	PropRunningFilter = "running_filter"
)

// casAttempts bounds the compare-and-set retries of one field change.
const casAttempts = 32

// Host is one child of a farm as read.
type Host struct {
	// Conf is the host's configuration ({} when its data is not a JSON
	// object; Invalid lists those hosts).
	Conf Conf
	// Mzxid is the zxid of the host znode's last change.
	Mzxid uint64
	// Ephemeral is set for a joined host (owned by a session).
	Ephemeral bool
}

// Snapshot is a farm as it was at one zxid.
type Snapshot struct {
	// Path is the farm znode.
	Path string
	// Exists is false when the farm znode does not exist (an empty farm).
	Exists bool
	// Props is the farm znode's own JSON object (size, running_filter).
	Props Conf
	// Hosts are the farm's children by name, common included.
	Hosts map[string]Host
	// Invalid names the children whose data is not a JSON object.
	Invalid []string
	// Zxid is the zxid the farm was read at.
	Zxid uint64
}

// Read reads the farm at path as it was at one zxid: the farm znode's
// properties and every child with its data. A farm that does not exist is
// an empty Snapshot (Exists false), as ZkFarmer lists it. read sets the
// consistency (nil: linearizable).
func Read(ctx context.Context, t Tree, farmPath string, read *paddockv1.ReadOptions) (*Snapshot, error) {
	for attempt := 0; ; attempt++ {
		s, err := readOnce(ctx, t, farmPath, read)
		if err == nil || !retryRead(err) || attempt >= casAttempts {
			return s, err
		}
		if err := pause(ctx, attempt); err != nil {
			return nil, err
		}
	}
}

// errPropsMoved: the farm znode changed between its Get and the listing.
var errPropsMoved = errors.New("farm: farm znode changed during the read")

func retryRead(err error) bool {
	return errors.Is(err, errPropsMoved) || status.Code(err) == codes.OutOfRange
}

func readOnce(ctx context.Context, t Tree, farmPath string, read *paddockv1.ReadOptions) (*Snapshot, error) {
	s := &Snapshot{Path: farmPath, Props: Conf{}, Hosts: map[string]Host{}}
	g, err := t.Get(ctx, &paddockv1.GetRequest{Path: farmPath, Read: read})
	if status.Code(err) == codes.NotFound {
		// The answer's zxid (for a poll after it) comes with Exists.
		e, err := t.Exists(ctx, &paddockv1.ExistsRequest{Path: farmPath, Read: read})
		if err != nil {
			return nil, err
		}
		if e.GetExists() {
			return nil, errPropsMoved
		}
		s.Zxid = e.GetHeader().GetZxid()
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	s.Exists = true
	if props, err := DecodeConf(g.GetData()); err == nil {
		s.Props = props
	}
	at := &paddockv1.ReadOptions{Consistency: read.GetConsistency(), MinZxid: max(read.GetMinZxid(), g.GetHeader().GetZxid())}
	req := &paddockv1.ListRequest{Path: farmPath, Read: at, WithData: true}
	for {
		page, err := t.List(ctx, req)
		if status.Code(err) == codes.NotFound {
			return nil, errPropsMoved
		}
		if err != nil {
			return nil, err
		}
		if page.GetStat().GetMzxid() != g.GetStat().GetMzxid() {
			return nil, errPropsMoved
		}
		s.Zxid = page.GetListingZxid()
		for _, c := range page.GetChildren() {
			h := Host{Mzxid: c.GetStat().GetMzxid(), Ephemeral: c.GetStat().GetEphemeralOwner() != 0}
			conf, err := DecodeConf(c.GetData())
			if err != nil {
				conf = Conf{}
				s.Invalid = append(s.Invalid, c.GetName())
			}
			h.Conf = conf
			s.Hosts[c.GetName()] = h
		}
		if page.GetNextPageToken() == "" || page.GetNextPageToken() == req.PageToken {
			return s, nil
		}
		req.PageToken = page.GetNextPageToken()
	}
}

// Export is the farm as an export writes it: every host that passes f, by
// name, with its configuration. common is not a host and is left out
// (ZkFarmer exported it as one).
func (s *Snapshot) Export(f Filter) map[string]Conf {
	out := make(map[string]Conf, len(s.Hosts))
	for name, h := range s.Hosts {
		if name != CommonName && f.Match(h.Conf) {
			out[name] = h.Conf
		}
	}
	return out
}

// HostCount is the number of hosts (children but common).
func (s *Snapshot) HostCount() int {
	n := len(s.Hosts)
	if _, ok := s.Hosts[CommonName]; ok {
		n--
	}
	return n
}

// Size is the farm's size property, and whether it is set to an integer.
func (s *Snapshot) Size() (int, bool) {
	v, ok := s.Props[PropSize]
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(ValueString(v, true)))
	if err != nil {
		return 0, false
	}
	return n, true
}

// RunningFilter is the farm's running_filter property ("" when unset).
func (s *Snapshot) RunningFilter() string {
	v, ok := s.Props[PropRunningFilter]
	if !ok || v == nil {
		return ""
	}
	return ValueString(v, true)
}

// Running counts the hosts (common excluded) that pass the farm's
// running_filter, every host when it has none.
func (s *Snapshot) Running() (int, error) {
	f, err := ParseFilter(s.RunningFilter())
	if err != nil {
		return 0, fmt.Errorf("running_filter of %s: %w", s.Path, err)
	}
	n := 0
	for name, h := range s.Hosts {
		if name != CommonName && f.Match(h.Conf) {
			n++
		}
	}
	return n, nil
}

// Nagios states of Check, which are its exit codes.
const (
	StatusOK       = 0
	StatusWarning  = 1
	StatusCritical = 2
	StatusUnknown  = 3
)

// StatusLabel is the Nagios word of a status.
func StatusLabel(st int) string {
	switch st {
	case StatusOK:
		return "OK"
	case StatusWarning:
		return "WARNING"
	case StatusCritical:
		return "CRITICAL"
	}
	return "UNKNOWN"
}

// CheckResult is the outcome of Check.
type CheckResult struct {
	Status                 int
	Message                string
	Size, Running, Failing int
}

// Check judges the farm's health as ZkFarmer's check: failing = size -
// running; CRITICAL when failing >= maxFailed, WARNING when warn is set
// and failing >= warn, else OK. Thresholds are a number of hosts or a
// percentage of size ("10%"). A farm without a size, or a bad threshold
// or running_filter, is UNKNOWN.
func (s *Snapshot) Check(maxFailed, warn string) CheckResult {
	// The thresholds first: a bad one is the caller's mistake, whatever
	// the farm holds.
	if ValidateThreshold(maxFailed) != nil {
		return CheckResult{Status: StatusUnknown, Message: fmt.Sprintf("Invalid `max_failed_node' argument format: %s", maxFailed)}
	}
	if warn != "" && ValidateThreshold(warn) != nil {
		return CheckResult{Status: StatusUnknown, Message: fmt.Sprintf("Invalid `warn_failed_node' argument format: %s", warn)}
	}
	size, ok := s.Size()
	if !ok {
		return CheckResult{Status: StatusUnknown, Message: fmt.Sprintf("No `size' property found for `%s' farm", s.Path)}
	}
	limit, _ := threshold(maxFailed, size)
	warnAt := math.Inf(1)
	if warn != "" {
		warnAt, _ = threshold(warn, size)
	}
	running, err := s.Running()
	if err != nil {
		return CheckResult{Status: StatusUnknown, Message: err.Error()}
	}
	r := CheckResult{Size: size, Running: running, Failing: size - running}
	// Unlike ZkFarmer, a farm with no failing host is never CRITICAL nor
	// WARNING, even when a threshold is 0 (or a percentage of a small
	// farm rounds to 0): "max allowed 0" then means any failure alerts.
	switch {
	case r.Failing <= 0:
	case float64(r.Failing) >= limit:
		r.Status = StatusCritical
	case float64(r.Failing) >= warnAt:
		r.Status = StatusWarning
	}
	r.Message = fmt.Sprintf("%d/%d nodes running, %d nodes failing, max allowed %s", running, size, r.Failing, maxFailed)
	return r
}

// ValidateThreshold checks a Check threshold ("N" or "P%") without a
// farm, for a caller that refuses a bad one before reading (ErrBadThreshold).
func ValidateThreshold(s string) error {
	_, err := threshold(s, 0)
	return err
}

// threshold parses "N" or "P%" of size.
func threshold(s string, size int) (float64, error) {
	s = strings.TrimSpace(s)
	if p, ok := strings.CutSuffix(s, "%"); ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, fmt.Errorf("%w: %q", ErrBadThreshold, s)
		}
		return float64(size) * f / 100, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: %q", ErrBadThreshold, s)
	}
	return float64(n), nil
}

// Update changes the JSON object in the znode at p with fn, by
// compare-and-set: it reads the znode, applies fn to its Conf, and writes
// it back at the version read, starting over when another writer got in
// first, so concurrent updates of different fields are never lost. fn
// returns false to write nothing. A znode whose data is not a JSON object
// (nor empty) is refused with ErrBadConf rather than overwritten.
func Update(ctx context.Context, t Tree, p string, fn func(Conf) (bool, error)) (*paddockv1.Stat, error) {
	for attempt := 0; attempt < casAttempts; attempt++ {
		g, err := t.Get(ctx, &paddockv1.GetRequest{Path: p})
		if err != nil {
			return nil, err
		}
		conf, err := DecodeConf(g.GetData())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		write, err := fn(conf)
		if err != nil || !write {
			return g.GetStat(), err
		}
		s, err := t.Set(ctx, &paddockv1.SetRequest{Path: p, Data: conf.Encode(), Version: proto.Int32(g.GetStat().GetVersion())})
		if err == nil {
			return s.GetStat(), nil
		}
		if !isBadVersion(err) {
			return nil, err
		}
		if err := pause(ctx, attempt); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrConflict, p)
}

// isBadVersion reports a compare-and-set that lost.
func isBadVersion(err error) bool { return status.Code(err) == codes.FailedPrecondition }

// pause backs off between attempts: 1 ms doubling up to 64 ms.
func pause(ctx context.Context, attempt int) error {
	d := time.Millisecond << min(attempt, 6)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// SetField sets a dotted field of the znode at p to value (a string, as
// ZkFarmer stores values), creating sub-dicts on the way.
func SetField(ctx context.Context, t Tree, p, field string, value any) (*paddockv1.Stat, error) {
	if _, err := splitField(field); err != nil {
		return nil, err
	}
	return Update(ctx, t, p, func(c Conf) (bool, error) {
		if v, ok := c.Lookup(field); ok && equalValue(v, value) {
			return false, nil
		}
		return true, c.SetField(field, value)
	})
}

// UnsetField removes a dotted field of the znode at p; a field that is
// not there writes nothing.
func UnsetField(ctx context.Context, t Tree, p, field string) (*paddockv1.Stat, error) {
	if _, err := splitField(field); err != nil {
		return nil, err
	}
	return Update(ctx, t, p, func(c Conf) (bool, error) {
		return c.UnsetField(field)
	})
}

func equalValue(a, b any) bool {
	return Conf{"v": a}.Equal(Conf{"v": b})
}

// EnsurePath creates p and its missing parents as persistent znodes with
// empty data (a farm created this way has no properties yet).
func EnsurePath(ctx context.Context, t Tree, p string) error {
	if p == "/" {
		return nil
	}
	if _, err := t.Get(ctx, &paddockv1.GetRequest{Path: p}); err == nil || status.Code(err) != codes.NotFound {
		return err
	}
	if err := EnsurePath(ctx, t, path.Dir(p)); err != nil {
		return err
	}
	_, err := t.Create(ctx, &paddockv1.CreateRequest{Path: p})
	if status.Code(err) == codes.AlreadyExists {
		return nil
	}
	return err
}

// RaiseSize sets the farm's size property to n when it is lower (or
// unset), as join does when the farm grows.
func RaiseSize(ctx context.Context, t Tree, farmPath string, n int) error {
	_, err := Update(ctx, t, farmPath, func(c Conf) (bool, error) {
		s := Snapshot{Props: c}
		if cur, ok := s.Size(); ok && cur >= n {
			return false, nil
		}
		c[PropSize] = json.Number(strconv.Itoa(n))
		return true, nil
	})
	return err
}

// HostPath is the znode of host name in the farm.
func HostPath(farmPath, name string) string {
	return path.Join(farmPath, name)
}
