// Package workers wires workflows and activities to Temporal task queues: which
// worker runs what, under which names.
package workers

import (
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/burla-temporal/burla/activities"
	"github.com/burla-temporal/burla/names"
	"github.com/burla-temporal/burla/workflows"
)

// Control returns the control-plane worker: the job workflow and the activities that
// touch only the store.
func Control(c client.Client, a *activities.Control) worker.Worker {
	w := worker.New(c, names.TaskQueueControl, worker.Options{})
	RegisterControl(w, a)
	return w
}

// Registry is what both a worker and the SDK's test environment can register on.
type Registry interface {
	RegisterWorkflowWithOptions(w any, options workflow.RegisterOptions)
	RegisterActivityWithOptions(a any, options activity.RegisterOptions)
}

// RegisterControl registers the control plane's workflows and activities on r.
func RegisterControl(r Registry, a *activities.Control) {
	r.RegisterWorkflowWithOptions(workflows.Job, workflow.RegisterOptions{Name: names.WorkflowJob})
	r.RegisterActivityWithOptions(a.PlaceNodes, activity.RegisterOptions{Name: names.ActivityPlaceNodes})
	r.RegisterActivityWithOptions(a.WatchClient, activity.RegisterOptions{Name: names.ActivityWatchClient})
	r.RegisterActivityWithOptions(a.FinishJob, activity.RegisterOptions{Name: names.ActivityFinishJob})
}

// Node returns a node agent's worker: it runs one job's share at a time, because a
// node serves one job at a time.
func Node(c client.Client, nodeID string, a *activities.Node) worker.Worker {
	w := worker.New(c, names.NodeTaskQueue(nodeID), worker.Options{
		MaxConcurrentActivityExecutionSize: 1,
	})
	w.RegisterActivityWithOptions(a.RunJobOnNode, activity.RegisterOptions{Name: names.ActivityRunJobOnNode})
	return w
}
