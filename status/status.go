// Package status reads what an operator wants to see about a cluster: its jobs, with
// their state and progress, its nodes and their containers, and its standby
// settings. It joins the two planes: a job's identity and state come from Temporal's
// visibility (the search attributes the SDK and the JobWorkflow set), its progress
// and its nodes' containers from the store. The CLI, the web dashboard, the metrics
// collector and the SDK's progress line all read through it.
package status

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/store"
)

// Job is one job as an operator sees it.
type Job struct {
	ID       string    `json:"id"`
	Function string    `json:"function"`
	Tenant   string    `json:"tenant,omitempty"`
	State    job.State `json:"state"`
	Inputs   int       `json:"inputs"`
	Started  time.Time `json:"started"`
	Ended    time.Time `json:"ended,omitzero"`
	// The rest is filled by Get, not by List.

	// Progress is how far the job's input queue has got; nil once the job has
	// ended and its queue is gone, or while the queue does not exist yet.
	Progress *Progress `json:"progress,omitempty"`
	// Nodes are the nodes working on the job now.
	Nodes []JobNode `json:"nodes,omitempty"`
	// Error is why a job that failed or was cancelled ended.
	Error string `json:"error,omitempty"`
	// Spec is what the client asked for, when the store still has it.
	Spec *job.Spec `json:"spec,omitempty"`
	// Waiting is what a job that runs no call waits for; nil for a job that runs
	// calls or has ended (see Diagnose).
	Waiting *Waiting `json:"waiting,omitempty"`
}

// Progress counts a job's input chunks. Chunks hold consecutive inputs of about
// equal count, so Done/Chunks is the fraction of inputs done.
type Progress struct {
	Sealed   bool `json:"sealed"` // every chunk has been uploaded
	Chunks   int  `json:"chunks"` // all of them, once sealed
	Waiting  int  `json:"waiting"`
	InFlight int  `json:"in_flight"`
	Done     int  `json:"done"` // known once sealed
}

// Fraction is the share of the job's inputs done, from 0 to 1; 0 until sealed.
func (p *Progress) Fraction() float64 {
	if p == nil || !p.Sealed || p.Chunks == 0 {
		return 0
	}
	return float64(p.Done) / float64(p.Chunks)
}

// JobNode is a node working on a job and how many of its containers run it.
type JobNode struct {
	ID   string `json:"id"`
	Busy int    `json:"busy"`
}

// JobNodes picks, from the node agents' records, the nodes working on the job, in
// ID order.
func JobNodes(records []store.Node, jobID string) []JobNode {
	var out []JobNode
	for _, n := range records {
		if n.Job == jobID {
			out = append(out, JobNode{ID: n.ID, Busy: n.Busy})
		}
	}
	slices.SortFunc(out, func(a, b JobNode) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Filter narrows List. Empty fields match everything.
type Filter struct {
	State    job.State
	Function string
	Tenant   string
	// Limit bounds the jobs returned, newest first; 0 means 50.
	Limit int
}

// Query is the visibility query that selects the jobs f matches, which
// `temporal workflow list --query` takes as well.
func (f Filter) Query() string {
	q := []string{fmt.Sprintf("WorkflowType = '%s'", control.WorkflowJob)}
	if f.State != "" {
		q = append(q, fmt.Sprintf("%s = '%s'", control.SearchJobState, quote(string(f.State))))
		if !f.State.Terminal() {
			// A workflow that was terminated keeps the state it last recorded.
			q = append(q, "ExecutionStatus = 'Running'")
		}
	}
	if f.Function != "" {
		q = append(q, fmt.Sprintf("%s = '%s'", control.SearchFunction, quote(f.Function)))
	}
	if f.Tenant != "" {
		q = append(q, fmt.Sprintf("%s = '%s'", control.SearchTenant, quote(f.Tenant)))
	}
	return strings.Join(q, " AND ")
}

func quote(s string) string { return strings.ReplaceAll(s, "'", "''") }

// List returns the jobs f matches from Temporal's visibility, newest first.
// Visibility is eventually consistent: a job started a moment ago may be missing.
func List(ctx context.Context, tc client.Client, f Filter) ([]Job, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	var (
		jobs  []Job
		token []byte
	)
	for len(jobs) < limit {
		resp, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query: f.Query(), PageSize: int32(min(limit-len(jobs), 1000)), NextPageToken: token,
		})
		if err != nil {
			return nil, fmt.Errorf("list jobs: %w", err)
		}
		for _, ex := range resp.GetExecutions() {
			jobs = append(jobs, fromInfo(ex))
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			break
		}
	}
	// The SQLite visibility store orders by start time; others may not.
	slices.SortStableFunc(jobs, func(a, b Job) int { return b.Started.Compare(a.Started) })
	return jobs[:min(len(jobs), limit)], nil
}

