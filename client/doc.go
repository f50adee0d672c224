// Package client is the Go client of a Paddock cluster: typed calls on the
// tree, session, cluster and watch services, failover between endpoints,
// safe retries, sessions kept alive in the background, and watches that
// resume on another node without losing or repeating an event.
//
// # Endpoints, failover and retries
//
// A Client holds one lazily dialed gRPC connection per endpoint and
// remembers the endpoint that answered last; every call starts there. A
// call that fails with codes.Unavailable (the node is down, unreachable
// within Config.DialTimeout, shutting down, has no leader, or the
// connection broke mid-call) is repeated on the next endpoint. After a
// whole pass over the endpoints the client pauses (100ms, doubling up to
// 1s) and tries again, for at most Config.RetryTimeout (15s by default:
// a leader election after a killed leader takes a few seconds) and never
// past the call's ctx; it then returns the last Unavailable error. Any other error is the
// cluster's answer (NotFound, AlreadyExists, InvalidArgument,
// FailedPrecondition, DeadlineExceeded ...) and is returned at once, never
// retried; the endpoint that answered it is the one the next call starts
// at, as after a success. With Config.ReadAttemptTimeout set, an attempt of
// Get, Exists or List that gets no answer within it counts as Unavailable:
// the read goes on at the next endpoint (a node whose answers are dropped,
// or a paused process, would otherwise hold it for as long as ctx allows).
//
// Reads (Get, Exists, List, GetSession, ListSessions, Status, Members) and
// KeepAlive are idempotent, so repeating them is always safe. ListData
// pages through children with their data at one zxid; a page that can no
// longer be served at it is OUT_OF_RANGE (IsListingChanged), and starting
// over is the caller's choice.
//
// Writes (Create, Set, Delete, Multi, OpenSession, CloseSession) may have
// been applied by a node that then failed to answer, so each logical call
// gets a request id (NewRequestID: 16 random bytes, 32 hex characters) sent
// as gRPC metadata RequestIDMetadataKey, the same on every attempt. The
// cluster remembers the result of each request id and answers a repeated
// one with the first result instead of applying it again: a retried Create
// returns the original path, not AlreadyExists. A caller that repeats a
// write itself after the client gave up can pass the same id with
// WithRequestID; one id must never be used for two different writes.
//
// Errors are the gRPC status errors of the serving node, unchanged: match
// them with status.Code or the IsNotFound family, never by message. A call
// for which no endpoint could be connected fails with Unavailable and the
// message "no node reachable: <endpoints> (connection refused)" instead
// of gRPC's dial error.
//
// # Read your writes
//
// The client remembers the highest zxid it has seen in any response header
// or watch event (LastZxid). Reads whose ReadOptions.min_zxid is 0 are sent
// with min_zxid = LastZxid, so a read served by any node, serializable
// ones included, reflects every write the client made or saw, and never
// goes back in time after a failover. A caller that sets min_zxid keeps
// its own value; the caller's request is never modified.
//
// # Sessions
//
// NewSession opens a session and keeps it alive on one KeepAliveStream at a
// time, sending a keepalive every third of the granted timeout. A stream
// that fails, or that leaves a keepalive unanswered for a whole interval, is
// reopened on the next endpoint, for as long as the session lives. Only
// the cluster decides that a session has expired: the session ends (Done
// is closed) when a node answers that it no longer holds it, or on Close.
// Keepalives that fail for longer than the timeout do not end it, since a
// cluster electing a new leader keeps its sessions (the new leader
// restarts their timers); ZooKeeper's client likewise learns of expiry
// from the server when it reconnects. The OnExpired option has a function
// called once when it expires (not when it is closed). OnConnectionState
// reports every change of Session.State: disconnected (since the last
// acknowledged keepalive), connected again, expired; a caller that must
// stop work once the session may be gone (a leader elected through it)
// applies its own policy there, e.g. stop after one timeout disconnected,
// as Curator does on LOST.
//
// # Watches
//
// Watch streams the events on a znode or subtree from a start zxid (or
// from now) on a Watcher's Responses channel, in zxid order, the events of
// one zxid always in one WatchResponse, with progress reports (no events)
// while idle. The Watcher remembers the zxid it is up to date with, from
// events and progress reports alike. When its stream breaks (Unavailable,
// the node killed, the stream ended, a WatchCanceled of reason SLOW or
// SHUTTING_DOWN, or, with WatchOptions.ProgressInterval set, silence for
// three intervals plus a second) it reopens the watch on the next endpoint
// from that zxid + 1, pausing between passes over the endpoints (100ms
// doubling up to 2s) and retrying for as long as it runs. The server sends
// each event once; the Watcher also drops any event at or before its zxid,
// so none is delivered twice. A watch from "now" takes its start from the
// zxid of its first (created) response, so resuming never skips ahead.
//
// A WatchCanceled of reason COMPACTED or SNAPSHOT_RESTORED means the
// events after the Watcher's zxid are gone on that node: the Watcher ends
// with a *CompactedError (errors.Is ErrCompacted) carrying the oldest zxid
// the node can serve, and the caller must re-read, then watch again. Any
// other error (InvalidArgument for a bad path ...) also ends it.
//
// # Concurrency
//
// A Client, a Session and a Watcher are safe for concurrent use. Each
// Session runs one goroutine (two while a stream is open), stopped by
// Session.Close or Client.Close. Session.mu guards only the session's final
// error and is never held across a call. Each Watcher runs one goroutine
// that owns its stream and resume point and hands responses over an
// unbuffered channel, so a consumer that stops reading holds back the
// stream rather than memory; Close, the Watch ctx and Client.Close stop it,
// Close waiting until the goroutine has returned.
package client
