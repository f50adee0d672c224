package fsm

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	raftv1 "github.com/paddock/paddock/proto/paddock/raft/v1"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// Listing with data (ListRequest.with_data): a znode's children with
// their data and Stats, a page at a time, every page reflecting the state
// at one zxid, so that a farm export costs a few reads instead of one per
// child and sees one consistent farm.
//
// The first page is read from the current state; its applied index Z is
// the listing's zxid, and every next page token carries Z with the parent
// path and the last name returned (ListPageToken, base64url). There is no
// multi-version store to read an old state from, so a later page is served
// from the current state S (>= Z) only when S and the state at Z agree on
// everything the page returns, and fails with ErrListingChanged otherwise.
// Every change to what a page returns bumps a zxid past Z:
//
//   - a child created or deleted (the set of names after the token) sets
//     the parent's pzxid; so does a delete and recreate of a child;
//   - a child's data (and its mzxid, mtime, version, data_length) sets its
//     mzxid;
//   - a child's own children (its cversion, num_children) set its pzxid;
//   - czxid, ctime and ephemeral_owner are fixed at creation;
//   - the parent's Stat, returned with every page, changes with its mzxid
//     (data) or pzxid (children); its deletion and recreation sets both.
//
// So a page is served at Z iff the parent exists with mzxid <= Z and
// pzxid <= Z, and each child the page returns has mzxid <= Z and pzxid <=
// Z. Children returned by earlier pages are not checked: the caller
// already holds their state at Z. A listing of a busy parent therefore
// restarts; one of a farm (a few hundred hosts, changing rarely) completes.

// ListPageBytes bounds one page of a listing with data: the encoded size
// of its children (names, Stats and data). A page always holds at least
// one child, and one child is at most MaxDataSize of data plus a
// MaxPathLength name, so a page stays under the gRPC message limit.
const ListPageBytes = 1 << 20

// DataPage is one page of a listing with data.
type DataPage struct {
	// Children carry their data, a copy the caller may keep.
	Children []*paddockv1.Child
	// Stat is the parent's Stat.
	Stat *paddockv1.Stat
	// Zxid is the listing's zxid: the state every page reflects.
	Zxid uint64
	// Next is the token of the next page, "" when this page is the last.
	Next string
}

// ListData returns the page of path's children, with their data, that
// token (a previous DataPage.Next, or "" for the first page) asks for: at
// most limit children and, past the first, at most ListPageBytes. A later
// page fails with ErrListingChanged when it cannot be served at the
// listing's zxid (see above); the caller then lists again from "". The
// state must have applied the listing's zxid: the caller waits for it
// (DecodeListToken gives it).
func (f *FSM) ListData(path, token string, limit int) (*DataPage, error) {
	if err := ValidatePath(path, false); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, fmt.Errorf("%w: page size %d", ErrBadArgument, limit)
	}
	var zxid uint64
	var after string
	if token != "" {
		var err error
		if zxid, after, err = DecodeListToken(path, token); err != nil {
			return nil, err
		}
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	// applied is stored under mu (ApplyBatch), so it is the tree's index.
	applied := f.applied.Load()
	if token == "" {
		zxid = applied
	} else if applied < zxid {
		return nil, fmt.Errorf("%w: listing at zxid %d is ahead of this state (zxid %d)", ErrBadArgument, zxid, applied)
	}
	t := f.state.reader()
	p := t.get(path)
	if err := listedParent(path, p, token != "", zxid); err != nil {
		return nil, err
	}
	page := &DataPage{Stat: p.stat(), Zxid: zxid}
	size := 0
	var err error
	t.tree.AscendGreaterOrEqual(childKey(path, after), func(c *znode) bool {
		if c.parent() != path {
			return false
		}
		if after != "" && c.name() == after {
			return true
		}
		child := &paddockv1.Child{Name: c.name(), Stat: c.stat(), Data: c.data}
		n := proto.Size(child)
		if len(page.Children) == limit || (len(page.Children) > 0 && size+n > ListPageBytes) {
			page.Next = encodeListToken(zxid, path, page.Children[len(page.Children)-1].Name)
			return false
		}
		if token != "" {
			if z := max(c.mzxid, c.pzxid()); z > zxid {
				err = listingChanged(path, zxid, fmt.Sprintf("child %s changed at zxid %d", c.name(), z))
				return false
			}
		}
		child.Data = bytes.Clone(c.data)
		page.Children = append(page.Children, child)
		size += n
		return true
	})
	if err != nil {
		return nil, err
	}
	return page, nil
}

// listedParent checks the listed parent p of path: it must exist and, for
// a later page (more), be unchanged since the listing's zxid.
func listedParent(path string, p *znode, more bool, zxid uint64) error {
	switch {
	case p == nil && more:
		return listingChanged(path, zxid, "it was deleted")
	case p == nil:
		return fmt.Errorf("%w: %s", ErrNoNode, path)
	case more && p.pzxid() > zxid:
		return listingChanged(path, zxid, fmt.Sprintf("its children changed at zxid %d", p.pzxid()))
	case more && p.mzxid > zxid:
		return listingChanged(path, zxid, fmt.Sprintf("its data changed at zxid %d", p.mzxid))
	}
	return nil
}

func listingChanged(path string, zxid uint64, why string) error {
	return fmt.Errorf("%w: listing of %s at zxid %d: %s; list again without page_token", ErrListingChanged, path, zxid, why)
}

// encodeListToken returns the opaque next_page_token of a listing with
// data.
func encodeListToken(zxid uint64, path, after string) string {
	b, err := proto.Marshal(&raftv1.ListPageToken{Zxid: zxid, Path: path, After: after})
	if err != nil {
		// Marshal of a message of scalars and valid UTF-8 strings (a
		// path and a name from the tree) cannot fail.
		panic(fmt.Sprintf("fsm: encoding a list page token: %v", err))
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeListToken returns the listing's zxid and the name to continue
// after from the page token of a listing with data of path. A token that
// does not decode, or that another listing (another path) handed out, is
// ErrBadArgument.
func DecodeListToken(path, token string) (zxid uint64, after string, err error) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return 0, "", fmt.Errorf("%w: malformed page_token", ErrBadArgument)
	}
	var t raftv1.ListPageToken
	if err := proto.Unmarshal(b, &t); err != nil {
		return 0, "", fmt.Errorf("%w: malformed page_token", ErrBadArgument)
	}
	switch a := t.GetAfter(); {
	case t.GetZxid() == 0 || a == "" || len(a) > MaxPathLength || strings.Contains(a, "/"):
		return 0, "", fmt.Errorf("%w: malformed page_token", ErrBadArgument)
	case t.GetPath() != path:
		return 0, "", fmt.Errorf("%w: page_token is for a listing of another path", ErrBadArgument)
	}
	return t.GetZxid(), t.GetAfter(), nil
}
