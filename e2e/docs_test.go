package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode"

	"github.com/paddock/paddock/e2e/child"
)

// The documentation's examples are tests. A fenced ```sh (or ```bash,
// or ```php) block right after a line
//
//	<!-- test: NAME -->
//
// in README.md or docs/*.md is run by TestREADME. The blocks of one file
// with the same NAME are one example: they run in document order, in one
// bash (`bash -euo pipefail`), against one fresh `paddock dev` cluster,
// in a directory where ./paddock is the binary under test and ./php the
// repository's PHP library (php/autoload.php). Each NAME gets
// its own cluster. Any failing line fails the test with the output. A
// ```php block runs with php-cli at its place in that bash; without php
// on PATH an example with a php block or a shell line running php is
// skipped, or fails when PADDOCK_PHP_REQUIRE=1; so is one whose shell
// runs jq, without jq (PADDOCK_JQ_REQUIRE=1).
//
// The examples use paddock dev's fixed ports (n1: gRPC 127.0.0.1:2281,
// HTTP 127.0.0.1:2282), as a reader's shell would. So that they can run
// while another cluster holds those ports on this machine, each example
// runs in its own network and PID namespace when unshare(1) allows it
// (root, or unprivileged user namespaces); otherwise the ports must be
// free and the test says so when they are not.
//
// In the examples' PATH, curl is a wrapper that adds --fail-with-body, so
// an HTTP error fails the line as a failed CLI command does; grpcurl is the
// one TestMain found or installed.

// docMarker marks the fenced block that follows it as a tested example.
var docMarker = regexp.MustCompile(`^<!--\s*test:\s*([A-Za-z0-9._-]+)\s*-->\s*$`)

// devPorts are the addresses `paddock dev` listens on (cmd/paddock/dev.go).
var devPorts = []string{
	"127.0.0.1:2281", "127.0.0.1:2282", "127.0.0.1:2283",
	"127.0.0.1:2291", "127.0.0.1:2292", "127.0.0.1:2293",
	"127.0.0.1:2301", "127.0.0.1:2302", "127.0.0.1:2303",
}

const (
	// readmeMaxLines keeps the README a front door (DESIGN.md).
	readmeMaxLines = 200
	// exampleTimeout bounds one example: cluster start, every line, stop.
	exampleTimeout = 3 * time.Minute
)

// docExample is the code of the blocks of one file marked with one name.
type docExample struct {
	file, name string
	lines      []int // first line of each block in file
	code       strings.Builder
	php        bool // a block is PHP
	jq         bool // a shell line runs jq
}

// shellRunsPHP matches a shell line that runs php-cli.
var shellRunsPHP = regexp.MustCompile(`(^|[\s;&|(!])php\s`)

// shellRunsJQ matches a shell line that runs jq.
var shellRunsJQ = regexp.MustCompile(`(^|[\s;&|(!])jq\s`)

// phpPrologue runs before a PHP block: any warning or notice becomes an
// exception, so it fails the example instead of scrolling by.
const phpPrologue = `<?php
set_error_handler(function (int $no, string $msg, string $file, int $line): bool {
    throw new ErrorException($msg, 0, $no, $file, $line);
});
`

// docFiles is README.md and docs/*.md, relative to the repository root.
func docFiles(t *testing.T, root string) []string {
	t.Helper()
	files := []string{"README.md"}
	more, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range more {
		rel, _ := filepath.Rel(root, f)
		files = append(files, rel)
	}
	return files
}

