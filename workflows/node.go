package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/burla-temporal/burla/activities"
	"github.com/burla-temporal/burla/names"
	"github.com/burla-temporal/burla/provider"
)

// NodeInput starts or continues a NodeWorkflow.
type NodeInput struct {
	Spec              provider.NodeSpec
	Provider          string
	ClusterWorkflowID string
	// RegisterTimeout is how long the node's agent has to register; zero means 2 minutes.
	RegisterTimeout time.Duration
	// Registered is set when continuing as new after the agent registered.
	Registered bool
}

// Node owns one node: it creates it with its provider, waits for its agent to
// register, watches its liveness, resets it between jobs, and deletes it. It tells
// its cluster each change with a NodeEvent signal.
func Node(ctx workflow.Context, in NodeInput) error {
	log := workflow.GetLogger(ctx)
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:           names.TaskQueueControl,
		StartToCloseTimeout: 5 * time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 5},
	})
	tell := func(event, reason string) {
		workflow.SignalExternalWorkflow(ctx, in.ClusterWorkflowID, "", names.SignalNodeEvent,
			NodeEvent{NodeID: in.Spec.ID, Event: event, Reason: reason})
	}
	remove := func(event, reason string) error {
		dctx, _ := workflow.NewDisconnectedContext(actx)
		err := workflow.ExecuteActivity(dctx, names.ActivityDeleteNode, activities.DeleteNodeInput{Provider: in.Provider, ID: in.Spec.ID}).Get(dctx, nil)
		if err != nil {
			log.Warn("could not delete node", "node", in.Spec.ID, "error", err)
		}
		tell(event, reason)
		return nil
	}
	deletes := workflow.GetSignalChannel(ctx, names.SignalDeleteNode)
	resets := workflow.GetSignalChannel(ctx, names.SignalResetNode)
	registered := workflow.GetSignalChannel(ctx, names.SignalRegistered)

	if !in.Registered {
		if err := workflow.ExecuteActivity(actx, names.ActivityCreateNode, activities.CreateNodeInput{Provider: in.Provider, Spec: in.Spec}).Get(ctx, nil); err != nil {
			return remove("failed", "create: "+err.Error())
		}
		timeout := in.RegisterTimeout
		if timeout <= 0 {
			timeout = 2 * time.Minute
		}
		tctx, cancelTimer := workflow.WithCancel(ctx)
		timer := workflow.NewTimer(tctx, timeout)
		outcome := ""
		sel := workflow.NewSelector(ctx)
		sel.AddReceive(registered, func(ch workflow.ReceiveChannel, _ bool) { ch.Receive(ctx, nil); outcome = "registered" })
		sel.AddReceive(deletes, func(ch workflow.ReceiveChannel, _ bool) { ch.Receive(ctx, nil); outcome = "delete" })
		sel.AddFuture(timer, func(workflow.Future) { outcome = "timeout" })
		sel.Select(ctx)
		cancelTimer()
		switch outcome {
		case "delete":
			return remove("deleted", "deleted before it registered")
		case "timeout":
			return remove("failed", "its agent did not register within "+timeout.String())
		}
		tell("ready", "")
	}

	// Watch the node until it is lost or deleted, resetting it between jobs.
	wctx, stopWatch := workflow.WithCancel(ctx)
	defer stopWatch()
	watch := workflow.ExecuteActivity(workflow.WithActivityOptions(wctx, workflow.ActivityOptions{
		TaskQueue:           names.TaskQueueControl,
		StartToCloseTimeout: 365 * 24 * time.Hour,
		HeartbeatTimeout:    30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second},
	}), names.ActivityWatchNode, activities.WatchNodeInput{ID: in.Spec.ID})
	for {
		outcome := ""
		sel := workflow.NewSelector(ctx)
		sel.AddFuture(watch, func(workflow.Future) { outcome = "lost" })
		sel.AddReceive(deletes, func(ch workflow.ReceiveChannel, _ bool) { ch.Receive(ctx, nil); outcome = "delete" })
		sel.AddReceive(resets, func(ch workflow.ReceiveChannel, _ bool) { ch.Receive(ctx, nil); outcome = "reset" })
		sel.AddReceive(registered, func(ch workflow.ReceiveChannel, _ bool) { ch.Receive(ctx, nil) }) // an agent restart
		sel.Select(ctx)
		switch outcome {
		case "lost":
			return remove("lost", "its agent stopped answering")
		case "delete":
			stopWatch()
			return remove("deleted", "")
		case "reset":
			rctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
				TaskQueue:              names.NodeTaskQueue(in.Spec.ID),
				StartToCloseTimeout:    time.Minute,
				ScheduleToStartTimeout: time.Minute,
				RetryPolicy:            &temporal.RetryPolicy{MaximumAttempts: 2},
			})
			if err := workflow.ExecuteActivity(rctx, names.ActivityResetNode).Get(ctx, nil); err != nil {
				stopWatch()
				return remove("lost", "reset failed: "+err.Error())
			}
			tell("ready", "")
		}
		if workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			stopWatch()
			next := in
			next.Registered = true
			return workflow.NewContinueAsNewError(ctx, names.WorkflowNode, next)
		}
	}
}
