package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/provider"
)

// Registry is what a worker, a replayer and the SDK's test environment register
// workflows on.
type Registry interface {
	RegisterWorkflowWithOptions(w any, options workflow.RegisterOptions)
}

// Register registers every workflow of the control plane on r under its name in
// package control, the cluster's with the capabilities of the providers it may
// name (provider.Declared for a control plane). The control plane's worker and
// every replay of a recorded history register them here, alike.
func Register(r Registry, providers map[string]provider.Capabilities) {
	r.RegisterWorkflowWithOptions(Job, workflow.RegisterOptions{Name: control.WorkflowJob})
	r.RegisterWorkflowWithOptions(Clusters{Providers: providers}.Cluster, workflow.RegisterOptions{Name: control.WorkflowCluster})
	r.RegisterWorkflowWithOptions(Node, workflow.RegisterOptions{Name: control.WorkflowNode})
	r.RegisterWorkflowWithOptions(EnvBuild, workflow.RegisterOptions{Name: control.WorkflowEnvBuild})
}
