package e2e

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/burla-temporal/burla/control"
)

// burlaCLI runs the burla binary against the test cluster and decodes its JSON.
func burlaCLI(t *testing.T, args ...string) control.ClusterState {
	t.Helper()
	cmd := exec.Command(dev.Binary, append(args, "--temporal", dev.Addrs.Temporal)...)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("burla %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	var st control.ClusterState
	if len(out) > 0 {
		if err := json.Unmarshal(out, &st); err != nil {
			t.Fatalf("burla %s printed %q: %v", strings.Join(args, " "), out, err)
		}
	}
	return st
}

func TestClusterCLI(t *testing.T) {
	// A second cluster, so that the dev cluster's jobs are not disturbed.
	st := burlaCLI(t, "cluster", "up", "--cluster", "cli", "--nodes", "1", "--cpus", "1")
	if len(st.Nodes) != 1 {
		t.Fatalf("after up: %d nodes; want 1", len(st.Nodes))
	}
	st = burlaCLI(t, "cluster", "set-standby", "--cluster", "cli", "--nodes", "2", "--cpus", "1")
	if st.Standby.Nodes != 2 || len(st.Nodes) != 2 {
		t.Errorf("after set-standby: standby %d, %d nodes; want 2 and 2", st.Standby.Nodes, len(st.Nodes))
	}
	before := st.Nodes
	st = burlaCLI(t, "cluster", "restart", "--cluster", "cli")
	replaced := 0
	for id, nd := range st.Nodes {
		if _, old := before[id]; !old && nd.State == control.NodeProvisioning {
			replaced++
		}
	}
	if replaced != 2 {
		t.Errorf("restart started %d new nodes; want 2", replaced)
	}
	st = burlaCLI(t, "cluster", "status", "--cluster", "cli")
	if st.Name != "cli" || st.Standby.Nodes != 2 {
		t.Errorf("status: %+v", st)
	}
	burlaCLI(t, "cluster", "down", "--cluster", "cli")
	cmd := exec.Command(dev.Binary, "cluster", "set-standby", "--cluster", "cli", "--temporal", dev.Addrs.Temporal)
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("set-standby on a cluster that is down succeeded: %s", out)
	}
}
