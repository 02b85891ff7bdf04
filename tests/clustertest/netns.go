package clustertest

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Netns is a network namespace of a test's own, joined to this machine by a
// veth pair: HostAddr on HostIf, this side, and NsAddr on NsIf, in the
// namespace, a /30 of their own. It needs root.
type Netns struct {
	Name, HostIf, NsIf string
	HostAddr, NsAddr   string
}

// NewNetns makes a namespace named burla-<name>-<pid>, with interfaces <short><pid>h
// and <short><pid>n and addresses in 10.<octet>.<pid mod 250 + 1>.0/30, so that
// suites running at once on one machine do not collide.
func NewNetns(name, short string, octet int) (*Netns, error) {
	pid := os.Getpid()
	net := fmt.Sprintf("10.%d.%d.", octet, pid%250+1)
	n := &Netns{
		Name:     fmt.Sprintf("burla-%s-%d", name, pid),
		HostIf:   fmt.Sprintf("%s%dh", short, pid%1000000),
		NsIf:     fmt.Sprintf("%s%dn", short, pid%1000000),
		HostAddr: net + "1",
		NsAddr:   net + "2",
	}
	for _, step := range [][]string{
		{"ip", "netns", "add", n.Name},
		{"ip", "link", "add", n.HostIf, "type", "veth", "peer", "name", n.NsIf},
		{"ip", "link", "set", n.NsIf, "netns", n.Name},
		{"ip", "addr", "add", n.HostAddr + "/30", "dev", n.HostIf},
		{"ip", "link", "set", n.HostIf, "up"},
		{"ip", "-n", n.Name, "addr", "add", n.NsAddr + "/30", "dev", n.NsIf},
		{"ip", "-n", n.Name, "link", "set", n.NsIf, "up"},
		{"ip", "-n", n.Name, "link", "set", "lo", "up"},
	} {
		if err := n.Run(step...); err != nil {
			n.Remove()
			return nil, err
		}
	}
	return n, nil
}

// Run runs a command (on this side) and fails with its output.
func (n *Netns) Run(args ...string) error {
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// Remove deletes the namespace and the pair.
func (n *Netns) Remove() {
	exec.Command("ip", "link", "del", n.HostIf).Run()
	exec.Command("ip", "netns", "del", n.Name).Run()
}
