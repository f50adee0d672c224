//go:build unix

package farm_test

import (
	"fmt"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/paddock/paddock/farm"
)

// BenchmarkExportWrite is the part of an exporter's work per change that
// grows with the farm: writing DEST again for the whole farm (encoding,
// comparing with the file, temporary file, fsync, rename), in each format
// at 10, 100 and 1,000 hosts. One host's field changes before each write,
// so every write rewrites DEST. ns/op is wall time, fsync included;
// cpu-ns/op is the process's user + system CPU (getrusage) per write.
// paddock bench farm reports the fixed part
// (the exporter's CPU per change) next to it: docs/benchmarks.md, Farms.
func BenchmarkExportWrite(b *testing.B) {
	for _, format := range farm.Formats {
		for _, hosts := range []int{10, 100, 1000} {
			b.Run(fmt.Sprintf("%s/%d", format, hosts), func(b *testing.B) {
				f, err := farm.ParseFormat(format)
				if err != nil {
					b.Fatal(err)
				}
				out := farm.Conf{}
				for i := range hosts {
					out[fmt.Sprintf("host%05d", i)] = map[string]any{
						"hostname": fmt.Sprintf("host%05d.example.com", i), "enabled": "1", "weight": "100",
						"seq": "00000000", "mysql": map[string]any{"port": "3306", "replication_delay": "0"},
					}
				}
				dest := filepath.Join(b.TempDir(), "dest."+format)
				if _, err := f.Write(dest, out); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				before := processCPU(b)
				n := 0
				for k := 0; b.Loop(); k++ {
					n++
					out[fmt.Sprintf("host%05d", k%hosts)].(map[string]any)["seq"] = fmt.Sprintf("%08d", k+1)
					if _, err := f.Write(dest, out); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(processCPU(b)-before)/float64(n), "cpu-ns/op")
			})
		}
	}
}

// processCPU is the process's user + system CPU so far, in nanoseconds.
func processCPU(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