// ErrNoJob is returned by Describe and Get for a job Temporal does not know.
var ErrNoJob = errors.New("no such job")

// ErrDenied is returned by Describe and Get for a job the caller's API key may
// not see: another tenant's.
var ErrDenied = errors.New("not this API key's to see")

// Describe returns Temporal's record of the job's workflow: an error for an ID that
// cannot be a job's, and ErrNoJob for one Temporal does not know as a job.
func Describe(ctx context.Context, tc client.Client, id string) (*workflowpb.WorkflowExecutionInfo, error) {
	if !job.ValidID(id) {
		return nil, fmt.Errorf("%q is not a job ID (they look like j-0123…)", id)
	}
	resp, err := tc.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		var denied *serviceerror.PermissionDenied
		switch {
		case isNotFound(err):
			return nil, fmt.Errorf("job %s: %w", id, ErrNoJob)
		case errors.As(err, &denied):
			return nil, fmt.Errorf("job %s: %w (%s)", id, ErrDenied, denied.Message)
		}
		return nil, fmt.Errorf("job %s: %w", id, err)
	}
	info := resp.GetWorkflowExecutionInfo()
	if info.GetType().GetName() != control.WorkflowJob {
		return nil, fmt.Errorf("job %s: workflow %s is a %s: %w", id, id, info.GetType().GetName(), ErrNoJob)
	}
	return info, nil
}

// Get returns everything known about one job: its record in Temporal, its queue's
// progress, the nodes working on it and what it waits for, naming in Waiting only
// jobs of its own tenant (GetFor names more).
func Get(ctx context.Context, tc client.Client, st store.Store, id string) (Job, error) {
	return GetFor(ctx, tc, st, id, job.TenantOf(id))
}

// GetFor is Get for a reader who may see the job IDs of viewer (a tenant, or
// AllTenants) named in the job's Waiting.
func GetFor(ctx context.Context, tc client.Client, st store.Store, id, viewer string) (Job, error) {
	j, records, err := get(ctx, tc, st, id)
	if err != nil {
		return j, err
	}
	jobs := []Job{j}
	Explain(ctx, tc, st, viewer, jobs, records)
	return jobs[0], nil
}

func get(ctx context.Context, tc client.Client, st store.Store, id string) (Job, []store.Node, error) {
	info, err := Describe(ctx, tc, id)
	if err != nil {
		return Job{}, nil, err
	}
	j := fromInfo(info)
	if spec, err := st.Job(ctx, id); err == nil {
		j.Spec = &spec
	}
	var nodes []store.Node
	if !j.State.Terminal() {
		if p, err := st.Progress(ctx, id); err == nil {
			j.Progress = ProgressOf(p)
		}
		nodes, err = st.ListNodes(ctx)
		if err != nil {
			return j, nil, fmt.Errorf("job %s: %w", id, err)
		}
		j.Nodes = JobNodes(nodes, id)
	}
	if info.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING && info.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
		// The job's error is in its closing event.
		if err := tc.GetWorkflow(ctx, id, "").Get(ctx, nil); err != nil {
			j.Error = causeOf(err)
		}
	}
	return j, nodes, nil
}

