// Package workers wires workflows and activities to Temporal task queues: which
// worker runs what, under which names.
package workers

import (
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/burla-temporal/burla/activities"
	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/provider"
	"github.com/burla-temporal/burla/workflows"
)

// Control returns the control plane's workers: the job, cluster and node
// workflows and the activities that touch the store and the node providers on
// control.TaskQueueControl, and the long-running watches on control.TaskQueueWatch.
func Control(c client.Client, a *activities.Control, n *activities.Nodes, e *activities.Env) *ControlPlane {
	w := worker.New(c, control.TaskQueueControl, worker.Options{
		// Status queries are workflow tasks too: with the default two pollers, a
		// client polling the cluster's status delays the next job's first task.
		MaxConcurrentWorkflowTaskPollers: 8,
		MaxConcurrentActivityTaskPollers: 8,
	})
	RegisterControl(w, a, n, e)
	watch := worker.New(c, control.TaskQueueWatch, worker.Options{
		// A watch is a goroutine that looks at a record once a second: a node
		// each, an attached job each. Their slots are not the control queue's.
		MaxConcurrentActivityExecutionSize: WatchSlots,
		MaxConcurrentActivityTaskPollers:   4,
	})
	RegisterWatch(watch, a, n)
	return &ControlPlane{workers: []worker.Worker{w, watch}}
}

// WatchSlots is how many watches one control plane runs at once: nodes and
// attached jobs together.
const WatchSlots = 100_000

// RegisterWatch registers the watch activities on r.
func RegisterWatch(r Registry, a *activities.Control, n *activities.Nodes) {
	r.RegisterActivityWithOptions(a.WatchClient, activity.RegisterOptions{Name: control.ActivityWatchClient})
	r.RegisterActivityWithOptions(n.WatchNode, activity.RegisterOptions{Name: control.ActivityWatchNode})
}

// ControlPlane is the control plane's workers, started and stopped together.
type ControlPlane struct {
	workers []worker.Worker
}

// Start starts every worker, or none.
func (p *ControlPlane) Start() error {
	for i, w := range p.workers {
		if err := w.Start(); err != nil {
			for _, started := range p.workers[:i] {
				started.Stop()
			}
			return err
		}
	}
	return nil
}

// Stop stops every worker.
func (p *ControlPlane) Stop() {
	for _, w := range p.workers {
		w.Stop()
	}
}

// Run starts the workers and stops them when interrupt delivers.
func (p *ControlPlane) Run(interrupt <-chan interface{}) error {
	if err := p.Start(); err != nil {
		return err
	}
	<-interrupt
	p.Stop()
	return nil
}

// Registry is what both a worker and the SDK's test environment can register on.
type Registry interface {
	workflows.Registry
	RegisterActivityWithOptions(a any, options activity.RegisterOptions)
}

// RegisterControl registers the control plane's workflows and activities on r.
func RegisterControl(r Registry, a *activities.Control, n *activities.Nodes, e *activities.Env) {
	workflows.Register(r, provider.Declared())
	r.RegisterActivityWithOptions(e.InspectBinary, activity.RegisterOptions{Name: control.ActivityInspectBin})
	r.RegisterActivityWithOptions(e.BuildEnvImage, activity.RegisterOptions{Name: control.ActivityBuildEnvImage})
	r.RegisterActivityWithOptions(a.PlaceNodes, activity.RegisterOptions{Name: control.ActivityPlaceNodes})
	r.RegisterActivityWithOptions(a.ReserveNodes, activity.RegisterOptions{Name: control.ActivityReserveNodes})
	// The watches run on control.TaskQueueWatch (RegisterWatch); workflows from
	// before it scheduled them here, and theirs still run here.
	r.RegisterActivityWithOptions(a.WatchClient, activity.RegisterOptions{Name: control.ActivityWatchClient})
	r.RegisterActivityWithOptions(a.FinishJob, activity.RegisterOptions{Name: control.ActivityFinishJob})
	r.RegisterActivityWithOptions(a.ClosedJobs, activity.RegisterOptions{Name: control.ActivityClosedJobs})
	r.RegisterActivityWithOptions(n.CreateNode, activity.RegisterOptions{Name: control.ActivityCreateNode})
	r.RegisterActivityWithOptions(n.DeleteNode, activity.RegisterOptions{Name: control.ActivityDeleteNode})
	r.RegisterActivityWithOptions(n.WatchNode, activity.RegisterOptions{Name: control.ActivityWatchNode})
}

// Node returns a node agent's worker: it runs one activity at a time, because a node
// serves one job at a time and is reset between jobs.
func Node(c client.Client, nodeID string, a *activities.Node) worker.Worker {
	w := worker.New(c, control.NodeTaskQueue(nodeID), worker.Options{
		MaxConcurrentActivityExecutionSize: 1,
	})
	w.RegisterActivityWithOptions(a.RunJobOnNode, activity.RegisterOptions{Name: control.ActivityRunJobOnNode})
	w.RegisterActivityWithOptions(a.ResetNode, activity.RegisterOptions{Name: control.ActivityResetNode})
	return w
}
