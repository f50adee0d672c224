package robust

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/paddock/paddock/e2e/child"
)

// helperBinEnv names the paddock binary for a test binary this package's
// tests run as a child (see TestKilledTestLeavesNothing): the child uses
// it instead of building its own.
const helperBinEnv = "PADDOCK_ROBUST_BIN"

// paddockBin is the paddock binary TestMain built, "" when the harness is
// not Available (every test that needs it skips).
var paddockBin string

// TestMain builds paddock once, with -race when the tests run with -race
// so that the agents are race-checked too (Close reports their races),
// and fails the package if the tests passed but left goroutines running
// (a workload, watcher or injector that outlived its run). The spawner
// goroutine lives as long as the process, by design (spawn).
func TestMain(m *testing.M) {
	code := runMain(m)
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreTopFunction("github.com/paddock/paddock/e2e/robust.spawn.func1.1")); err != nil {
			fmt.Fprintln(os.Stderr, "robust: leaked goroutines:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func runMain(m *testing.M) int {
	if err := Available(); err != nil {
		return m.Run()
	}
	if bin := os.Getenv(helperBinEnv); bin != "" {
		paddockBin = bin
		return m.Run()
	}
	tmp, err := os.MkdirTemp("", "paddock-robust-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "robust:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	if paddockBin, err = child.BuildPaddock(tmp, raceEnabled); err != nil {
		fmt.Fprintln(os.Stderr, "robust: build paddock:", err)
		return 1
	}
	return m.Run()
}

// requireEnv, set to 1 (as CI does), makes a machine that cannot run the
// harness fail the tests instead of skipping them.
const requireEnv = "PADDOCK_ROBUST_REQUIRE"

// needHarness skips t when the machine cannot run the harness, or fails
// it when requireEnv is set.
func needHarness(t *testing.T) {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv(requireEnv) == "1" {
			t.Fatalf("%v (%s=1)", err, requireEnv)
		}
		t.Skip(err)
	}
}
