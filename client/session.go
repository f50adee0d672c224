package client

import (
	"context"

	"google.golang.org/protobuf/proto"

	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// OpenSession starts a session and returns its id; nothing keeps it alive.
// NewSession opens one that is kept alive. It is a write, retried with one
// request id: see the package documentation.
func (c *Client) OpenSession(ctx context.Context, req *paddockv1.OpenSessionRequest) (*paddockv1.OpenSessionResponse, error) {
	return call(ctx, c, write, paddockv1.NewSessionServiceClient, paddockv1.SessionServiceClient.OpenSession, req)
}

// KeepAlive renews a session's timeout once. Renewing twice is harmless, so
// it fails over like a read.
func (c *Client) KeepAlive(ctx context.Context, req *paddockv1.KeepAliveRequest) (*paddockv1.KeepAliveResponse, error) {
	return call(ctx, c, read, paddockv1.NewSessionServiceClient, paddockv1.SessionServiceClient.KeepAlive, req)
}

// CloseSession ends a session and deletes its ephemeral znodes. It is a
// write, retried with one request id: see the package documentation.
func (c *Client) CloseSession(ctx context.Context, req *paddockv1.CloseSessionRequest) (*paddockv1.CloseSessionResponse, error) {
	return call(ctx, c, write, paddockv1.NewSessionServiceClient, paddockv1.SessionServiceClient.CloseSession, req)
}

// GetSession describes one session.
func (c *Client) GetSession(ctx context.Context, req *paddockv1.GetSessionRequest) (*paddockv1.GetSessionResponse, error) {
	if o := c.ownWrites(req.GetRead()); o != nil {
		req = proto.CloneOf(req)
		req.Read = o
	}
	return call(ctx, c, read, paddockv1.NewSessionServiceClient, paddockv1.SessionServiceClient.GetSession, req)
}

// ListSessions describes every session.
func (c *Client) ListSessions(ctx context.Context, req *paddockv1.ListSessionsRequest) (*paddockv1.ListSessionsResponse, error) {
	if o := c.ownWrites(req.GetRead()); o != nil {
		req = proto.CloneOf(req)
		req.Read = o
	}
	return call(ctx, c, read, paddockv1.NewSessionServiceClient, paddockv1.SessionServiceClient.ListSessions, req)
}
