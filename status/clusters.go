package status

import (
	"context"
	"fmt"
	"strings"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/burla-temporal/burla/control"
)

// RunningClusters names the clusters whose ClusterWorkflow is running.
func RunningClusters(ctx context.Context, tc client.Client) ([]string, error) {
	query := fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Running'", control.WorkflowCluster)
	resp, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query})
	if err != nil {
		return nil, fmt.Errorf("list clusters: %w", err)
	}
	var out []string
	for _, ex := range resp.GetExecutions() {
		if name, ok := strings.CutPrefix(ex.GetExecution().GetWorkflowId(), control.ClusterWorkflowID("")); ok {
			out = append(out, name)
		}
	}
	return out, nil
}
