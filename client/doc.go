// Package client is the Go client of a Paddock cluster: typed calls on the
// tree, session and cluster services, failover between endpoints, and
// sessions kept alive in the background.
//
// # Endpoints and failover
//
// A Client holds one lazily dialed gRPC connection per endpoint and
// remembers the endpoint that answered last; every call starts there. When
// a call fails with codes.Unavailable (the node is down, unreachable within
// Config.DialTimeout, shutting down, or has no leader) the client moves to
// the next endpoint, at most once round the list, and returns the last
// error if none answered.
//
// Reads (Get, Exists, List, GetSession, ListSessions, Status, Members) and
// keepalives are idempotent and fail over on any Unavailable. Writes
// (Create, Set, Delete, Multi, OpenSession, CloseSession) are sent at most
// once: they fail over only when gRPC never put the request on a
// connection, which the client knows because the call obtained no peer
// (grpc.Peer is filled only once a transport stream exists). A write that
// may have reached a node is never repeated; its Unavailable error is
// returned to the caller, who knows whether repeating it is safe.
//
// Errors are the gRPC status errors of the serving node, unchanged: match
// them with status.Code or the IsNotFound family, never by message.
//
// # Sessions
//
// NewSession opens a session and keeps it alive on one KeepAliveStream at a
// time, sending a keepalive every third of the granted timeout. A stream
// that fails, or that leaves a keepalive unanswered for a whole interval, is
// reopened on the next endpoint. The session ends (Done is closed) when the
// cluster says it has expired, when no keepalive has been acknowledged for
// a whole timeout (the cluster may already have expired it), or on Close.
//
// # Concurrency
//
// A Client and a Session are safe for concurrent use. Each Session runs one
// goroutine (two while a stream is open), stopped by Session.Close or
// Client.Close. Session.mu guards only the session's final error and is
// never held across a call.
package client
