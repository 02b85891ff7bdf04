package workflows

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/job"
)

var searchJobState = temporal.NewSearchAttributeKeyKeyword(control.SearchJobState)

// nodeHeartbeat is how long a node's activity may stay silent before Temporal
// declares its attempt lost.
const nodeHeartbeat = 10 * time.Second

// Job owns one map job: it places the job on nodes, runs one activity per node on
// that node's task queue, watches the client's heartbeat, and ends when any node sees
// the job's queue drained (success), a call fails (fail fast), every node is lost,
// the client goes away, or the workflow is cancelled. Inputs and results never pass
// through it; it carries the spec alone.
func Job(ctx workflow.Context, in control.JobInput) (control.JobOutput, error) {
	spec := in.Spec
	log := workflow.GetLogger(ctx)
	if err := spec.CheckVersion(); err != nil {
		// A spec from before versions never fails this: recorded histories replay.
		return control.JobOutput{}, control.ErrVersionMismatch.New(err.Error(), nil)
	}
	if err := spec.Validate(); err != nil {
		return control.JobOutput{}, control.ErrBadSpec.New(err.Error(), nil)
	}
	// What the job's progress query and Temporal's UI show: where it is, on how
	// many nodes.
	prog := control.JobProgress{State: job.StatePlacing}
	if err := workflow.SetQueryHandler(ctx, control.QueryProgress, func() (control.JobProgress, error) { return prog, nil }); err != nil {
		return control.JobOutput{}, err
	}
	workflow.SetCurrentDetails(ctx, prog.Details())
	has := jobChanges(ctx)
	// A job is the job its workflow ID names, which the server checked against its
	// caller's tenant; the spec only describes it. Jobs recorded before this check
	// replay without it (and with the replayer's workflow ID).
	if has.change("job-identity") {
		if self := workflow.GetInfo(ctx).WorkflowExecution.ID; spec.ID != self {
			return control.JobOutput{}, control.ErrNotYours.New(
				fmt.Sprintf("job %s: its spec names job %q; a job runs only under its own ID", self, spec.ID), nil)
		}
	}
	if !has.all {
		// A job started by control.Client is placing from its start.
		setState(ctx, job.StatePlacing)
	}

	// Version 1 asks the job's ClusterWorkflow for nodes; the default version (jobs
	// recorded before clusters existed) placed them from the node registry.
	placement := workflow.DefaultVersion
	if has.change("cluster-reserve") {
		placement = 1
	}
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 200 * time.Millisecond, MaximumAttempts: 5},
	})
	var placed control.PlaceOutput
	var err error
	if placement == workflow.DefaultVersion {
		err = workflow.ExecuteLocalActivity(lctx, control.ActivityPlaceNodes, control.PlaceInput{Spec: spec}).Get(ctx, &placed)
	} else {
		req := reserveRequest(spec)
		lctx = workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
			Summary: fmt.Sprintf("reserve nodes for %d calls at once", req.Slots),
			// A job that needs nodes the cluster must first start waits here.
			StartToCloseTimeout: 6 * time.Minute,
			// A cluster continuing as new asks for the reserve again (ClusterContinuing),
			// as often as it continues while the job waits: tries are not counted, but
			// bounded in time.
			ScheduleToCloseTimeout: 30 * time.Minute,
			RetryPolicy: &temporal.RetryPolicy{InitialInterval: 200 * time.Millisecond, MaximumInterval: time.Second,
				NonRetryableErrorTypes: control.NonRetryable(control.ErrNoNodes, control.ErrShuttingDown, control.ErrNoCompatibleNodes,
					control.ErrAllNodesBusy, control.ErrNodesFailedToBoot, control.ErrTenantLimit)},
		})
		var resp control.ReserveResponse
		// Version 1 of "reserve-or-signal" starts on nodes the cluster hands the
		// job (nodes-added) while its reserve waits to ask again (StillQueued):
		// they are the job's, and would stand idle until its next request.
		if has.change("reserve-or-signal") {
			rctx, stopReserve := workflow.WithCancel(lctx)
			f := workflow.ExecuteLocalActivity(rctx, control.ActivityReserveNodes, req)
			added := workflow.GetSignalChannel(ctx, control.SignalNodesAdded)
			wait := workflow.NewSelector(ctx)
			wait.AddFuture(f, func(workflow.Future) {})
			wait.AddReceive(added, func(workflow.ReceiveChannel, bool) {
				// Left in the channel: the loop below runs the job on them.
			})
			wait.Select(ctx)
			if f.IsReady() {
				err = f.Get(ctx, &resp)
			}
			stopReserve()
		} else {
			err = workflow.ExecuteLocalActivity(lctx, control.ActivityReserveNodes, req).Get(ctx, &resp)
		}
		placed.Nodes = resp.Nodes
	}
	if err != nil {
		prog.State = job.StateFailed
		workflow.SetCurrentDetails(ctx, prog.Details())
		return end(ctx, spec, placement, job.StateFailed, control.JobOutput{}, unwrapActivity(err))
	}
	setState(ctx, job.StateRunning)
	prog.State = job.StateRunning

	runCtx, stopRun := workflow.WithCancel(ctx)
	defer stopRun()
	sel := workflow.NewSelector(ctx)
	var (
		outcome   job.State
		outErr    error
		nodesLeft = len(placed.Nodes) // nodes not yet lost
		running   = 0                 // node activities not yet ended
		used      = 0                 // nodes the job has run on
		stops     = map[string]workflow.CancelFunc{}
	)
	runOn := func(n control.Assignment) {
		nctx := runCtx
		if placement != workflow.DefaultVersion {
			// Each node's activity can be stopped alone (its node is lost). Jobs of the
			// default version cancelled all at once, in this order, and must still.
			var stop workflow.CancelFunc
			nctx, stop = workflow.WithCancel(runCtx)
			stops[n.NodeID] = stop
		}
		running++
		used++
		actx := workflow.WithActivityOptions(nctx, workflow.ActivityOptions{
			Summary:             fmt.Sprintf("run calls on node %s, %d at once", n.NodeID, n.Workers),
			TaskQueue:           n.TaskQueue,
			StartToCloseTimeout: 7 * 24 * time.Hour,
			HeartbeatTimeout:    nodeHeartbeat,
			RetryPolicy: &temporal.RetryPolicy{
				InitialInterval:        time.Second,
				MaximumAttempts:        3,
				NonRetryableErrorTypes: control.NonRetryable(control.ErrUserError, control.ErrUnknownFunction, control.ErrBadBinary),
			},
		})
		f := workflow.ExecuteActivity(actx, control.ActivityRunJobOnNode, control.RunInput{Spec: spec, Workers: n.Workers})
		node := n.NodeID
		sel.AddFuture(f, func(f workflow.Future) {
			running--
			var out control.RunOutput
			err := f.Get(ctx, &out)
			switch {
			case outcome != "":
				// Decided already; this is a node stopping.
			case err == nil:
				outcome = job.StateSucceeded
			case temporal.IsCanceledError(err):
			case isType(err, control.ErrUserError, control.ErrUnknownFunction, control.ErrBadBinary):
				outcome, outErr = job.StateFailed, unwrapActivity(err)
			case isType(err, control.ErrChunkFailed) && has.change("chunk-failed"):
				// A chunk failed on the cluster's side on its last delivery: it
				// would fail on any node. (Before version 1 "chunk-failed", the
				// node was counted lost.)
				outcome, outErr = job.StateFailed, unwrapActivity(err)
			default:
				prog.Lost++
				log.Warn("node lost its share of the job", "node", node, "error", err)
				if nodesLeft--; nodesLeft == 0 && placement == workflow.DefaultVersion {
					outcome = job.StateFailed
					outErr = control.ErrNodesLost.New(
						fmt.Sprintf("every node working on the job was lost; the last error: %v", err), nil)
				}
			}
		})
	}
	for _, n := range placed.Nodes {
		runOn(n)
	}
	// A detached job of a client that says it heartbeats until its inputs are
	// uploaded is watched until then (version 1 of "detached-upload"): a client
	// that goes mid-upload would leave it waiting for inputs, holding its nodes.
	uploadWatch := spec.Detached && spec.UploadWatched &&
		has.change("detached-upload")
	if !spec.Detached || uploadWatch {
		watch := func() {
			wctx := workflow.WithActivityOptions(runCtx, workflow.ActivityOptions{
				Summary:             fmt.Sprintf("watch the client's heartbeats (it may be silent %v)", spec.ClientTimeout),
				TaskQueue:           has.watchQueue(),
				StartToCloseTimeout: 7 * 24 * time.Hour,
				HeartbeatTimeout:    10 * time.Second,
				RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, NonRetryableErrorTypes: control.NonRetryable(control.ErrClientGone)},
			})
			f := workflow.ExecuteActivity(wctx, control.ActivityWatchClient, control.WatchInput{JobID: spec.ID, Timeout: spec.ClientTimeout, UntilSealed: uploadWatch})
			sel.AddFuture(f, func(f workflow.Future) {
				if err := f.Get(ctx, nil); outcome == "" && isType(err, control.ErrClientGone) {
					outcome, outErr = job.StateCancelled, unwrapActivity(err)
				}
			})
		}
		if has.all {
			// The watch starts once the job has run a while: a small job ends
			// before, without the activity's dispatch, start and cancellation
			// (each a write of the job's history) on its path. A client gone
			// meanwhile is found as soon as it starts, since its heartbeats
			// stopped when it went.
			sel.AddFuture(workflow.NewTimer(runCtx, watchDelay(spec)), func(workflow.Future) {
				if outcome == "" {
					watch()
				}
			})
		} else {
			watch()
		}
	}
	cancelled := false
	sel.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) { cancelled = true })
	if placement != workflow.DefaultVersion {
		// The cluster hands the job nodes as they become ready (a grow or a
		// replacement) and says when one of them is lost.
		sel.AddReceive(workflow.GetSignalChannel(ctx, control.SignalNodesAdded), func(ch workflow.ReceiveChannel, _ bool) {
			var added control.NodesAdded
			ch.Receive(ctx, &added)
			for _, n := range added.Nodes {
				if _, dup := stops[n.NodeID]; !dup && outcome == "" {
					nodesLeft++
					runOn(n)
				}
			}
		})
		sel.AddReceive(workflow.GetSignalChannel(ctx, control.SignalNodeLost), func(ch workflow.ReceiveChannel, _ bool) {
			var lost control.NodeLost
			ch.Receive(ctx, &lost)
			if stop, ok := stops[lost.NodeID]; ok {
				log.Warn("cluster lost a node of the job", "node", lost.NodeID)
				stop()
			}
		})
	}
	starvedSince := time.Time{}
	for outcome == "" && !cancelled {
		prog.Working, prog.Used = running, used
		workflow.SetCurrentDetails(ctx, prog.Details())
		if placement != workflow.DefaultVersion && running == 0 {
			// No node works on the job: the cluster is replacing them. Give up if
			// none comes for a long time.
			if starvedSince.IsZero() {
				starvedSince = workflow.Now(ctx)
			}
			ok, err := workflow.AwaitWithTimeout(ctx, nodeStarvation-workflow.Now(ctx).Sub(starvedSince), func() bool { return sel.HasPending() })
			if err == nil && !ok {
				outcome = job.StateFailed
				outErr = control.ErrNodesLost.New(
					fmt.Sprintf("every node working on the job was lost and none replaced them within %v", nodeStarvation), nil)
				break
			}
		} else {
			starvedSince = time.Time{}
		}
		sel.Select(ctx)
	}
	stopRun()
	if cancelled {
		outcome, outErr = job.StateCancelled, ctx.Err()
	}
	prog.State, prog.Working, prog.Used = outcome, 0, used
	workflow.SetCurrentDetails(ctx, prog.Details())
	return end(ctx, spec, placement, outcome, control.JobOutput{State: outcome, Nodes: used}, outErr)
}

