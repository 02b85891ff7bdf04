package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/burla-temporal/burla/control"
)

func clusterStatus(t *testing.T) control.ClusterState {
	t.Helper()
	st, err := control.NewClient(dev.Cluster.Temporal()).Status(context.Background(), control.DefaultCluster)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// waitStandby waits until the cluster's standby is ready again.
func waitStandby(t *testing.T, want int) control.ClusterState {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st := clusterStatus(t)
		ready := 0
		for _, nd := range st.Nodes {
			if nd.State == control.NodeReady {
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
	mapKilling(t, 800, "node-agent") // 800 × 20ms on 4 workers: about 4s
	after := waitStandby(t, 2)
	if after.Lost <= before.Lost {
		t.Errorf("cluster lost %d nodes before and %d after; want the killed node marked lost", before.Lost, after.Lost)
	}
	checkHealthy(t)
}
