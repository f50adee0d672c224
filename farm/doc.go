// Package farm is ZkFarmer's job on Paddock's tree: hosts register their
// configuration in a farm, consumers keep a local file in sync with the
// farm, operators read and change hosts' fields from anywhere.
//
// A farm is a znode at a path the user chooses (/services/db). Its data is
// a JSON object holding the farm's own properties: size (the most hosts
// ever seen, raised by join) and an optional running_filter (the filters
// that decide which hosts count as running for Check). Each host is a
// child, named after the host (its IPv4 address by default), holding the
// host's configuration as a JSON object whose leaves are strings, as
// ZkFarmer stores them; a joiner's child is ephemeral, owned by its
// session. The child named "common" is a persistent configuration shared
// by the farm (join --common), not a host.
//
// The package is pure logic over Tree, a small interface that both the Go
// client (the `paddock farm` commands run it on a client) and the node
// (rpc's FarmService runs it inside a node) satisfy. It imports proto and
// small libraries only, never client, node or rpc: see DESIGN.md.
//
// Errors from Tree are gRPC status errors with Paddock's codes (NotFound,
// AlreadyExists, FailedPrecondition for a bad version); the package's own
// failures are the sentinels in errors.go, which rpc maps to codes.
//
// Configurations are Conf values: a JSON object decoded with numbers kept
// as json.Number, so a value is written back exactly as it was read.
// Formats (json, yaml, php, dir) read and write them to local files.
//
// Join and Export are long-running loops, each one goroutine that owns its
// state, plus helpers that only signal it: Join's long poll on its znode
// and its file system watch send on channels that hold one value, so
// signals coalesce and the loop re-reads rather than trusting them. Both
// tell their own writes from others' by what they last synced (Join: the
// content of both sides and the znode's version; Export: each host's
// configuration and the zxid its poll resumes from), never by timing.
package farm
