package check

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// seqDigits is the width of the sequence suffix Paddock appends to a
// sequential create's path (fsm's "%010d" of the parent's counter).
const seqDigits = 10

// Sequential checks the sequential creates issued under parent against
// final, the parent's children at the end of the run. It assumes the
// parent holds only the workload's sequential children and that nothing
// deletes them. It reports:
//
//   - a child whose name does not end in a 10-digit suffix, or two
//     children with the same suffix;
//   - children that, ordered by Czxid, do not have strictly increasing
//     suffixes (the counter went back, or two entries were applied out
//     of order);
//   - an OK create whose path is not under parent, is not among the
//     children (an acknowledged write lost), or whose child has another
//     Czxid than the create's Zxid;
//   - two OK creates answered with the same path, suffix or zxid, or whose
//     suffixes do not increase in zxid order;
//   - an OK create that returned before another OK create was called but
//     got the larger suffix or zxid (real-time order, as linearizability
//     requires);
//   - more children than OK and Unknown creates together (a create took
//     effect twice, or a phantom child appeared).
//
// It cannot tell which Unknown creates took effect, so a child that no
// OK create answered is accepted while the count allows it; and it cannot
// see a suffix skipped by a create that failed (a gap is legal: the
// counter also advances for creates whose answer was lost).
func Sequential(parent string, creates []SeqCreate, final []Child) []Violation {
	r := report{check: "sequential"}
	prefix := parent + "/"
	if parent == "/" {
		prefix = "/"
	}

	type child struct {
		Child
		seq int64
	}
	children := map[string]child{}
	var sorted []child
	bySeq := map[int64]string{}
	for _, c := range final {
		seq, ok := sequenceSuffix(c.Name)
		if !ok {
			r.addf("child %s%s has no %d-digit sequence suffix", prefix, c.Name, seqDigits)
			continue
		}
		if other, dup := bySeq[seq]; dup {
			r.addf("children %s%s and %s%s share the sequence suffix %d", prefix, other, prefix, c.Name, seq)
		}
		bySeq[seq] = c.Name
		children[c.Name] = child{c, seq}
		sorted = append(sorted, child{c, seq})
	}
	slices.SortStableFunc(sorted, func(a, b child) int {
		return cmp.Or(cmp.Compare(a.Czxid, b.Czxid), cmp.Compare(a.seq, b.seq))
	})
	for i := 1; i < len(sorted); i++ {
		a, b := sorted[i-1], sorted[i]
		if a.seq >= b.seq {
			r.addf("child %s%s (czxid %d) has suffix %d, not above %s%s's %d (czxid %d)", prefix, b.Name, b.Czxid, b.seq, prefix, a.Name, a.seq, a.Czxid)
		}
	}

	type okCreate struct {
		SeqCreate
		index int
		seq   int64
	}
	var oks []okCreate
	unknown := 0
	byPath := map[string]int{}
	createSeq := map[int64]int{}
	for i, c := range creates {
		switch c.Outcome {
		case Unknown:
			unknown++
			continue
		case OK:
		default:
			continue
		}
		name, under := strings.CutPrefix(c.Path, prefix)
		if !under || name == "" || strings.Contains(name, "/") {
			r.addf("create #%d (client %d) answered %s, not a child of %s", i, c.Client, c.Path, parent)
			continue
		}
		seq, ok := sequenceSuffix(name)
		if !ok {
			r.addf("create #%d (client %d) answered %s, without a %d-digit sequence suffix", i, c.Client, c.Path, seqDigits)
			continue
		}
		if j, dup := byPath[c.Path]; dup {
			r.addf("creates #%d (client %d) and #%d (client %d) were both answered %s", j, creates[j].Client, i, c.Client, c.Path)
		} else if j, dup := createSeq[seq]; dup {
			r.addf("creates #%d (%s) and #%d (%s) got the same sequence suffix", j, creates[j].Path, i, c.Path)
		}
		byPath[c.Path], createSeq[seq] = i, i
		oks = append(oks, okCreate{c, i, seq})
		ch, found := children[name]
		switch {
		case !found:
			r.addf("create #%d (client %d, zxid %d) was acknowledged but %s is not among the children at the end", i, c.Client, c.Zxid, c.Path)
		case ch.Czxid != c.Zxid:
			r.addf("create #%d (client %d) was answered zxid %d but %s has czxid %d", i, c.Client, c.Zxid, c.Path, ch.Czxid)
		}
	}

	byZxid := slices.Clone(oks)
	slices.SortStableFunc(byZxid, func(a, b okCreate) int { return cmp.Compare(a.Zxid, b.Zxid) })
	for i := 1; i < len(byZxid); i++ {
		a, b := byZxid[i-1], byZxid[i]
		switch {
		case a.Zxid == b.Zxid && a.Path != b.Path:
			r.addf("creates #%d (%s) and #%d (%s) were answered the same zxid %d", a.index, a.Path, b.index, b.Path, a.Zxid)
		case a.Zxid < b.Zxid && a.seq >= b.seq:
			r.addf("create #%d (%s, zxid %d) has a suffix not above create #%d's (%s, zxid %d)", b.index, b.Path, b.Zxid, a.index, a.Path, a.Zxid)
		}
	}

	// Real time: sweep the creates by call time, keeping the one with the
	// largest suffix (and the one with the largest zxid) among those that
	// returned before the call.
	byCall := slices.Clone(oks)
	slices.SortStableFunc(byCall, func(a, b okCreate) int { return cmp.Compare(a.Call, b.Call) })
	byReturn := slices.Clone(oks)
	slices.SortStableFunc(byReturn, func(a, b okCreate) int { return cmp.Compare(a.Return, b.Return) })
	var maxSeq, maxZxid *okCreate
	j := 0
	for _, b := range byCall {
		for ; j < len(byReturn) && byReturn[j].Return < b.Call; j++ {
			a := &byReturn[j]
			if maxSeq == nil || a.seq > maxSeq.seq {
				maxSeq = a
			}
			if maxZxid == nil || a.Zxid > maxZxid.Zxid {
				maxZxid = a
			}
		}
		if maxSeq != nil && maxSeq.seq >= b.seq {
			r.addf("create #%d (%s, called %v) got a suffix not above create #%d's (%s), which returned before it at %v", b.index, b.Path, b.Call, maxSeq.index, maxSeq.Path, maxSeq.Return)
		}
		if maxZxid != nil && maxZxid.Zxid >= b.Zxid {
			r.addf("create #%d (%s, called %v) got zxid %d, not above create #%d's %d, which returned before it at %v", b.index, b.Path, b.Call, b.Zxid, maxZxid.index, maxZxid.Zxid, maxZxid.Return)
		}
	}

	if len(final) > len(oks)+unknown {
		r.addf("%s has %d children but only %d creates were acknowledged and %d unknown", parent, len(final), len(oks), unknown)
	}
	return r.violations()
}

// sequenceSuffix parses the trailing 10-digit sequence number of name.
func sequenceSuffix(name string) (int64, bool) {
	if len(name) < seqDigits {
		return 0, false
	}
	digits := name[len(name)-seqDigits:]
	for i := range len(digits) {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	return n, err == nil
}
