package robust

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	// markerDir holds one marker file per live cluster on the machine, and
	// the lock under which clusters pick their ids and subnets.
	markerDir = "/run/paddock-robust"
	// netnsDir is where `ip netns` mounts named namespaces.
	netnsDir = "/run/netns"
	// cmdTimeout bounds one ip or iptables command.
	cmdTimeout = 20 * time.Second
	// hostOctet is the last octet of the host side's address.
	hostOctet = 254
	// Agent ports, the same in every namespace.
	raftPort, grpcPort, httpPort = 7000, 7001, 7002
)

// idPattern matches a cluster id, "<pid>-<3 hex digits>".
var idPattern = regexp.MustCompile(`^([0-9]+)-[0-9a-f]{3}$`)

// network is one cluster's namespaces, links and addresses.
type network struct {
	id     string
	subnet netip.Prefix // 10.x.y.0/24
	link   string       // the root namespace's veth, pdk<id>
	hub    string       // the namespace with the bridge
	nodes  []string     // the agents' namespaces
}

func newNetwork(id string, subnet netip.Prefix, n int) *network {
	nw := &network{id: id, subnet: subnet, link: "pdk" + id, hub: nsPrefix(id) + "hub"}
	for i := range n {
		nw.nodes = append(nw.nodes, fmt.Sprintf("%sn%d", nsPrefix(id), i+1))
	}
	return nw
}

// nsPrefix starts the name of every namespace of cluster id.
func nsPrefix(id string) string { return "pdk-" + id + "-" }

// addr is the subnet's address with the given last octet.
func (nw *network) addr(last byte) string {
	b := nw.subnet.Addr().As4()
	b[3] = last
	return netip.AddrFrom4(b).String()
}

// nodeIP is node i's address, 10.x.y.(i+1).
func (nw *network) nodeIP(i int) string { return nw.addr(byte(i + 1)) }

// hostIP is the host side's address, 10.x.y.254.
func (nw *network) hostIP() string { return nw.addr(hostOctet) }

// setup creates the hub with its bridge, the host's link and one namespace
// per node. On error what it made stays for teardown.
func (nw *network) setup(ctx context.Context) error {
	hostCIDR := fmt.Sprintf("%s/%d", nw.hostIP(), nw.subnet.Bits())
	steps := [][]string{
		{"netns", "add", nw.hub},
		{"-n", nw.hub, "link", "add", "br0", "type", "bridge"},
		{"-n", nw.hub, "link", "set", "br0", "up"},
		{"link", "add", nw.link, "type", "veth", "peer", "name", "host", "netns", nw.hub},
		{"-n", nw.hub, "link", "set", "host", "master", "br0", "up"},
		{"addr", "add", hostCIDR, "dev", nw.link},
		{"link", "set", nw.link, "up"},
	}
	for i, ns := range nw.nodes {
		port := fmt.Sprintf("n%d", i+1)
		cidr := fmt.Sprintf("%s/%d", nw.nodeIP(i), nw.subnet.Bits())
		steps = append(steps,
			[]string{"netns", "add", ns},
			[]string{"-n", ns, "link", "set", "lo", "up"},
			[]string{"-n", nw.hub, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns},
			[]string{"-n", nw.hub, "link", "set", port, "master", "br0", "up"},
			[]string{"-n", ns, "addr", "add", cidr, "dev", "eth0"},
			[]string{"-n", ns, "link", "set", "eth0", "up"},
		)
	}
	for _, args := range steps {
		if _, err := command(ctx, "ip", args...); err != nil {
			return err
		}
	}
	return nil
}

// teardown deletes the host's link and every namespace of cluster id. The
// hub's bridge and the veths go with their namespaces; deleting pdk<id>
// first means the root namespace is clean when teardown returns, not when
// the kernel gets round to destroying the hub. What is already gone is
// skipped.
func teardown(id string) error {
	var errs []error
	link := "pdk" + id
	if _, err := net.InterfaceByName(link); err == nil {
		if _, err := command(context.Background(), "ip", "link", "del", link); err != nil {
			errs = append(errs, err)
		}
	}
	entries, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("robust: %w", err))
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), nsPrefix(id)) {
			continue
		}
		if _, err := command(context.Background(), "ip", "netns", "del", e.Name()); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// command runs one short command, returning its output; a failure's error
// holds the command line and its output.
func command(ctx context.Context, name string, args ...string) (string, error) {
	return commandInput(ctx, "", name, args...)
}