// watchDelay is how long a job runs before it starts watching its client: two
// seconds, or half the client's timeout if that is shorter.
func watchDelay(spec job.Spec) time.Duration {
	d := 2 * time.Second
	if spec.ClientTimeout > 0 {
		d = min(d, spec.ClientTimeout/2)
	}
	return d
}

// nodeStarvation is how long a job on a cluster waits without any node before it fails.
const nodeStarvation = 5 * time.Minute

func reserveRequest(spec job.Spec) control.ReserveRequest {
	slots := spec.Inputs
	if spec.MaxParallelism > 0 {
		slots = min(slots, spec.MaxParallelism)
	}
	cluster := spec.Cluster
	if cluster == "" {
		cluster = control.DefaultCluster
	}
	return control.ReserveRequest{Cluster: cluster, JobID: spec.ID, Slots: max(slots, 1), FuncCPU: spec.FuncCPU, FuncRAMMB: spec.FuncRAMMB, Grow: spec.Grow,
		GPU: spec.GPU, Region: spec.Region, DiskGB: spec.DiskGB, Spec: &spec}
}

// end cleans up after a job, records its final state and returns its outcome. It
// runs on a disconnected context so that a cancelled job is cleaned up too.
func end(ctx workflow.Context, spec job.Spec, placement workflow.Version, state job.State, out control.JobOutput, err error) (control.JobOutput, error) {
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	var released workflow.Future
	if placement != workflow.DefaultVersion {
		// The cluster resets the job's nodes and returns them to standby.
		req := reserveRequest(spec)
		released = workflow.SignalExternalWorkflow(dctx, control.ClusterWorkflowID(req.Cluster), "", control.SignalRelease, control.ReleaseRequest{JobID: spec.ID})
	}
	dctx = workflow.WithActivityOptions(dctx, workflow.ActivityOptions{
		Summary:             fmt.Sprintf("record the job %s and delete its inputs", state),
		TaskQueue:           control.TaskQueueControl,
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 5},
	})
	if ferr := workflow.ExecuteActivity(dctx, control.ActivityFinishJob, control.FinishInput{JobID: spec.ID, State: state, Binary: spec.Binary}).Get(dctx, nil); ferr != nil {
		workflow.GetLogger(ctx).Warn("could not clean up job", "job", spec.ID, "error", ferr)
	}
	setState(dctx, state)
	if released != nil {
		// The server drops a signal from a workflow that has closed: the release
		// must be delivered before the job ends.
		if rerr := released.Get(dctx, nil); rerr != nil {
			workflow.GetLogger(ctx).Warn("could not release the job's nodes", "job", spec.ID, "error", rerr)
		}
	}
	return out, err
}

