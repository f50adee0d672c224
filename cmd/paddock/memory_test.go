package main

import "testing"

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
