// Package rpc implements Paddock's public gRPC services (paddock.v1) on top
// of a node.Node. Handlers are thin: validate what needs no state, call the
// node, map the error through the one table in errors.go, fill the header.
// Server builds the grpc.Server with reflection, message limits set above
// the state machine's value limit (so clients see our typed error, not
// gRPC's), and a Served-By header on every response.
package rpc
