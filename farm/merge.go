package farm

// Merge3 merges a local and a remote configuration that both changed since
// base, the content they last agreed on: it is remote with every leaf that
// local changed since base applied on top (set, replaced or removed),
// field by field down nested dicts. So a remote `farm set` of one field
// and a local edit of another both survive; when both changed the same
// leaf, local wins. Lists are leaves. None of the arguments is modified.
func Merge3(base, local, remote Conf) Conf {
	out := remote.Clone()
	if out == nil {
		out = Conf{}
	}
	applyChanges(base, local, out)
	return out
}

// applyChanges applies to out what changed from base to local.
func applyChanges(base, local, out Conf) {
	for k, lv := range local {
		bv, inBase := base[k]
		if inBase && equalValue(bv, lv) {
			continue
		}
		if lc, ok := lv.(Conf); ok {
			bc, baseDict := bv.(Conf)
			if !inBase || baseDict {
				if bc == nil {
					bc = Conf{}
				}
				oc, ok := out[k].(Conf)
				if !ok {
					oc = Conf{}
				}
				applyChanges(bc, lc, oc)
				out[k] = oc
				continue
			}
		}
		out[k] = cloneValue(lv)
	}
	for k := range base {
		if _, ok := local[k]; !ok {
			delete(out, k)
		}
	}
}