// markedExamples parses the marked blocks of file (relative to root).
func markedExamples(root, file string) ([]*docExample, error) {
	b, err := os.ReadFile(filepath.Join(root, file))
	if err != nil {
		return nil, err
	}
	var out []*docExample
	byName := map[string]*docExample{}
	lines := strings.Split(string(b), "\n")
	for i := 0; i < len(lines); i++ {
		m := docMarker.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		php := i+1 < len(lines) && strings.TrimSpace(lines[i+1]) == "```php"
		if i+1 >= len(lines) || (!isShellFence(lines[i+1]) && !php) {
			return nil, fmt.Errorf("%s:%d: marker %q is not followed by a ```sh or ```php block", file, i+1, m[1])
		}
		ex := byName[m[1]]
		if ex == nil {
			ex = &docExample{file: file, name: m[1]}
			byName[m[1]] = ex
			out = append(out, ex)
		}
		ex.lines = append(ex.lines, i+2)
		if php {
			// Run by php-cli in the example's bash, in order with its
			// sh blocks; a warning or notice fails it (phpPrologue).
			ex.php = true
			ex.code.WriteString("php -d auto_prepend_file=\"$PHP_PROLOGUE\" <<'PADDOCK_PHP_EOF'\n")
		}
		j := i + 2
		for ; j < len(lines) && strings.TrimSpace(lines[j]) != "```"; j++ {
			ex.code.WriteString(lines[j] + "\n")
			if shellRunsPHP.MatchString(lines[j]) {
				ex.php = true
			}
			if !php && shellRunsJQ.MatchString(lines[j]) {
				ex.jq = true
			}
		}
		if php {
			ex.code.WriteString("PADDOCK_PHP_EOF\n")
		}
		if j == len(lines) {
			return nil, fmt.Errorf("%s:%d: block %q is not closed", file, i+2, m[1])
		}
		i = j
	}
	return out, nil
}

// isShellFence reports whether line opens a ```sh or ```bash block.
func isShellFence(line string) bool {
	info, ok := strings.CutPrefix(strings.TrimSpace(line), "```")
	return ok && (info == "sh" || info == "bash")
}

// TestREADME checks the documentation: README.md stays short, no relative
// link leaves the repository or points at a missing file, and every marked
// example (the README's tour first) runs on a fresh cluster.
func TestREADME(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	files := docFiles(t, root)

	t.Run("length", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(root, "README.md"))
		if err != nil {
			t.Fatal(err)
		}
		if n := bytes.Count(b, []byte("\n")); n > readmeMaxLines {
			t.Errorf("README.md has %d lines, want at most %d: move reference material into docs/", n, readmeMaxLines)
		}
	})

	t.Run("links", func(t *testing.T) {
		for _, f := range files {
			for _, bad := range badLinks(t, root, f) {
				t.Error(bad)
			}
		}
	})

	var examples []*docExample
	for _, f := range files {
		ex, err := markedExamples(root, f)
		if err != nil {
			t.Fatal(err)
		}
		examples = append(examples, ex...)
	}
	if len(examples) == 0 || examples[0].file != "README.md" || examples[0].name != "tour" {
		t.Fatalf("README.md has no block marked <!-- test: tour -->")
	}
	if curlBin == "" {
		t.Fatal("curl not found on PATH: the examples need it")
	}
	isolate := namespaceCommand()
	for _, ex := range examples {
		t.Run(strings.ReplaceAll(ex.file, "/", "_")+":"+ex.name, func(t *testing.T) {
			runExample(t, ex, isolate)
		})
	}
}

// mdLink matches an inline markdown link or image target, and a reference
// definition's target.
var mdLink = regexp.MustCompile(`\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)|(?m)^\s*\[[^\]]+\]:\s*(\S+)`)

var (
	// inlineCode is a `code span`, whose text is not a link.
	inlineCode = regexp.MustCompile("`[^`]*`")
	// urlScheme starts a link that is not a path in the repository.
	urlScheme = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)
)

