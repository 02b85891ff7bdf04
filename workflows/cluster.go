package workflows

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/burla-temporal/burla/activities"
	"github.com/burla-temporal/burla/gpu"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/names"
	"github.com/burla-temporal/burla/provider"
)

// StandbySpec is what a cluster keeps warm while no job runs.
type StandbySpec struct {
	Nodes    int    `json:"nodes"`
	CPUs     int    `json:"cpus"`
	RAMMB    int    `json:"ram_mb,omitempty"`
	Provider string `json:"provider"`
	// MaxGrow bounds how many nodes beyond standby one job may add; 0 means 16.
	MaxGrow int `json:"max_grow,omitempty"`
	// MaxNodes bounds the nodes the cluster runs at once, replacements and grows
	// included; 0 means no bound. On one machine it is the standby count.
	MaxNodes int `json:"max_nodes,omitempty"`
	// Envs are users' images every node keeps warm workers in, one per CPU each,
	// besides the default environment's.
	Envs []string `json:"envs,omitempty"`
	// Project and Zone place cloud nodes (gce); empty means the provider's own.
	Project string `json:"project,omitempty"`
	Zone    string `json:"zone,omitempty"`
	// GPU gives standby nodes GPUs ("A100:4", a count a machine of the model
	// has); their CPUs and memory are then the machine's. Region places them in
	// a region when Zone names none; DiskGB sizes their boot disks. Only gce
	// nodes have them.
	GPU    string `json:"gpu,omitempty"`
	Region string `json:"region,omitempty"`
	DiskGB int    `json:"disk_gb,omitempty"`
	// TenantMaxNodes bounds the nodes each tenant's jobs hold at once, those
	// started or set aside for them included, so that no tenant takes the whole
	// cluster from the others; 0 means no bound. A job of a tenant at its bound
	// waits for a node of its share as a job waits for busy nodes.
	TenantMaxNodes int `json:"tenant_max_nodes,omitempty"`
	// TenantNodes bounds the tenants it names instead of TenantMaxNodes: a
	// larger share for some, a smaller one for others; 0 frees a tenant of any.
	TenantNodes map[string]int `json:"tenant_nodes,omitempty"`
}

// Validate reports the first thing wrong with s.
func (s StandbySpec) Validate() error {
	switch {
	case s.Nodes < 0:
		return fmt.Errorf("standby nodes %d is negative", s.Nodes)
	case s.CPUs < 1:
		return fmt.Errorf("standby CPUs per node %d is less than 1", s.CPUs)
	case s.Provider == "":
		return errors.New("standby spec names no provider")
	case (s.Project != "" || s.Zone != "") && s.Provider != "gce":
		return fmt.Errorf("a project and zone place gce nodes, not %s ones", s.Provider)
	case s.MaxNodes != 0 && s.MaxNodes < s.Nodes:
		return fmt.Errorf("max nodes %d is less than the %d standby nodes", s.MaxNodes, s.Nodes)
	case (s.GPU != "" || s.Region != "" || s.DiskGB != 0) && s.Provider != "gce":
		return fmt.Errorf("GPUs, a region and a disk size are for gce nodes, not %s ones", s.Provider)
	case s.Region != "" && !job.ValidRegion(s.Region):
		return fmt.Errorf("standby region %q is not a region name such as us-central1", s.Region)
	case s.Region != "" && s.Zone != "" && provider.RegionOf(s.Zone) != s.Region:
		return fmt.Errorf("standby zone %s is not in region %s", s.Zone, s.Region)
	case s.DiskGB != 0 && (s.DiskGB < job.MinDiskGB || s.DiskGB > job.MaxDiskGB):
		return fmt.Errorf("standby disk of %d GB is outside %d to %d", s.DiskGB, job.MinDiskGB, job.MaxDiskGB)
	case s.TenantMaxNodes < 0:
		return fmt.Errorf("tenant max nodes %d is negative", s.TenantMaxNodes)
	}
	for _, t := range s.tenantNames() {
		switch n := s.TenantNodes[t]; {
		case !job.ValidTenant(t):
			return fmt.Errorf("tenant nodes: %q is not a tenant name (lower-case letters, digits and dashes)", t)
		case n < 0:
			return fmt.Errorf("tenant nodes of %s: %d is negative", t, n)
		}
	}
	g, err := gpu.Parse(s.GPU)
	if err != nil {
		return fmt.Errorf("standby GPU: %w", err)
	}
	if !g.IsZero() {
		if _, ok := g.Model.ShapeOf(g.Count); !ok {
			return fmt.Errorf("standby GPU %s: no machine has exactly %d %s GPUs", s.GPU, g.Count, g.Model.Name)
		}
	}
	return nil
}

// tenantNames returns the tenants TenantNodes names, in order: Validate runs in
// the workflow too, and its first complaint must not depend on map order.
//
//workflowcheck:ignore the map is read in any order, then sorted
func (s StandbySpec) tenantNames() []string { return slices.Sorted(maps.Keys(s.TenantNodes)) }

// NodeState is where a node is in its life.
type NodeState string

const (
	NodeProvisioning NodeState = "provisioning"
	NodeReady        NodeState = "ready"
	NodeAssigned     NodeState = "assigned"
	NodeResetting    NodeState = "resetting"
	NodeDeleting     NodeState = "deleting"
)

// ClusterNode is the cluster's record of one node.
type ClusterNode struct {
	ID    string    `json:"id"`
	State NodeState `json:"state"`
	// Job is the job the node works on, or, while provisioning, the job it was
	// started for (a grow).
	Job   string `json:"job,omitempty"`
	CPUs  int    `json:"cpus"`
	RAMMB int    `json:"ram_mb,omitempty"`
	// GPU is the node's GPUs ("A100:4"), Region the region it is in when the
	// cluster knows it, DiskGB its boot disk when the cluster chose it.
	GPU    string `json:"gpu,omitempty"`
	Region string `json:"region,omitempty"`
	DiskGB int    `json:"disk_gb,omitempty"`
}

