package client

import (
	"context"
	"errors"

	"google.golang.org/protobuf/proto"

	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// Create makes a znode. It is a write, retried with one request id: see
// the package documentation.
func (c *Client) Create(ctx context.Context, req *paddockv1.CreateRequest) (*paddockv1.CreateResponse, error) {
	return call(ctx, c, write, paddockv1.NewTreeServiceClient, paddockv1.TreeServiceClient.Create, req)
}

// Get returns a znode's data and Stat. Like every read, it is sent with
// min_zxid = LastZxid unless req sets one: see the package documentation.
func (c *Client) Get(ctx context.Context, req *paddockv1.GetRequest) (*paddockv1.GetResponse, error) {
	if o := c.ownWrites(req.GetRead()); o != nil {
		req = proto.CloneOf(req)
		req.Read = o
	}
	return call(ctx, c, read, paddockv1.NewTreeServiceClient, boundedBy(c.readAttempt, paddockv1.TreeServiceClient.Get), req)
}

// Set changes a znode's data. It is a write, retried with one request id:
// see the package documentation.
func (c *Client) Set(ctx context.Context, req *paddockv1.SetRequest) (*paddockv1.SetResponse, error) {
	return call(ctx, c, write, paddockv1.NewTreeServiceClient, paddockv1.TreeServiceClient.Set, req)
}

// Delete removes a znode, or a subtree. It is a write, retried with one
// request id: see the package documentation.
func (c *Client) Delete(ctx context.Context, req *paddockv1.DeleteRequest) (*paddockv1.DeleteResponse, error) {
	return call(ctx, c, write, paddockv1.NewTreeServiceClient, paddockv1.TreeServiceClient.Delete, req)
}

// Exists reports whether a znode exists, with its Stat if it does.
func (c *Client) Exists(ctx context.Context, req *paddockv1.ExistsRequest) (*paddockv1.ExistsResponse, error) {
	if o := c.ownWrites(req.GetRead()); o != nil {
		req = proto.CloneOf(req)
		req.Read = o
	}
	return call(ctx, c, read, paddockv1.NewTreeServiceClient, boundedBy(c.readAttempt, paddockv1.TreeServiceClient.Exists), req)
}

// List returns one page of a znode's children; see ListAll for all of them.
func (c *Client) List(ctx context.Context, req *paddockv1.ListRequest) (*paddockv1.ListResponse, error) {
	if o := c.ownWrites(req.GetRead()); o != nil {
		req = proto.CloneOf(req)
		req.Read = o
	}
	return call(ctx, c, read, paddockv1.NewTreeServiceClient, boundedBy(c.readAttempt, paddockv1.TreeServiceClient.List), req)
}

// Multi applies ops atomically, all or none. It is a write, retried with
// one request id: see the package documentation.
func (c *Client) Multi(ctx context.Context, req *paddockv1.MultiRequest) (*paddockv1.MultiResponse, error) {
	return call(ctx, c, write, paddockv1.NewTreeServiceClient, paddockv1.TreeServiceClient.Multi, req)
}

// ownWrites returns the ReadOptions to send instead of r so that a read
// reflects LastZxid, or nil when r already sets min_zxid or the client has
// seen no zxid yet. The caller's request is never modified.
func (c *Client) ownWrites(r *paddockv1.ReadOptions) *paddockv1.ReadOptions {
	zxid := c.LastZxid()
	if zxid == 0 || r.GetMinZxid() != 0 {
		return nil
	}
	return &paddockv1.ReadOptions{Consistency: r.GetConsistency(), MinZxid: zxid}
}

// errStuckPage guards against a server that hands back the token it was
// given, which would make ListAll loop forever.
var errStuckPage = errors.New("client: list: next_page_token did not advance")

// ListAll lists every child of req.Path by following next_page_token from
// req.PageToken to the last page. It returns one response holding the
// children of every page in order, with the header, parent Stat and (empty)
// next_page_token of the last page. req is not modified.
//
// Pages after the first are read at least at the previous page's zxid, so
// failing over between pages never goes back in time. The pages are not one
// snapshot: a child created or deleted meanwhile may be missed or listed.
func (c *Client) ListAll(ctx context.Context, req *paddockv1.ListRequest) (*paddockv1.ListResponse, error) {
	req = proto.CloneOf(req)
	var all *paddockv1.ListResponse
	for {
		resp, err := c.List(ctx, req)
		if err != nil {
			return nil, err
		}
		if all == nil {
			all = resp
		} else {
			all.Children = append(all.Children, resp.Children...)
			all.Header, all.Stat, all.NextPageToken = resp.Header, resp.Stat, resp.NextPageToken
		}
		if resp.NextPageToken == "" {
			return all, nil
		}
		if resp.NextPageToken == req.PageToken {
			return nil, errStuckPage
		}
		req.PageToken = resp.NextPageToken
		if zxid := resp.GetHeader().GetZxid(); zxid > req.GetRead().GetMinZxid() {
			if req.Read == nil {
				req.Read = &paddockv1.ReadOptions{}
			}
			req.Read.MinZxid = zxid
		}
	}
}

// ListData lists every child of req.Path with its data and Stat, as the
// state was at one zxid, calling fn with each page in order (from
// req.PageToken, usually ""). Pages hold at most 1 MiB of children and
// page_size children; each carries the listing's zxid (listing_zxid).
// req is not modified; its with_data is set on the requests sent. fn's
// error stops the listing and is returned.
//
// The listing at one zxid holds only while the parent and the children
// of the pages still to come do not change: when one has, the next page
// fails with OUT_OF_RANGE (IsListingChanged) and the pages fn already saw
// must be dropped. Starting over is the caller's choice (a farm export
// retries; a tool may give up), for example:
//
//	for {
//		var hosts []*paddockv1.Child
//		err := c.ListData(ctx, req, func(p *paddockv1.ListResponse) error {
//			hosts = append(hosts, p.Children...)
//			return nil
//		})
//		if !client.IsListingChanged(err) {
//			return hosts, err
//		}
//	}
//
// Like List, a page is a read with req.Read's consistency (and LastZxid
// as min_zxid), and fails over between endpoints: the node that serves a
// later page waits until it has applied the listing's zxid.
func (c *Client) ListData(ctx context.Context, req *paddockv1.ListRequest, fn func(*paddockv1.ListResponse) error) error {
	req = proto.CloneOf(req)
	req.WithData = true
	for {
		resp, err := c.List(ctx, req)
		if err != nil {
			return err
		}
		if err := fn(resp); err != nil {
			return err
		}
		if resp.NextPageToken == "" {
			return nil
		}
		if resp.NextPageToken == req.PageToken {
			return errStuckPage
		}
		req.PageToken = resp.NextPageToken
	}
}
