package activities

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"

	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/provider"
	"github.com/burla-temporal/burla/store"
)

// TemporalClient is the part of client.Client the control activities need: they
// send Workflow Updates (ReserveNodes) and describe job workflows (ClosedJobs).
type TemporalClient interface {
	UpdateWorkflow(ctx context.Context, options client.UpdateWorkflowOptions) (client.WorkflowUpdateHandle, error)
	DescribeWorkflowExecution(ctx context.Context, workflowID, runID string) (*workflowservice.DescribeWorkflowExecutionResponse, error)
}

// ClosedJobs returns those of the jobs whose workflows have closed, or that
// Temporal no longer knows, and cleans up after them as their end would have
// (FinishJob): a job terminated from outside (an operator's `temporal workflow
// terminate`) never runs its end, never tells its cluster it has ended, and the
// cluster would hold its nodes for good. A job that cannot be looked up for
// another reason is taken to be running.
func (c *Control) ClosedJobs(ctx context.Context, in control.ClosedJobsInput) ([]string, error) {
	if c.Temporal == nil {
		return nil, control.ErrMisconfigured.New("this control plane has no Temporal client", nil)
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
		if err := c.FinishJob(ctx, control.FinishInput{JobID: id, State: state}); err != nil {
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

// grantWait bounds how long a reserve spends relaying its grants.
const grantWait = 2 * time.Second

// grant tells each node the cluster has given the job that it is the job's,
// through the store, so that its workers start on the job without waiting for
// the job's activity on the node to be dispatched. A grant that fails to go
// costs only that wait: the activity starts the job on the node all the same.
func (c *Control) grant(ctx context.Context, spec *job.Spec, nodes []control.Assignment) {
	if c.Grants == nil || spec == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, grantWait)
	defer cancel()
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() {
			err := c.Grants.PutGrant(ctx, n.NodeID, store.Grant{Spec: *spec, Workers: n.Workers})
			if err != nil {
				activity.GetLogger(ctx).Warn("could not tell a node of its grant; its activity will", "job", spec.ID, "node", n.NodeID, "error", err)
			}
		})
	}
	wg.Wait()
}

// ReserveNodes asks the job's cluster for nodes with a Workflow Update, so that the
// cluster's validator can refuse at once (a cluster shutting down) and the answer
// comes back in one round trip. Workflows cannot send updates, so the job workflow
// runs this as a local activity.
func (c *Control) ReserveNodes(ctx context.Context, r control.ReserveRequest) (control.ReserveResponse, error) {
	if c.Temporal == nil {
		return control.ReserveResponse{}, control.ErrMisconfigured.New("this control plane has no Temporal client for cluster updates", nil)
	}
	// Every attempt asks about one update, by its ID: the server answers a
	// repeated request with the update already under way, or its outcome once it
	// has completed. Each attempt waits at most reservePoll, because the server
	// does not always tell a waiting caller that its update has completed (seen
	// with 50 jobs waiting at once: a job sat on its answer for the whole 6-minute
	// attempt of its local activity while its nodes stood idle); asking again
	// finds the outcome.
	updateID := fmt.Sprintf("reserve-%s-%016x", r.JobID, rand.Uint64())
	spec := r.Spec
	r.Spec = nil // the cluster needs no more than the request
	for wait := 50 * time.Millisecond; ; {
		actx, cancel := context.WithTimeout(ctx, reservePoll)
		h, err := c.Temporal.UpdateWorkflow(actx, client.UpdateWorkflowOptions{
			UpdateID:     updateID,
			WorkflowID:   control.ClusterWorkflowID(r.Cluster),
			UpdateName:   control.UpdateReserve,
			Args:         []any{r},
			WaitForStage: client.WorkflowUpdateStageCompleted,
		})
		var resp control.ReserveResponse
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
			c.grant(ctx, spec, resp.Nodes)
			return resp, nil
		case ctx.Err() != nil:
			return control.ReserveResponse{}, fmt.Errorf("reserve nodes of cluster %s for job %s: %w", r.Cluster, r.JobID, ctx.Err())
		case polled:
			continue // ask again about the same update
		case errors.As(err, &busy):
			// Temporal admits a few updates at once per workflow (10 by default): a
			// job behind that many others waiting for nodes queues here.
			select {
			case <-ctx.Done():
				return control.ReserveResponse{}, fmt.Errorf("reserve nodes of cluster %s for job %s: queued behind other jobs until %w", r.Cluster, r.JobID, ctx.Err())
			case <-time.After(wait + time.Duration(rand.Int64N(int64(wait)))):
			}
			wait = min(2*wait, 2*time.Second)
			continue
		case errors.As(err, &missing):
			// Not worth retrying (the job's reserve is retried for a long time,
			// for clusters continuing as new).
			return control.ReserveResponse{}, control.ErrNoNodes.New(
				fmt.Sprintf("cluster %s is not running (no workflow %s): start it with `burla cluster up`", r.Cluster, control.ClusterWorkflowID(r.Cluster)), err)
		case h != nil:
			return control.ReserveResponse{}, err // the cluster's answer: no nodes, and why
		default:
			return control.ReserveResponse{}, fmt.Errorf("reserve nodes of cluster %s for job %s: %w", r.Cluster, r.JobID, err)
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

// CreateNode creates a node with its provider; it is idempotent.
func (n *Nodes) CreateNode(ctx context.Context, in control.CreateNodeInput) error {
	p, err := n.Providers.Get(in.Provider)
	if err != nil {
		return control.ErrUnknownProvider.New(err.Error(), err)
	}
	return p.Create(ctx, in.Spec)
}

// DeleteNode deletes a node with its provider and drops its record; it is idempotent.
func (n *Nodes) DeleteNode(ctx context.Context, in control.DeleteNodeInput) error {
	p, err := n.Providers.Get(in.Provider)
	if err != nil {
		return control.ErrUnknownProvider.New(err.Error(), err)
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

// WatchNode returns once the node's agent has stopped refreshing its record, or
// reports a fault in it: the node is lost. It heartbeats while the node lives.
func (n *Nodes) WatchNode(ctx context.Context, in control.WatchNodeInput) (control.WatchNodeResult, error) {
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
			return control.WatchNodeResult{}, ctx.Err()
		case <-t.C:
		}
		activity.RecordHeartbeat(ctx)
		rec, err := n.Store.GetNode(ctx, in.ID)
		switch {
		case err == nil && rec.Fault != "":
			return control.WatchNodeResult{Fault: rec.Fault}, nil
		case err == nil:
			lastSeen = time.Now()
		case !errors.Is(err, store.ErrNotFound):
			continue // the store being away says nothing about the node
		}
		if time.Since(lastSeen) > grace {
			return control.WatchNodeResult{}, nil
		}
	}
}