// badLinks lists the relative links of file that leave the repository or
// name no file in it, or a heading that a markdown file does not have.
// Links with a scheme are not checked; code blocks and inline code are
// skipped.
func badLinks(t *testing.T, root, file string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, file))
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	inFence := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inFence = !inFence
			continue
		}
		if !inFence {
			text.WriteString(inlineCode.ReplaceAllString(line, "") + "\n")
		}
	}
	var bad []string
	for _, m := range mdLink.FindAllStringSubmatch(text.String(), -1) {
		target := m[1] + m[2]
		if urlScheme.MatchString(target) {
			continue
		}
		target, anchor, _ := strings.Cut(target, "#")
		p := filepath.Clean(filepath.Join(root, filepath.Dir(file), target))
		if target == "" { // an anchor in the same file
			p = filepath.Join(root, file)
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			bad = append(bad, fmt.Sprintf("%s: link %q leaves the repository (dead in a clone)", file, target))
			continue
		}
		if _, err := os.Stat(p); err != nil {
			bad = append(bad, fmt.Sprintf("%s: link %q: no such file in the repository", file, target))
			continue
		}
		if anchor != "" && strings.HasSuffix(p, ".md") && !headingAnchors(t, p)[anchor] {
			bad = append(bad, fmt.Sprintf("%s: link %q: %s has no heading #%s", file, m[1]+m[2], rel, anchor))
		}
	}
	return bad
}

// headingAnchors returns the anchors GitHub makes of the headings of the
// markdown file at path: lowercased, punctuation dropped, spaces turned
// into hyphens.
func headingAnchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	inFence := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inFence = !inFence
			continue
		}
		title, ok := strings.CutPrefix(strings.TrimLeft(line, "#"), " ")
		if inFence || !ok || !strings.HasPrefix(line, "#") {
			continue
		}
		var slug strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(title)) {
			switch {
			case r == ' ':
				slug.WriteByte('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				slug.WriteRune(r)
			}
		}
		anchors[slug.String()] = true
	}
	return anchors
}

// namespaceCommand returns the unshare command line that runs an example
// in its own network and PID namespace (all its processes die with it),
// or nil when this machine does not allow one.
func namespaceCommand() []string {
	if _, err := exec.LookPath("ip"); err != nil {
		return nil
	}
	for _, args := range [][]string{
		{"unshare", "--net", "--pid", "--kill-child"},
		{"unshare", "--map-root-user", "--net", "--pid", "--kill-child"},
	} {
		probe := append(append([]string{}, args...), "ip", "link", "set", "lo", "up")
		if exec.Command(probe[0], probe[1:]...).Run() == nil {
			return args
		}
	}
	return nil
}

// exampleRunner starts paddock dev, waits until its three nodes are ready,
// runs the example and stops the cluster. $1 is the work directory.
const exampleRunner = `set -u
cd "$1"
if [ "$ISOLATED" = 1 ]; then ip link set lo up; fi
./paddock dev --data-dir ./dev-data >dev.log 2>&1 &
dev=$!
deadline=$((SECONDS + 60))
# Ready, and every node's own registration of its addresses applied (the
# examples that name the leader's HTTP address need it).
until "$REAL_CURL" -sf -o /dev/null 127.0.0.1:2282/readyz &&
      "$REAL_CURL" -sf -o /dev/null 127.0.0.1:2292/readyz &&
      "$REAL_CURL" -sf -o /dev/null 127.0.0.1:2302/readyz &&
      [ "$("$REAL_CURL" -sf 127.0.0.1:2282/v1/cluster/members | grep -o '"http_addr": *"127' | wc -l)" = 3 ]; do
  if ! kill -0 "$dev" 2>/dev/null; then echo "== paddock dev exited before it was ready"; exit 90; fi
  if [ "$SECONDS" -ge "$deadline" ]; then echo "== paddock dev not ready after 60s"; exit 91; fi
  sleep 0.1
done
echo "== paddock dev ready"
PS4='+ ' bash -x -euo pipefail ./example.sh
rc=$?
echo "== example exit $rc"
kill -TERM "$dev"
wait "$dev"
devrc=$?
if [ "$devrc" != 0 ]; then echo "== paddock dev exit $devrc after SIGTERM"; [ "$rc" = 0 ] && rc=92; fi
exit "$rc"
`

