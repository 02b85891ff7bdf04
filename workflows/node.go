package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/burla-temporal/burla/control"
)

// Node owns one node: it creates it with its provider, waits for its agent to
// register, watches its liveness, resets it between jobs, and deletes it. It tells
// its cluster each change with a control.NodeEvent signal.
func Node(ctx workflow.Context, in control.NodeInput) error {
	log := workflow.GetLogger(ctx)
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:           control.TaskQueueControl,
		StartToCloseTimeout: 5 * time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 5},
	})
	tell := func(event, reason string) workflow.Future {
		return workflow.SignalExternalWorkflow(ctx, in.ClusterWorkflowID, "", control.SignalNodeEvent,
			control.NodeEvent{NodeID: in.Spec.ID, Event: event, Reason: reason})
	}
	remove := func(event, reason string) error {
		dctx, _ := workflow.NewDisconnectedContext(actx)
		err := workflow.ExecuteActivity(dctx, control.ActivityDeleteNode, control.DeleteNodeInput{Provider: in.Provider, ID: in.Spec.ID, Spec: in.Spec}).Get(dctx, nil)
		if err != nil {
			log.Warn("could not delete node", "node", in.Spec.ID, "error", err)
		}
		// The server drops a signal from a workflow that has closed, so the last
		// word must be delivered before the workflow ends.
		if err := tell(event, reason).Get(ctx, nil); err != nil {
			log.Warn("could not tell the cluster", "node", in.Spec.ID, "event", event, "error", err)
		}
		return nil
	}
	// What Temporal's UI shows as the workflow's current details.
	say := func(what string) {
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("%s node %s of %d CPUs: %s", in.Provider, in.Spec.ID, in.Spec.CPUs, what))
	}
	deletes := workflow.GetSignalChannel(ctx, control.SignalDeleteNode)
	resets := workflow.GetSignalChannel(ctx, control.SignalResetNode)
	registered := workflow.GetSignalChannel(ctx, control.SignalRegistered)
	var told workflow.Future // the last event told to the cluster

	if !in.Registered {
		say("creating it")
		if err := workflow.ExecuteActivity(actx, control.ActivityCreateNode, control.CreateNodeInput{Provider: in.Provider, Spec: in.Spec}).Get(ctx, nil); err != nil {
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
		say("waiting for its agent to register")
		sel.Select(ctx)
		cancelTimer()
		switch outcome {
		case "delete":
			return remove("deleted", "deleted before it registered")
		case "timeout":
			return remove("failed", "its agent did not register within "+timeout.String())
		}
		told = tell("ready", "")
	}

	// Watch the node until it is lost or deleted, resetting it between jobs.
	wctx, stopWatch := workflow.WithCancel(ctx)
	defer stopWatch()
	watch := workflow.ExecuteActivity(workflow.WithActivityOptions(wctx, workflow.ActivityOptions{
		TaskQueue:           watchQueue(ctx),
		StartToCloseTimeout: 365 * 24 * time.Hour,
		HeartbeatTimeout:    30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second},
	}), control.ActivityWatchNode, control.WatchNodeInput{ID: in.Spec.ID})
	var reset workflow.Future // the reset in progress, if any
	for {
		outcome := ""
		sel := workflow.NewSelector(ctx)
		sel.AddFuture(watch, func(workflow.Future) { outcome = "lost" })
		sel.AddReceive(deletes, func(ch workflow.ReceiveChannel, _ bool) { ch.Receive(ctx, nil); outcome = "delete" })
		sel.AddReceive(registered, func(ch workflow.ReceiveChannel, _ bool) { ch.Receive(ctx, nil) }) // an agent restart
		if reset == nil {
			sel.AddReceive(resets, func(ch workflow.ReceiveChannel, _ bool) { ch.Receive(ctx, nil); outcome = "reset" })
		} else {
			sel.AddFuture(reset, func(f workflow.Future) {
				outcome = "reset-done"
				if err := f.Get(ctx, nil); err != nil {
					outcome = "reset-failed"
				}
			})
		}
		if reset == nil {
			say("watching its agent")
		} else {
			say("resetting its workers")
		}
		sel.Select(ctx)
		switch outcome {
		case "lost":
			// Version 1 of "node-fault" says what the agent reported, if it
			// asked to be replaced.
			if workflow.GetVersion(ctx, "node-fault", workflow.DefaultVersion, 1) >= 1 {
				var res control.WatchNodeResult
				if err := watch.Get(ctx, &res); err == nil && res.Fault != "" {
					return remove("lost", "its agent reported a fault: "+res.Fault)
				}
			}
			return remove("lost", "its agent stopped answering")
		case "delete":
			stopWatch()
			return remove("deleted", "")
		case "reset":
			// The reset runs on the node itself; a node that died meanwhile is
			// caught by the watch, or by the reset never starting.
			reset = workflow.ExecuteActivity(workflow.WithActivityOptions(wctx, workflow.ActivityOptions{
				TaskQueue:              control.NodeTaskQueue(in.Spec.ID),
				StartToCloseTimeout:    time.Minute,
				ScheduleToStartTimeout: 15 * time.Second,
				RetryPolicy:            &temporal.RetryPolicy{MaximumAttempts: 2},
			}), control.ActivityResetNode)
			continue
		case "reset-failed":
			stopWatch()
			return remove("lost", "its reset failed")
		case "reset-done":
			reset = nil
			told = tell("ready", "")
		}
		if workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			// Version 1 of "quiet-continue" continues as new only with no reset
			// under way and no signal unread, and once the cluster has its last
			// event: the server drops what a closed run sent, and a run's unread
			// signals and running activities end with it.
			if workflow.GetVersion(ctx, "quiet-continue", workflow.DefaultVersion, 1) >= 1 {
				if told != nil {
					if err := told.Get(ctx, nil); err != nil {
						log.Warn("could not tell the cluster", "node", in.Spec.ID, "error", err)
					}
				}
				if reset != nil || deletes.Len() > 0 || resets.Len() > 0 {
					continue
				}
			}
			stopWatch()
			next := in
			next.Registered = true
			return workflow.NewContinueAsNewError(ctx, control.WorkflowNode, next)
		}
	}
}
