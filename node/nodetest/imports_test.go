package nodetest_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestOnlyTestsImportNodetest: no package's non-test code imports
// nodetest, except other test helper packages (named *test), so that the
// test cluster never ends up in the binary.
func TestOnlyTestsImportNodetest(t *testing.T) {
	const self = "github.com/paddock/paddock/node/nodetest"
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "github.com/paddock/paddock/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, " ")
		if strings.HasSuffix(pkg, "test") {
			continue
		}
		for imp := range strings.FieldsSeq(imports) {
			if imp == self {
				t.Errorf("%s imports %s outside its tests", pkg, self)
			}
		}
	}
}
