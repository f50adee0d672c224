// Package child is what the end-to-end tests (e2e, e2e/robust) share about
// the processes they start: building the paddock binary, the environment
// a child runs with, waiting for its end (Proc), and reading the end of
// its log.
package child

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// BuildPaddock builds ./cmd/paddock of the module the tests run in into
// dir, with the race detector when race is set (tests built with -race
// pass it, so the agents are race-checked too), and returns its path.
func BuildPaddock(dir string, race bool) (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("child: go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("child: go env GOMOD: not inside a module")
	}
	bin := filepath.Join(dir, "paddock")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./cmd/paddock")...)
	cmd.Dir = filepath.Dir(mod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("child: go build: %v\n%s", err, out)
	}
	return bin, nil
}

// Env is the environment of every child: the test's, without
// PADDOCK_ENDPOINTS or ZKHOST (which `paddock farm` reads) from the
// caller's shell (so commands talk only to the cluster under test), and
// with the race runtime's exit delay off: a
// race-built child would otherwise sleep 1s at every exit
// (atexit_sleep_ms), which every CLI call and every agent stop would pay.
func Env() []string {
	var env []string
	gorace := "atexit_sleep_ms=0"
	for _, kv := range os.Environ() {
		switch {
		case strings.HasPrefix(kv, "PADDOCK_ENDPOINTS="), strings.HasPrefix(kv, "ZKHOST="):
		case strings.HasPrefix(kv, "GORACE="):
			gorace = strings.TrimPrefix(kv, "GORACE=") + " " + gorace
		default:
			env = append(env, kv)
		}
	}
	return append(env, "GORACE="+gorace)
}

// Tail returns the last n bytes of the file at path, or the error reading
// it.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = append([]byte("...\n"), b[len(b)-n:]...)
	}
	return string(b)
}

// AgentArgs is the command line of a `paddock agent` in a cluster whose
// members are bootstrap (id=raft address each).
func AgentArgs(id, dataDir, raftAddr, grpcAddr, httpAddr string, bootstrap []string) []string {
	return []string{"agent", "--id", id, "--data-dir", dataDir,
		"--raft-addr", raftAddr, "--grpc-addr", grpcAddr, "--http-addr", httpAddr,
		"--bootstrap", strings.Join(bootstrap, ",")}
}
