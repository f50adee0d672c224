package client

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind: every watcher,
// session, client and fake server a test starts is stopped by then.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
