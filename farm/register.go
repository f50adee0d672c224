package farm

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// NameHeldError is a host name that Register found owned by a session
// that is not the caller's: another process or host uses the name.
type NameHeldError struct {
	// Path is the host's znode.
	Path string
	// Owner is the session owning it (0: a persistent znode).
	Owner uint64
}

func (e *NameHeldError) Error() string {
	return fmt.Sprintf("farm: join: the name is held by another session: %s: session %#x", e.Path, e.Owner)
}

// Register is the registration step of Join, exported so that a load
// generator (paddock bench farm) times exactly the path Join takes
// without running Join's local file watch: it creates the farm path if
// missing, then the ephemeral znode FARM/NAME holding conf, owned by
// session. A znode of that name owned by a session for which mine reports
// true (one the caller opened before, or an earlier registration whose
// answer was lost) is replaced; one owned by any other session, or a
// persistent one, is left alone and reported as a *NameHeldError.
//
// Register leaves the farm's size alone: Join raises it after, with
// RaiseSizeToHosts.
func Register(ctx context.Context, t Tree, farmPath, name string, conf Conf, session uint64, mine func(owner uint64) bool) (*paddockv1.CreateResponse, error) {
	if err := EnsurePath(ctx, t, farmPath); err != nil {
		return nil, err
	}
	p := HostPath(farmPath, name)
	for {
		c, err := t.Create(ctx, &paddockv1.CreateRequest{
			Path: p, Data: conf.Encode(), Type: paddockv1.NodeType_NODE_TYPE_EPHEMERAL, SessionId: session,
		})
		if err == nil {
			return c, nil
		}
		if status.Code(err) != codes.AlreadyExists {
			return nil, err
		}
		g, err := t.Get(ctx, &paddockv1.GetRequest{Path: p})
		if status.Code(err) == codes.NotFound {
			continue
		}
		if err != nil {
			return nil, err
		}
		owner := g.GetStat().GetEphemeralOwner()
		if owner == 0 || mine == nil || !mine(owner) {
			return nil, &NameHeldError{Path: p, Owner: owner}
		}
		_, err = t.Delete(ctx, &paddockv1.DeleteRequest{Path: p, Version: proto.Int32(g.GetStat().GetVersion())})
		if err != nil && status.Code(err) != codes.NotFound && !isBadVersion(err) {
			return nil, err
		}
	}
}

// RaiseSizeToHosts raises the farm's size to its number of hosts (its
// children but common, counted without their data), as Join does after
// registering.
func RaiseSizeToHosts(ctx context.Context, t Tree, farmPath string) error {
	n, err := countHosts(ctx, t, farmPath)
	if err == nil {
		err = RaiseSize(ctx, t, farmPath, n)
	}
	if err != nil {
		return fmt.Errorf("raise the size of %s: %w", farmPath, err)
	}
	return nil
}

// countHosts counts the farm's children but common, without their data.
func countHosts(ctx context.Context, t Tree, farmPath string) (int, error) {
	n := 0
	req := &paddockv1.ListRequest{Path: farmPath}
	for {
		page, err := t.List(ctx, req)
		if err != nil {
			return 0, err
		}
		for _, c := range page.GetChildren() {
			if c.GetName() != CommonName {
				n++
			}
		}
		if page.GetNextPageToken() == "" || page.GetNextPageToken() == req.PageToken {
			return n, nil
		}
		req.PageToken = page.GetNextPageToken()
	}
}