// commandInput is command with stdin read from input.
func commandInput(ctx context.Context, input, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(input)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("robust: %s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// marker records which process made a cluster, so that a later Start can
// tell whether the cluster is still in use.
type marker struct {
	// PID and Start (the process's start time in clock ticks since boot,
	// from /proc/<pid>/stat) identify the owner even if the pid is reused.
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
	// PIDNS is the owner's PID namespace (/proc/self/ns/pid); the owner's
	// liveness can only be judged from the same namespace.
	PIDNS string `json:"pidns"`
	// Subnet is the cluster's subnet, kept from other clusters.
	Subnet string `json:"subnet"`
}

func markerPath(id string) string { return filepath.Join(markerDir, id+".json") }

// alive reports whether the marker's owner still runs, as far as this
// process can tell: a marker from another PID namespace counts as alive.
func (m marker) alive(pidns string) bool {
	if m.PIDNS != pidns {
		return true
	}
	start, err := procStart(m.PID)
	return err == nil && start == m.Start
}

// procStart is a process's start time in clock ticks since boot.
func procStart(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: count
	// fields from after its closing parenthesis, which is field 3.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 20 {
		return 0, fmt.Errorf("robust: /proc/%d/stat: too few fields", pid)
	}
	return strconv.ParseUint(fields[19], 10, 64) // field 22
}

// selfPIDNS is this process's PID namespace.
func selfPIDNS() string {
	ns, _ := os.Readlink("/proc/self/ns/pid")
	return ns
}

// readMarkers returns every marker file, by cluster id.
func readMarkers() (map[string]marker, error) {
	entries, err := os.ReadDir(markerDir)
	if err != nil {
		return nil, fmt.Errorf("robust: %w", err)
	}
	ms := map[string]marker{}
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !idPattern.MatchString(id) {
			continue
		}
		var m marker
		b, err := os.ReadFile(filepath.Join(markerDir, e.Name()))
		if err != nil {
			continue // removed meanwhile
		}
		if err := json.Unmarshal(b, &m); err != nil {
			// Cut short by a crash while it was written: judge by the pid
			// in the id alone. An empty PIDNS makes alive true.
			m = marker{PID: idPID(id)}
			if !pidExists(m.PID) {
				m.PIDNS = selfPIDNS()
			}
		}
		ms[id] = m
	}
	return ms, nil
}

// idPID is the pid encoded in a cluster id.
func idPID(id string) int {
	m := idPattern.FindStringSubmatch(id)
	if m == nil {
		return 0
	}
	pid, _ := strconv.Atoi(m[1])
	return pid
}

// withLock runs fn holding the machine-wide harness lock.
func withLock(fn func() error) error {
	if err := os.MkdirAll(markerDir, 0o755); err != nil {
		return fmt.Errorf("robust: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(markerDir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("robust: %w", err)
	}
	defer f.Close()
	if err := lockFile(f); err != nil {
		return fmt.Errorf("robust: lock %s: %w", f.Name(), err)
	}
	defer unlockFile(f)
	return fn()
}

// allocate sweeps away what dead test processes left, then picks a fresh
// cluster id and subnet and writes the marker that claims them.
func allocate(logf func(string, ...any)) (*network, error) {
	var nw *network
	err := withLock(func() error {
		sweepLocked(logf)
		ms, err := readMarkers()
		if err != nil {
			return err
		}
		used, err := usedPrefixes()
		if err != nil {
			return err
		}
		for _, m := range ms {
			if p, err := netip.ParsePrefix(m.Subnet); err == nil {
				used = append(used, p)
			}
		}
		id, err := pickID(ms)
		if err != nil {
			return err
		}
		subnet, err := pickSubnet(used)
		if err != nil {
			return err
		}
		pid := os.Getpid()
		start, err := procStart(pid)
		if err != nil {
			return fmt.Errorf("robust: %w", err)
		}
		b, err := json.Marshal(marker{PID: pid, Start: start, PIDNS: selfPIDNS(), Subnet: subnet.String()})
		if err != nil {
			return err
		}
		if err := os.WriteFile(markerPath(id), b, 0o644); err != nil {
			return fmt.Errorf("robust: %w", err)
		}
		nw = newNetwork(id, subnet, clusterSize)
		return nil
	})
	return nw, err
}

// pickID returns an id "<pid>-<random>" that no marker, namespace or link
// uses.
func pickID(ms map[string]marker) (string, error) {
	for range 100 {
		id := fmt.Sprintf("%d-%03x", os.Getpid(), rand.IntN(0x1000))
		if _, ok := ms[id]; ok {
			continue
		}
		if _, err := net.InterfaceByName("pdk" + id); err == nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(netnsDir, nsPrefix(id)+"hub")); err == nil {
			continue
		}
		return id, nil
	}
	return "", errors.New("robust: no free cluster id")
}

// pickSubnet returns a 10.x.y.0/24 that overlaps none of used. x and y mix
// the pid with a random part: processes starting together try different
// subnets first.
func pickSubnet(used []netip.Prefix) (netip.Prefix, error) {
	seed := uint32(os.Getpid()) * 2654435761 // Knuth's multiplicative hash
	for range 1000 {
		v := seed ^ rand.Uint32()
		x, y := byte(64+v%190), byte(v>>8) // 10.64.0.0 - 10.253.255.0
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, x, y, 0}), 24)
		free := true
		for _, u := range used {
			if u.Overlaps(p) {
				free = false
				break
			}
		}
		if free {
			return p, nil
		}
	}
	return netip.Prefix{}, errors.New("robust: no free 10.x.y.0/24 subnet")
}

