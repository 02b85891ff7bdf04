package faults

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/burla-temporal/burla/tests/clustertest"
)

// nodeNetns is a network namespace of the suite's own, joined to this machine by a
// veth pair. The cluster's servers listen on the pair's host address, and the
// control plane starts its node agents through a wrapper that puts one of them at a
// time in the namespace (the first started while none lives there); dropping every
// packet that crosses the pair, both ways, cuts that node alone off from the store
// and Temporal, as a partition does. Nothing is dropped with an error the sender
// sees: packets vanish at the receiving side's ingress.
type nodeNetns struct {
	*clustertest.Netns
	wrapper, pidFile string
}

// nodeDisk is the size of each node's disk in the suite.
const nodeDisk = "1g"

var (
	partition    *nodeNetns
	partitionErr error // why there is no namespace: the partition test fails with it
)

func setUpNetns(dir string) (*nodeNetns, error) {
	ns, err := clustertest.NewNetns("faults", "bf", 231)
	if err != nil {
		return nil, err
	}
	n := &nodeNetns{
		Netns:   ns,
		wrapper: filepath.Join(dir, "netns-wrapper"),
		pidFile: filepath.Join(dir, "netns-agent.pid"),
	}
	for _, tool := range []string{"flock", "nsenter", "unshare", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			n.Remove()
			return nil, fmt.Errorf("the partition needs %s: %w", tool, err)
		}
	}
	// The wrapper decides under a lock, so that two nodes started at once do not
	// both go in; the agent keeps the shell's pid through the execs. Every node
	// gets a disk of its own too, as a VM has: a tmpfs of nodeDisk on its cache
	// directory, in a mount namespace of the agent's (the test reaches it through
	// /proc/PID/root).
	script := fmt.Sprintf(`#!/bin/sh
dir= prev=
for a; do [ "$prev" = --cache-dir ] && dir=$a; prev=$a; done
in=$( (flock 9
	if [ -s %[1]s ] && [ "$(ip netns identify "$(cat %[1]s)" 2>/dev/null)" = %[2]s ]; then echo no; else echo $$ > %[1]s; echo yes; fi) 9>%[1]s.lock )
net=
[ "$in" = yes ] && net="nsenter --net=/run/netns/%[2]s --"
exec $net unshare --mount --propagation private -- sh -c 'mount -t tmpfs -o size=%[3]s,mode=0755 burla-node-disk "$0" && exec "$@"' "$dir" "$@"
`, n.pidFile, n.Name, nodeDisk)
	if err := os.WriteFile(n.wrapper, []byte(script), 0o755); err != nil {
		n.Remove()
		return nil, err
	}
	return n, nil
}

// agent returns the pid of the node agent in the namespace.
func (n *nodeNetns) agent() (int, bool) {
	b, err := os.ReadFile(n.pidFile)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, false
	}
	out, err := exec.Command("ip", "netns", "identify", strconv.Itoa(pid)).Output()
	return pid, err == nil && strings.TrimSpace(string(out)) == n.Name
}

// cut drops every packet that arrives on either end of the pair.
func (n *nodeNetns) cut() error {
	for _, side := range []struct{ netns, dev string }{{"", n.HostIf}, {n.Name, n.NsIf}} {
		rules := fmt.Sprintf("table netdev burla_cut {\n\tchain in {\n\t\ttype filter hook ingress device %q priority 0; policy drop;\n\t}\n}\n", side.dev)
		cmd := exec.Command("nft", "-f", "-")
		if side.netns != "" {
			cmd = exec.Command("ip", "netns", "exec", side.netns, "nft", "-f", "-")
		}
		cmd.Stdin = strings.NewReader(rules)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("cut %s: %v: %s", side.dev, err, out)
		}
	}
	return nil
}

