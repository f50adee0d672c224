package farm

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// DefaultName is the name a host joins a farm under when none is given:
// the IPv4 address of the interface of the default route, as ZkFarmer
// names hosts. It reads the routing table (/proc/net/route) and sends
// nothing on the network; where there is no such table, or no default
// route, it takes the first IPv4 address of an up, non-loopback interface.
func DefaultName() (string, error) {
	if iface, ok := defaultRouteInterface("/proc/net/route"); ok {
		if ifi, err := net.InterfaceByName(iface); err == nil {
			if ip := firstIPv4(ifi); ip != "" {
				return ip, nil
			}
		}
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return "", fmt.Errorf("farm: host name: %w", err)
	}
	for i := range ifaces {
		ifi := &ifaces[i]
		if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagLoopback != 0 {
			continue
		}
		if ip := firstIPv4(ifi); ip != "" {
			return ip, nil
		}
	}
	return "", errors.New("farm: host name: no IPv4 address outside loopback: give --name")
}

// defaultRouteInterface is the interface of the default route with the
// lowest metric in a /proc/net/route table.
func defaultRouteInterface(table string) (string, bool) {
	f, err := os.Open(table)
	if err != nil {
		return "", false
	}
	defer f.Close()
	best, bestMetric := "", -1
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		// Iface Destination Gateway Flags RefCnt Use Metric Mask ...
		cols := strings.Fields(sc.Text())
		if len(cols) < 8 || cols[1] != "00000000" || cols[7] != "00000000" {
			continue
		}
		metric, err := strconv.Atoi(cols[6])
		if err != nil {
			continue
		}
		if bestMetric < 0 || metric < bestMetric {
			best, bestMetric = cols[0], metric
		}
	}
	return best, best != ""
}

// firstIPv4 is the first IPv4 address of ifi, "" if none.
func firstIPv4(ifi *net.Interface) string {
	addrs, err := ifi.Addrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip4 := n.IP.To4(); ip4 != nil && !ip4.IsLoopback() {
				return ip4.String()
			}
		}
	}
	return ""
}
