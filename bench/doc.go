// Package bench is Paddock's load generator: workloads run side by side
// against Paddock, etcd and ZooKeeper clusters through one small interface
// per system (Cluster, Client, Session), with latency percentiles, server
// CPU seconds per 1,000 operations, RSS and on-disk size, in a markdown
// table and a JSON file.
//
// The Paddock cluster lives in this module (paddock bench); the etcd and
// ZooKeeper ones live in the separate module under e2e/bench, so that
// their client libraries stay out of this module's go.mod.
package bench
