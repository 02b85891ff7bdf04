package control

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/burla-temporal/burla/job"
)

// Client speaks the control contract over a Temporal client. The SDK, the
// command, the dashboard, `burla dev` and the control plane start jobs and read or
// change clusters through it, so that workflow types, IDs, task queues, updates and
// queries are spelled here alone.
type Client struct {
	Temporal client.Client
}

// NewClient returns a Client over tc, which stays the caller's to close.
func NewClient(tc client.Client) Client { return Client{Temporal: tc} }

// StartJob starts spec's JobWorkflow under the job's ID, with the search attributes
// that list it by state, function, size and tenant, and the summary and details
// (JobSummary) that Temporal's UI shows.
func (c Client) StartJob(ctx context.Context, spec job.Spec) (client.WorkflowRun, error) {
	summary, details := JobSummary(spec)
	return c.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:            spec.ID,
		TaskQueue:     TaskQueueControl,
		StaticSummary: summary,
		StaticDetails: details,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			temporal.NewSearchAttributeKeyKeyword(SearchJobState).ValueSet(string(job.StatePlacing)),
			temporal.NewSearchAttributeKeyKeyword(SearchFunction).ValueSet(spec.Function),
			temporal.NewSearchAttributeKeyInt64(SearchInputs).ValueSet(int64(spec.Inputs)),
			temporal.NewSearchAttributeKeyKeyword(SearchTenant).ValueSet(spec.Tenant),
		),
	}, WorkflowJob, JobInput{Spec: spec})
}

// BuildEnv returns the build of in's environment: the EnvBuildWorkflow every job
// of the environment shares, started if none has been. A program's build is
// started again only if it failed; an image's whenever the last one has ended,
// since an image can change under its name.
func (c Client) BuildEnv(ctx context.Context, in EnvBuildInput) (client.WorkflowRun, error) {
	id := EnvBuildWorkflowID(in.Tenant, EnvDigest(in.Binary, in.Image))
	reuse := enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY
	if in.Image != "" {
		reuse = enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE
	}
	run, err := c.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       id,
		TaskQueue:                TaskQueueControl,
		WorkflowIDReusePolicy:    reuse,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
	}, WorkflowEnvBuild, in)
	if err != nil { // a build that ran already is handed back, not refused
		return nil, fmt.Errorf("build environment %s: %w", id, err)
	}
	return run, nil
}

// ErrClusterUp is what Up returns for a cluster that is running already.
var ErrClusterUp = errors.New("the cluster is up already")

// Up starts a cluster with the standby spec; it fails with ErrClusterUp when the
// cluster runs already. It does not wait for the standby nodes (WaitReady does).
func (c Client) Up(ctx context.Context, cluster string, spec StandbySpec) error {
	_, err := c.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: ClusterWorkflowID(cluster), TaskQueue: TaskQueueControl,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		// Without it the client hands back the running workflow as if it
		// had started it.
		WorkflowExecutionErrorWhenAlreadyStarted: true,
	}, WorkflowCluster, ClusterInput{State: ClusterState{Name: cluster, Standby: spec}})
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		return fmt.Errorf("cluster %s: %w", cluster, ErrClusterUp)
	}
	if err != nil {
		return fmt.Errorf("cluster %s: up: %w", cluster, err)
	}
	return nil
}

// Status returns a cluster's state, queried from its workflow's current run. The
// run is named: a query without one was seen answered, long after the workflow
// continued as new, by one of its earlier runs (the embedded server, tests/churn).
func (c Client) Status(ctx context.Context, cluster string) (ClusterState, error) {
	var st ClusterState
	id := ClusterWorkflowID(cluster)
	d, err := c.Temporal.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return st, fmt.Errorf("cluster %s status: %w", cluster, err)
	}
	v, err := c.Temporal.QueryWorkflow(ctx, id, d.GetWorkflowExecutionInfo().GetExecution().GetRunId(), QueryStatus)
	if err != nil {
		return st, fmt.Errorf("cluster %s status: %w", cluster, err)
	}
	return st, v.Get(&st)
}

// Running reports whether a cluster's workflow is running.
func (c Client) Running(ctx context.Context, cluster string) bool {
	d, err := c.Temporal.DescribeWorkflowExecution(ctx, ClusterWorkflowID(cluster), "")
	return err == nil && d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
}

// SetStandby changes what a cluster keeps warm, and returns its state after.
func (c Client) SetStandby(ctx context.Context, cluster string, spec StandbySpec) (ClusterState, error) {
	return c.update(ctx, cluster, UpdateSetStandby, spec)
}

// Restart replaces every idle node of a cluster, and returns its state after.
func (c Client) Restart(ctx context.Context, cluster string) (ClusterState, error) {
	return c.update(ctx, cluster, UpdateRestart)
}

// Shutdown deletes every node of a cluster and ends its workflow. It returns the
// state the cluster answered the request with, once the workflow has ended.
func (c Client) Shutdown(ctx context.Context, cluster string) (ClusterState, error) {
	st, err := c.update(ctx, cluster, UpdateShutdown)
	if err != nil {
		return st, err
	}
	if err := c.Temporal.GetWorkflow(ctx, ClusterWorkflowID(cluster), "").Get(ctx, nil); err != nil {
		return st, fmt.Errorf("cluster %s: wait for it to end: %w", cluster, err)
	}
	return st, nil
}

func (c Client) update(ctx context.Context, cluster, name string, args ...any) (ClusterState, error) {
	var st ClusterState
	h, err := c.Temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: ClusterWorkflowID(cluster), UpdateName: name, Args: args,
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, &st)
	}
	if err != nil {
		return st, &UpdateError{Cluster: cluster, Update: name, Err: err}
	}
	return st, nil
}

// UpdateError is a cluster's update that failed: refused by the cluster, or
// never delivered.
type UpdateError struct {
	Cluster, Update string
	Err             error
}

func (e *UpdateError) Error() string {
	return fmt.Sprintf("cluster %s: %s: %v", e.Cluster, e.Update, e.Err)
}

func (e *UpdateError) Unwrap() error { return e.Err }

// WaitReady waits until a cluster has n ready nodes, for at most timeout.
func (c Client) WaitReady(ctx context.Context, cluster string, n int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ready := 0
	for {
		if st, err := c.Status(ctx, cluster); err == nil {
			ready = st.Ready()
			if ready >= n {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster %s: %d of %d standby nodes ready after %v: %w", cluster, ready, n, timeout, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
