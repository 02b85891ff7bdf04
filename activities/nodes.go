package activities

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/burla-temporal/burla/names"
	"github.com/burla-temporal/burla/provider"
	"github.com/burla-temporal/burla/store"
)

// ReserveRequest asks a cluster for nodes for a job.
type ReserveRequest struct {
	Cluster   string
	JobID     string
	Slots     int // calls the job wants to run at once
	FuncCPU   int
	FuncRAMMB int
	// Grow asks the cluster to start nodes when too few are ready.
	Grow bool
	// GPU, Region and DiskGB are what the job needs of its nodes besides CPUs
	// and memory (see job.Spec); empty or 0: anything.
	GPU    string `json:",omitempty"`
	Region string `json:",omitempty"`
	DiskGB int    `json:",omitempty"`
}

// ReserveResponse is the nodes a job got at once; more may follow by signal.
type ReserveResponse struct {
	Nodes []Assignment
}

// TemporalClient is the part of client.Client the control activities need: they
// send Workflow Updates (ReserveNodes) and describe job workflows (ClosedJobs).
type TemporalClient interface {
	UpdateWorkflow(ctx context.Context, options client.UpdateWorkflowOptions) (client.WorkflowUpdateHandle, error)
	DescribeWorkflowExecution(ctx context.Context, workflowID, runID string) (*workflowservice.DescribeWorkflowExecutionResponse, error)
}

// ClosedJobsInput names the jobs a cluster holds nodes for.
type ClosedJobsInput struct {
	JobIDs []string
}

// ClosedJobs returns those of the jobs whose workflows have closed, or that
// Temporal no longer knows, and cleans up after them as their end would have
// (FinishJob): a job terminated from outside (an operator's `temporal workflow
// terminate`) never runs its end, never tells its cluster it has ended, and the
// cluster would hold its nodes for good. A job that cannot be looked up for
// another reason is taken to be running.
func (c *Control) ClosedJobs(ctx context.Context, in ClosedJobsInput) ([]string, error) {
	if c.Temporal == nil {
		return nil, temporal.NewNonRetryableApplicationError("this control plane has no Temporal client", names.ErrMisconfigured, nil)
	}
	var closed []string
	var errs []error
	for _, id := range in.JobIDs {
		ended, state, _, err := c.jobClosed(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !ended {
			continue
		}
		if err := c.FinishJob(ctx, FinishInput{JobID: id, State: state}); err != nil {
			errs = append(errs, err)
			continue // looked at again next time
		}
		closed = append(closed, id)
	}
	if len(errs) == len(in.JobIDs) && len(errs) > 0 {
		return nil, fmt.Errorf("look up %d job(s): %w", len(errs), errors.Join(errs...))
	}
	return closed, nil
}

// ReserveNodes asks the job's cluster for nodes with a Workflow Update, so that the
// cluster's validator can refuse at once (a cluster shutting down) and the answer
// comes back in one round trip. Workflows cannot send updates, so the job workflow
// runs this as a local activity.
func (c *Control) ReserveNodes(ctx context.Context, r ReserveRequest) (ReserveResponse, error) {
	if c.Temporal == nil {
		return ReserveResponse{}, temporal.NewNonRetryableApplicationError("this control plane has no Temporal client for cluster updates", names.ErrMisconfigured, nil)
	}
	// Every attempt asks about one update, by its ID: the server answers a
	// repeated request with the update already under way, or its outcome once it
	// has completed. Each attempt waits at most reservePoll, because the server
	// does not always tell a waiting caller that its update has completed (seen
	// with 50 jobs waiting at once: a job sat on its answer for the whole 6-minute
	// attempt of its local activity while its nodes stood idle); asking again
	// finds the outcome.
	updateID := fmt.Sprintf("reserve-%s-%016x", r.JobID, rand.Uint64())
	for wait := 50 * time.Millisecond; ; {
		actx, cancel := context.WithTimeout(ctx, reservePoll)
		h, err := c.Temporal.UpdateWorkflow(actx, client.UpdateWorkflowOptions{
			UpdateID:     updateID,
			WorkflowID:   names.ClusterWorkflowID(r.Cluster),
			UpdateName:   names.UpdateReserve,
			Args:         []any{r},
			WaitForStage: client.WorkflowUpdateStageCompleted,
		})
		var resp ReserveResponse
		if err == nil {
			err = h.Get(actx, &resp)
		}
		polled := actx.Err() != nil
		cancel()
		var busy *serviceerror.ResourceExhausted
		var missing *serviceerror.NotFound
		switch {
		case err == nil:
			if c.Metrics != nil {
				c.Metrics.JobsPlaced.Inc()
			}
			return resp, nil
		case ctx.Err() != nil:
			return ReserveResponse{}, fmt.Errorf("reserve nodes of cluster %s for job %s: %w", r.Cluster, r.JobID, ctx.Err())
		case polled:
			continue // ask again about the same update
		case errors.As(err, &busy):
			// Temporal admits a few updates at once per workflow (10 by default): a
			// job behind that many others waiting for nodes queues here.
			select {
			case <-ctx.Done():
				return ReserveResponse{}, fmt.Errorf("reserve nodes of cluster %s for job %s: queued behind other jobs until %w", r.Cluster, r.JobID, ctx.Err())
			case <-time.After(wait + time.Duration(rand.Int64N(int64(wait)))):
			}
			wait = min(2*wait, 2*time.Second)
			continue
		case errors.As(err, &missing):
			// Not worth retrying (the job's reserve is retried for a long time,
			// for clusters continuing as new).
			return ReserveResponse{}, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("cluster %s is not running (no workflow %s): start it with `burla cluster up`", r.Cluster, names.ClusterWorkflowID(r.Cluster)),
				names.ErrNoNodes, err)
		case h != nil:
			return ReserveResponse{}, err // the cluster's answer: no nodes, and why
		default:
			return ReserveResponse{}, fmt.Errorf("reserve nodes of cluster %s for job %s: %w", r.Cluster, r.JobID, err)
		}
	}
}

