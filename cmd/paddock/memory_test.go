package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestByteSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantStr string
		wantErr bool
	}{
		{in: "0", want: 0, wantStr: "0"},
		{in: "512", want: 512, wantStr: "512B"},
		{in: "512B", want: 512, wantStr: "512B"},
		{in: "1536B", want: 1536, wantStr: "1536B"},
		{in: "64KiB", want: 64 << 10, wantStr: "64KiB"},
		{in: "2048KiB", want: 2 << 20, wantStr: "2MiB"},
		{in: "256MiB", want: 256 << 20, wantStr: "256MiB"},
		{in: "3GiB", want: 3 << 30, wantStr: "3GiB"},
		{in: "1TiB", want: 1 << 40, wantStr: "1TiB"},
		{in: "", wantErr: true},
		{in: "MiB", wantErr: true},
		{in: "-1MiB", wantErr: true},
		{in: "1.5GiB", wantErr: true},
		{in: "12MB", wantErr: true},
		{in: "12 MiB", wantErr: true},
		{in: "8388608TiB", wantErr: true}, // 2^63 bytes
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			b := byteSize(7)
			err := b.Set(tc.in)
			if tc.wantErr {
				if err == nil || b != 7 {
					t.Errorf("Set(%q) = %d, %v, want an error and no change", tc.in, b, err)
				}
				return
			}
			if err != nil || int64(b) != tc.want {
				t.Fatalf("Set(%q) = %d, %v, want %d", tc.in, b, err, tc.want)
			}
			if got := b.String(); got != tc.wantStr {
				t.Errorf("String() of %d = %q, want %q", tc.want, got, tc.wantStr)
			}
		})
	}
}

func TestGCPercentFor(t *testing.T) {
	const mib = 1 << 20
	for _, tt := range []struct {
		percent                 int
		headroom, live, scanned uint64
		want                    int
	}{
		{50, 32 * mib, 8 * mib, 0, 400},       // a small heap grows 32 MiB
		{50, 32 * mib, 10 * mib, 0, 320},      // rounded down to a multiple of 10
		{50, 32 * mib, 6 * mib, 2 * mib, 400}, // stacks and globals count in the base
		{50, 32 * mib, 64 * mib, 0, 50},       // twice the headroom: --gc-percent
		{50, 32 * mib, 200 * mib, 0, 50},      // a large state keeps its bound
		{50, 32 * mib, 1 * mib, 0, 820},       // 3200 would put the minimum heap at 128 MiB
		{50, 32 * mib, 0, 0, 50},              // no collection yet
		{100, 32 * mib, 40 * mib, 0, 100},     // 80 rounds below --gc-percent
		{0, 32 * mib, 16 * mib, 0, 200},       // GOGC 0 collects all the time; the headroom still applies
		{50, 1 << 30, 1 * mib, 0, 5000},       // the cap
	} {
		if got := gcPercentFor(tt.percent, tt.headroom, tt.live, tt.scanned); got != tt.want {
			t.Errorf("gcPercentFor(%d, %d, %d, %d) = %d, want %d", tt.percent, tt.headroom, tt.live, tt.scanned, got, tt.want)
		}
	}
}

// TestGCTuner: the tuner raises GOGC after a collection, and again after
// each of the next ones (its cleanup re-arms itself), until stopped.
func TestGCTuner(t *testing.T) {
	old := debug.SetGCPercent(50)
	defer debug.SetGCPercent(old)
	tunes := make(chan struct{}, 16)
	tuner := newGCTuner(50, 1<<30)
	tuner.tuned = func() { tunes <- struct{}{} }
	tuner.start()
	defer tuner.stop()
	gogc := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	for i := range 3 {
		runtime.GC()
		select {
		case <-tunes:
		case <-time.After(10 * time.Second):
			t.Fatalf("collection %d: the tuner did not run", i+1)
		}
		metrics.Read(gogc)
		// 1 GiB of headroom over a test binary's few MiB: the cap.
		if got := gogc[0].Value.Uint64(); got != maxTunedPercent {
			t.Fatalf("collection %d: GOGC = %d, want %d", i+1, got, maxTunedPercent)
		}
	}
}
