package e2e

import (
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	sdkpb "go.temporal.io/api/sdk/v1"
	"go.temporal.io/sdk/converter"

	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/job"
	burla "github.com/burla-temporal/burla/sdk"
)

// A job's workflow shows in Temporal's UI and CLI what it runs (its static
// summary and details), where it is (its current details), and answers the
// progress query.
func TestJobInTemporalUI(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	var id string
	if _, err := burla.RemoteParallelMap(ctx, double, []int{1, 2, 3}, opts(burla.Retries(1), burla.OnStart(func(s string) { id = s }))...); err != nil {
		t.Fatal(err)
	}
	tc := dev.Cluster.Temporal()
	// The results come from the store; the workflow ends a moment later.
	if err := tc.GetWorkflow(ctx, id, "").Get(ctx, nil); err != nil {
		t.Fatal(err)
	}
	d, err := tc.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		t.Fatal(err)
	}
	md := d.GetExecutionConfig().GetUserMetadata()
	var summary, details string
	dc := converter.GetDefaultDataConverter()
	if err := dc.FromPayload(md.GetSummary(), &summary); err != nil || summary != "double over 3 inputs" {
		t.Errorf("summary %q, %v; want %q", summary, err, "double over 3 inputs")
	}
	if err := dc.FromPayload(md.GetDetails(), &details); err != nil || !strings.Contains(details, "**function** double") || !strings.Contains(details, "**retries** 1") {
		t.Errorf("details %q, %v; want the function and its retries", details, err)
	}
	v, err := tc.QueryWorkflow(ctx, id, "", control.QueryProgress)
	if err != nil {
		t.Fatal(err)
	}
	var p control.JobProgress
	if err := v.Get(&p); err != nil || p.State != job.StateSucceeded || p.Used == 0 {
		t.Errorf("progress %+v, %v; want Succeeded on some nodes", p, err)
	}
	if v, err = tc.QueryWorkflow(ctx, id, "", "__temporal_workflow_metadata"); err != nil {
		t.Fatal(err)
	}
	var wm sdkpb.WorkflowMetadata
	if err := v.Get(&wm); err != nil || !strings.HasPrefix(wm.GetCurrentDetails(), "Succeeded after running on ") {
		t.Errorf("current details %q, %v", wm.GetCurrentDetails(), err)
	}

	// Its activities say what each does.
	var summaries []string
	for it := tc.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT); it.HasNext(); {
		e, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		if e.GetEventType() == enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED {
			var s string
			if err := dc.FromPayload(e.GetUserMetadata().GetSummary(), &s); err != nil {
				t.Fatal(err)
			}
			summaries = append(summaries, s)
		}
	}
	if all := strings.Join(summaries, " / "); !strings.Contains(all, "run calls on node ") || !strings.Contains(all, "record the job Succeeded and delete its inputs") {
		t.Errorf("activity summaries %q; want the nodes' runs and the finish", summaries)
	}

	// The cluster's and its nodes' workflows say where they are too.
	current := func(id string) string {
		t.Helper()
		v, err := tc.QueryWorkflow(ctx, id, "", "__temporal_workflow_metadata")
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		var wm sdkpb.WorkflowMetadata
		if err := v.Get(&wm); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		return wm.GetCurrentDetails()
	}
	if d := current(control.ClusterWorkflowID(control.DefaultCluster)); !strings.Contains(d, "**standby** 2 nodes × 2 CPUs (local)") || !strings.Contains(d, "**nodes** 2") {
		t.Errorf("the cluster's current details: %q", d)
	}
	st, err := control.NewClient(tc).Status(ctx, control.DefaultCluster)
	if err != nil {
		t.Fatal(err)
	}
	for node := range st.Nodes {
		if d := current(control.NodeWorkflowID(node)); !strings.HasPrefix(d, "local node "+node+" of 2 CPUs: ") {
			t.Errorf("node %s's current details: %q", node, d)
		}
	}
}
