package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/burla-temporal/burla/control"
	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/tests/clustertest"
	"github.com/burla-temporal/burla/tests/histories"
)

var record = flag.Bool("record", false, "write the recorded JobWorkflow histories into workflows/testdata")

// TestJobHistoryReplays runs jobs on the cluster, fetches their histories and the
// cluster's and a node's from the Temporal server, and replays them against today's
// workflows. With -record it also stores them as the replay tests' testdata.
func TestJobHistoryReplays(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	jobs := map[string]string{}
	if _, err := burla.RemoteParallelMap(ctx, square, []int{1, 2, 3}, opts(burla.OnStart(func(id string) { jobs["job_v3_path_success"] = id }))...); err != nil {
		t.Fatal(err)
	}
	_, err := burla.RemoteParallelMap(ctx, failing, []int{1, 2, 3}, opts(burla.OnStart(func(id string) { jobs["job_v3_path_user_error"] = id }))...)
	remoteError(t, err)
	for _, id := range jobs {
		if err := tc(dev).GetWorkflow(ctx, id, "").Get(ctx, nil); err != nil {
			t.Logf("job %s ended with: %v", id, err)
		}
	}
	// The cluster's own workflow (running) and a node's that ended (the cluster
	// replaces nodes after each job that needed replacements, and lost ones).
	jobs["cluster_running"] = control.ClusterWorkflowID(control.DefaultCluster)
	resp, err := tc(dev).ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Query: "WorkflowType='" + control.WorkflowNode + "' AND ExecutionStatus='Completed'"})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Executions) > 0 {
		jobs["node_completed"] = resp.Executions[0].Execution.WorkflowId
	} else if *record {
		t.Fatal("no completed NodeWorkflow to record; run with the other tests (-run '' )")
	}
	// The build of this program's environment, which its first job started.
	resp, err = tc(dev).ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Query: "WorkflowType='" + control.WorkflowEnvBuild + "' AND ExecutionStatus='Completed'"})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Executions) == 0 {
		t.Fatal("no completed EnvBuildWorkflow: the jobs above ran without building their environment")
	}
	jobs["envbuild_completed"] = resp.Executions[0].Execution.WorkflowId
	for name, id := range jobs {
		hist, err := histories.Fetch(ctx, dev.Cluster.Temporal(), id, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := histories.Replay(hist, id, "replay"); err != nil {
			t.Errorf("%s: replay of %s: %v", name, id, err)
		}
		if *record {
			path, err := histories.Record(name, hist)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("recorded %s", path)
		}
	}
}

func tc(d *clustertest.Dev) client.Client { return d.Cluster.Temporal() }

// replayCluster replays the cluster workflow's history once every test has run:
// it grew for a job (TestStallSaysNodesBoot), reset nodes after jobs and lost one
// (TestKilledNodeAgent). With -record it keeps it as cluster_grew_reset_lost once
// it has checked that the history holds all three.
func replayCluster(ctx context.Context) error {
	id := control.ClusterWorkflowID(control.DefaultCluster)
	h, err := histories.Fetch(ctx, dev.Cluster.Temporal(), id, "")
	if err != nil {
		return err
	}
	if err := histories.Replay(h, id, "replay"); err != nil {
		return fmt.Errorf("replay of the cluster's whole history: %w", err)
	}
	if !*record {
		return nil
	}
	var grew, reset, lost bool
	for _, e := range h.GetEvents() {
		if a := e.GetWorkflowExecutionUpdateAcceptedEventAttributes(); a != nil && a.GetAcceptedRequest().GetInput().GetName() == control.UpdateReserve {
			var in struct {
				Grow bool `json:"grow"`
			}
			if converter.GetDefaultDataConverter().FromPayload(a.GetAcceptedRequest().GetInput().GetArgs().GetPayloads()[0], &in) == nil && in.Grow {
				grew = true
			}
		}
		if a := e.GetSignalExternalWorkflowExecutionInitiatedEventAttributes(); a != nil {
			reset = reset || a.GetSignalName() == control.SignalResetNode
			lost = lost || a.GetSignalName() == control.SignalNodeLost
		}
	}
	if !grew || !reset || !lost {
		return fmt.Errorf("the cluster's history: grew %v, reset %v, lost a node %v; want all three to record it (run every test)", grew, reset, lost)
	}
	path, err := histories.Record("cluster_grew_reset_lost", h)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "e2e: recorded %s (%d events)\n", path, len(h.GetEvents()))
	return nil
}
