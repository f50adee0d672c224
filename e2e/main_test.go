// Package e2e runs the real `paddock` binary as separate processes and
// drives it with real clients: the paddock CLI, grpcurl and curl.
//
// TestMain builds paddock once (with -race when the tests run with -race,
// so the agents are race-checked too) and finds or installs grpcurl. Each
// test starts its own three-node cluster on free loopback ports and runs in
// parallel with the others; every process a test starts is stopped in
// t.Cleanup, even when the test fails.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/paddock/paddock/e2e/child"
)

// grpcurlModule is installed with `go install` when grpcurl is not on PATH.
// Pinned so that its error output, which the tests parse, does not drift.
const grpcurlModule = "github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3"

var (
	// paddockBin is the paddock binary built by TestMain.
	paddockBin string
	// grpcurlBin is grpcurl from PATH, or installed by TestMain.
	grpcurlBin string
	// curlBin is curl from PATH, or "" (TestHTTP then fails).
	curlBin string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "paddock-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(tmp)

	if paddockBin, err = child.BuildPaddock(tmp, raceEnabled); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build paddock:", err)
		return 1
	}
	if err := findGrpcurl(tmp); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: grpcurl:", err)
		return 1
	}
	curlBin, _ = exec.LookPath("curl")
	return m.Run()
}

// findGrpcurl uses grpcurl from PATH, else installs the pinned version into
// tmp. It runs `go install` outside the module so go.mod is never touched.
func findGrpcurl(tmp string) error {
	if p, err := exec.LookPath("grpcurl"); err == nil {
		grpcurlBin = p
		return nil
	}
	gobin := filepath.Join(tmp, "bin")
	cmd := exec.Command("go", "install", grpcurlModule)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go install %s: %v\n%s", grpcurlModule, err, out)
	}
	grpcurlBin = filepath.Join(gobin, "grpcurl")
	if _, err := os.Stat(grpcurlBin); err != nil {
		return fmt.Errorf("go install %s: %w", grpcurlModule, err)
	}
	return nil
}