// reservePoll bounds how long ReserveNodes waits on one request about its
// update before it asks again (a variable for the tests).
var reservePoll = 10 * time.Second

// Nodes holds the node-lifecycle activities of the control plane.
type Nodes struct {
	Providers provider.Set
	Store     store.Nodes
	// Poll is how often WatchNode looks at the node's record; zero means 1s.
	Poll time.Duration
	// Grace is how long a node's record may be missing before the node is lost;
	// zero means 2s (on top of the record's own time-to-live).
	Grace time.Duration
}

// CreateNodeInput is a node to create.
type CreateNodeInput struct {
	Provider string
	Spec     provider.NodeSpec
}

// CreateNode creates a node with its provider; it is idempotent.
func (n *Nodes) CreateNode(ctx context.Context, in CreateNodeInput) error {
	p, err := n.Providers.Get(in.Provider)
	if err != nil {
		return temporal.NewNonRetryableApplicationError(err.Error(), names.ErrUnknownProvider, err)
	}
	return p.Create(ctx, in.Spec)
}

// DeleteNodeInput is a node to delete.
type DeleteNodeInput struct {
	Provider string
	ID       string
	// Spec is the spec the node was created from; histories from before it was
	// recorded have only ID.
	Spec provider.NodeSpec
}

// DeleteNode deletes a node with its provider and drops its record; it is idempotent.
func (n *Nodes) DeleteNode(ctx context.Context, in DeleteNodeInput) error {
	p, err := n.Providers.Get(in.Provider)
	if err != nil {
		return temporal.NewNonRetryableApplicationError(err.Error(), names.ErrUnknownProvider, err)
	}
	spec := in.Spec
	if spec.ID == "" {
		spec.ID = in.ID
	}
	if err := p.Delete(ctx, spec); err != nil {
		return err
	}
	return n.Store.DeleteNode(ctx, in.ID)
}

// WatchNodeInput names a node to watch.
type WatchNodeInput struct {
	ID string
}

// WatchNodeResult says why a watched node is lost.
type WatchNodeResult struct {
	// Fault is what the node's agent reported before asking to be replaced (its
	// disk is full); empty when the agent stopped answering.
	Fault string
}

// WatchNode returns once the node's agent has stopped refreshing its record, or
// reports a fault in it: the node is lost. It heartbeats while the node lives.
func (n *Nodes) WatchNode(ctx context.Context, in WatchNodeInput) (WatchNodeResult, error) {
	poll, grace := n.Poll, n.Grace
	if poll <= 0 {
		poll = time.Second
	}
	if grace <= 0 {
		grace = 2 * time.Second
	}
	lastSeen := time.Now()
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return WatchNodeResult{}, ctx.Err()
		case <-t.C:
		}
		activity.RecordHeartbeat(ctx)
		rec, err := n.Store.GetNode(ctx, in.ID)
		switch {
		case err == nil && rec.Fault != "":
			return WatchNodeResult{Fault: rec.Fault}, nil
		case err == nil:
			lastSeen = time.Now()
		case !errors.Is(err, store.ErrNotFound):
			continue // the store being away says nothing about the node
		}
		if time.Since(lastSeen) > grace {
			return WatchNodeResult{}, nil
		}
	}
}
