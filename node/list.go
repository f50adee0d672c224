package node

import (
	"fmt"

	"github.com/paddock/paddock/fsm"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// A List with with_data is one listing at one zxid, paged by count and
// bytes (fsm/list.go). Its page token carries the listing's zxid, which
// the read treats as a min_zxid too: a node behind the first page's state
// (a follower serving a serializable read, say) waits for it rather than
// answering from an older state, and a forwarded read carries it to the
// leader. Past that the page is read with the request's own consistency.

// listOptions returns the read options of a List: req's, with min_zxid
// raised to the listing's zxid for a later page with data. A token that
// does not decode leaves them as they are; checkList refuses it.
func listOptions(req *paddockv1.ListRequest) *paddockv1.ReadOptions {
	opts := req.GetRead()
	if !req.GetWithData() || req.GetPageToken() == "" {
		return opts
	}
	zxid, _, err := fsm.DecodeListToken(req.GetPath(), req.GetPageToken())
	if err != nil || zxid <= opts.GetMinZxid() {
		return opts
	}
	return &paddockv1.ReadOptions{Consistency: opts.GetConsistency(), MinZxid: zxid}
}

// checkList rejects a List request that no state could answer.
func checkList(req *paddockv1.ListRequest) error {
	if err := fsm.ValidatePath(req.GetPath(), false); err != nil {
		return err
	}
	if !req.GetWithData() {
		// A with_data token decodes as a name too (base64): refuse it
		// rather than list after a garbage name. No name decodes as one
		// (its first byte would be a control character).
		if _, _, err := fsm.DecodeListToken(req.GetPath(), req.GetPageToken()); err == nil {
			return fmt.Errorf("%w: page_token is of a listing with data: set with_data", fsm.ErrBadArgument)
		}
		_, _, err := listPage(req)
		return err
	}
	if _, err := pageSize(req); err != nil {
		return err
	}
	if req.GetPageToken() == "" {
		return nil
	}
	_, _, err := fsm.DecodeListToken(req.GetPath(), req.GetPageToken())
	return err
}

// listData reads one page of a listing with data. The response header's
// zxid is at least the listing's: the first page's state is the node's
// applied index when the page was read, which may be past the index the
// header was taken at.
func (n *Node) listData(req *paddockv1.ListRequest, hdr *paddockv1.ResponseHeader) (*paddockv1.ListResponse, error) {
	size, err := pageSize(req)
	if err != nil {
		return nil, err
	}
	page, err := n.fsm.ListData(req.GetPath(), req.GetPageToken(), size)
	if err != nil {
		return nil, err
	}
	hdr.Zxid = max(hdr.GetZxid(), page.Zxid)
	return &paddockv1.ListResponse{
		Header:        hdr,
		Children:      page.Children,
		NextPageToken: page.Next,
		Stat:          page.Stat,
		ListingZxid:   page.Zxid,
	}, nil
}
