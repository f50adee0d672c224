package robust

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Isolate cuts node i off from the other nodes in both directions: its
// namespace drops every packet from them and every packet to them. The
// host side still reaches it.
func (c *Cluster) Isolate(i int) error {
	if err := c.checkIndex(i); err != nil {
		return err
	}
	var rules []string
	for j, nd := range c.nodes {
		if j != i {
			rules = append(rules, "-A INPUT -s "+nd.ip+" -j DROP", "-A OUTPUT -d "+nd.ip+" -j DROP")
		}
	}
	return c.addRules(i, rules...)
}

// CutOneWay drops the packets node from sends to node to, in to's
// namespace; packets from to to from still flow.
func (c *Cluster) CutOneWay(from, to int) error {
	if err := errors.Join(c.checkIndex(from), c.checkIndex(to)); err != nil {
		return err
	}
	if from == to {
		return fmt.Errorf("robust: cut %s from itself", c.nodes[from].id)
	}
	return c.addRules(to, "-A INPUT -s "+c.nodes[from].ip+" -j DROP")
}

// DropResponses drops every packet node i sends to the host side (the
// clients): requests on connections already open still arrive and are
// served, their answers never reach the client. New connections to node i
// cannot be opened meanwhile.
func (c *Cluster) DropResponses(i int) error {
	if err := c.checkIndex(i); err != nil {
		return err
	}
	return c.addRules(i, "-A OUTPUT -d "+c.net.hostIP()+" -j DROP")
}

// Heal removes every network fault: it flushes the filter table of each
// node's namespace. Processes are left as they are.
func (c *Cluster) Heal() error {
	var errs []error
	for i := range c.nodes {
		if _, err := c.iptables(i, "-F"); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Dropped is the number of packets the fault rules in node i's namespace
// have dropped since they were added (Heal resets it to 0).
func (c *Cluster) Dropped(i int) (uint64, error) {
	if err := c.checkIndex(i); err != nil {
		return 0, err
	}
	rules, err := c.ruleCounters(i)
	if err != nil {
		return 0, err
	}
	var n uint64
	for rule, pkts := range rules {
		if strings.HasSuffix(rule, "-j DROP") {
			n += pkts
		}
	}
	return n, nil
}

// ruleCounters returns each rule of node i's filter table ("-A INPUT -s
// 10.x.y.1/32 -j DROP") with the packets it has matched.
func (c *Cluster) ruleCounters(i int) (map[string]uint64, error) {
	cmd := []string{"netns", "exec", c.nodes[i].ns, "iptables-save", "-c", "-t", "filter"}
	out, err := command(context.Background(), "ip", cmd...)
	if err != nil {
		return nil, err
	}
	rules := map[string]uint64{}
	for _, line := range strings.Split(out, "\n") {
		// "[packets:bytes] -A CHAIN ..."
		counts, rule, ok := strings.Cut(line, "] ")
		if !ok || !strings.HasPrefix(counts, "[") {
			continue
		}
		pkts, _, _ := strings.Cut(counts[1:], ":")
		n, err := strconv.ParseUint(pkts, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("robust: iptables-save line %q: %w", line, err)
		}
		rules[rule] += n
	}
	return rules, nil
}

// addRules appends rules to node i's filter table in one atomic
// iptables-restore.
func (c *Cluster) addRules(i int, rules ...string) error {
	input := "*filter\n" + strings.Join(rules, "\n") + "\nCOMMIT\n"
	if _, err := commandInput(context.Background(), input, "ip", "netns", "exec", c.nodes[i].ns, "iptables-restore", "-w", "--noflush"); err != nil {
		return fmt.Errorf("%w (rules %q)", err, rules)
	}
	c.opts.Logf("robust: %s: %s", c.nodes[i].id, strings.Join(rules, "; "))
	return nil
}

// iptables runs iptables in node i's namespace.
func (c *Cluster) iptables(i int, args ...string) (string, error) {
	return command(context.Background(), "ip", append([]string{"netns", "exec", c.nodes[i].ns, "iptables", "-w"}, args...)...)
}

func (c *Cluster) checkIndex(i int) error {
	if i < 0 || i >= len(c.nodes) {
		return fmt.Errorf("robust: node index %d out of range [0, %d)", i, len(c.nodes))
	}
	return nil
}
