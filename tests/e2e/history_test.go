package e2e

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/burla-temporal/burla/names"
	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/tests/clustertest"
	"github.com/burla-temporal/burla/workflows"
)

var record = flag.Bool("record", false, "write the recorded JobWorkflow histories into workflows/testdata")

// TestJobHistoryReplays runs jobs on the cluster, fetches their histories and the
// cluster's and a node's from the Temporal server, and replays them against today's
// workflows. With -record it also stores them as the replay tests' testdata.
func TestJobHistoryReplays(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	jobs := map[string]string{}
	if _, err := burla.RemoteParallelMap(ctx, square, []int{1, 2, 3}, opts(burla.OnStart(func(id string) { jobs["job_v2_identity_success"] = id }))...); err != nil {
		t.Fatal(err)
	}
	_, err := burla.RemoteParallelMap(ctx, failing, []int{1, 2, 3}, opts(burla.OnStart(func(id string) { jobs["job_v2_identity_user_error"] = id }))...)
	remoteError(t, err)
	for _, id := range jobs {
		if err := tc(dev).GetWorkflow(ctx, id, "").Get(ctx, nil); err != nil {
			t.Logf("job %s ended with: %v", id, err)
		}
	}
	// The cluster's own workflow (running) and a node's that ended (the cluster
	// replaces nodes after each job that needed replacements, and lost ones).
	jobs["cluster_running"] = names.ClusterWorkflowID(names.DefaultCluster)
	resp, err := tc(dev).ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Query: "WorkflowType='" + names.WorkflowNode + "' AND ExecutionStatus='Completed'"})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Executions) > 0 {
		jobs["node_completed"] = resp.Executions[0].Execution.WorkflowId
	} else if *record {
		t.Fatal("no completed NodeWorkflow to record; run with the other tests (-run '' )")
	}
	for name, id := range jobs {
		hist := history(t, ctx, dev.Cluster.Temporal(), id)
		r := worker.NewWorkflowReplayer()
		r.RegisterWorkflowWithOptions(workflows.Job, workflow.RegisterOptions{Name: names.WorkflowJob})
		r.RegisterWorkflowWithOptions(workflows.Cluster, workflow.RegisterOptions{Name: names.WorkflowCluster})
		r.RegisterWorkflowWithOptions(workflows.Node, workflow.RegisterOptions{Name: names.WorkflowNode})
		// Under the ID the workflow ran with: a job checks that it runs under its own.
		err := r.ReplayWorkflowHistoryWithOptions(nil, hist, worker.ReplayWorkflowHistoryOptions{OriginalExecution: workflow.Execution{ID: id, RunID: "replay"}})
		if err != nil {
			t.Errorf("%s: replay of %s: %v", name, id, err)
		}
		if *record {
			b, err := temporalproto.CustomJSONMarshalOptions{Indent: "  "}.Marshal(hist)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("..", "..", "workflows", "testdata", name+".json")
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("recorded %s", path)
		}
	}
}

func tc(d *clustertest.Dev) client.Client { return d.Cluster.Temporal() }

// history returns a workflow's history so far.
func history(t *testing.T, ctx context.Context, tc client.Client, id string) *historypb.History {
	t.Helper()
	var h historypb.History
	it := tc.GetWorkflowHistory(ctx, id, "", false, 0)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		h.Events = append(h.Events, e)
	}
	return &h
}
