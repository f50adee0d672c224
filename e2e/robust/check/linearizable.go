package check

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// ErrTimeout is wrapped by the error Linearizable returns when porcupine
// gave up on a key before deciding it: the history was neither proved
// linearizable nor shown not to be.
var ErrTimeout = errors.New("check: linearizability check timed out")

// neverReturned is the return time given to a write whose outcome is
// Unknown: it may take effect at any moment after its call.
const neverReturned = math.MaxInt64

// Linearizable checks with porcupine that ops are linearizable against a
// model of versioned znodes, one independent register per Key, each
// starting absent. The model follows Paddock (and ZooKeeper):
//
//   - Create OK needs the key absent and leaves it at Value, version 0;
//     Create Exists needs it present.
//   - Get OK needs it present with the Value and Version read; Get
//     NotFound needs it absent.
//   - Set and Delete need it present (else NotFound) and, unless
//     ExpectVersion is -1, at ExpectVersion (else BadVersion). Set OK
//     writes Value and bumps the version, which must be the op's Version;
//     Delete OK removes the key.
//   - A write with outcome Unknown may take effect at any single moment
//     after its Call, or never. Porcupine sees it as never returning, so
//     it can be linearized anywhere after its call, also after every
//     other op, which is the same as never happening: the model simply
//     applies it where it is linearized (a no-op if the key's version or
//     existence does not allow it). The client's later ops are given a
//     fresh porcupine client, so that one client's ops do not overlap.
//     Gets with outcome Unknown are dropped.
//   - An Unknown Create or Set whose Value no other write of the key has
//     and that a Get OK read took effect before that Get returned: its
//     return time becomes the earliest such Get's, which prunes the
//     search without changing the verdict.
//
// The model is a plain porcupine Model, not a NondeterministicModel
// stepping to both the state with and the state without the write: both
// accept the same histories, but the sets of states that the latter
// builds defeat porcupine's cache. A non-linearizable key with 8 pending
// unknown writes took 5.8 s that way, against 4 ms with this model.
// Proving a key not linearizable still takes time exponential in the
// unknown writes pending at once (unread, so never returning): about 0.1 s
// for 12, 4 s for 16, which is what timeout is for. Linearizable keys are
// fast however many there are (5,000 ops on one key with 180 unknown
// writes: under 0.2 s).
//
// A Create's Version is not checked (an OK create is always version 0).
// "Every acknowledged write is present at the end" is this check too, as
// long as the history ends with a read of every key.
//
// Keys are checked concurrently; timeout bounds each key's search (zero
// or less: none). The result: ok is true only when every key was proved
// linearizable. Each key proved not linearizable is one violation whose
// Detail names the key, the longest linearizable prefix porcupine found,
// the state it leaves and the ops none of which can come next. Keys whose
// search timed out are reported in err (wrapping ErrTimeout), not as
// violations: nothing was shown wrong, but nothing was proved either. A
// malformed history (an outcome the operation cannot have, a return before
// the call) is an err as well, and nothing is checked.
//
// When any key failed or timed out and visualizeTo is not empty, the
// porcupine HTML visualization of those keys is written there (the search
// runs again, with the same timeout, to collect the partial
// linearizations the visualization shows).
func Linearizable(ops []RegisterOp, timeout time.Duration, visualizeTo string) (ok bool, violations []Violation, err error) {
	keys, err := registerHistories(ops)
	if err != nil {
		return false, nil, err
	}
	model := registerModel()
	results := make([]porcupine.CheckResult, len(keys))
	var wg sync.WaitGroup
	for i, k := range keys {
		wg.Go(func() { results[i] = porcupine.CheckOperationsTimeout(model, k.ops, timeout) })
	}
	wg.Wait()

	var failed []*keyHistory
	var timedOut []string
	for i, k := range keys {
		switch results[i] {
		case porcupine.Ok:
			continue
		case porcupine.Unknown:
			timedOut = append(timedOut, k.key)
		}
		failed = append(failed, k)
	}
	if len(failed) == 0 {
		return true, nil, nil
	}

	// Run the failed keys again, verbosely, in one porcupine call so that
	// one visualization holds them all: partition i is failed[i].
	var flat []porcupine.Operation
	for _, k := range failed {
		flat = append(flat, k.ops...)
	}
	model.Partition = partitionByKey
	_, info := porcupine.CheckOperationsVerbose(model, flat, timeout)
	partials := info.PartialLinearizations()
	for i, k := range failed {
		if slices.Contains(timedOut, k.key) {
			continue
		}
		var p [][]int
		if i < len(partials) {
			p = partials[i]
		}
		violations = append(violations, Violation{Check: "linearizable", Detail: k.describeFailure(p)})
	}
	if len(timedOut) > 0 {
		err = fmt.Errorf("%w: keys %q not decided within %v", ErrTimeout, timedOut, timeout)
	}
	if visualizeTo != "" {
		if verr := porcupine.VisualizePath(model, info, visualizeTo); verr != nil {
			err = errors.Join(err, fmt.Errorf("check: writing the visualization: %w", verr))
		}
	}
	return false, violations, err
}

