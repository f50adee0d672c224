package client

import (
	"context"

	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// Status describes the node that serves the call: the first reachable one,
// starting from the endpoint that answered last.
func (c *Client) Status(ctx context.Context, req *paddockv1.StatusRequest) (*paddockv1.StatusResponse, error) {
	return call(ctx, c, read, paddockv1.NewClusterServiceClient, paddockv1.ClusterServiceClient.Status, req)
}

// Members lists every member of the cluster.
func (c *Client) Members(ctx context.Context, req *paddockv1.MembersRequest) (*paddockv1.MembersResponse, error) {
	return call(ctx, c, read, paddockv1.NewClusterServiceClient, paddockv1.ClusterServiceClient.Members, req)
}
