package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// holdArgv is the command line of this program's hold subcommand for
// system: os.Executable, so a test binary runs itself (its TestMain
// dispatches hold the same way main does).
func holdArgv(system, endpoints, key string, ttl time.Duration) []string {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	return []string{exe, "hold", "--system", system, "--endpoints", endpoints, "--key", key, "--ttl", ttl.String()}
}

// errHoldSystem is hold's error for a system it does not know.
var errHoldSystem = errors.New("bench: hold: unknown system")

// holdMain runs the hold subcommand: open a session, create the key as its
// ephemeral, print "ready", then wait to be killed (SIGKILL is the client
// death the ephemeral cleanup workload measures; SIGTERM or SIGINT close the
// session cleanly). It returns the process's exit code.
func holdMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hold", flag.ContinueOnError)
	fs.SetOutput(stderr)
	system := fs.String("system", "", "etcd or zookeeper")
	endpoints := fs.String("endpoints", "", "comma-separated client addresses")
	key := fs.String("key", "", "key to hold as an ephemeral")
	ttl := fs.Duration("ttl", 2*time.Second, "session timeout")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *endpoints == "" || *key == "" {
		fmt.Fprintln(stderr, "bench: hold: --endpoints and --key are required")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var (
		held io.Closer
		err  error
	)
	switch *system {
	case "etcd":
		held, err = etcdHold(ctx, *endpoints, *key, *ttl, stdout)
	case "zookeeper":
		held, err = zkHold(ctx, *endpoints, *key, *ttl, stdout)
	default:
		err = fmt.Errorf("%w: %q", errHoldSystem, *system)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	held.Close()
	return 0
}
