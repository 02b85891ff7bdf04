package status

import (
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/sdk/converter"

	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/store"
)

func TestFilterQuery(t *testing.T) {
	for _, tc := range []struct {
		f    Filter
		want string
	}{
		{Filter{}, "WorkflowType = 'JobWorkflow'"},
		{Filter{State: job.StateRunning}, "WorkflowType = 'JobWorkflow' AND BurlaJobState = 'Running' AND ExecutionStatus = 'Running'"},
		{Filter{State: job.StateFailed, Function: "it's"}, "WorkflowType = 'JobWorkflow' AND BurlaJobState = 'Failed' AND BurlaFunction = 'it''s'"},
		{Filter{Tenant: "acme"}, "WorkflowType = 'JobWorkflow' AND BurlaTenant = 'acme'"},
	} {
		if got := tc.f.Query(); got != tc.want {
			t.Errorf("%+v.Query() = %q, want %q", tc.f, got, tc.want)
		}
	}
}

func info(state string, status enumspb.WorkflowExecutionStatus) *workflowpb.WorkflowExecutionInfo {
	fields := map[string]*commonpb.Payload{}
	if state != "" {
		p, _ := converter.GetDefaultDataConverter().ToPayload(state)
		fields[control.SearchJobState] = p
	}
	return &workflowpb.WorkflowExecutionInfo{Status: status, SearchAttributes: &commonpb.SearchAttributes{IndexedFields: fields}}
}

func TestStateOf(t *testing.T) {
	for _, tc := range []struct {
		recorded string
		status   enumspb.WorkflowExecutionStatus
		want     job.State
	}{
		{"Running", enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, job.StateRunning},
		{"", enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, job.StatePlacing},
		{"Failed", enumspb.WORKFLOW_EXECUTION_STATUS_FAILED, job.StateFailed},
		{"Cancelled", enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED, job.StateCancelled},
		// Closed without recording a final state:
		{"Running", enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED, job.StateFailed},
		{"Running", enumspb.WORKFLOW_EXECUTION_STATUS_TIMED_OUT, job.StateFailed},
		{"Placing", enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED, job.StateCancelled},
		{"Running", enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED, job.StateSucceeded},
	} {
		if got := StateOf(info(tc.recorded, tc.status)); got != tc.want {
			t.Errorf("recorded %q, status %v: state %q, want %q", tc.recorded, tc.status, got, tc.want)
		}
	}
}

func TestProgressOf(t *testing.T) {
	p := ProgressOf(store.Progress{Sealed: true, Chunks: 10, Waiting: 4, InFlight: 2})
	if p.Done != 4 || p.Fraction() != 0.4 {
		t.Errorf("progress %+v, fraction %v; want 4 done, 0.4", p, p.Fraction())
	}
	// Before the queue is sealed the total is unknown, and so is what is done.
	p = ProgressOf(store.Progress{Waiting: 4, InFlight: 2})
	if p.Done != 0 || p.Fraction() != 0 {
		t.Errorf("unsealed progress %+v, fraction %v; want 0 and 0", p, p.Fraction())
	}
	if (*Progress)(nil).Fraction() != 0 {
		t.Error("nil progress has a fraction")
	}
}

func TestNodesJoinsTheClusterWithTheAgentsRecords(t *testing.T) {
	cs := control.ClusterState{Nodes: map[string]*control.ClusterNode{
		"c-2": {ID: "c-2", State: control.NodeAssigned, Job: "j-1", CPUs: 2},
		"c-1": {ID: "c-1", State: control.NodeProvisioning, CPUs: 2},
	}}
	records := []store.Node{
		{ID: "c-2", CPUs: 2, Job: "j-1", Warm: 2, Busy: 1, Metrics: "http://x/metrics"},
		{ID: "hand-1", CPUs: 4, Warm: 4}, // started by hand: the cluster does not know it
	}
	got := Nodes(cs, records)
	want := []Node{
		{ID: "c-1", State: control.NodeProvisioning, CPUs: 2},
		{ID: "c-2", State: control.NodeAssigned, Job: "j-1", CPUs: 2, Live: true, Warm: 2, Busy: 1, Metrics: "http://x/metrics"},
		{ID: "hand-1", CPUs: 4, Live: true, Warm: 4},
	}
	if len(got) != len(want) {
		t.Fatalf("nodes %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("node %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}
