package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

var (
	created = &paddockv1.Event{Zxid: 42, Kind: paddockv1.EventKind_EVENT_KIND_CREATED, Path: "/a/b",
		Stat: &paddockv1.Stat{Czxid: 42, Mzxid: 42, Version: 0, DataLength: 5}}
	changed = &paddockv1.Event{Zxid: 43, Kind: paddockv1.EventKind_EVENT_KIND_DATA_CHANGED, Path: "/a/b",
		Stat: &paddockv1.Stat{Czxid: 42, Mzxid: 43, Version: 1, DataLength: 2}, PrevData: []byte("hello")}
	deleted = &paddockv1.Event{Zxid: 44, Kind: paddockv1.EventKind_EVENT_KIND_DELETED, Path: "/a/b"}
)

func TestWriteEventText(t *testing.T) {
	tests := []struct {
		name     string
		ev       *paddockv1.Event
		prevData bool
		want     string
	}{
		{"created", created, false, "42 created /a/b version=0 data_length=5\n"},
		{"changed", changed, false, "43 data_changed /a/b version=1 data_length=2\n"},
		{"changed prev data", changed, true, "43 data_changed /a/b version=1 data_length=2 prev_data_length=5\n"},
		{"deleted", deleted, false, "44 deleted /a/b\n"},
		{"deleted empty prev data", deleted, true, "44 deleted /a/b prev_data_length=0\n"},
		{"created prev data", created, true, "42 created /a/b version=0 data_length=5\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := writeEvent(&buf, "text", tt.prevData, tt.ev); err != nil {
				t.Fatalf("writeEvent() error = %v", err)
			}
			if got := buf.String(); got != tt.want {
				t.Errorf("writeEvent() = %q, want %q", got, tt.want)
			}
		})
	}
}

// checkNDJSON checks that out is one JSON object per line, each the
// protojson form of the matching event of want.
func checkNDJSON(t *testing.T, out string, want []*paddockv1.Event) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(want) || !strings.HasSuffix(out, "\n") {
		t.Fatalf("output = %q, want %d newline-terminated lines", out, len(want))
	}
	for i, line := range lines {
		if !json.Valid([]byte(line)) || strings.ContainsAny(line, "\n\t") {
			t.Errorf("line %d = %q, want one compact JSON object", i, line)
			continue
		}
		got := &paddockv1.Event{}
		if err := protojson.Unmarshal([]byte(line), got); err != nil {
			t.Errorf("line %d = %q: not an Event: %v", i, line, err)
			continue
		}
		if !proto.Equal(got, want[i]) {
			t.Errorf("line %d = %v, want %v", i, got, want[i])
		}
	}
}

func TestWriteEventNDJSON(t *testing.T) {
	events := []*paddockv1.Event{created, changed, deleted}
	var buf bytes.Buffer
	for _, ev := range events {
		if err := writeEvent(&buf, "json", true, ev); err != nil {
			t.Fatalf("writeEvent(%v) error = %v", ev, err)
		}
	}
	checkNDJSON(t, buf.String(), events)
	// Every field is present and named by its proto name, as the
	// gateway renders it.
	first := strings.SplitN(buf.String(), "\n", 2)[0]
	for _, want := range []string{`"kind":"EVENT_KIND_CREATED"`, `"prev_data":""`, `"data_length":5`, `"ephemeral_owner":"0"`} {
		if !strings.Contains(first, want) {
			t.Errorf("first line = %s, want %s in it", first, want)
		}
	}
}

func TestParseKinds(t *testing.T) {
	tests := []struct {
		in      string
		want    []paddockv1.EventKind
		wantErr bool
	}{
		{in: "", want: nil},
		{in: "created", want: []paddockv1.EventKind{paddockv1.EventKind_EVENT_KIND_CREATED}},
		{in: "deleted, Data-Changed,children_changed", want: []paddockv1.EventKind{
			paddockv1.EventKind_EVENT_KIND_DELETED, paddockv1.EventKind_EVENT_KIND_DATA_CHANGED, paddockv1.EventKind_EVENT_KIND_CHILDREN_CHANGED}},
		{in: "created,,", want: []paddockv1.EventKind{paddockv1.EventKind_EVENT_KIND_CREATED}},
		// The HTTP API's and -o json's spelling too.
		{in: "EVENT_KIND_DELETED,event_kind_data_changed", want: []paddockv1.EventKind{
			paddockv1.EventKind_EVENT_KIND_DELETED, paddockv1.EventKind_EVENT_KIND_DATA_CHANGED}},
		{in: "EVENT_KIND_UNSPECIFIED", wantErr: true},
		{in: "changed", wantErr: true},
		{in: "created,bogus", wantErr: true},
		{in: "unspecified", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseKinds(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseKinds(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("parseKinds(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

// watchNode serves WatchService with a fixed list of events, then holds
// the stream open, recording each request.
type watchNode struct {
	paddockv1.UnimplementedWatchServiceServer
	events []*paddockv1.Event
	mu     sync.Mutex
	reqs   []*paddockv1.WatchRequest
}

func (n *watchNode) Watch(req *paddockv1.WatchRequest, stream grpc.ServerStreamingServer[paddockv1.WatchResponse]) error {
	n.mu.Lock()
	n.reqs = append(n.reqs, req)
	n.mu.Unlock()
	if err := stream.Send(&paddockv1.WatchResponse{Header: &paddockv1.ResponseHeader{Zxid: req.StartZxid - 1}, Created: true}); err != nil {
		return err
	}
	for _, ev := range n.events {
		if err := stream.Send(&paddockv1.WatchResponse{Header: &paddockv1.ResponseHeader{Zxid: ev.Zxid}, Events: []*paddockv1.Event{ev}}); err != nil {
			return err
		}
	}
	<-stream.Context().Done()
	return nil
}

// lockedBuffer is a bytes.Buffer the command writes while the test reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestTreeWatchCommand runs `paddock tree watch -o json` against an
// in-process WatchService until its context ends, as a signal would.
func TestTreeWatchCommand(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	node := &watchNode{events: []*paddockv1.Event{created, changed, deleted}}
	srv := grpc.NewServer()
	paddockv1.RegisterWatchServiceServer(srv, node)
	go srv.Serve(lis)
	defer srv.Stop()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out lockedBuffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetArgs([]string{"tree", "watch", "--endpoints", lis.Addr().String(), "-o", "json",
		"--recursive", "--from", "42", "--kinds", "created,data_changed,deleted", "--prev-data", "/a"})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()

	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(out.String(), "\n") < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("output after 5s = %q, want 3 lines", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("tree watch ended with %v, want nil after its context ended", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("tree watch still running 5s after its context ended")
	}
	checkNDJSON(t, out.String(), node.events)

	node.mu.Lock()
	defer node.mu.Unlock()
	want := &paddockv1.WatchRequest{Path: "/a", Recursive: true, StartZxid: 42, PrevData: true, ProgressIntervalMs: 5000, Kinds: []paddockv1.EventKind{
		paddockv1.EventKind_EVENT_KIND_CREATED, paddockv1.EventKind_EVENT_KIND_DATA_CHANGED, paddockv1.EventKind_EVENT_KIND_DELETED}}
	if len(node.reqs) != 1 || !proto.Equal(node.reqs[0], want) {
		t.Errorf("watch requests = %v, want [%v]", node.reqs, want)
	}
}
