package status

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/store"
)

// Reason names what a job that makes no progress waits for. The values are stable:
// scripts reading `burla jobs show --json` may switch on them.
type Reason string

const (
	// The client's own steps. The first three come before the job exists, so only
	// the client's progress line shows them.
	WaitBuildingProgram Reason = "building-program"     // the program is built for the nodes' platform
	WaitUploadingBinary Reason = "uploading-binary"     // the program goes to the blob store
	WaitBuildingEnv     Reason = "building-environment" // the program is inspected, the image built
	WaitUploadingInputs Reason = "uploading-inputs"     // every input written so far is taken: workers wait for the client

	// The cluster's.
	WaitPlacing         Reason = "placing"          // the job is asking the cluster for nodes
	WaitNodesBooting    Reason = "nodes-booting"    // nodes it will get are starting
	WaitNodesResetting  Reason = "nodes-resetting"  // nodes it will get are being reset after their last job
	WaitWorkersStarting Reason = "workers-starting" // it has nodes, whose workers have not started its calls yet
	WaitNodesBusy       Reason = "nodes-busy"       // every node works for another job
	WaitNoNodes         Reason = "no-nodes"         // the cluster has no node, and starts none for the job
)

// Waiting says what a job that is not running any call waits for, and since when.
type Waiting struct {
	Reason Reason    `json:"reason"`
	Detail string    `json:"detail"` // in words, such as "3 nodes booting"
	Since  time.Time `json:"since"`
	// Seconds is how long it had waited when this was worked out.
	Seconds int64 `json:"seconds"`
}

// byClient reports whether the wait is the client's doing rather than the cluster's.
func (r Reason) byClient() bool {
	return r == WaitUploadingBinary || r == WaitBuildingEnv || r == WaitUploadingInputs
}

// Text is the wait in one line as of now: "waiting 42s: 3 nodes booting", or for
// the client's own steps "uploading inputs 1200/5000 (12s)".
func (w *Waiting) Text(now time.Time) string {
	d := ShortDuration(max(now.Sub(w.Since), 0))
	if w.Reason.byClient() {
		return fmt.Sprintf("%s (%s)", w.Detail, d)
	}
	return fmt.Sprintf("waiting %s: %s", d, w.Detail)
}