// JobClaim is a job's hold on the cluster.
type JobClaim struct {
	JobID     string   `json:"job"`
	Slots     int      `json:"slots"` // calls it wants to run at once
	FuncCPU   int      `json:"func_cpu"`
	FuncRAMMB int      `json:"func_ram_mb,omitempty"`
	Grow      bool     `json:"grow,omitempty"` // start nodes for the job when too few are ready
	Nodes     []string `json:"nodes"`
	// GPU (per call), Region and DiskGB are what the job needs of its nodes
	// besides CPUs and memory; only nodes that have them take it.
	GPU    string `json:"gpu,omitempty"`
	Region string `json:"region,omitempty"`
	DiskGB int    `json:"disk_gb,omitempty"`
	// BootFailures are the reasons the nodes started for the job, while it
	// waited for its first, failed to boot.
	BootFailures []string `json:"boot_failures,omitempty"`
	// WaitingSince is when the job began waiting for its first node, in
	// version 1 of "short-wait": the job's requests each wait a slice of its
	// wait, and it fails once the whole has passed with no node.
	WaitingSince time.Time `json:"waiting_since,omitempty"`
}

// ClusterState is everything a ClusterWorkflow carries across continue-as-new.
type ClusterState struct {
	Name         string                  `json:"name"`
	Standby      StandbySpec             `json:"standby"`
	Nodes        map[string]*ClusterNode `json:"nodes"`
	Jobs         map[string]*JobClaim    `json:"jobs"`
	Seq          int                     `json:"seq"` // node IDs are <cluster>-<seq>
	ShuttingDown bool                    `json:"shutting_down,omitempty"`
	// Lost counts nodes lost over the cluster's life.
	Lost int `json:"lost"`
	// LastLost are the last few nodes lost or failed, and why, newest last.
	LastLost []LostNode `json:"last_lost,omitempty"`
}

