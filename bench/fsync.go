package bench

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// FsyncRate measures the fdatasync calls per second of a tiny writer in
// dir for d: it appends 4 KiB and fdatasyncs, in a loop, like a log writer
// with one sync per batch. That is the ceiling of a sequential durable
// writer on the disk, the figure to compare write latency with. The file
// is removed afterwards.
func FsyncRate(dir string, d time.Duration) (float64, error) {
	f, err := os.CreateTemp(dir, "fsync-rate-")
	if err != nil {
		return 0, fmt.Errorf("bench: fsync rate: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	block := make([]byte, 4096)
	fd := int(f.Fd())
	start := time.Now()
	n := 0
	for time.Since(start) < d || n == 0 {
		if _, err := f.Write(block); err != nil {
			return 0, fmt.Errorf("bench: fsync rate: %w", err)
		}
		if err := unix.Fdatasync(fd); err != nil {
			return 0, fmt.Errorf("bench: fsync rate: fdatasync: %w", err)
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds(), nil
}
