// Package workflows holds the control plane's workflows. Everything here is
// deterministic workflow code: no I/O, no wall clock, no goroutines or map-order
// dependence. Changes to a workflow's logic are guarded with workflow.GetVersion and
// proven against the recorded histories in testdata/ by the replay tests.
package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/burla-temporal/burla/activities"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/names"
)

// JobInput is the JobWorkflow's argument.
type JobInput struct {
	Spec job.Spec
}

// JobOutput is what a JobWorkflow that succeeded reports.
type JobOutput struct {
	State job.State
	Nodes int
}

var searchJobState = temporal.NewSearchAttributeKeyKeyword(names.SearchJobState)

// nodeHeartbeat is how long a node's activity may stay silent before Temporal
// declares its attempt lost.
const nodeHeartbeat = 10 * time.Second

// Job owns one map job: it places the job on nodes, runs one activity per node on
// that node's task queue, watches the client's heartbeat, and ends when any node sees
// the job's queue drained (success), a call fails (fail fast), every node is lost,
// the client goes away, or the workflow is cancelled. Inputs and results never pass
// through it; it carries the spec alone.
func Job(ctx workflow.Context, in JobInput) (JobOutput, error) {
	spec := in.Spec
	log := workflow.GetLogger(ctx)
	if err := spec.Validate(); err != nil {
		return JobOutput{}, temporal.NewNonRetryableApplicationError(err.Error(), "BadSpec", nil)
	}
	setState(ctx, job.StatePlacing)

	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 200 * time.Millisecond, MaximumAttempts: 5},
	})
	var placed activities.PlaceOutput
	if err := workflow.ExecuteLocalActivity(lctx, names.ActivityPlaceNodes, activities.PlaceInput{Spec: spec}).Get(ctx, &placed); err != nil {
		return end(ctx, spec, job.StateFailed, JobOutput{}, unwrapActivity(err))
	}
	setState(ctx, job.StateRunning)

	runCtx, stopRun := workflow.WithCancel(ctx)
	defer stopRun()
	sel := workflow.NewSelector(ctx)
	var (
		outcome   job.State
		outErr    error
		nodesLeft = len(placed.Nodes)
	)
	for _, n := range placed.Nodes {
		actx := workflow.WithActivityOptions(runCtx, workflow.ActivityOptions{
			TaskQueue:           n.TaskQueue,
			StartToCloseTimeout: 7 * 24 * time.Hour,
			HeartbeatTimeout:    nodeHeartbeat,
			RetryPolicy: &temporal.RetryPolicy{
				InitialInterval:        time.Second,
				MaximumAttempts:        3,
				NonRetryableErrorTypes: []string{names.ErrUserError, names.ErrUnknownFunction, names.ErrBadBinary},
			},
		})
		f := workflow.ExecuteActivity(actx, names.ActivityRunJobOnNode, activities.RunInput{Spec: spec, Workers: n.Workers})
		node := n.NodeID
		sel.AddFuture(f, func(f workflow.Future) {
			var out activities.RunOutput
			err := f.Get(ctx, &out)
			switch {
			case outcome != "":
				// Decided already; this is a node stopping.
			case err == nil:
				outcome = job.StateSucceeded
			case temporal.IsCanceledError(err):
			case isType(err, names.ErrUserError, names.ErrUnknownFunction, names.ErrBadBinary):
				outcome, outErr = job.StateFailed, unwrapActivity(err)
			default:
				log.Warn("node lost its share of the job", "node", node, "error", err)
				if nodesLeft--; nodesLeft == 0 {
					outcome = job.StateFailed
					outErr = temporal.NewNonRetryableApplicationError(
						fmt.Sprintf("every node working on the job was lost; the last error: %v", err), names.ErrNodesLost, nil)
				}
			}
		})
	}
	if !spec.Detached {
		wctx := workflow.WithActivityOptions(runCtx, workflow.ActivityOptions{
			TaskQueue:           names.TaskQueueControl,
			StartToCloseTimeout: 7 * 24 * time.Hour,
			HeartbeatTimeout:    10 * time.Second,
			RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, NonRetryableErrorTypes: []string{names.ErrClientGone}},
		})
		f := workflow.ExecuteActivity(wctx, names.ActivityWatchClient, activities.WatchInput{JobID: spec.ID, Timeout: spec.ClientTimeout})
		sel.AddFuture(f, func(f workflow.Future) {
			if err := f.Get(ctx, nil); outcome == "" && isType(err, names.ErrClientGone) {
				outcome, outErr = job.StateCancelled, unwrapActivity(err)
			}
		})
	}
	cancelled := false
	sel.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) { cancelled = true })
	for outcome == "" && !cancelled {
		sel.Select(ctx)
	}
	stopRun()
	if cancelled {
		outcome, outErr = job.StateCancelled, ctx.Err()
	}
	return end(ctx, spec, outcome, JobOutput{State: outcome, Nodes: len(placed.Nodes)}, outErr)
}

// end cleans up after a job, records its final state and returns its outcome. It
// runs on a disconnected context so that a cancelled job is cleaned up too.
func end(ctx workflow.Context, spec job.Spec, state job.State, out JobOutput, err error) (JobOutput, error) {
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	dctx = workflow.WithActivityOptions(dctx, workflow.ActivityOptions{
		TaskQueue:           names.TaskQueueControl,
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 5},
	})
	if ferr := workflow.ExecuteActivity(dctx, names.ActivityFinishJob, activities.FinishInput{JobID: spec.ID}).Get(dctx, nil); ferr != nil {
		workflow.GetLogger(ctx).Warn("could not clean up job", "job", spec.ID, "error", ferr)
	}
	setState(dctx, state)
	return out, err
}

func setState(ctx workflow.Context, s job.State) {
	if err := workflow.UpsertTypedSearchAttributes(ctx, searchJobState.ValueSet(string(s))); err != nil {
		workflow.GetLogger(ctx).Warn("could not record job state", "state", s, "error", err)
	}
}

// isType reports whether err is, or wraps, an application error of one of the types.
func isType(err error, types ...string) bool {
	var app *temporal.ApplicationError
	if !errors.As(err, &app) {
		return false
	}
	for _, t := range types {
		if app.Type() == t {
			return true
		}
	}
	return false
}

// unwrapActivity returns the application error inside an activity error, so that the
// job fails with the cause (its type and message) rather than its wrapper.
func unwrapActivity(err error) error {
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		return app
	}
	return err
}
