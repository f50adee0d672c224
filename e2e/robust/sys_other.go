//go:build !linux

package robust

import (
	"errors"
	"os"
	"syscall"
	"time"
)

// supported is false where the harness cannot run at all: network
// namespaces and iptables are Linux's.
const supported = false

func sysProcAttr() *syscall.SysProcAttr { return nil }

// pauseSignal and resumeSignal are nil: Pause and Resume fail.
var pauseSignal, resumeSignal os.Signal

func lockFile(*os.File) error              { return errors.New("robust: needs linux") }
func unlockFile(*os.File) error            { return nil }
func pidExists(int) bool                   { return false }
func waitStopped(int, time.Duration) error { return errors.New("robust: needs linux") }
