package fsm

import (
	"bytes"
	"io"
	"reflect"
	"slices"
	"testing"

	"github.com/google/btree"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
)

// stateFields are the names of state's fields: its tables.
func stateFields() []string {
	typ := reflect.TypeFor[state]()
	names := make([]string, typ.NumField())
	for i := range names {
		names[i] = typ.Field(i).Name
	}
	return names
}

// fieldTables are s's fields, in field order, read by reflection rather
// than through tables(), which the tests check.
func fieldTables(s *state) []table {
	v := reflect.ValueOf(s).Elem()
	out := make([]table, v.NumField())
	for i := range out {
		f := v.Field(i)
		out[i] = reflect.NewAt(f.Type(), f.Addr().UnsafePointer()).Elem().Interface().(table)
	}
	return out
}

// TestStateTablesListed checks that every field of state is a table and
// is in tables(), which reset, Snapshot, Restore and StateHash go through:
// a table added as a field but not listed fails here.
func TestStateTablesListed(t *testing.T) {
	for name, s := range map[string]*state{"newState": newState(defaultRequestLimits), "emptyState": emptyState(defaultRequestLimits)} {
		v := reflect.ValueOf(s).Elem()
		listed := s.tables()
		if len(listed) != v.NumField() {
			t.Errorf("%s: tables() lists %d tables, state has %d fields", name, len(listed), v.NumField())
		}
		tableType := reflect.TypeFor[table]()
		for i := range v.NumField() {
			f := v.Field(i)
			fname := v.Type().Field(i).Name
			if !f.Type().Implements(tableType) {
				t.Errorf("%s: field %s (%s) does not implement table", name, fname, f.Type())
				continue
			}
			if f.IsNil() {
				t.Errorf("%s: field %s is nil", name, fname)
				continue
			}
			found := slices.ContainsFunc(listed, func(tb table) bool {
				return reflect.ValueOf(tb).UnsafePointer() == f.UnsafePointer()
			})
			if !found {
				t.Errorf("%s: field %s is not in tables()", name, fname)
			}
		}
	}
}

// stateOptions compare two states' contents: every field, unexported ones
// too; the tree as its znodes in order; the request table as its live
// entries (its queue's dead slots and its index's layout and random seed
// decide nothing).
func stateOptions() cmp.Options {
	type liveRequests struct {
		Limits  requestLimits
		Entries []request
		Bytes   int
	}
	return cmp.Options{
		cmp.Exporter(func(reflect.Type) bool { return true }),
		protocmp.Transform(),
		cmp.Transformer("znodes", func(tr *btree.BTreeG[*znode]) []znode {
			var out []znode
			tr.Ascend(func(n *znode) bool { out = append(out, *n); return true })
			return out
		}),
		cmp.Transformer("webSessions", func(tr *btree.BTreeG[WebSession]) []WebSession {
			var out []WebSession
			tr.Ascend(func(ws WebSession) bool { out = append(out, ws); return true })
			return out
		}),
		cmp.Transformer("live", func(rt *requestTable) liveRequests {
			var out []request
			for _, r := range rt.live() {
				out = append(out, *r)
			}
			return liveRequests{Limits: rt.limits, Entries: out, Bytes: rt.bytes}
		}),
	}
}

// TestStateRoundTrip builds a state whose every table holds records,
// snapshots it, restores it into a fresh FSM and compares the two states
// field by field: a table that Snapshot or Restore forgot comes back empty.
func TestStateRoundTrip(t *testing.T) {
	h, _, _, _ := snapshotState(t)
	h.f.mu.Lock()
	for i, tb := range fieldTables(h.f.state) {
		if n := tb.capture().records(); n == 0 {
			t.Errorf("fixture: table %s has no records; fill it in snapshotState", stateFields()[i])
		}
	}
	h.f.mu.Unlock()

	restored := New(nil)
	restored.mustCreate(t, "/stale")
	if err := restored.Restore(io.NopCloser(bytes.NewReader(persist(t, h.f)))); err != nil {
		t.Fatalf("Restore() error = %v", err)
	}
	if diff := cmp.Diff(h.f.state, restored.state, stateOptions()); diff != "" {
		t.Errorf("restored state mismatch (-original +restored):\n%s", diff)
	}
	if got, want := restored.StateHash(), h.f.StateHash(); got != want {
		t.Errorf("StateHash() after Restore = %x, want %x", got, want)
	}
}

// mustCreate creates a persistent node on f as its next entry.
func (f *FSM) mustCreate(t *testing.T, path string) {
	t.Helper()
	h := &harness{t: t, f: f, sink: &recordingSink{}, index: f.AppliedIndex()}
	h.mustCreate(path, "")
}

// TestStateHashCoversEveryTable changes one table at a time, with a
// command that changes nothing else, and checks that the state hash sees
// it. Each table needs a case: a new one fails until it has its own.
func TestStateHashCoversEveryTable(t *testing.T) {
	base := func(t *testing.T) (*harness, uint64) {
		h := newHarness(t)
		h.mustCreate("/a", "")
		sid := h.openSession(10_000)
		h.must(cmdRegister("n1", "n1:1"))
		h.must(withID(cmdCreate("/b", nil), "id-1"))
		h.must(cmdWebSessionWrite("w1", nil, 0, 0, false))
		return h, sid
	}
	tests := map[string]func(sid uint64) *raftv1.Command{
		"tree":     func(uint64) *raftv1.Command { return cmdSet("/a", []byte("x"), nil) },
		"sessions": func(sid uint64) *raftv1.Command { return cmdCheckpoint(checkpoint(sid, 500)) },
		"members":  func(uint64) *raftv1.Command { return cmdRegister("n1", "n1:2") },
		"requests": func(uint64) *raftv1.Command { return withID(cmdBarrier(), "id-2") },
		"webSessions": func(uint64) *raftv1.Command {
			return cmdWebSessionWrite("w1", []byte("x"), 1, 0, false)
		},
	}
	fields := stateFields()
	for name := range tests {
		if !slices.Contains(fields, name) {
			t.Errorf("case %s names no field of state %v", name, fields)
		}
	}
	for i, name := range fields {
		cmd, ok := tests[name]
		if !ok {
			t.Errorf("table %s has no case: add a command that changes only it", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			h, sid := base(t)
			before := tableBytes(t, h.f)
			hash := h.f.StateHash()
			h.must(cmd(sid))
			if h.f.StateHash() == hash {
				t.Errorf("StateHash() unchanged after changing table %s", name)
			}
			after := tableBytes(t, h.f)
			for j := range fields {
				if changed := !bytes.Equal(before[j], after[j]); changed != (j == i) {
					t.Errorf("table %s changed = %v after the %s case, want %v", fields[j], changed, name, j == i)
				}
			}
		})
	}
}

// tableBytes is each table's snapshot records.
func tableBytes(t *testing.T, f *FSM) [][]byte {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	var out [][]byte
	for _, tb := range fieldTables(f.state) {
		var buf bytes.Buffer
		rw := newRecordWriter(&buf)
		if err := tb.capture().write(rw); err != nil {
			t.Fatal(err)
		}
		if err := rw.bw.Flush(); err != nil {
			t.Fatal(err)
		}
		out = append(out, buf.Bytes())
	}
	return out
}