// jobChanges asks which of the job workflow's changes a job has. A job this
// code starts has every one of them, as version 1 of "job-path" records in one
// marker and one search-attribute upsert (the server writes each to its
// visibility store) instead of one of each per change, on the path of every
// small job; a job recorded before asks each change as it did.
func jobChanges(ctx workflow.Context) changes {
	return changes{ctx: ctx, all: workflow.GetVersion(ctx, "job-path", workflow.DefaultVersion, 1) >= 1}
}

type changes struct {
	ctx workflow.Context
	all bool // every change below is in
}

// change reports whether the change with GetVersion ID id, whose version 1 is
// the change, is in.
func (c changes) change(id string) bool {
	return c.all || workflow.GetVersion(c.ctx, id, workflow.DefaultVersion, 1) >= 1
}

// watchQueue is the task queue of the job's client watch: the watch queue for
// a job with every change, else the one the package's watchQueue asks for.
func (c changes) watchQueue() string {
	if c.all {
		return control.TaskQueueWatch
	}
	return watchQueue(c.ctx)
}

// watchQueue is the task queue of a long-running watch: version 1 of
// "watch-queue" runs them on a queue of their own, so that watches of every node
// and attached job never take the control queue's activity slots.
func watchQueue(ctx workflow.Context) string {
	if workflow.GetVersion(ctx, "watch-queue", workflow.DefaultVersion, 1) >= 1 {
		return control.TaskQueueWatch
	}
	return control.TaskQueueControl
}

func setState(ctx workflow.Context, s job.State) {
	if err := workflow.UpsertTypedSearchAttributes(ctx, searchJobState.ValueSet(string(s))); err != nil {
		workflow.GetLogger(ctx).Warn("could not record job state", "state", s, "error", err)
	}
}

// isType reports whether err is, or wraps, an application error of one of the types.
func isType(err error, types ...control.ErrorType) bool {
	t := control.TypeOf(err)
	return t != "" && slices.Contains(types, t)
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
