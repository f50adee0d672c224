// Command bench compares Paddock with etcd and ZooKeeper side by side:
// it starts a three-node cluster of each system on loopback in turn, runs
// the workloads of package github.com/paddock/paddock/bench against it,
// stops it, and prints one markdown table with a JSON file of the results.
//
// It is its own module so that the etcd and ZooKeeper client libraries stay
// out of Paddock's go.mod; run it as `cd e2e/bench && go run . --help`, or
// through compare.sh, which installs the peers and builds paddock.
package main

import (
	"os"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "hold" {
		os.Exit(holdMain(os.Args[2:], os.Stdout, os.Stderr))
	}
}
