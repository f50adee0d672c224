package client

import (
	"errors"
	"slices"
	"testing"
)

func TestParseEndpoints(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{in: "127.0.0.1:2281", want: []string{"127.0.0.1:2281"}},
		{in: " a:1 , b:2,,a:1 ", want: []string{"a:1", "b:2"}},
		{in: "[::1]:2281,localhost:2282", want: []string{"[::1]:2281", "localhost:2282"}},
		{in: "", wantErr: true},
		{in: " , ", wantErr: true},
		{in: "a", wantErr: true},
		{in: ":2281", wantErr: true},
		{in: "a:port", wantErr: true},
		{in: "a:70000", wantErr: true},
		{in: "http://a:1", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseEndpoints(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseEndpoints(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ParseEndpoints(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
	if _, err := ParseEndpoints(""); !errors.Is(err, ErrNoEndpoints) {
		t.Errorf("ParseEndpoints(\"\") error = %v, want ErrNoEndpoints", err)
	}
}
