// Package rpc implements Paddock's public gRPC services (paddock.v1) on top
// of a node.Node. Handlers are thin: validate what needs no state, call the
// node, map the error through the one table in errors.go, fill the header.
// Server builds the grpc.Server with the client services alone (the nodes'
// InternalService is served by package node on the raft address, never
// here: it takes raw commands) and reflection, a request limit
// (MaxRequestSize, 16 MiB) far above the state machine's value limit (so a
// value of 2 MiB gets our INVALID_ARGUMENT "data too large: 2097152 bytes,
// limit 1048576", not gRPC's RESOURCE_EXHAUSTED), a Served-By header on
// every response, and the gRPC server metrics (paddock_grpc_server_*,
// node.GRPCMetrics) in the node's registry.
//
// # The HTTP/JSON gateway
//
// NewHTTPHandler serves grpc-gateway under /v1/ (rules in
// proto/paddock/v1/gateway.yaml), plus /healthz, /readyz and /metrics. The
// gateway is a client of the node's own gRPC server, over one connection:
// an HTTP request runs through exactly the interceptors, metrics and
// handlers a gRPC call does. The web-session routes, a PHP page view's
// two calls, skip that loopback connection: the gateway calls their
// handlers in the process (grpc-gateway's RegisterXHandlerServer),
// through the same interceptors and request checks (http_local.go). The
// loopback hop, an HTTP/2 client and server in the same process, cost
// about as much CPU as the call itself.
//
// Znode paths. A route's {path=**} is the URL path after the route's
// prefix, without its leading slash: GET /v1/tree/services/db is the znode
// /services/db, and the bare prefix (GET /v1/tree) is the root. The
// gateway's connection has a client interceptor (absolutePath) that
// prefixes "/" to the path of the requests those routes build, before they
// are sent. The gRPC services never see a relative path and never accept
// one: there is no marker a gRPC client could send to get the HTTP
// spelling, and the translation sits next to the HTTP mapping it belongs
// to. The prefix is added always, so the URL is an exact image of the
// path and fsm.ValidatePath judges it like any other: /v1/tree/a//b,
// /v1/tree/a/ (trailing slash) and over-long paths are 400
// INVALID_ARGUMENT. /v1/tree/ (an empty path after the prefix) is the
// root, like /v1/tree.
//
// The farm routes (/v1/farms/X, /v1/farm-poll/X, /v1/farm-check/X,
// /v1/farm-fields/X) name the farm or host znode X the same way, through
// their {farm=**} and {host=**}.
//
// GET /v1/tree/X?children=true lists X's children: the request is
// rewritten to the List route (/v1/children/X) before routing, keeping the
// other query parameters (page_size, page_token, with_data,
// read.consistency, ...). children=false is a plain Get; any other value
// is a 400. With with_data=true each child carries its data and the pages
// are one listing at one zxid (listing_zxid); a later page that can no
// longer be served at it is a 410 (OUT_OF_RANGE): list again without
// page_token.
//
// JSON. protojson with proto field names (snake_case: data_length,
// next_page_token), every field present even at its zero value (version 0,
// ephemeral_owner 0), enums as their names. bytes fields (data, prev_data)
// are base64 in both directions: PHP uses base64_encode/base64_decode.
// 64-bit integers (zxids, session ids, times) are JSON strings, as
// protojson writes them: exact in PHP and JavaScript; 32-bit ones
// (version) are numbers. A body that is not JSON, that has a field the
// request message does not, or that has anything but white space after
// its JSON value ({"data":"eA=="} xyz), is a 400 whose message is the
// JSON error. A body over about 22 MiB (MaxRequestSize in base64), or a
// request over MaxRequestSize, is a 400 "data too large". A path that is
// not valid UTF-8 (/v1/tree/bad%FFutf) is a 400 "bad path".
// Event kinds (kinds= of a watch or poll) are accepted as the enum names
// (EVENT_KIND_DELETED) or as the CLI spells them (deleted, data-changed),
// several in one comma-separated value too; responses always use the
// enum names.
// Query parameters name fields by their proto names, dotted for nested
// ones: ?read.consistency=READ_CONSISTENCY_SERIALIZABLE&read.min_zxid=42.
//
// Error messages, over gRPC and HTTP alike, are built by toStatus from the
// error table's words for the sentinel and the error's typed detail
// ("node does not exist: /a (multi op 0)"), never from a Go error string
// with its package prefixes; a node's own wrapping (a peer's dial error
// behind "no leader") stays in its log. A forwarded error reads the same
// on a follower as on the leader.
//
// Errors are a google.rpc.Status as JSON: {"code": <gRPC code number>,
// "message": "...", "details": [...]}, e.g. a failed multi carries a
// paddock.v1.MultiFailure detail naming the op. The HTTP status, from
// httpStatus:
//
//	gRPC code            HTTP  Paddock errors
//	INVALID_ARGUMENT     400   bad path, too large, bad argument, reserved path, bad JSON,
//	                           farm: bad field, filter, threshold, configuration
//	NOT_FOUND            404   no such znode, no such session, no such route
//	ALREADY_EXISTS       409   znode exists
//	FAILED_PRECONDITION  412   bad version, not empty, ephemeral parent, session expired
//	OUT_OF_RANGE         410   watch or poll from a compacted zxid, listing with data changed
//	UNAVAILABLE          503   no leader, shutting down, write outcome unknown
//	DEADLINE_EXCEEDED    504   request timed out
//	CANCELED             499   client went away
//	UNIMPLEMENTED        501   (405 for a known route with another method)
//	RESOURCE_EXHAUSTED   429
//	ABORTED              409   farm: too many concurrent changes (a field's compare-and-set)
//	UNAUTHENTICATED      401
//	PERMISSION_DENIED    403
//	INTERNAL, UNKNOWN,
//	DATA_LOSS            500
//
// FAILED_PRECONDITION is 412, not grpc-gateway's 400, so that a client can
// tell a compare-and-set that lost (retry after re-reading) from a request
// that can never succeed (fix the request), and not 409, so that it is
// also distinct from "exists". The body's message says which precondition
// failed.
//
// A streamed route (GET /v1/watch/X) answers newline-delimited JSON, one
// {"result": <WatchResponse>} per line, flushed as each is sent; an error
// after the first line ends the stream with one {"error": <Status>} line.
// A stream that fails before its first message gets the same HTTP status
// as a unary call would (streamStatusWriter).
//
// Request ids. The headers Idempotency-Key and Paddock-Request-Id (either;
// both only if equal) are passed to the services as the gRPC metadata
// paddock-request-id, so a client can retry a POST with the same id and
// have it applied once.
//
// Every HTTP response carries Served-By: <node id>: errors, streams,
// /healthz and /metrics included. It names the node that answered the
// call; the body's header.node_id names the node whose state the answer
// reflects, which for a read a lagging follower forwarded is the leader.
// A node that knows the leader also sends Paddock-Leader: <the leader's
// registered HTTP address>, so that a client can call the leader
// directly (the PHP session handler does). /v1/ requests never pass through
// http.ServeMux, which would answer a path with "//" or "." with a redirect
// to a different znode's URL.
package rpc