// heal lets packets through again.
func (n *nodeNetns) heal() error {
	var errs []string
	for _, cmd := range []*exec.Cmd{
		exec.Command("nft", "delete", "table", "netdev", "burla_cut"),
		exec.Command("ip", "netns", "exec", n.Name, "nft", "delete", "table", "netdev", "burla_cut"),
	} {
		if out, err := cmd.CombinedOutput(); err != nil {
			errs = append(errs, fmt.Sprintf("%v: %s", err, out))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("heal the partition: %s", strings.Join(errs, "; "))
	}
	return nil
}

// reaches reports whether a connection from the namespace to addr (host:port)
// opens within a second.
func (n *nodeNetns) reaches(addr string) bool {
	host, port, _ := strings.Cut(addr, ":")
	return exec.Command("ip", "netns", "exec", n.Name, "timeout", "1",
		"bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%s", host, port)).Run() == nil
}

// remove deletes the namespace, and with it the pair.
// A node cut off from the store and Temporal for 10 s during a 20 000-input job:
// the job completes with every result exactly once, whether the cluster waits for
// the node or replaces it.
func TestPartitionNode(t *testing.T) {
	if partitionErr != nil {
		t.Fatalf("no network namespace to partition a node in: %v", partitionErr)
	}
	// The first node agent started in the namespace; one replaced since, while
	// the namespace was empty, did too.
	deadline := time.Now().Add(time.Minute)
	for {
		if _, ok := partition.agent(); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no node agent lives in the network namespace")
		}
		time.Sleep(50 * time.Millisecond)
	}
	temporal := cluster.Addrs.Temporal
	if !partition.reaches(temporal) {
		t.Fatalf("the namespace does not reach Temporal at %s before the cut", temporal)
	}
	cutOff := false
	faultCompletes(t, "cut a node off from the store and Temporal for 10 s (every packet dropped both ways)", func() error {
		if err := partition.cut(); err != nil {
			return err
		}
		cutOff = !partition.reaches(temporal)
		time.Sleep(10 * time.Second)
		return partition.heal()
	})
	if !cutOff {
		t.Errorf("the namespace still reached Temporal during the cut: nothing was partitioned")
	}
	waitStandby(t, 2)
}

// A node whose disk fills during a 20 000-input job (a file as large as the
// free space of its own disk, less 16 MiB) says so in its record; the cluster
// deletes it, says why in its state, and starts another; the job completes with
// every result once.
func TestFullDisk(t *testing.T) {
	if partitionErr != nil {
		t.Fatalf("no disks of their own for the nodes: %v", partitionErr)
	}
	var node string
	faultCompletes(t, "a node's disk fills up (a file takes all but 16 MiB of its free space)", func() error {
		pids := cluster.Processes("node-agent")
		if len(pids) == 0 {
			return fmt.Errorf("no node-agent process")
		}
		pid := pids[0]
		node = clustertest.Flag(pid, "--id")
		lastKilled = killed{pid: pid, node: node}
		// The node's own disk, as its agent sees it.
		dir := fmt.Sprintf("/proc/%d/root%s", pid, clustertest.Flag(pid, "--cache-dir"))
		var st syscall.Statfs_t
		if err := syscall.Statfs(dir, &st); err != nil {
			return err
		}
		if st.Type != 0x01021994 { // TMPFS_MAGIC
			return fmt.Errorf("node %s's cache directory is not on a disk of its own", node)
		}
		f, err := os.Create(filepath.Join(dir, "filler"))
		if err != nil {
			return err
		}
		defer f.Close()
		return syscall.Fallocate(int(f.Fd()), 0, 0, int64(st.Bavail)*st.Bsize-16<<20)
	})
	st, err := clusterStatus(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	said := false
	for _, l := range st.LastLost {
		said = said || l.ID == node && strings.Contains(l.Reason, "disk full")
	}
	if !said {
		t.Errorf("the cluster's last lost nodes %+v do not say that %s's disk was full", st.LastLost, node)
	}
	waitStandby(t, 2)
}
