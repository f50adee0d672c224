package bench

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFarmExportStats reads the counters from a log line written as the
// exporter writes it (slog's text handler, cmd/paddock/farm.go).
func TestFarmExportStats(t *testing.T) {
	var buf bytes.Buffer
	buf.WriteString("time=x level=INFO msg=\"farm: export: written\" dest=/d hosts=3 zxid=9\n")
	slog.New(slog.NewTextHandler(&buf, nil)).Info("farm: export: stopped", "full_reads", uint64(1), "host_reads", uint64(300), "writes", uint64(301))
	p := filepath.Join(t.TempDir(), "export.log")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	full, host, writes, err := exportStats(p)
	if err != nil || full != 1 || host != 300 || writes != 301 {
		t.Fatalf("exportStats = %d, %d, %d, %v; want 1, 300, 301, nil", full, host, writes, err)
	}
	if err := os.WriteFile(p, []byte("level=INFO msg=\"farm: export: written\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := exportStats(p); err == nil {
		t.Fatal("exportStats of a log without counters = nil error, want one")
	}
}

// TestFarmSerialiseCPU writes a small farm and gets a CPU figure.
func TestFarmSerialiseCPU(t *testing.T) {
	d, err := serialiseCPU(t.TempDir(), farmConfs(20), 20)
	if err != nil || d <= 0 {
		t.Fatalf("serialiseCPU = %v, %v; want > 0, nil", d, err)
	}
}

// TestFarmMarkdown checks the table's shape.
func TestFarmMarkdown(t *testing.T) {
	ms := time.Millisecond
	r := &FarmResults{Hosts: 2, Changes: 2, Concurrency: 1, Leader: 0, ExportNode: 1, SetNode: 2,
		Register: []time.Duration{ms, 2 * ms}, RegisterTotal: 3 * ms, Joins: []time.Duration{20 * ms},
		SetToFile: []time.Duration{5 * ms, 6 * ms}, AckToFile: []time.Duration{4 * ms, 5 * ms},
		ExporterCPU: 4 * ms, FullReads: 1, HostReads: 2, Writes: 3, DestBytes: 2048, SerialiseCPU: ms}
	var b strings.Builder
	if err := FarmMarkdown(&b, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| register, per joiner: p50 / p99 | 1.000 ms / 2.000 ms |",
		"| exporter CPU per change | 2.000 ms |",
		"| exporter full reads / host reads / writes | 1 / 2 / 3 |",
		"| DEST size | 2 KiB |",
		"leader was node 0.",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("FarmMarkdown lacks %q:\n%s", want, b.String())
		}
	}
}
