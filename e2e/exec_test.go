package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paddock/paddock/e2e/child"
)

// cmdTimeout bounds every one-shot command (CLI, grpcurl, curl).
const cmdTimeout = 30 * time.Second

// result is what a finished command printed and how it exited.
type result struct {
	stdout, stderr string
	code           int // exit code; -1 if it did not run or was killed
}

func (r result) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
}

// run runs bin with args to completion (at most cmdTimeout), with stdin
// from the given reader if not nil.
func run(t *testing.T, stdin io.Reader, bin string, args ...string) result {
	t.Helper()
	return runWith(t, nil, stdin, bin, args...)
}

// runWith is run with env (KEY=VALUE) added to the children's environment.
func runWith(t *testing.T, env []string, stdin io.Reader, bin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(child.Env(), env...)
	cmd.SysProcAttr = sysProcAttr()
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	default:
		t.Fatalf("%s %s: %v", bin, strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		t.Fatalf("%s %s: still running after %v: %v", bin, strings.Join(args, " "), cmdTimeout, r)
	}
	return r
}

// paddock runs the CLI.
func paddock(t *testing.T, args ...string) result {
	t.Helper()
	return run(t, nil, paddockBin, args...)
}

// grpcurl runs grpcurl in plaintext against addr: grpcurl(t, addr, "list")
// or grpcurl(t, addr, "paddock.v1.TreeService/Get", `{"path":"/a"}`).
func grpcurl(t *testing.T, addr string, method string, reqJSON ...string) result {
	t.Helper()
	args := []string{"-plaintext"}
	if len(reqJSON) > 0 {
		args = append(args, "-d", reqJSON[0])
	}
	args = append(args, addr, method)
	return run(t, nil, grpcurlBin, args...)
}

var (
	grpcurlCode    = regexp.MustCompile(`(?m)^\s*Code: (\w+)$`)
	grpcurlMessage = regexp.MustCompile(`(?m)^\s*Message: (.*)$`)
)

// grpcStatus parses the code and message grpcurl prints for a failed RPC
// ("OK" if it did not fail).
func (r result) grpcStatus() (code, message string) {
	m := grpcurlCode.FindStringSubmatch(r.stderr)
	if m == nil {
		if r.code == 0 {
			return "OK", ""
		}
		return "(none)", ""
	}
	code = m[1]
	if m := grpcurlMessage.FindStringSubmatch(r.stderr); m != nil {
		message = m[1]
	}
	return code, message
}

// startProc starts bin with args in the background.
func startProc(name string, stdout, stderr io.Writer, bin string, args ...string) (*child.Proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = child.Env()
	cmd.SysProcAttr = sysProcAttr()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return child.Watch(cmd), nil
}

// syncBuffer is a bytes.Buffer safe to write from a child's output copier
// while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// poll calls cond every 50ms until it returns true or d passes, and
// reports whether it did. cond returns a description of the state it saw,
// for the failure message.
func poll(d time.Duration, cond func() (bool, string)) (ok bool, last string) {
	deadline := time.Now().Add(d)
	for {
		ok, last = cond()
		if ok || time.Now().After(deadline) {
			return ok, last
		}
		time.Sleep(50 * time.Millisecond)
	}
}