// LostNode is a node the cluster lost, and why.
type LostNode struct {
	ID     string    `json:"id"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// lastLostKept is how many lost nodes ClusterState.LastLost keeps.
const lastLostKept = 5

// ClusterInput starts or continues a ClusterWorkflow.
type ClusterInput struct {
	State ClusterState
}

// NodeEvent is what a NodeWorkflow tells its cluster.
type NodeEvent struct {
	NodeID string
	Event  string // "ready", "lost", "deleted", "failed"
	Reason string
}

// ReleaseRequest tells the cluster a job has ended.
type ReleaseRequest struct {
	JobID string
}

// NodesAdded hands a running job more nodes.
type NodesAdded struct {
	Nodes []activities.Assignment
}

// NodeLost tells a job one of its nodes is gone.
type NodeLost struct {
	NodeID string
}

// Cluster keeps a cluster's standby nodes up and hands nodes to jobs. It runs for
// the life of the cluster, continuing as new when its history grows large.
func Cluster(ctx workflow.Context, in ClusterInput) (ClusterState, error) {
	c := &cluster{ctx: ctx, st: in.State, log: workflow.GetLogger(ctx), wake: workflow.NewBufferedChannel(ctx, 1)}
	if c.st.Nodes == nil {
		c.st.Nodes = map[string]*ClusterNode{}
	}
	if c.st.Jobs == nil {
		c.st.Jobs = map[string]*JobClaim{}
	}
	if err := c.st.Standby.Validate(); err != nil {
		return c.st, temporal.NewNonRetryableApplicationError("cluster "+c.st.Name+": "+err.Error(), names.ErrBadStandby, nil)
	}
	if err := workflow.SetQueryHandler(ctx, names.QueryStatus, func() (ClusterState, error) { return c.st, nil }); err != nil {
		return c.st, err
	}
	notShuttingDown := func() error {
		if c.st.ShuttingDown {
			return c.shuttingDown()
		}
		return nil
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, names.UpdateReserve, c.reserve, workflow.UpdateHandlerOptions{
		Validator: func(ctx workflow.Context, r activities.ReserveRequest) error {
			if r.JobID == "" || r.Slots < 1 || r.FuncCPU < 1 {
				return fmt.Errorf("bad reserve request %+v", r)
			}
			if _, err := gpu.Parse(r.GPU); err != nil {
				return fmt.Errorf("reserve request of job %s: %w", r.JobID, err)
			}
			return notShuttingDown()
		},
	}); err != nil {
		return c.st, err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, names.UpdateSetStandby, c.setStandby, workflow.UpdateHandlerOptions{
		Validator: func(ctx workflow.Context, s StandbySpec) error {
			if err := s.Validate(); err != nil {
				return err
			}
			return notShuttingDown()
		},
	}); err != nil {
		return c.st, err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, names.UpdateRestart, c.restart, workflow.UpdateHandlerOptions{
		Validator: func(ctx workflow.Context) error { return notShuttingDown() },
	}); err != nil {
		return c.st, err
	}
	if err := workflow.SetUpdateHandler(ctx, names.UpdateShutdown, c.shutdown); err != nil {
		return c.st, err
	}

	events := workflow.GetSignalChannel(ctx, names.SignalNodeEvent)
	releases := workflow.GetSignalChannel(ctx, names.SignalRelease)
	// Version 1 of "reconcile-claims" looks, every reconcileEvery while jobs hold
	// claims, for jobs whose workflows have closed without releasing theirs (one
	// terminated from outside never does) and releases them.
	c.reconcile = workflow.GetVersion(ctx, "reconcile-claims", workflow.DefaultVersion, 1) >= 1
	var look workflow.Future // the timer before the next look, or the look itself
	looking := false
	c.ensureStandby()
	for {
		sel := workflow.NewSelector(ctx)
		if c.reconcile && look == nil && len(c.st.Jobs) > 0 && !c.closing {
			look, looking = workflow.NewTimer(ctx, reconcileEvery), false
		}
		if look != nil {
			sel.AddFuture(look, func(f workflow.Future) {
				if !looking {
					if c.closing {
						look = nil // the next run looks
						return
					}
					look, looking = c.lookForClosedJobs(), true
					return
				}
				look, looking = nil, false
				var closed []string
				if err := f.Get(ctx, &closed); err != nil {
					c.log.Warn("could not look for ended jobs", "error", err)
					return
				}
				for _, id := range closed {
					if _, ok := c.st.Jobs[id]; ok {
						c.log.Warn("releasing the nodes of a job that ended without releasing them", "job", id)
						c.release(id)
					}
				}
			})
		}
		sel.AddReceive(events, func(ch workflow.ReceiveChannel, _ bool) {
			var e NodeEvent
			ch.Receive(ctx, &e)
			c.nodeEvent(e)
		})
		sel.AddReceive(releases, func(ch workflow.ReceiveChannel, _ bool) {
			var r ReleaseRequest
			ch.Receive(ctx, &r)
			c.release(r.JobID)
		})
		sel.AddReceive(c.wake, func(ch workflow.ReceiveChannel, _ bool) { ch.Receive(ctx, nil) })
		if c.closing {
			quiet := func() bool { return workflow.AllHandlersFinished(ctx) && c.inflight == 0 && !looking }
			if err := workflow.Await(ctx, func() bool { return sel.HasPending() || quiet() }); err != nil {
				return c.st, err
			}
			if !sel.HasPending() {
				return c.st, workflow.NewContinueAsNewError(ctx, names.WorkflowCluster, ClusterInput{State: c.st})
			}
		}
		sel.Select(ctx)
		if c.st.ShuttingDown && len(c.st.Nodes) == 0 {
			break
		}
		if !c.closing && workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			if workflow.GetVersion(ctx, "quiet-continue", workflow.DefaultVersion, 1) >= 1 {
				c.closing = true
				continue
			}
			if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
				return c.st, err
			}
			c.drain(events, releases)
			return c.st, workflow.NewContinueAsNewError(ctx, names.WorkflowCluster, ClusterInput{State: c.st})
		}
	}
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return c.st, err
	}
	return c.st, nil
}

// reconcileEvery is how often a cluster looks for jobs that ended without
// releasing their nodes.
const reconcileEvery = 20 * time.Second

// lookForClosedJobs asks Temporal which of the jobs holding claims have closed.
func (c *cluster) lookForClosedJobs() workflow.Future {
	lctx := workflow.WithLocalActivityOptions(c.ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 3},
	})
	return workflow.ExecuteLocalActivity(lctx, names.ActivityClosedJobs, activities.ClosedJobsInput{JobIDs: c.sortedJobIDs()})
}

type cluster struct {
	ctx workflow.Context
	st  ClusterState
	// reconcile is set when the cluster releases the claims of jobs that
	// closed without releasing them ("reconcile-claims").
	reconcile bool
	// inflight counts the signals and child starts not yet acknowledged (track).
	inflight int
	// closing is set once Temporal suggests continuing as new, in version 1 of
	// "quiet-continue": the loop then serves everything as before until nothing
	// is in flight (no handler running, no signal or child start unacknowledged,
	// no signal unread, no look under way), and continues as new then. A reserve
	// that would wait for nodes is told to come back (ClusterContinuing, which
	// the job retries) rather than hold the run open: under steady load one
	// always would.
	closing bool
	// wake makes the main loop look at the state again after an update that
	// may end the cluster (a shutdown with no node left to wait for), or that
	// made a claim it must watch.
	wake workflow.Channel
	log  interface {
		Info(string, ...interface{})
		Warn(string, ...interface{})
	}
}

// drain handles every signal already delivered, so none is lost across continue-as-new.
func (c *cluster) drain(events, releases workflow.ReceiveChannel) {
	for {
		var e NodeEvent
		var r ReleaseRequest
		switch {
		case events.ReceiveAsync(&e):
			c.nodeEvent(e)
		case releases.ReceiveAsync(&r):
			c.release(r.JobID)
		default:
			return
		}
	}
}

// sortedNodes returns the nodes in ID order. Workflow code must not depend on map
// order, so every walk over the nodes goes through here.
//
//workflowcheck:ignore the map is read in any order, then sorted
func (c *cluster) sortedNodes() []*ClusterNode {
	ns := make([]*ClusterNode, 0, len(c.st.Nodes))
	for _, n := range c.st.Nodes {
		ns = append(ns, n)
	}
	slices.SortFunc(ns, func(a, b *ClusterNode) int { return compareIDs(a.ID, b.ID) })
	return ns
}

// compareIDs orders node IDs by length first, so that "c-10" sorts after "c-9".
func compareIDs(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// idle counts the nodes that count toward standby: not working for or started for
// a job, and not going away.
func (c *cluster) idle() int {
	n := 0
	for _, nd := range c.sortedNodes() {
		if nd.Job == "" && nd.State != NodeDeleting {
			n++
		}
	}
	return n
}

func (c *cluster) ensureStandby() {
	if c.st.ShuttingDown {
		return
	}
	for c.idle() < c.st.Standby.Nodes && c.canStart() {
		c.startNode("")
	}
}

// canStart reports whether one more node stays within MaxNodes.
func (c *cluster) canStart() bool {
	if c.st.Standby.MaxNodes == 0 {
		return true
	}
	live := 0
	for _, nd := range c.sortedNodes() {
		if nd.State != NodeDeleting {
			live++
		}
	}
	return live < c.st.Standby.MaxNodes
}

// startNode starts a NodeWorkflow for a new standby node, or for a job's grow if
// job is set.
func (c *cluster) startNode(job string) *ClusterNode {
	return c.startShaped(job, c.standbyNode(), false)
}

// startShaped starts a NodeWorkflow for a new node shaped like shape: for a
// job's grow if job is set. A node that is anywhere in its region (one with GPUs
// or a region of its own) is left to its provider to place in a zone of that
// region which has what it needs, rather than in the standby's zone.
func (c *cluster) startShaped(job string, shape ClusterNode, anywhereInRegion bool) *ClusterNode {
	c.st.Seq++
	id := fmt.Sprintf("%s-%d", c.st.Name, c.st.Seq)
	nd := &ClusterNode{ID: id, State: NodeProvisioning, Job: job, CPUs: shape.CPUs, RAMMB: shape.RAMMB,
		GPU: shape.GPU, Region: shape.Region, DiskGB: shape.DiskGB}
	c.st.Nodes[id] = nd
	cctx := workflow.WithChildOptions(c.ctx, workflow.ChildWorkflowOptions{
		WorkflowID:        names.NodeWorkflowID(id),
		TaskQueue:         names.TaskQueueControl,
		ParentClosePolicy: enumspb.PARENT_CLOSE_POLICY_ABANDON,
	})
	spec := provider.NodeSpec{ID: id, Cluster: c.st.Name, CPUs: nd.CPUs, RAMMB: nd.RAMMB, Envs: c.st.Standby.Envs,
		Project: c.st.Standby.Project, Zone: c.st.Standby.Zone, GPU: nd.GPU, DiskGB: nd.DiskGB}
	if c.st.Standby.Zone == "" {
		spec.Region = c.st.Standby.Region
	}
	if anywhereInRegion {
		spec.Zone, spec.Region = "", nd.Region
	}
	c.track(workflow.ExecuteChildWorkflow(cctx, names.WorkflowNode, NodeInput{
		Spec:              spec,
		Provider:          c.st.Standby.Provider,
		ClusterWorkflowID: workflow.GetInfo(c.ctx).WorkflowExecution.ID,
	}).GetChildWorkflowExecution())
	c.log.Info("starting node", "node", id, "for_job", job)
	return nd
}

func (c *cluster) signalNode(id, signal string) {
	c.track(workflow.SignalExternalWorkflow(c.ctx, names.NodeWorkflowID(id), "", signal, nil))
}

func (c *cluster) signalJob(jobID, signal string, arg any) {
	c.track(workflow.SignalExternalWorkflow(c.ctx, jobID, "", signal, arg))
}

// track counts f, a signal sent or a child started, until the server has
// acknowledged it: a run that continues as new before then may lose it, since
// the server drops what a closed run asked for.
func (c *cluster) track(f workflow.Future) {
	c.inflight++
	workflow.Go(c.ctx, func(ctx workflow.Context) {
		_ = f.Get(ctx, nil) // a failure was logged where it matters; here it is only done
		c.inflight--
	})
}

func (c *cluster) deleteNode(nd *ClusterNode) {
	if nd.State == NodeDeleting {
		return
	}
	nd.State = NodeDeleting
	c.signalNode(nd.ID, names.SignalDeleteNode)
}

func slotsOn(nd *ClusterNode, funcCPU, funcRAMMB int) int {
	s := nd.CPUs / funcCPU
	if funcRAMMB > 0 && nd.RAMMB > 0 {
		s = min(s, nd.RAMMB/funcRAMMB)
	}
	return s
}

// hasNeeds reports whether the claim's job needs more of its nodes than CPUs and
// memory: GPUs, a region or a disk.
func (cl *JobClaim) hasNeeds() bool { return cl.GPU != "" || cl.Region != "" || cl.DiskGB != 0 }

// slots is how many of a claim's calls node nd runs at once: none if it lacks
// the GPUs, region or disk the claim needs, and no more than its GPUs allow.
func (c *cluster) slots(nd *ClusterNode, cl *JobClaim) int {
	s := slotsOn(nd, cl.FuncCPU, cl.FuncRAMMB)
	if !cl.hasNeeds() {
		return s
	}
	if cl.Region != "" && nd.Region != cl.Region || cl.DiskGB > 0 && nd.DiskGB < cl.DiskGB {
		return 0
	}
	have, _ := gpu.Parse(nd.GPU) // specs were validated; a bad one is no GPU
	want, _ := gpu.Parse(cl.GPU)
	calls, ok := gpu.Fits(have, want)
	switch {
	case !ok:
		return 0
	case calls >= 0:
		return min(s, calls)
	}
	return s
}

// standbyRegion is the region of standby nodes, "" when the cluster does not
// know it (the provider's own).
func (c *cluster) standbyRegion() string {
	if c.st.Standby.Zone != "" {
		return provider.RegionOf(c.st.Standby.Zone)
	}
	return c.st.Standby.Region
}

// standbyNode is what a standby node is like. Standby GPU nodes are the machine
// that has their GPUs, with its CPUs and memory.
func (c *cluster) standbyNode() ClusterNode {
	sb := c.st.Standby
	nd := ClusterNode{CPUs: sb.CPUs, RAMMB: sb.RAMMB, GPU: sb.GPU, Region: c.standbyRegion(), DiskGB: sb.DiskGB}
	if g, err := gpu.Parse(sb.GPU); err == nil && !g.IsZero() {
		if shape, ok := g.Model.ShapeOf(g.Count); ok {
			nd.CPUs, nd.RAMMB = shape.CPUs, shape.RAMMB
		}
	}
	return nd
}

// standbyShaped reports whether nd is like the standby nodes, so that it may
// join them when no job holds it. A node started for a job's GPUs, region or
// disk is not: it goes once the job is done with it.
func (c *cluster) standbyShaped(nd *ClusterNode) bool {
	return nd.GPU == c.st.Standby.GPU && nd.DiskGB == c.st.Standby.DiskGB && (nd.Region == "" || nd.Region == c.standbyRegion())
}

// growNode is the node the cluster starts for a claim that wants want more
// calls at once: a standby-sized node without GPUs, in the region and with the
// disk the claim needs; for a claim that needs GPUs, the machine with the fewest
// of them that runs want calls (or as many as a machine can), and at least one.
func (c *cluster) growNode(cl *JobClaim, want int) ClusterNode {
	sb := c.st.Standby
	nd := ClusterNode{CPUs: sb.CPUs, RAMMB: sb.RAMMB}
	if !cl.hasNeeds() {
		return nd
	}
	nd.Region = cmp.Or(cl.Region, c.standbyRegion())
	nd.DiskGB = max(cl.DiskGB, sb.DiskGB)
	g, err := gpu.Parse(cl.GPU)
	if err != nil || g.IsZero() {
		return nd
	}
	need := min(max(want, 1)*g.Count, g.Model.MaxGPUs())
	for _, shape := range g.Model.Shapes {
		if shape.GPUs < need && shape.GPUs < g.Model.MaxGPUs() {
			continue
		}
		nd.CPUs, nd.RAMMB, nd.GPU = shape.CPUs, shape.RAMMB, gpu.Spec{Model: g.Model, Count: shape.GPUs}.String()
		if c.slots(&nd, cl) >= 1 {
			break
		}
	}
	return nd
}

// perGrownNode is how many of a claim's calls a node started for it runs at once.
func (c *cluster) perGrownNode(cl *JobClaim) int {
	nd := c.growNode(cl, cl.Slots)
	return c.slots(&nd, cl)
}

// canGrowFor reports whether the cluster's provider can start nodes that have
// what the claim needs: any provider starts plain nodes; only gce chooses GPUs,
// regions and disks.
func (c *cluster) canGrowFor(cl *JobClaim) bool {
	return !cl.hasNeeds() || c.st.Standby.Provider == "gce"
}

// compatible fails a claim with ErrNoCompatibleNodes when no node the cluster
// has, keeps on standby, or can start for it has what it needs, saying what it
// asked for, what the nodes have, and what to do.
func (c *cluster) compatible(cl *JobClaim, fits func(*ClusterNode) bool) error {
	growable := cl.Grow && c.canGrowFor(cl)
	if growable {
		shape := c.growNode(cl, cl.Slots)
		if fits(&shape) {
			return nil
		}
	}
	if sb := c.standbyNode(); c.st.Standby.Nodes > 0 && fits(&sb) {
		return nil
	}
	for _, nd := range c.sortedNodes() {
		if nd.State != NodeDeleting && fits(nd) {
			return nil
		}
	}
	var asks, options []string
	if cl.GPU != "" {
		asks = append(asks, "GPU "+cl.GPU+" per call")
		options = append(options, "burla.FuncGPU")
	}
	if cl.Region != "" {
		asks = append(asks, "region "+cl.Region)
		options = append(options, "burla.Region")
	}
	if cl.DiskGB != 0 {
		asks = append(asks, fmt.Sprintf("a disk of at least %d GB", cl.DiskGB))
		options = append(options, "burla.DiskGB")
	}
	asks = append(asks, fmt.Sprintf("func_cpu=%d", cl.FuncCPU))
	if cl.FuncRAMMB > 0 {
		asks = append(asks, fmt.Sprintf("func_ram=%dMB", cl.FuncRAMMB))
	}
	var todo string
	switch {
	case c.st.Standby.Provider != "gce":
		todo = fmt.Sprintf("this cluster's nodes come from the %s provider, which cannot start nodes with GPUs, in a region or with a disk size of a job's choosing: "+
			"run the job on a gce cluster with burla.Grow(), or drop %s", c.st.Standby.Provider, strings.Join(options, " and "))
	case !cl.Grow:
		todo = "start the job with burla.Grow() so that the cluster starts nodes that have them, " +
			"or give the cluster's standby nodes what it needs (the standby spec's gpu, region and disk_gb)"
	default:
		shape := c.growNode(cl, cl.Slots)
		todo = fmt.Sprintf("a node started for it would have %s, too little for one call: lower func_cpu or func_ram, or ask for more GPUs per call", describeNode(&shape))
	}
	return temporal.NewNonRetryableApplicationError(
		fmt.Sprintf("no compatible nodes: the job asks for %s; cluster %s has %s; %s",
			strings.Join(asks, ", "), c.st.Name, c.describeNodes(), todo),
		names.ErrNoCompatibleNodes, nil)
}

// describeNodes says what the cluster's nodes are like, alike nodes counted together.
func (c *cluster) describeNodes() string {
	var kinds []string
	counts := map[string]int{}
	for _, nd := range c.sortedNodes() {
		if nd.State == NodeDeleting {
			continue
		}
		d := describeNode(nd)
		if counts[d] == 0 {
			kinds = append(kinds, d)
		}
		counts[d]++
	}
	if len(kinds) == 0 {
		sb := c.standbyNode()
		return fmt.Sprintf("no nodes (its standby nodes would have %s)", describeNode(&sb))
	}
	out := make([]string, len(kinds))
	for i, d := range kinds {
		out[i] = fmt.Sprintf("%d node(s) with %s", counts[d], d)
	}
	return strings.Join(out, "; ")
}

func describeNode(nd *ClusterNode) string {
	d := fmt.Sprintf("%d CPUs", nd.CPUs)
	if nd.RAMMB > 0 {
		d += fmt.Sprintf(", %d MB", nd.RAMMB)
	}
	if nd.GPU != "" {
		d += ", GPU " + nd.GPU
	} else {
		d += ", no GPU"
	}
	if nd.Region != "" {
		d += ", in " + nd.Region
	} else {
		d += ", in no region the cluster chose"
	}
	if nd.DiskGB > 0 {
		d += fmt.Sprintf(", %d GB disk", nd.DiskGB)
	}
	return d
}

// claimed is how many slots the nodes of a claim give it.
func (c *cluster) claimed(cl *JobClaim) int {
	total := 0
	for _, id := range cl.Nodes {
		if nd, ok := c.st.Nodes[id]; ok {
			total += c.slots(nd, cl)
		}
	}
	return total
}

// assign gives a ready node to a claim.
func (c *cluster) assign(nd *ClusterNode, cl *JobClaim) activities.Assignment {
	nd.State, nd.Job = NodeAssigned, cl.JobID
	cl.Nodes = append(cl.Nodes, nd.ID)
	want := cl.Slots - c.claimed(cl) + c.slots(nd, cl)
	return activities.Assignment{NodeID: nd.ID, TaskQueue: names.NodeTaskQueue(nd.ID),
		Workers: max(1, min(c.slots(nd, cl), want))}
}

// reserve gives a job the ready nodes it can use at once, starts more in the
// background when it wants more than are ready (they are handed to it as they
// become ready), and refills standby behind it.
func (c *cluster) reserve(ctx workflow.Context, r activities.ReserveRequest) (activities.ReserveResponse, error) {
	if cl, ok := c.st.Jobs[r.JobID]; ok {
		// A retried request: answer with what the job holds. One that holds no
		// node yet was told to ask again by a run that ended (ClusterContinuing):
		// version 1 of "requeue" waits on for it, in its place.
		if len(cl.Nodes) == 0 && workflow.GetVersion(ctx, "requeue", workflow.DefaultVersion, 1) >= 1 {
			return c.awaitFirstNode(ctx, r, cl, func(nd *ClusterNode) bool { return c.slots(nd, cl) >= 1 })
		}
		var resp activities.ReserveResponse
		for _, id := range cl.Nodes {
			if nd, ok := c.st.Nodes[id]; ok {
				resp.Nodes = append(resp.Nodes, activities.Assignment{NodeID: id, TaskQueue: names.NodeTaskQueue(id), Workers: c.slots(nd, cl)})
			}
		}
		return resp, nil
	}
	cl := &JobClaim{JobID: r.JobID, Slots: r.Slots, FuncCPU: r.FuncCPU, FuncRAMMB: r.FuncRAMMB, Grow: r.Grow}
	if r.GPU != "" || r.Region != "" || r.DiskGB != 0 {
		// Version 1 gives a job that needs GPUs, a region or a disk only nodes
		// that have them; the default version knew of no such needs.
		if workflow.GetVersion(ctx, "node-needs", workflow.DefaultVersion, 1) != workflow.DefaultVersion {
			cl.GPU, cl.Region, cl.DiskGB = r.GPU, r.Region, r.DiskGB
		}
	}
	perNode := c.perGrownNode(cl)
	fits := func(nd *ClusterNode) bool { return c.slots(nd, cl) >= 1 }
	if cl.hasNeeds() {
		if err := c.compatible(cl, fits); err != nil {
			return activities.ReserveResponse{}, err
		}
	}
	anyFits := perNode >= 1
	for _, nd := range c.sortedNodes() {
		anyFits = anyFits || fits(nd)
	}
	if !anyFits {
		return activities.ReserveResponse{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("no node of cluster %s can run a call with func_cpu=%d func_ram=%dMB (nodes have %d CPUs)", c.st.Name, r.FuncCPU, r.FuncRAMMB, c.st.Standby.CPUs),
			names.ErrNoNodes, nil)
	}
	readyFit := func() bool {
		if !c.tenantRoom(cl) {
			return false // the tenant waits for its share as for busy nodes
		}
		for _, nd := range c.sortedNodes() {
			if nd.State == NodeReady && nd.Job == "" && fits(nd) {
				return true
			}
		}
		return false
	}
	c.st.Jobs[r.JobID] = cl
	if c.reconcile {
		c.wake.SendAsync(struct{}{}) // the main loop watches the claims for ended jobs
	}
	if !readyFit() {
		// Nothing ready: take what is coming (nodes resetting or starting), grow
		// for the rest, and wait for the job's first node.
		c.earmark(cl, fits)
		c.grow(cl, perNode)
		// Without grow, this waits for a node to come free from another job.
		// Version 1 gives up as soon as every node started for the job has failed
		// to boot, and says why a job found no node: those failures, or every node
		// that fits being busy with other jobs.
		return c.awaitFirstNode(ctx, r, cl, fits)
	}
	var resp activities.ReserveResponse
	for _, nd := range c.sortedNodes() {
		if c.claimed(cl) >= cl.Slots || !c.tenantRoom(cl) {
			break
		}
		if nd.State == NodeReady && nd.Job == "" && fits(nd) {
			resp.Nodes = append(resp.Nodes, c.assign(nd, cl))
		}
	}
	c.earmark(cl, fits)
	c.grow(cl, perNode)
	c.ensureStandby()
	return resp, nil
}

// firstNodeWait is how long a job waits for its first node; reserveSlice is how
// much of it one request waits (version 1 of "short-wait").
const (
	firstNodeWait = 5 * time.Minute
	reserveSlice  = 8 * time.Second
)

// awaitFirstNode waits until the claim, which holds no node, gets its first one,
// and answers the reserve with what it then holds; or fails it with why no node
// came.
func (c *cluster) awaitFirstNode(ctx workflow.Context, r activities.ReserveRequest, cl *JobClaim, fits func(*ClusterNode) bool) (activities.ReserveResponse, error) {
	why := workflow.GetVersion(ctx, "reserve-why", workflow.DefaultVersion, 1)
	released := func() bool { return c.reconcile && c.st.Jobs[r.JobID] != cl }
	// Version 1 of "short-wait" waits at most reserveSlice in one request, and
	// counts the job's 5 minutes from its first: a workflow admits ten updates in
	// flight, and with ten jobs waiting the whole five minutes, jobs the cluster
	// had given nodes could not hear so (their answers queued behind the waiting
	// ones) while those nodes stood idle.
	wait, left := firstNodeWait, firstNodeWait
	if workflow.GetVersion(ctx, "short-wait", workflow.DefaultVersion, 1) >= 1 {
		if cl.WaitingSince.IsZero() {
			cl.WaitingSince = workflow.Now(ctx)
		}
		left = max(cl.WaitingSince.Add(firstNodeWait).Sub(workflow.Now(ctx)), 0)
		wait = min(left, reserveSlice)
	}
	ok, err := workflow.AwaitWithTimeout(ctx, wait, func() bool {
		return len(cl.Nodes) > 0 || c.st.ShuttingDown || why == 1 && c.bootFailed(cl) || released() || c.closing
	})
	if err != nil {
		return activities.ReserveResponse{}, err
	}
	if !ok && left > wait && !released() {
		return activities.ReserveResponse{}, temporal.NewApplicationError(
			fmt.Sprintf("job %s is still queued for nodes of cluster %s: it asks again", r.JobID, c.st.Name), names.ErrStillQueued)
	}
	if c.closing && len(cl.Nodes) == 0 && !released() {
		// The claim keeps its place (and the nodes coming for it): the job
		// asks the next run again, which waits on for it.
		return activities.ReserveResponse{}, temporal.NewApplicationError(
			fmt.Sprintf("cluster %s is continuing as new: job %s asks again", c.st.Name, r.JobID), names.ErrClusterContinuing)
	}
	if released() {
		// The job ended while it waited (it was terminated, say): nobody
		// reads this answer.
		return activities.ReserveResponse{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("job %s ended while it waited for nodes", r.JobID), names.ErrNoNodes, nil)
	}
	if !ok || len(cl.Nodes) == 0 {
		delete(c.st.Jobs, r.JobID)
		if why == 1 {
			return activities.ReserveResponse{}, c.noNodeError(cl, fits, !ok)
		}
		return activities.ReserveResponse{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("no node of cluster %s became ready within 5 minutes", c.st.Name), names.ErrNoNodes, nil)
	}
	var resp activities.ReserveResponse
	for _, id := range cl.Nodes {
		nd := c.st.Nodes[id]
		resp.Nodes = append(resp.Nodes, activities.Assignment{NodeID: id, TaskQueue: names.NodeTaskQueue(id), Workers: c.slots(nd, cl)})
	}
	return resp, nil
}

// shuttingDown is the error of a request the cluster refuses as it shuts down.
func (c *cluster) shuttingDown() error {
	return temporal.NewNonRetryableApplicationError("cluster "+c.st.Name+" is shutting down", names.ErrShuttingDown, nil)
}

// bootFailed reports whether nodes were started for a claim that holds none and
// every one of them failed to boot, with none left coming.
func (c *cluster) bootFailed(cl *JobClaim) bool {
	if len(cl.BootFailures) == 0 || len(cl.Nodes) > 0 {
		return false
	}
	for _, nd := range c.sortedNodes() {
		if nd.Job == cl.JobID && (nd.State == NodeProvisioning || nd.State == NodeResetting) {
			return false
		}
	}
	return true
}

// noNodeError says why a claim got no node: the nodes started for it failed to
// boot, every node that fits it stayed busy with other jobs (timedOut), or the
// cluster has none.
func (c *cluster) noNodeError(cl *JobClaim, fits func(*ClusterNode) bool, timedOut bool) error {
	switch {
	case c.st.ShuttingDown:
		return c.shuttingDown()
	case len(cl.BootFailures) > 0:
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"the %d node(s) cluster %s started for the job failed to boot; the last: %s. Check the provider's quota and the node image (burla cluster status shows the nodes)",
			len(cl.BootFailures), c.st.Name, cl.BootFailures[len(cl.BootFailures)-1]), names.ErrNodesFailedToBoot, nil)
	case timedOut && !c.tenantRoom(cl):
		return c.tenantLimitError(cl)
	}
	busy, jobs := 0, map[string]bool{}
	for _, nd := range c.sortedNodes() {
		if nd.State == NodeAssigned && nd.Job != cl.JobID && fits(nd) {
			busy++
			jobs[nd.Job] = true
		}
	}
	if timedOut && busy > 0 {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"all %d node(s) of cluster %s that fit the job stayed busy with %d other job(s) for 5 minutes, and the job may not grow: start it with burla.Grow(), raise the standby (burla cluster set-standby --nodes N), or retry when they finish",
			busy, c.st.Name, len(jobs)), names.ErrAllNodesBusy, nil)
	}
	return temporal.NewNonRetryableApplicationError(
		fmt.Sprintf("no node of cluster %s became ready within 5 minutes", c.st.Name), names.ErrNoNodes, nil)
}

// earmark sets idle nodes that are resetting or starting aside for a claim that
// wants more than it holds: they go to it when they are ready, which is sooner than
// a node started now would be.
func (c *cluster) earmark(cl *JobClaim, fits func(*ClusterNode) bool) {
	coming := c.claimed(cl)
	for _, nd := range c.sortedNodes() {
		if coming >= cl.Slots || !c.tenantRoom(cl) {
			return
		}
		if nd.Job == "" && (nd.State == NodeResetting || nd.State == NodeProvisioning) && fits(nd) {
			nd.Job = cl.JobID
			coming += c.slots(nd, cl)
		}
	}
}

// grow starts nodes for a claim that wants more slots than it holds or has coming.
func (c *cluster) grow(cl *JobClaim, perNode int) {
	if !cl.Grow || perNode < 1 || c.st.ShuttingDown || !c.canGrowFor(cl) {
		return
	}
	coming := 0
	for _, nd := range c.sortedNodes() {
		if nd.Job == cl.JobID && (nd.State == NodeProvisioning || nd.State == NodeResetting) {
			coming += c.slots(nd, cl)
		}
	}
	maxGrow := c.st.Standby.MaxGrow
	if maxGrow == 0 {
		maxGrow = 16
	}
	for started := 0; c.claimed(cl)+coming < cl.Slots && started < maxGrow && c.canStart() && c.tenantRoom(cl); started++ {
		if !cl.hasNeeds() {
			c.startNode(cl.JobID)
			coming += perNode
			continue
		}
		shape := c.growNode(cl, cl.Slots-c.claimed(cl)-coming)
		c.startShaped(cl.JobID, shape, shape.GPU != "" || cl.Region != "")
		coming += max(c.slots(&shape, cl), 1)
	}
}

// nodeEvent handles a NodeWorkflow's report.
func (c *cluster) nodeEvent(e NodeEvent) {
	nd, ok := c.st.Nodes[e.NodeID]
	if !ok {
		return
	}
	switch e.Event {
	case "ready":
		wasFor := nd.Job
		nd.State, nd.Job = NodeReady, ""
		if c.st.ShuttingDown {
			c.deleteNode(nd)
			return
		}
		// A job that wants more gets it: the one it was started for first.
		for _, cl := range c.claimsWanting(wasFor) {
			if c.slots(nd, cl) < 1 || !c.tenantRoom(cl) {
				continue
			}
			a := c.assign(nd, cl)
			c.signalJob(cl.JobID, names.SignalNodesAdded, NodesAdded{Nodes: []activities.Assignment{a}})
			c.ensureStandby()
			return
		}
		if c.idle() > c.st.Standby.Nodes || !c.standbyShaped(nd) {
			c.deleteNode(nd) // standby is full already, or this is no standby node (a GPU node started for a job)
		}
	case "lost", "failed":
		c.log.Warn("node gone", "node", nd.ID, "event", e.Event, "reason", e.Reason)
		c.st.Lost++
		c.st.LastLost = append(c.st.LastLost, LostNode{ID: nd.ID, Reason: e.Event + ": " + e.Reason, At: workflow.Now(c.ctx)})
		if n := len(c.st.LastLost); n > lastLostKept {
			c.st.LastLost = slices.Delete(c.st.LastLost, 0, n-lastLostKept)
		}
		if cl, ok := c.st.Jobs[nd.Job]; ok && e.Event == "failed" && nd.State == NodeProvisioning {
			cl.BootFailures = append(cl.BootFailures, nd.ID+": "+e.Reason)
		}
		if cl, ok := c.st.Jobs[nd.Job]; ok && nd.State == NodeAssigned {
			cl.Nodes = slices.DeleteFunc(cl.Nodes, func(id string) bool { return id == nd.ID })
			c.signalJob(cl.JobID, names.SignalNodeLost, NodeLost{NodeID: nd.ID})
			c.grow(cl, c.perGrownNode(cl))
		}
		delete(c.st.Nodes, nd.ID)
		c.ensureStandby()
	case "deleted":
		delete(c.st.Nodes, nd.ID)
		c.ensureStandby()
	}
}

// sharesOn reports whether the cluster bounds its tenants' nodes. Version 1 of
// "tenant-shares" does; a cluster before it took the bounds in its spec and
// ignored them, and must still when its history is replayed.
func (c *cluster) sharesOn() bool {
	if c.st.Standby.TenantMaxNodes == 0 && len(c.st.Standby.TenantNodes) == 0 {
		return false
	}
	return workflow.GetVersion(c.ctx, "tenant-shares", workflow.DefaultVersion, 1) >= 1
}

// tenantBound is how many nodes tenant's jobs may hold at once; 0 means no bound.
func (c *cluster) tenantBound(tenant string) int {
	if !c.sharesOn() {
		return 0
	}
	if n, ok := c.st.Standby.TenantNodes[tenant]; ok {
		return n
	}
	return c.st.Standby.TenantMaxNodes
}

// tenantHeld counts the nodes tenant's jobs hold, and those started or set aside
// for them: a node coming for a job is the job's share as much as one it runs on.
// A node counts while a claim lists it; a lost one leaves its claim at once, so
// that its replacement fits the share.
func (c *cluster) tenantHeld(tenant string) int {
	n := 0
	for _, id := range c.sortedJobIDs() {
		if job.TenantOf(id) == tenant {
			n += len(c.st.Jobs[id].Nodes)
		}
	}
	for _, nd := range c.sortedNodes() {
		if (nd.State == NodeProvisioning || nd.State == NodeResetting) && nd.Job != "" && c.st.Jobs[nd.Job] != nil && job.TenantOf(nd.Job) == tenant {
			n++
		}
	}
	return n
}

// tenantRoom reports whether the claim's tenant may hold one more node.
func (c *cluster) tenantRoom(cl *JobClaim) bool {
	tenant := job.TenantOf(cl.JobID)
	bound := c.tenantBound(tenant)
	return bound == 0 || c.tenantHeld(tenant) < bound
}

// tenantLimitError is the error of a claim that waited in vain for a node of its
// tenant's share: it names the bound, what the tenant holds, and what to do.
func (c *cluster) tenantLimitError(cl *JobClaim) error {
	tenant := job.TenantOf(cl.JobID)
	var others []string
	for _, id := range c.sortedJobIDs() {
		if id != cl.JobID && job.TenantOf(id) == tenant {
			others = append(others, id)
		}
	}
	named := strings.Join(others[:min(len(others), 3)], ", ")
	if len(others) > 3 {
		named += fmt.Sprintf(" and %d more", len(others)-3)
	}
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
		"tenant %s is at its limit of %d node(s) at once on cluster %s: it holds %d, for %d other job(s) (%s), and none came free for the job within 5 minutes: "+
			"retry when they finish, give them less parallelism, or have the cluster's operator raise the tenant's share (burla cluster set-standby --tenant-max-nodes N or --tenant-nodes %s=N)",
		tenant, c.tenantBound(tenant), c.st.Name, c.tenantHeld(tenant), len(others), named, tenant),
		names.ErrTenantLimit, nil)
}

// serveWanting hands tenant's claims that want more nodes, while the tenant has
// room, the ready nodes no job holds, and sets aside nodes coming and starts
// more for them as a reserve does. A job held back by its tenant's bound hears
// of no node becoming ready once the tenant has room again (a job of the tenant
// ended, or the bound was raised) if the nodes it could take sit idle already,
// so it is served here.
func (c *cluster) serveWanting(tenant string) {
	if c.st.ShuttingDown {
		return
	}
	for _, cl := range c.claimsWanting("") {
		if job.TenantOf(cl.JobID) != tenant {
			continue
		}
		fits := func(nd *ClusterNode) bool { return c.slots(nd, cl) >= 1 }
		var added []activities.Assignment
		for _, nd := range c.sortedNodes() {
			if c.claimed(cl) >= cl.Slots || !c.tenantRoom(cl) {
				break
			}
			if nd.State == NodeReady && nd.Job == "" && fits(nd) {
				added = append(added, c.assign(nd, cl))
			}
		}
		if len(added) > 0 {
			c.signalJob(cl.JobID, names.SignalNodesAdded, NodesAdded{Nodes: added})
		}
		c.earmark(cl, fits)
		c.grow(cl, c.perGrownNode(cl))
	}
	c.ensureStandby()
}

// claimTenants returns the tenants of the jobs holding claims, in order, once each.
func (c *cluster) claimTenants() []string {
	var ts []string
	for _, id := range c.sortedJobIDs() {
		ts = append(ts, job.TenantOf(id))
	}
	slices.Sort(ts)
	return slices.Compact(ts)
}

// sortedJobIDs returns the IDs of the jobs holding claims, in order.
//
//workflowcheck:ignore the map is read in any order, then sorted
func (c *cluster) sortedJobIDs() []string {
	ids := make([]string, 0, len(c.st.Jobs))
	for id := range c.st.Jobs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// claimsWanting returns the claims that want more slots than they hold, the given
// job's first, then by job ID.
func (c *cluster) claimsWanting(first string) []*JobClaim {
	var out []*JobClaim
	for _, id := range c.sortedJobIDs() {
		cl := c.st.Jobs[id]
		if c.claimed(cl) >= cl.Slots {
			continue
		}
		if id == first {
			out = append([]*JobClaim{cl}, out...)
		} else {
			out = append(out, cl)
		}
	}
	return out
}

// release ends a job's claim: its nodes are reset and rejoin standby, or are deleted
// when standby is full.
func (c *cluster) release(jobID string) {
	delete(c.st.Jobs, jobID)
	for _, nd := range c.sortedNodes() {
		if nd.Job != jobID {
			continue
		}
		switch nd.State {
		case NodeAssigned:
			nd.Job = ""
			if c.st.ShuttingDown || c.idle() > c.st.Standby.Nodes || !c.standbyShaped(nd) {
				c.deleteNode(nd)
				continue
			}
			nd.State = NodeResetting
			c.signalNode(nd.ID, names.SignalResetNode)
		case NodeProvisioning, NodeResetting:
			nd.Job = "" // set aside for the job, no longer needed: it joins standby, or goes
		}
	}
	if tenant := job.TenantOf(jobID); c.tenantBound(tenant) > 0 {
		c.serveWanting(tenant) // the job's tenant has room again
	}
}

func (c *cluster) setStandby(ctx workflow.Context, s StandbySpec) (ClusterState, error) {
	tenants := c.claimTenants()
	before := make([]int, len(tenants))
	for i, t := range tenants {
		before[i] = c.tenantBound(t)
	}
	c.st.Standby = s
	for i, t := range tenants {
		if after := c.tenantBound(t); before[i] > 0 && (after == 0 || after > before[i]) {
			c.serveWanting(t) // its share raised or lifted: before idle nodes go
		}
	}
	for _, nd := range c.sortedNodes() {
		if c.idle() <= s.Nodes {
			break
		}
		if nd.Job == "" && nd.State == NodeReady {
			c.deleteNode(nd)
		}
	}
	c.ensureStandby()
	return c.st, nil
}

func (c *cluster) restart(ctx workflow.Context) (ClusterState, error) {
	for _, nd := range c.sortedNodes() {
		if nd.Job == "" {
			c.deleteNode(nd) // deleting nodes are not idle: ensureStandby replaces them
		}
	}
	c.ensureStandby()
	return c.st, nil
}

// shutdown deletes every node; the workflow ends once they are gone. Jobs running
// keep their nodes until they release them.
func (c *cluster) shutdown(ctx workflow.Context) (ClusterState, error) {
	c.st.ShuttingDown = true
	c.wake.SendAsync(struct{}{})
	for _, nd := range c.sortedNodes() {
		if nd.State != NodeAssigned {
			c.deleteNode(nd)
		}
	}
	return c.st, nil
}