// znodeState is the model's state of one key. An absent key is always the
// zero value, so that states compare with ==.
type znodeState struct {
	exists  bool
	value   string
	version int64
}

func (s znodeState) String() string {
	if !s.exists {
		return "absent"
	}
	return fmt.Sprintf("%q v%d", s.value, s.version)
}

// regInput and regOutput are a RegisterOp split for porcupine.
type regInput struct {
	key    string
	kind   Kind
	value  string
	expect int64
}

type regOutput struct {
	outcome Outcome
	value   string
	version int64
}

// regMeta is the metadata of a porcupine operation: where it came from.
type regMeta struct {
	index  int // in the caller's ops
	client int // the caller's client id
	call   time.Duration
	ret    time.Duration // -1 when the outcome is Unknown
}

func (m regMeta) String() string {
	ret := "never"
	if m.ret >= 0 {
		ret = m.ret.String()
	}
	return fmt.Sprintf("op #%d, client %d, [%v, %s]", m.index, m.client, m.call, ret)
}

// applyOp runs in on s as Paddock does: the outcome and the state after.
func applyOp(s znodeState, in regInput) (Outcome, znodeState) {
	switch in.kind {
	case Create:
		if s.exists {
			return Exists, s
		}
		return OK, znodeState{exists: true, value: in.value}
	case Get:
		if !s.exists {
			return NotFound, s
		}
		return OK, s
	case Set, Delete:
		if !s.exists {
			return NotFound, s
		}
		if in.expect != -1 && in.expect != s.version {
			return BadVersion, s
		}
		if in.kind == Delete {
			return OK, znodeState{}
		}
		return OK, znodeState{exists: true, value: in.value, version: s.version + 1}
	}
	panic(fmt.Sprintf("check: unknown kind %d", in.kind))
}

// stepZnode is the model's step: whether the op's recorded outcome is
// possible from s, and the state after it. An Unknown write is applied.
func stepZnode(s znodeState, in regInput, out regOutput) (bool, znodeState) {
	got, next := applyOp(s, in)
	if out.outcome == Unknown {
		return true, next
	}
	if got != out.outcome {
		return false, s
	}
	if got == OK {
		switch in.kind {
		case Get:
			if s.value != out.value || s.version != out.version {
				return false, s
			}
		case Set:
			if next.version != out.version {
				return false, s
			}
		}
	}
	return true, next
}

// hashZnode is FNV-1a over the state's fields.
func hashZnode(state any) uint64 {
	s := state.(znodeState)
	h := uint64(14695981039346656037)
	mix := func(b byte) {
		h ^= uint64(b)
		h *= 1099511628211
	}
	if s.exists {
		mix(1)
	}
	for i := range 8 {
		mix(byte(s.version >> (8 * i)))
	}
	for i := range len(s.value) {
		mix(s.value[i])
	}
	return h
}

func registerModel() porcupine.Model {
	return porcupine.Model{
		Init: func() any { return znodeState{} },
		Step: func(state, input, output any) (bool, any) {
			return stepZnode(state.(znodeState), input.(regInput), output.(regOutput))
		},
		Hash: hashZnode,
		DescribeOperation: func(input, output any) string {
			return describeRegOp(input.(regInput), output.(regOutput))
		},
		DescribeState: func(state any) string { return state.(znodeState).String() },
		DescribeOperationMetadata: func(info any) string {
			if info == nil {
				return ""
			}
			return info.(regMeta).String()
		},
	}
}

