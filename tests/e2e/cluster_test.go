package e2e

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/burla-temporal/burla/names"
	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/workflows"
)

func clusterStatus(t *testing.T) workflows.ClusterState {
	t.Helper()
	v, err := dev.Cluster.Temporal().QueryWorkflow(context.Background(), names.ClusterWorkflowID(names.DefaultCluster), "", names.QueryStatus)
	if err != nil {
		t.Fatal(err)
	}
	var st workflows.ClusterState
	if err := v.Get(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// waitStandby waits until the cluster's standby is ready again.
func waitStandby(t *testing.T, want int) workflows.ClusterState {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st := clusterStatus(t)
		ready := 0
		for _, nd := range st.Nodes {
			if nd.State == workflows.NodeReady {
				ready++
			}
		}
		if ready >= want {
			return st
		}
		if time.Now().After(deadline) {
			var states []string
			for _, nd := range st.Nodes {
				states = append(states, nd.ID+":"+string(nd.State)+":"+nd.Job)
			}
			t.Fatalf("standby not ready after a minute: %v", states)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A node agent killed outright mid-job: the job still returns every result exactly
// once, and the cluster marks the node lost and replaces it.
func TestKilledNodeAgent(t *testing.T) {
	before := waitStandby(t, 2)
	const n = 800 // 800 × 20ms on 4 workers: about 4s
	in := make([]int, n)
	for i := range in {
		in[i] = i
	}
	ctx := testCtx(t, 3*time.Minute)
	seen := make([]int, n)
	killed := false
	for r, err := range burla.Stream(ctx, sleepy, in, opts(burla.Lease(time.Second))...) {
		if err != nil {
			t.Fatal(err)
		}
		seen[r.Index]++
		if !killed {
			pids := dev.Processes("node-agent")
			if len(pids) == 0 {
				t.Fatal("no node-agent processes found")
			}
			if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	for i, k := range seen {
		if k != 1 {
			t.Errorf("input %d delivered %d times; want exactly once", i, k)
		}
	}
	after := waitStandby(t, 2)
	if after.Lost <= before.Lost {
		t.Errorf("cluster lost %d nodes before and %d after; want the killed node marked lost", before.Lost, after.Lost)
	}
	checkHealthy(t)
}
