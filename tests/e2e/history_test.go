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
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/burla-temporal/burla/names"
	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/workflows"
)

var record = flag.Bool("record", false, "write the recorded JobWorkflow histories into workflows/testdata")

// TestJobHistoryReplays runs jobs on the cluster, fetches their histories from the
// Temporal server, and replays them against today's JobWorkflow. With -record it
// also stores them as the replay tests' testdata.
func TestJobHistoryReplays(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	jobs := map[string]string{}
	if _, err := burla.RemoteParallelMap(ctx, square, []int{1, 2, 3}, opts(burla.OnStart(func(id string) { jobs["job_v1_cluster_success"] = id }))...); err != nil {
		t.Fatal(err)
	}
	_, err := burla.RemoteParallelMap(ctx, failing, []int{1, 2, 3}, opts(burla.OnStart(func(id string) { jobs["job_v1_cluster_user_error"] = id }))...)
	remoteError(t, err)
	for name, id := range jobs {
		hist := history(t, ctx, dev.Cluster.Temporal(), id)
		r := worker.NewWorkflowReplayer()
		r.RegisterWorkflowWithOptions(workflows.Job, workflow.RegisterOptions{Name: names.WorkflowJob})
		if err := r.ReplayWorkflowHistory(nil, hist); err != nil {
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

// history waits for a job's workflow to close and returns its whole history.
func history(t *testing.T, ctx context.Context, tc client.Client, id string) *historypb.History {
	t.Helper()
	if err := tc.GetWorkflow(ctx, id, "").Get(ctx, nil); err != nil {
		t.Logf("job %s ended with: %v", id, err)
	}
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
