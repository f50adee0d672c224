package farm

import (
	"errors"
	"fmt"
	"net"
)

// ErrNoName is a host without a default IPv4 route, whose name DefaultName
// cannot find.
var ErrNoName = errors.New("farm: no default IPv4 route to name this host after: pass --name")

// DefaultName is the host's name in a farm as ZkFarmer chooses it: the
// IPv4 address of the interface of the default route. It connects a UDP
// socket to a multicast address, which sends nothing, and reads the local
// address the kernel picked.
func DefaultName() (string, error) {
	conn, err := net.Dial("udp4", "239.255.0.0:9")
	if err != nil {
		return "", fmt.Errorf("%w (%v)", ErrNoName, err)
	}
	defer conn.Close()
	a, ok := conn.LocalAddr().(*net.UDPAddr)
	if !ok || a.IP.To4() == nil || a.IP.IsUnspecified() {
		return "", ErrNoName
	}
	return a.IP.To4().String(), nil
}