// ShortDuration rounds d to what a person reads at a glance: tenths of a second
// under 10s, seconds under an hour, minutes beyond.
func ShortDuration(d time.Duration) string {
	switch {
	case d < 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	return d.Round(time.Minute).String()
}

// AllTenants, as a Viewer, may see every tenant's job IDs.
const AllTenants = "*"

// staleUpload is how long an upload may go without a new input written before the
// diagnosis says so: its client may have stalled or gone.
const staleUpload = 30 * time.Second

// Evidence is what Diagnose works from. Only Job is needed; each other part makes
// the diagnosis sharper.
type Evidence struct {
	// Job is the job with its State, Started, Inputs and, if it could be read,
	// Progress.
	Job Job
	// Upload is the client's record of its upload, if it kept one.
	Upload *store.Upload
	// Cluster is the state of the job's cluster; nil when it could not be asked
	// (a tenant's key may not query the ClusterWorkflow).
	Cluster *control.ClusterState
	// Records are the node agents' records of themselves; nil when unknown. An
	// empty list is not taken to mean there are no nodes: a tenant's store may
	// not see them.
	Records []store.Node
	// Booted holds when nodes that are still provisioning began to, by node ID,
	// from their NodeWorkflows' start times.
	Booted map[string]time.Time
	// Viewer is the tenant whose job IDs the reader may see named (AllTenants:
	// every tenant's). Another job is named only if the viewer may see it; the
	// zero value names none.
	Viewer string
}

// Diagnose says what the job waits for, or nil when it is running calls (or has
// ended). It is the one place where a job's stall is explained: the SDK's progress
// line, `burla jobs show` and the dashboard all read it.
//
// A job waits for its client when every input written so far has been taken and
// more are coming; otherwise, while no call of it runs, for nodes: ones it holds
// whose workers are starting, ones booting or being reset for it, or ones every
// other job holds. Since is when the job began waiting as far as the evidence
// shows: its start, or a booting node's, whichever is later.
func Diagnose(e Evidence, now time.Time) *Waiting {
	j := e.Job
	if j.State == "" || j.State.Terminal() {
		return nil
	}
	p := j.Progress
	w := func(r Reason, since time.Time, detail string, args ...any) *Waiting {
		since = later(since, j.Started)
		return &Waiting{Reason: r, Detail: fmt.Sprintf(detail, args...), Since: since, Seconds: int64(max(now.Sub(since), 0) / time.Second)}
	}
	if p != nil && !p.Sealed && p.Waiting == 0 {
		if u := e.Upload; u != nil {
			detail := fmt.Sprintf("uploading inputs %d/%d", u.Uploaded, u.Inputs)
			if idle := now.Sub(later(u.Updated, u.Started)); idle > staleUpload {
				detail += fmt.Sprintf(", none written for %s: is the client still running?", ShortDuration(idle))
			}
			return w(WaitUploadingInputs, u.Started, "%s", detail)
		}
		return w(WaitUploadingInputs, j.Started, "uploading the job's %d inputs", j.Inputs)
	}
	if p != nil && p.InFlight > 0 {
		return nil
	}
	for _, r := range e.Records {
		if r.Job == j.ID && r.Busy > 0 {
			return nil
		}
	}
	if p != nil && p.Sealed && p.Waiting == 0 {
		return nil // every chunk is done: the job is finishing
	}
	if e.Cluster == nil {
		return fromRecords(e, w)
	}
	n := classify(e.Cluster, j.ID)
	switch {
	case len(n.assigned) > 0:
		return w(WaitWorkersStarting, j.Started, "%s assigned, starting %s workers", count(len(n.assigned), "node"), its(len(n.assigned)))
	case len(n.booting) > 0:
		since := time.Time{}
		for _, id := range n.booting {
			if t, ok := e.Booted[id]; ok && (since.IsZero() || t.Before(since)) {
				since = t
			}
		}
		return w(WaitNodesBooting, since, "%s booting", count(len(n.booting), "node"))
	case len(n.resetting) > 0:
		return w(WaitNodesResetting, j.Started, "%s resetting after %s last job", count(len(n.resetting), "node"), its(len(n.resetting)))
	case n.claim == nil:
		if ahead := queuedAhead(e.Cluster, j.ID); ahead > 0 {
			return w(WaitPlacing, j.Started, "queued behind %s waiting for nodes", count(ahead, "job"))
		}
		return w(WaitPlacing, j.Started, "asking the cluster for nodes")
	case len(n.others) > 0:
		detail := busyWith(n.others, e.Viewer)
		if ahead := queuedAhead(e.Cluster, j.ID); ahead > 0 {
			detail = fmt.Sprintf("queued behind %s waiting for nodes; %s", count(ahead, "job"), detail)
		}
		if limit := e.Cluster.Standby.MaxNodes; n.claim.Grow && limit > 0 && n.live >= limit {
			detail += fmt.Sprintf("; the cluster is at its limit of %s", count(limit, "node"))
		}
		return w(WaitNodesBusy, j.Started, "%s", detail)
	case n.live == 0 && !n.claim.Grow:
		return w(WaitNoNodes, j.Started, "the cluster has no nodes, and the job does not start any (it was not started with burla.Grow)")
	case n.live == 0:
		return w(WaitNoNodes, j.Started, "the cluster has no nodes and can start none")
	}
	return w(WaitPlacing, j.Started, "asking the cluster for nodes")
}

// fromRecords diagnoses a job's wait for nodes without the cluster's state, from
// the node agents' records alone: they show nodes working, not nodes to come.
func fromRecords(e Evidence, w func(Reason, time.Time, string, ...any) *Waiting) *Waiting {
	j := e.Job
	mine := 0
	others := map[string]int{}
	for _, r := range e.Records {
		switch r.Job {
		case j.ID:
			mine++
		case "":
		default:
			others[r.Job]++
		}
	}
	switch {
	case mine > 0:
		return w(WaitWorkersStarting, j.Started, "%s assigned, starting %s workers", count(mine, "node"), its(mine))
	case len(e.Records) > 0 && sum(others) == len(e.Records):
		return w(WaitNodesBusy, j.Started, "%s", busyWith(others, e.Viewer))
	}
	return w(WaitPlacing, j.Started, "waiting for nodes")
}

// queuedAhead counts the jobs that wait for their first node and come before
// jobID: the cluster serves waiting claims in the order of their IDs, which
// begin with the time they were made.
func queuedAhead(cs *control.ClusterState, jobID string) int {
	n := 0
	for id, cl := range cs.Jobs {
		if id < jobID && len(cl.Nodes) == 0 {
			n++
		}
	}
	return n
}

// nodesFor sorts a cluster's nodes by what they mean to one job.
type nodesFor struct {
	claim                        *control.JobClaim
	assigned, booting, resetting []string
	others                       map[string]int // nodes held by, or set aside for, each other job
	live                         int            // nodes not being deleted
}

// classify sorts the cluster's nodes for the job. Nodes provisioning or resetting
// that no job has set aside go to jobs that want nodes when they are ready, so
// they count as coming to a job that holds a claim.
func classify(cs *control.ClusterState, jobID string) nodesFor {
	n := nodesFor{claim: cs.Jobs[jobID], others: map[string]int{}}
	ids := make([]string, 0, len(cs.Nodes))
	for id := range cs.Nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		nd := cs.Nodes[id]
		if nd == nil || nd.State == control.NodeDeleting {
			continue
		}
		n.live++
		forMe := nd.Job == jobID || nd.Job == "" && n.claim != nil
		switch {
		case nd.Job == jobID && nd.State == control.NodeAssigned:
			n.assigned = append(n.assigned, id)
		case forMe && nd.State == control.NodeProvisioning:
			n.booting = append(n.booting, id)
		case forMe && nd.State == control.NodeResetting:
			n.resetting = append(n.resetting, id)
		case nd.Job != "" && nd.Job != jobID:
			n.others[nd.Job]++
		}
	}
	return n
}

