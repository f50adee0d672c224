package client

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// ParseEndpoints splits a comma-separated endpoint list, as given to
// --endpoints or PADDOCK_ENDPOINTS ("10.0.0.1:2281,10.0.0.2:2281"). Spaces
// around entries, empty entries and repeated entries are dropped; every
// entry must be host:port.
func ParseEndpoints(s string) ([]string, error) {
	return normalizeEndpoints(strings.Split(s, ","))
}

// normalizeEndpoints checks and de-duplicates endpoints, keeping their order
// (the first one is tried first).
func normalizeEndpoints(in []string) ([]string, error) {
	var out []string
	seen := make(map[string]bool, len(in))
	for _, e := range in {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		host, port, err := net.SplitHostPort(e)
		if err != nil || host == "" {
			return nil, fmt.Errorf("client: bad endpoint %q: want host:port", e)
		}
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return nil, fmt.Errorf("client: bad endpoint %q: bad port", e)
		}
		if seen[e] {
			continue
		}
		seen[e] = true
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, ErrNoEndpoints
	}
	return out, nil
}
