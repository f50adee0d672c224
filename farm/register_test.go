package farm_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/paddock/paddock/client"
	"github.com/paddock/paddock/farm"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// TestFarmRegister covers Join's registration step on its own: the farm
// path created, the znode owned by the session, a znode of a session
// the caller calls its own replaced, another's left alone with a
// *NameHeldError, and the size raised to the host count.
func TestFarmRegister(t *testing.T) {
	tc := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	open := func() *client.Session {
		s, err := tc.cl.NewSession(ctx, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close(context.Background()) })
		return s
	}
	a, b := open(), open()
	conf := farm.Conf{"enabled": "1"}
	if _, err := farm.Register(ctx, tc.cl, "/r/farm", "h1", conf, a.ID(), nil); err != nil {
		t.Fatalf("Register(h1) = %v, want nil", err)
	}
	got, st, err := tc.get("/r/farm/h1")
	if err != nil || !got.Equal(conf) || st.GetEphemeralOwner() != a.ID() {
		t.Fatalf("h1 = %v owned by %#x (%v), want %v owned by %#x", got, st.GetEphemeralOwner(), err, conf, a.ID())
	}

	// b does not own h1: it is left alone.
	_, err = farm.Register(ctx, tc.cl, "/r/farm", "h1", farm.Conf{"enabled": "0"}, b.ID(), func(o uint64) bool { return o == b.ID() })
	var held *farm.NameHeldError
	if !errors.As(err, &held) || held.Owner != a.ID() || held.Path != "/r/farm/h1" {
		t.Fatalf("Register(h1) by another session = %v, want a NameHeldError naming %#x", err, a.ID())
	}
	if got, _, _ := tc.get("/r/farm/h1"); !got.Equal(conf) {
		t.Fatalf("h1 = %v after a refused Register, want %v", got, conf)
	}

	// b calls a's session its own (an earlier session of one Join): h1
	// is replaced and b owns it.
	mine := func(o uint64) bool { return o == a.ID() || o == b.ID() }
	if _, err := farm.Register(ctx, tc.cl, "/r/farm", "h1", farm.Conf{"enabled": "0"}, b.ID(), mine); err != nil {
		t.Fatalf("Register(h1) replacing its own = %v, want nil", err)
	}
	if got, st, _ := tc.get("/r/farm/h1"); !got.Equal(farm.Conf{"enabled": "0"}) || st.GetEphemeralOwner() != b.ID() {
		t.Fatalf("h1 = %v owned by %#x, want enabled=0 owned by %#x", got, st.GetEphemeralOwner(), b.ID())
	}

	if _, err := farm.Register(ctx, tc.cl, "/r/farm", "h2", conf, a.ID(), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.cl.Create(ctx, &paddockv1.CreateRequest{Path: "/r/farm/" + farm.CommonName}); err != nil {
		t.Fatal(err)
	}
	if err := farm.RaiseSizeToHosts(ctx, tc.cl, "/r/farm"); err != nil {
		t.Fatal(err)
	}
	s, err := farm.Read(ctx, tc.cl, "/r/farm", nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := s.Size(); !ok || n != 2 {
		t.Fatalf("size = %d (%v), want 2 (common is not a host)", n, ok)
	}
}