// busyWith says every node is busy with the other jobs, naming those the viewer
// may see.
func busyWith(others map[string]int, viewer string) string {
	var named []string
	hidden := 0
	for id := range others {
		if viewer == AllTenants || viewer != "" && job.TenantOf(id) == viewer {
			named = append(named, id)
		} else {
			hidden++
		}
	}
	slices.Sort(named)
	if len(named)+hidden == 1 {
		if hidden == 1 {
			return "every node is busy with another tenant's job"
		}
		return "every node is busy with another job (" + named[0] + ")"
	}
	const most = 3
	var parts []string
	if len(named) > most {
		parts = append(named[:most:most], fmt.Sprintf("%d more", len(named)-most))
	} else {
		parts = named
	}
	switch {
	case hidden == 1:
		parts = append(parts, "one of another tenant")
	case hidden > 1:
		parts = append(parts, fmt.Sprintf("%d of other tenants", hidden))
	}
	return "every node is busy with other jobs (" + strings.Join(parts, ", ") + ")"
}

func count(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func its(n int) string {
	if n == 1 {
		return "its"
	}
	return "their"
}

func sum(m map[string]int) int {
	s := 0
	for _, v := range m {
		s += v
	}
	return s
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// nodeReason reports whether r is a wait the cluster's state explains better.
func nodeReason(r Reason) bool {
	return r == WaitPlacing || r == WaitWorkersStarting || r == WaitNodesBusy
}

// clusters holds the cluster states read for one round of diagnoses; nil for a
// cluster that could not be asked.
type clusters struct {
	tc     client.Client
	states map[string]*control.ClusterState
}

func (c *clusters) get(ctx context.Context, name string) *control.ClusterState {
	if cs, ok := c.states[name]; ok {
		return cs
	}
	var out *control.ClusterState
	if c.tc != nil {
		if cs, err := control.NewClient(c.tc).Status(ctx, name); err == nil {
			out = &cs
		}
	}
	c.states[name] = out
	return out
}

// Investigate diagnoses the job, asking the cluster for its state (and its
// booting nodes' start times) only when the evidence at hand points at the nodes,
// so that a running job costs no query. With a nil tc the cluster is not asked;
// one that refuses (a tenant's key may not query it) leaves the diagnosis as the
// rest of the evidence shows it.
func Investigate(ctx context.Context, tc client.Client, cluster string, e Evidence, now time.Time) *Waiting {
	return investigate(ctx, &clusters{tc: tc, states: map[string]*control.ClusterState{}}, cmp.Or(cluster, control.DefaultCluster), e, now)
}

func investigate(ctx context.Context, cc *clusters, cluster string, e Evidence, now time.Time) *Waiting {
	w := Diagnose(e, now)
	if w == nil || e.Cluster != nil || !nodeReason(w.Reason) {
		return w
	}
	cs := cc.get(ctx, cluster)
	if cs == nil {
		return w
	}
	e.Cluster = cs
	if n := classify(cs, e.Job.ID); len(n.assigned) == 0 && len(n.booting) > 0 {
		e.Booted = bootTimes(ctx, cc.tc, n.booting)
	}
	return Diagnose(e, now)
}

// maxBootLookups bounds the NodeWorkflows described for one diagnosis.
const maxBootLookups = 8

// bootTimes reads when the nodes' NodeWorkflows started: when they began to boot.
func bootTimes(ctx context.Context, tc client.Client, ids []string) map[string]time.Time {
	out := map[string]time.Time{}
	for _, id := range ids[:min(len(ids), maxBootLookups)] {
		resp, err := tc.DescribeWorkflowExecution(ctx, control.NodeWorkflowID(id), "")
		if err != nil {
			continue
		}
		if st := resp.GetWorkflowExecutionInfo().GetStartTime(); st != nil {
			out[id] = st.AsTime()
		}
	}
	return out
}

// Explain sets the Waiting of each job in jobs that has not ended, from the
// jobs' progress, their clients' upload records, the node agents' records (read
// once if records is nil) and, when those point at the nodes, the cluster's state.
// It is best effort: what cannot be read leaves a vaguer diagnosis, not an error.
// viewer is as in Evidence.
func Explain(ctx context.Context, tc client.Client, st store.Store, viewer string, jobs []Job, records []store.Node) {
	cc := &clusters{tc: tc, states: map[string]*control.ClusterState{}}
	now := time.Now()
	for i := range jobs {
		j := &jobs[i]
		if j.State.Terminal() {
			continue
		}
		if records == nil {
			var err error
			if records, err = st.ListNodes(ctx); err != nil {
				records = []store.Node{}
			}
		}
		if j.Progress == nil {
			if p, err := st.Progress(ctx, j.ID); err == nil {
				j.Progress = ProgressOf(p)
			}
		}
		e := Evidence{Job: *j, Records: records, Viewer: viewer}
		if j.Progress != nil && !j.Progress.Sealed {
			if us, ok := st.(store.Uploads); ok {
				if u, err := us.Upload(ctx, j.ID); err == nil {
					e.Upload = &u
				}
			}
		}
		cluster := control.DefaultCluster
		if j.Spec != nil && j.Spec.Cluster != "" {
			cluster = j.Spec.Cluster
		}
		j.Waiting = investigate(ctx, cc, cluster, e, now)
	}
}