// runExample runs ex against a fresh paddock dev cluster.
func runExample(t *testing.T, ex *docExample, isolate []string) {
	work := t.TempDir()
	bin := filepath.Join(work, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if ex.php {
		if _, err := exec.LookPath("php"); err != nil {
			if os.Getenv("PADDOCK_PHP_REQUIRE") == "1" {
				t.Fatal("php not found on PATH and PADDOCK_PHP_REQUIRE=1: install php-cli (apt-get install -y php-cli)")
			}
			t.Skip("php not found on PATH: install php-cli (apt-get install -y php-cli) to run this example")
		}
	}
	if ex.jq {
		if _, err := exec.LookPath("jq"); err != nil {
			if os.Getenv("PADDOCK_JQ_REQUIRE") == "1" {
				t.Fatal("jq not found on PATH and PADDOCK_JQ_REQUIRE=1: install jq (apt-get install -y jq)")
			}
			t.Skip("jq not found on PATH: install jq (apt-get install -y jq) to run this example")
		}
	}
	wrapper := "#!/bin/sh\nexec " + shellQuote(curlBin) + " --fail-with-body \"$@\"\n"
	for name, content := range map[string]string{
		"runner.sh":    exampleRunner,
		"example.sh":   ex.code.String(),
		"bin/curl":     wrapper,
		"prologue.php": phpPrologue,
	} {
		if err := os.WriteFile(filepath.Join(work, name), []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(paddockBin, filepath.Join(work, "paddock")); err != nil {
		t.Fatal(err)
	}
	// ./php is the repository's PHP library, as in a checkout.
	phpLib, aerr := filepath.Abs("../php")
	if aerr != nil {
		t.Fatal(aerr)
	}
	if err := os.Symlink(phpLib, filepath.Join(work, "php")); err != nil {
		t.Fatal(err)
	}

	args := []string{"bash", filepath.Join(work, "runner.sh"), work}
	isolated := "0"
	if isolate != nil {
		args = append(append([]string{}, isolate...), args...)
		isolated = "1"
	} else {
		for _, addr := range devPorts {
			l, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatalf("the documentation's examples use paddock dev's fixed ports, and %s is taken (%v): stop what holds it (another paddock dev?), or run the test as root or with unprivileged user namespaces, where each example gets its own network namespace", addr, err)
			}
			l.Close()
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), exampleTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = work
	cmd.Env = append(child.Env(),
		"PATH="+bin+string(os.PathListSeparator)+filepath.Dir(grpcurlBin)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"REAL_CURL="+curlBin, "ISOLATED="+isolated, "PHP_PROLOGUE="+filepath.Join(work, "prologue.php"),
		// PHP's sys_get_temp_dir (the session handler keeps the leader's
		// address there): the example's own directory.
		"TMPDIR="+work)
	// Its own process group, killed whole on timeout; SIGKILLed if the
	// test binary dies (in a namespace, unshare's --kill-child then ends
	// everything in it).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	devLog := child.Tail(filepath.Join(work, "dev.log"), 8<<10)
	fullLog, _ := os.ReadFile(filepath.Join(work, "dev.log"))
	if ctx.Err() != nil {
		err = fmt.Errorf("still running after %v", exampleTimeout)
	}
	if err != nil {
		t.Fatalf("example %q of %s (blocks at lines %v) failed: %v\n--- output (commands traced with +) ---\n%s\n--- paddock dev log ---\n%s",
			ex.name, ex.file, ex.lines, err, out.String(), devLog)
	}
	if bytes.Contains(fullLog, []byte("WARNING: DATA RACE")) {
		t.Errorf("paddock dev reported a data race:\n%s", devLog)
	}
	if testing.Verbose() {
		t.Logf("example %q of %s:\n%s", ex.name, ex.file, lastLines(out.String(), 400))
	}
}

// lastLines returns at most n lines from the end of s.
func lastLines(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