// ProgressOf reads a store's account of a job's queue.
func ProgressOf(p store.Progress) *Progress {
	out := &Progress{Sealed: p.Sealed, Chunks: p.Chunks, Waiting: p.Waiting, InFlight: p.InFlight}
	if p.Sealed {
		out.Done = max(p.Chunks-p.Waiting-p.InFlight, 0)
	}
	return out
}

// causeOf is the innermost message of a workflow's error: the application error
// the job ended with rather than Temporal's wrapping of it.
func causeOf(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}

func isNotFound(err error) bool {
	var nf *serviceerror.NotFound
	return errors.As(err, &nf)
}

// fromInfo reads a job's identity and state from its workflow's visibility record.
func fromInfo(info *workflowpb.WorkflowExecutionInfo) Job {
	sa := info.GetSearchAttributes().GetIndexedFields()
	j := Job{
		ID:       info.GetExecution().GetWorkflowId(),
		Function: keyword(sa, control.SearchFunction),
		Tenant:   keyword(sa, control.SearchTenant),
		State:    StateOf(info),
		Inputs:   int(integer(sa, control.SearchInputs)),
		Started:  info.GetStartTime().AsTime(),
	}
	if ct := info.GetCloseTime(); ct != nil {
		j.Ended = ct.AsTime()
	}
	return j
}

// StateOf is the state of the job whose workflow info is given: the BurlaJobState
// it recorded, or, for a workflow that closed without recording a final state
// (terminated, timed out, or failed before it could), the state its closing implies.
func StateOf(info *workflowpb.WorkflowExecutionInfo) job.State {
	state := job.State(keyword(info.GetSearchAttributes().GetIndexedFields(), control.SearchJobState))
	if state.Terminal() {
		return state
	}
	switch info.GetStatus() {
	case enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
		return job.StateSucceeded
	case enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED:
		return job.StateCancelled
	case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, enumspb.WORKFLOW_EXECUTION_STATUS_UNSPECIFIED:
		if state == "" {
			return job.StatePlacing
		}
		return state
	}
	return job.StateFailed
}

func keyword(sa map[string]*commonpb.Payload, name string) string {
	var s string
	if p := sa[name]; p != nil {
		_ = converter.GetDefaultDataConverter().FromPayload(p, &s)
	}
	return s
}

func integer(sa map[string]*commonpb.Payload, name string) int64 {
	var n int64
	if p := sa[name]; p != nil {
		_ = converter.GetDefaultDataConverter().FromPayload(p, &n)
	}
	return n
}

// Node is a node as the cluster and the node's own record see it.
type Node struct {
	ID    string            `json:"id"`
	State control.NodeState `json:"state"`
	Job   string            `json:"job,omitempty"`
	CPUs  int               `json:"cpus"`
	RAMMB int               `json:"ram_mb,omitempty"`
	// From the node agent's record, while it lives:
	Live    bool   `json:"live"`
	Warm    int    `json:"warm"` // containers running and ready
	Busy    int    `json:"busy"` // containers running a job's calls
	Metrics string `json:"metrics,omitempty"`
}

// Nodes joins a cluster's record of its nodes with the records the node agents
// keep of themselves, in ID order. Nodes without a cluster record (started by hand)
// are included with an empty State.
func Nodes(cs control.ClusterState, records []store.Node) []Node {
	byID := map[string]store.Node{}
	for _, r := range records {
		byID[r.ID] = r
	}
	var out []Node
	for id, cn := range cs.Nodes {
		n := Node{ID: id, State: cn.State, Job: cn.Job, CPUs: cn.CPUs, RAMMB: cn.RAMMB}
		if r, ok := byID[id]; ok {
			n.Live, n.Warm, n.Busy, n.Metrics = true, r.Warm, r.Busy, r.Metrics
			delete(byID, id)
		}
		out = append(out, n)
	}
	for _, r := range byID {
		out = append(out, Node{ID: r.ID, Job: r.Job, CPUs: r.CPUs, RAMMB: r.RAMMB, Live: true, Warm: r.Warm, Busy: r.Busy, Metrics: r.Metrics})
	}
	slices.SortFunc(out, func(a, b Node) int { return strings.Compare(a.ID, b.ID) })
	return out
}
