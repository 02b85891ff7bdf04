package activities_test

import (
	"context"
	"strings"
	"testing"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"

	"github.com/burla-temporal/burla/activities"
	"github.com/burla-temporal/burla/names"
)

// noCluster is a Temporal where the cluster's workflow is not running.
type noCluster struct{ updates int }

func (n *noCluster) UpdateWorkflow(context.Context, client.UpdateWorkflowOptions) (client.WorkflowUpdateHandle, error) {
	n.updates++
	return nil, serviceerror.NewNotFound("workflow not found for ID: burla-cluster-default")
}

func (n *noCluster) DescribeWorkflowExecution(context.Context, string, string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	return nil, serviceerror.NewNotFound("workflow not found")
}

// A job on a cluster that is not running fails at once, saying how to start it,
// rather than retrying its reserve for as long as a cluster may take to continue
// as new.
func TestReserveOnAClusterNotRunning(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	tc := &noCluster{}
	env.RegisterActivity(&activities.Control{Temporal: tc})
	_, err := env.ExecuteActivity(names.ActivityReserveNodes, activities.ReserveRequest{Cluster: "default", JobID: "j-1", Slots: 1, FuncCPU: 1})
	if err == nil || !strings.Contains(err.Error(), "burla cluster up") || !strings.Contains(err.Error(), "retryable: false") {
		t.Fatalf("ReserveNodes = %v; want a non-retryable error saying to start the cluster", err)
	}
	if tc.updates != 1 {
		t.Errorf("%d updates sent; want 1", tc.updates)
	}
}
