package robust

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// helperEnv, when set, makes TestKilledTestLeavesNothing the child it
// starts: it starts a cluster in the directory it names, prints the
// cluster's id and agents' pids, and waits to be killed.
const helperEnv = "PADDOCK_ROBUST_HELPER_DIR"

// helperLine starts the child's report line.
const helperLine = "robust-helper:"

// TestKilledTestLeavesNothing SIGKILLs a test process that has a cluster
// running, so that none of its cleanups run: its agents die with it (the
// parent-death signal), and the next Start's sweep removes its namespaces,
// link and marker.
func TestKilledTestLeavesNothing(t *testing.T) {
	if dir := os.Getenv(helperEnv); dir != "" {
		runHelper(t, dir)
		return
	}
	needHarness(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledTestLeavesNothing$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+t.TempDir(), helperBinEnv+"="+paddockBin)
	cmd.SysProcAttr = sysProcAttr()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := spawn(cmd); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	done := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		done <- cmd.Wait() // after the last read, as os/exec requires
	}()
	killHelper := sync.OnceValue(func() error {
		_ = cmd.Process.Kill()
		for range lines {
		}
		return <-done
	})
	t.Cleanup(func() { killHelper() })

	id, pids, seen := readHelperLine(t, lines)
	if id == "" {
		killHelper()
		t.Fatalf("helper reported no cluster; its output:\n%s\n%s", strings.Join(seen, "\n"), stderr.String())
	}
	err = killHelper()
	t.Logf("helper (pid %d) killed: %v; cluster %s, agents %v", cmd.Process.Pid, err, id, pids)

	waitFor(t, "agents of the killed test gone", func(context.Context) string {
		var alive []string
		for _, pid := range pids {
			if st := procState(pid); st != "" && st != "Z" {
				alive = append(alive, fmt.Sprintf("%d (%s)", pid, st))
			}
		}
		if len(alive) > 0 {
			return "still running: " + strings.Join(alive, ", ")
		}
		return ""
	})
	if err := withLock(func() error { sweepLocked(t.Logf); return nil }); err != nil {
		t.Fatal(err)
	}
	checkGone(t, id)
}

// readHelperLine reads the helper's output until its report line, which it
// parses, or until the helper ends or faultTimeout passes (id ""). seen is
// the output read.
func readHelperLine(t *testing.T, lines <-chan string) (id string, pids []int, seen []string) {
	t.Helper()
	timeout := time.After(faultTimeout)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				return "", nil, seen
			}
			seen = append(seen, line)
			rest, ok := strings.CutPrefix(line, helperLine)
			if !ok {
				continue
			}
			f := strings.Fields(rest)
			for _, s := range f[1:] {
				pid, err := strconv.Atoi(s)
				if err != nil {
					t.Fatalf("helper line %q: %v", line, err)
				}
				pids = append(pids, pid)
			}
			if len(f) == 0 || len(pids) != clusterSize {
				t.Fatalf("helper line %q: want an id and %d pids", line, clusterSize)
			}
			return f[0], pids, seen
		case <-timeout:
			return "", nil, seen
		}
	}
}

// runHelper is the child's side: a cluster, its report, then a wait for
// the SIGKILL (it gives up after a minute).
func runHelper(t *testing.T, dir string) {
	needHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := Start(ctx, Options{Bin: paddockBin, Dir: dir, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	line := helperLine + " " + c.ID()
	for i := range c.N() {
		line += " " + strconv.Itoa(c.nodes[i].p.Pid())
	}
	fmt.Println(line)
	<-ctx.Done()
	t.Fatal("helper: not killed within a minute")
}

// procState is the state letter of process pid ("R", "S", "Z", ...), ""
// when there is no such process.
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// deadPID returns the pid of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}
