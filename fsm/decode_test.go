package fsm

import (
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/google/go-cmp/cmp"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// TestDecodeReuse: decoding entry after entry into the FSM's reused
// command (which reuses a create's or a set's message) gives what a fresh
// proto.Unmarshal gives, error or message, whatever came before; and what
// an earlier entry decoded to is not changed by a later one.
func TestDecodeReuse(t *testing.T) {
	v := int32(3)
	enc := func(m *raftv1.Command) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	create := enc(&raftv1.Command{TimeUnixMs: 5, RequestId: []byte("id-1"), Op: &raftv1.Command_Create{Create: &paddockv1.CreateRequest{
		Path: "/a", Data: []byte("one"), Type: paddockv1.NodeType_NODE_TYPE_EPHEMERAL, SessionId: 7, Sequential: true,
	}}})
	createBare := enc(cmdCreate("/b", nil))
	setVersion := enc(cmdSet("/a", []byte("two"), &v))
	setBare := enc(cmdSet("/c", nil, nil))
	del := enc(cmdDelete("/a", nil, true))
	// An entry holding the create field twice merges them; one holding a
	// create and a set keeps the last.
	twoCreates := append(append([]byte{}, createBare...), create...)
	createThenSet := append(append([]byte{}, create...), setBare...)
	wrongWire := protowire.AppendVarint(protowire.AppendTag(nil, createField, protowire.VarintType), 1)
	wrongWireSet := protowire.AppendFixed32(protowire.AppendTag(append([]byte{}, setBare...), setField, protowire.Fixed32Type), 1)
	unknown := protowire.AppendBytes(protowire.AppendTag(append([]byte{}, createBare...), 999, protowire.BytesType), []byte("x"))
	truncated := create[:len(create)-2]
	entries := [][]byte{
		create, create, createBare, create, setVersion, setBare, setVersion, create, del, create,
		twoCreates, create, createThenSet, setVersion, wrongWire, create, unknown, create, truncated, create,
		{}, setBare, {0xff}, setVersion, createBare, wrongWire, setBare, wrongWireSet, setVersion,
		createThenSet, setBare, createThenSet,
	}
	f := New(nil)
	type kept struct {
		path string
		data []byte
		want string
	}
	var keep []kept
	for i, data := range entries {
		var want raftv1.Command
		wantErr := proto.Unmarshal(data, &want)
		gotErr := f.decode(data)
		if (gotErr != nil) != (wantErr != nil) {
			t.Fatalf("entry %d: decode error = %v, proto.Unmarshal's = %v", i, gotErr, wantErr)
		}
		if wantErr != nil {
			continue
		}
		if diff := cmp.Diff(&want, &f.cmd, protocmp.Transform()); diff != "" {
			t.Fatalf("entry %d: decoded (-fresh +reused):\n%s", i, diff)
		}
		if c := f.cmd.GetCreate(); c != nil {
			keep = append(keep, kept{c.GetPath(), c.GetData(), string(c.GetData())})
		}
		for _, k := range keep {
			if string(k.data) != k.want {
				t.Fatalf("entry %d: data %q of an earlier create is now %q", i, k.want, k.data)
			}
		}
	}
}