// partitionByKey groups ops by key, keys in the order they first appear.
func partitionByKey(history []porcupine.Operation) [][]porcupine.Operation {
	var parts [][]porcupine.Operation
	index := map[string]int{}
	for _, op := range history {
		key := op.Input.(regInput).key
		i, ok := index[key]
		if !ok {
			i = len(parts)
			index[key] = i
			parts = append(parts, nil)
		}
		parts[i] = append(parts[i], op)
	}
	return parts
}

// String names the operation ("create", "get", "set", "delete").
func (k Kind) String() string {
	switch k {
	case Create:
		return "create"
	case Get:
		return "get"
	case Set:
		return "set"
	case Delete:
		return "delete"
	}
	return fmt.Sprintf("kind(%d)", k)
}

func outcomeName(o Outcome) string {
	switch o {
	case OK:
		return "ok"
	case NotFound:
		return "not found"
	case Exists:
		return "exists"
	case BadVersion:
		return "bad version"
	case Unknown:
		return "unknown"
	}
	return fmt.Sprintf("outcome(%d)", o)
}

// describeRegOp reads like `k1: set("x", expect v2) -> ok v3`.
func describeRegOp(in regInput, out regOutput) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s(", in.key, in.kind)
	switch in.kind {
	case Create:
		fmt.Fprintf(&b, "%q", in.value)
	case Set:
		fmt.Fprintf(&b, "%q, ", in.value)
	}
	if in.kind == Set || in.kind == Delete {
		if in.expect == -1 {
			b.WriteString("any version")
		} else {
			fmt.Fprintf(&b, "expect v%d", in.expect)
		}
	}
	fmt.Fprintf(&b, ") -> %s", outcomeName(out.outcome))
	if out.outcome == OK {
		switch in.kind {
		case Get:
			fmt.Fprintf(&b, " %q v%d", out.value, out.version)
		case Set:
			fmt.Fprintf(&b, " v%d", out.version)
		}
	}
	return b.String()
}

// keyHistory is the porcupine history of one key.
type keyHistory struct {
	key string
	ops []porcupine.Operation
}

// validOutcomes lists the outcomes each kind can have.
var validOutcomes = map[Kind][]Outcome{
	Create: {OK, Exists, Unknown},
	Get:    {OK, NotFound, Unknown},
	Set:    {OK, NotFound, BadVersion, Unknown},
	Delete: {OK, NotFound, BadVersion, Unknown},
}

// registerHistories validates ops and splits them into one porcupine
// history per key, keys sorted. Porcupine client ids are dense and fresh
// after each Unknown write of a client, whose call never returns.
func registerHistories(ops []RegisterOp) ([]*keyHistory, error) {
	for i, op := range ops {
		outs, ok := validOutcomes[op.Kind]
		if !ok {
			return nil, fmt.Errorf("check: op #%d has unknown kind %d", i, op.Kind)
		}
		if !slices.Contains(outs, op.Outcome) {
			return nil, fmt.Errorf("check: op #%d: %s cannot have outcome %s", i, op.Kind, outcomeName(op.Outcome))
		}
		if op.Outcome != Unknown && op.Return < op.Call {
			return nil, fmt.Errorf("check: op #%d returns at %v before its call at %v", i, op.Return, op.Call)
		}
	}
	order := make([]int, len(ops))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return ops[order[a]].Call < ops[order[b]].Call })

	type clientEpoch struct{ client, epoch int }
	ids := map[clientEpoch]int{}
	epoch := map[int]int{}
	byKey := map[string]*keyHistory{}
	for _, i := range order {
		op := ops[i]
		if op.Kind == Get && op.Outcome == Unknown {
			continue
		}
		ce := clientEpoch{op.Client, epoch[op.Client]}
		id, ok := ids[ce]
		if !ok {
			id = len(ids)
			ids[ce] = id
		}
		meta := regMeta{index: i, client: op.Client, call: op.Call, ret: op.Return}
		ret := int64(op.Return)
		if op.Outcome == Unknown {
			epoch[op.Client]++
			meta.ret, ret = -1, neverReturned
		}
		k := byKey[op.Key]
		if k == nil {
			k = &keyHistory{key: op.Key}
			byKey[op.Key] = k
		}
		k.ops = append(k.ops, porcupine.Operation{
			ClientId: id,
			Input:    regInput{key: op.Key, kind: op.Kind, value: op.Value, expect: op.ExpectVersion},
			Call:     int64(op.Call),
			Output:   regOutput{outcome: op.Outcome, value: op.Value, version: op.Version},
			Return:   ret,
			Metadata: meta,
		})
	}
	keys := make([]*keyHistory, 0, len(byKey))
	for _, k := range byKey {
		k.capObservedUnknowns()
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b *keyHistory) int { return strings.Compare(a.key, b.key) })
	return keys, nil
}

