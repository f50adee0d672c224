package client

import (
	"context"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// GetFarm reads a whole farm at one zxid (FarmService.GetFarm). Like
// every read, it is sent with min_zxid = LastZxid unless req sets one.
func (c *Client) GetFarm(ctx context.Context, req *paddockv1.GetFarmRequest) (*paddockv1.GetFarmResponse, error) {
	if o := c.ownWrites(req.GetRead()); o != nil {
		req = proto.CloneOf(req)
		req.Read = o
	}
	return call(ctx, c, read, paddockv1.NewFarmServiceClient, paddockv1.FarmServiceClient.GetFarm, req)
}

// PollFarm waits up to req.timeout_ms for a change under the farm after
// req.after_zxid and returns the farm when there was one (changed); pass
// the response's header.zxid as the next after_zxid, and 0 to get the
// farm at once. ctx must outlast timeout_ms. It is a read, retried on
// another endpoint on Unavailable. An after_zxid older than the node's
// history fails with a *CompactedError (errors.Is ErrCompacted): start
// again from 0.
func (c *Client) PollFarm(ctx context.Context, req *paddockv1.PollFarmRequest) (*paddockv1.PollFarmResponse, error) {
	resp, err := call(ctx, c, read, paddockv1.NewFarmServiceClient, paddockv1.FarmServiceClient.PollFarm, req)
	if err == nil {
		return resp, nil
	}
	if ce := gapError(watchCanceled(status.Convert(err)), req.GetAfterZxid()+1); ce != nil {
		return nil, ce
	}
	return nil, err
}

// SetField sets a dotted field of a host's (or a farm's) JSON object by
// compare-and-set on the server. It is a write, retried with one request
// id like the others; the server does not need the id to make the retry
// safe: setting a field to the value it already has writes nothing, so a
// retry after a call that was applied but not answered returns the
// znode's Stat unchanged. (A retry does overwrite a change another writer
// made to the same field in between, as a later call would.)
func (c *Client) SetField(ctx context.Context, req *paddockv1.SetFieldRequest) (*paddockv1.SetFieldResponse, error) {
	return call(ctx, c, write, paddockv1.NewFarmServiceClient, paddockv1.FarmServiceClient.SetField, req)
}

// UnsetField removes a dotted field of a host's (or a farm's) JSON object
// by compare-and-set on the server. It is a write, retried with one
// request id; a retry after an applied call finds the field gone and
// writes nothing (see SetField).
func (c *Client) UnsetField(ctx context.Context, req *paddockv1.UnsetFieldRequest) (*paddockv1.UnsetFieldResponse, error) {
	return call(ctx, c, write, paddockv1.NewFarmServiceClient, paddockv1.FarmServiceClient.UnsetField, req)
}

// CheckFarm judges a farm's health as `paddock farm check` does. Like
// every read, it is sent with min_zxid = LastZxid unless req sets one.
func (c *Client) CheckFarm(ctx context.Context, req *paddockv1.CheckFarmRequest) (*paddockv1.CheckFarmResponse, error) {
	if o := c.ownWrites(req.GetRead()); o != nil {
		req = proto.CloneOf(req)
		req.Read = o
	}
	return call(ctx, c, read, paddockv1.NewFarmServiceClient, paddockv1.FarmServiceClient.CheckFarm, req)
}