// usedPrefixes returns the destinations of every IPv4 route (all tables)
// and the prefixes of every IPv4 address of the root namespace.
func usedPrefixes() ([]netip.Prefix, error) {
	out, err := command(context.Background(), "ip", "-4", "-j", "route", "show", "table", "all")
	if err != nil {
		return nil, err
	}
	var routes []struct {
		Dst string `json:"dst"`
	}
	if err := json.Unmarshal([]byte(out), &routes); err != nil {
		return nil, fmt.Errorf("robust: ip -j route: %w", err)
	}
	var used []netip.Prefix
	for _, r := range routes {
		if p, err := netip.ParsePrefix(r.Dst); err == nil {
			used = append(used, p.Masked())
		} else if a, err := netip.ParseAddr(r.Dst); err == nil {
			used = append(used, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("robust: %w", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap().Is4() {
				ones, _ := n.Mask.Size()
				used = append(used, netip.PrefixFrom(ip.Unmap(), ones).Masked())
			}
		}
	}
	return used, nil
}

// sweepLocked tears down every cluster whose owner is dead: those with a
// marker naming a process that no longer exists, and namespaces or links
// with the harness's names, no marker, and a dead pid in their id. It
// needs the harness lock. Failures are logged, not returned: a leftover
// that cannot be removed must not stop a new cluster.
func sweepLocked(logf func(string, ...any)) {
	ms, err := readMarkers()
	if err != nil {
		logf("robust: sweep: %v", err)
		return
	}
	pidns := selfPIDNS()
	stale := map[string]bool{}
	for id, m := range ms {
		if !m.alive(pidns) {
			stale[id] = true
		}
	}
	for _, id := range leftoverIDs() {
		if _, ok := ms[id]; !ok && !pidExists(idPID(id)) {
			stale[id] = true
		}
	}
	for id := range stale {
		if pids := nsPIDs(id); len(pids) > 0 {
			logf("robust: sweep: stale cluster %s still has processes %v (left running)", id, pids)
		}
		if err := teardown(id); err != nil {
			logf("robust: sweep: %v", err)
			continue
		}
		if err := os.Remove(markerPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			logf("robust: sweep: %v", err)
			continue
		}
		logf("robust: removed stale cluster %s", id)
	}
}

// leftoverIDs returns the ids named by pdk-<id>-* namespaces and pdk<id>
// links.
func leftoverIDs() []string {
	seen := map[string]bool{}
	entries, _ := os.ReadDir(netnsDir)
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), "pdk-")
		if i := strings.LastIndexByte(rest, '-'); ok && i > 0 && idPattern.MatchString(rest[:i]) {
			seen[rest[:i]] = true
		}
	}
	ifaces, _ := net.Interfaces()
	for _, ifc := range ifaces {
		if id, ok := strings.CutPrefix(ifc.Name, "pdk"); ok && idPattern.MatchString(id) {
			seen[id] = true
		}
	}
	var ids []string
	for id := range seen {
		ids = append(ids, id)
	}
	return ids
}

// nsPIDs lists the processes in cluster id's namespaces.
func nsPIDs(id string) []string {
	var pids []string
	entries, _ := os.ReadDir(netnsDir)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), nsPrefix(id)) {
			continue
		}
		out, err := command(context.Background(), "ip", "netns", "pids", e.Name())
		if err == nil {
			pids = append(pids, strings.Fields(out)...)
		}
	}
	return pids
}

var (
	availableOnce sync.Once
	availableErr  error
)

// Available reports whether this machine can run the harness: Linux, root,
// and `ip` and `iptables` that can make a namespace and list its firewall.
// Tests skip with its error when it is not nil. The answer is worked out
// once per process.
func Available() error {
	availableOnce.Do(func() { availableErr = probe() })
	return availableErr
}

func probe() error {
	if !supported {
		return errors.New("robust: network namespaces need linux")
	}
	if os.Geteuid() != 0 {
		return errors.New("robust: needs root (network namespaces, iptables)")
	}
	for _, tool := range []string{"ip", "iptables", "iptables-restore", "iptables-save"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("robust: %s not found (install iproute2 and iptables): %w", tool, err)
		}
	}
	// A real namespace proves the rights (CAP_SYS_ADMIN, CAP_NET_ADMIN)
	// and that iptables works inside one. Its name has an id so that a
	// crash here leaves nothing a later sweep would not remove.
	id := fmt.Sprintf("%d-%03x", os.Getpid(), rand.IntN(0x1000))
	ns := nsPrefix(id) + "probe"
	if _, err := command(context.Background(), "ip", "netns", "add", ns); err != nil {
		return err
	}
	_, err := command(context.Background(), "ip", "netns", "exec", ns, "iptables", "-w", "-S")
	return errors.Join(err, teardown(id))
}