// capObservedUnknowns gives an Unknown Create or Set whose value was read
// the return time of the earliest Get OK that read it: the write took
// effect before that Get did. Only values that one write of the key has
// are traced, and a read returning before the write's call is left for
// porcupine to reject.
func (k *keyHistory) capObservedUnknowns() {
	writes := map[string]int{}
	for _, op := range k.ops {
		if in := op.Input.(regInput); in.kind == Create || in.kind == Set {
			writes[in.value]++
		}
	}
	readBy := map[string]int64{}
	for _, op := range k.ops {
		in, out := op.Input.(regInput), op.Output.(regOutput)
		if in.kind != Get || out.outcome != OK || writes[out.value] != 1 {
			continue
		}
		if at, ok := readBy[out.value]; !ok || op.Return < at {
			readBy[out.value] = op.Return
		}
	}
	for i, op := range k.ops {
		in, out := op.Input.(regInput), op.Output.(regOutput)
		if out.outcome != Unknown || writes[in.value] != 1 {
			continue
		}
		if at, ok := readBy[in.value]; ok && at >= op.Call {
			k.ops[i].Return = at
		}
	}
}

// describeFailure explains why the key's history is not linearizable from
// porcupine's partial linearizations (lists of indexes into k.ops): the
// longest one, the state it leaves the key in, and the ops that could
// be linearized next (called before any unlinearized op returned) but
// none of which fits.
func (k *keyHistory) describeFailure(partials [][]int) string {
	var longest []int
	for _, p := range partials {
		if len(p) > len(longest) || len(p) == len(longest) && slices.Compare(p, longest) < 0 {
			longest = p
		}
	}
	var state znodeState
	for _, i := range longest {
		_, state = stepZnode(state, k.ops[i].Input.(regInput), k.ops[i].Output.(regOutput))
	}
	done := make([]bool, len(k.ops))
	for _, i := range longest {
		done[i] = true
	}
	var minReturn int64 = neverReturned
	for i, op := range k.ops {
		if !done[i] && op.Return < minReturn {
			minReturn = op.Return
		}
	}
	var next []int
	for i, op := range k.ops {
		if !done[i] && op.Call <= minReturn && op.Output.(regOutput).outcome != Unknown {
			next = append(next, i)
		}
	}
	slices.SortStableFunc(next, func(a, b int) int { return cmp.Compare(k.ops[a].Call, k.ops[b].Call) })

	var b strings.Builder
	fmt.Fprintf(&b, "key %q is not linearizable: the longest linearizable prefix holds %d of its %d ops", k.key, len(longest), len(k.ops))
	if n := len(longest); n > 0 {
		b.WriteString(", ending ")
		for j, i := range longest[max(0, n-3):] {
			if j > 0 {
				b.WriteString("; ")
			}
			b.WriteString(describePorcupineOp(k.ops[i]))
		}
	}
	fmt.Fprintf(&b, "; it leaves the key %s", state)
	if len(next) == 0 {
		b.WriteString("; the search stopped before finding the ops that cannot come next")
		return b.String()
	}
	b.WriteString("; none of the ops that could come next fits: ")
	const most = 5
	for j, i := range next[:min(len(next), most)] {
		if j > 0 {
			b.WriteString("; ")
		}
		b.WriteString(describePorcupineOp(k.ops[i]))
	}
	if len(next) > most {
		fmt.Fprintf(&b, "; and %d more", len(next)-most)
	}
	return b.String()
}

func describePorcupineOp(op porcupine.Operation) string {
	return fmt.Sprintf("%s (%s)", describeRegOp(op.Input.(regInput), op.Output.(regOutput)), op.Metadata.(regMeta))
}
