package workflows

import (
	"fmt"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/gpu"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/placement"
	"github.com/burla-temporal/burla/provider"
)

// lastLostKept is how many lost nodes control.ClusterState.LastLost keeps.
const lastLostKept = 5

// Clusters is the ClusterWorkflow with what it knows of the world: the
// capabilities of the providers a cluster may name (provider.Declared), which
// its placement and its standby spec's validation read. They are fixed for the
// life of a worker, as its code is.
type Clusters struct {
	Providers map[string]provider.Capabilities
}

// Cluster keeps a cluster's standby nodes up and hands nodes to jobs. It runs for
// the life of the cluster, continuing as new when its history grows large.
func (w Clusters) Cluster(ctx workflow.Context, in control.ClusterInput) (control.ClusterState, error) {
	c := &cluster{ctx: ctx, st: in.State, log: workflow.GetLogger(ctx), wake: workflow.NewBufferedChannel(ctx, 1), providers: w.Providers}
	if c.st.Nodes == nil {
		c.st.Nodes = map[string]*control.ClusterNode{}
	}
	if c.st.Jobs == nil {
		c.st.Jobs = map[string]*control.JobClaim{}
	}
	if err := c.st.Standby.Validate(c.capsOf(c.st.Standby)); err != nil {
		return c.st, control.ErrBadStandby.New("cluster "+c.st.Name+": "+err.Error(), nil)
	}
	if err := workflow.SetQueryHandler(ctx, control.QueryStatus, func() (control.ClusterState, error) { return c.st, nil }); err != nil {
		return c.st, err
	}
	notShuttingDown := func() error {
		if c.st.ShuttingDown {
			return c.shuttingDown()
		}
		return nil
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, control.UpdateReserve, c.reserve, workflow.UpdateHandlerOptions{
		Validator: func(ctx workflow.Context, r control.ReserveRequest) error {
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
	if err := workflow.SetUpdateHandlerWithOptions(ctx, control.UpdateSetStandby, c.setStandby, workflow.UpdateHandlerOptions{
		Validator: func(ctx workflow.Context, s control.StandbySpec) error {
			if err := s.Validate(c.capsOf(s)); err != nil {
				return err
			}
			return notShuttingDown()
		},
	}); err != nil {
		return c.st, err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, control.UpdateRestart, c.restart, workflow.UpdateHandlerOptions{
		Validator: func(ctx workflow.Context) error { return notShuttingDown() },
	}); err != nil {
		return c.st, err
	}
	if err := workflow.SetUpdateHandler(ctx, control.UpdateShutdown, c.shutdown); err != nil {
		return c.st, err
	}

	events := workflow.GetSignalChannel(ctx, control.SignalNodeEvent)
	releases := workflow.GetSignalChannel(ctx, control.SignalRelease)
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
			var e control.NodeEvent
			ch.Receive(ctx, &e)
			c.nodeEvent(e)
		})
		sel.AddReceive(releases, func(ch workflow.ReceiveChannel, _ bool) {
			var r control.ReleaseRequest
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
				return c.st, workflow.NewContinueAsNewError(ctx, control.WorkflowCluster, control.ClusterInput{State: c.st})
			}
		}
		//workflowcheck:ignore Details counts over maps, in any order, and current details are no part of the history
		workflow.SetCurrentDetails(ctx, c.st.Details())
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
			return c.st, workflow.NewContinueAsNewError(ctx, control.WorkflowCluster, control.ClusterInput{State: c.st})
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
	return workflow.ExecuteLocalActivity(lctx, control.ActivityClosedJobs, control.ClosedJobsInput{JobIDs: c.sortedJobIDs()})
}

type cluster struct {
	providers map[string]provider.Capabilities // what each provider can do (Clusters)
	ctx       workflow.Context
	st        control.ClusterState
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
		var e control.NodeEvent
		var r control.ReleaseRequest
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
func (c *cluster) sortedNodes() []*control.ClusterNode {
	ns := make([]*control.ClusterNode, 0, len(c.st.Nodes))
	for _, n := range c.st.Nodes {
		ns = append(ns, n)
	}
	slices.SortFunc(ns, func(a, b *control.ClusterNode) int { return compareIDs(a.ID, b.ID) })
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
		if nd.Job == "" && nd.State != control.NodeDeleting {
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
		if nd.State != control.NodeDeleting {
			live++
		}
	}
	return live < c.st.Standby.MaxNodes
}

// startNode starts a NodeWorkflow for a new standby node, or for a job's grow if
// job is set.
func (c *cluster) startNode(job string) *control.ClusterNode {
	return c.startShaped(job, placement.StandbyNode(c.st.Standby), false)
}

// startShaped starts a NodeWorkflow for a new node shaped like shape: for a
// job's grow if job is set. A node that is anywhere in its region (one with GPUs
// or a region of its own) is left to its provider to place in a zone of that
// region which has what it needs, rather than in the standby's zone.
func (c *cluster) startShaped(job string, shape control.ClusterNode, anywhereInRegion bool) *control.ClusterNode {
	c.st.Seq++
	id := fmt.Sprintf("%s-%d", c.st.Name, c.st.Seq)
	nd := &control.ClusterNode{ID: id, State: control.NodeProvisioning, Job: job, CPUs: shape.CPUs, RAMMB: shape.RAMMB,
		GPU: shape.GPU, Region: shape.Region, DiskGB: shape.DiskGB}
	c.st.Nodes[id] = nd
	cctx := workflow.WithChildOptions(c.ctx, workflow.ChildWorkflowOptions{
		WorkflowID:        control.NodeWorkflowID(id),
		TaskQueue:         control.TaskQueueControl,
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
	c.track(workflow.ExecuteChildWorkflow(cctx, control.WorkflowNode, control.NodeInput{
		Spec:              spec,
		Provider:          c.st.Standby.Provider,
		ClusterWorkflowID: workflow.GetInfo(c.ctx).WorkflowExecution.ID,
	}).GetChildWorkflowExecution())
	c.log.Info("starting node", "node", id, "for_job", job)
	return nd
}

func (c *cluster) signalNode(id, signal string) {
	c.track(workflow.SignalExternalWorkflow(c.ctx, control.NodeWorkflowID(id), "", signal, nil))
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

func (c *cluster) deleteNode(nd *control.ClusterNode) {
	if nd.State == control.NodeDeleting {
		return
	}
	nd.State = control.NodeDeleting
	c.signalNode(nd.ID, control.SignalDeleteNode)
}

// compatible fails a claim with ErrNoCompatibleNodes when no node the cluster
// has, keeps on standby, or can start for it has what it needs, saying what it
// asked for, what the nodes have, and what to do.
func (c *cluster) compatible(cl *control.JobClaim, fits func(*control.ClusterNode) bool) error {
	growable := cl.Grow && placement.CanGrowFor(c.caps(), *cl)
	if growable {
		shape := placement.GrowNode(c.st.Standby, *cl, cl.Slots)
		if fits(&shape) {
			return nil
		}
	}
	if sb := placement.StandbyNode(c.st.Standby); c.st.Standby.Nodes > 0 && fits(&sb) {
		return nil
	}
	for _, nd := range c.sortedNodes() {
		if nd.State != control.NodeDeleting && fits(nd) {
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
	case !placement.CanGrowFor(c.caps(), *cl):
		todo = fmt.Sprintf("this cluster's nodes come from the %s provider, which cannot start nodes with GPUs, in a region or with a disk size of a job's choosing: "+
			"run the job on a gce cluster with burla.Grow(), or drop %s", c.st.Standby.Provider, strings.Join(options, " and "))
	case !cl.Grow:
		todo = "start the job with burla.Grow() so that the cluster starts nodes that have them, " +
			"or give the cluster's standby nodes what it needs (the standby spec's gpu, region and disk_gb)"
	default:
		shape := placement.GrowNode(c.st.Standby, *cl, cl.Slots)
		todo = fmt.Sprintf("a node started for it would have %s, too little for one call: lower func_cpu or func_ram, or ask for more GPUs per call", describeNode(&shape))
	}
	return control.ErrNoCompatibleNodes.New(
		fmt.Sprintf("no compatible nodes: the job asks for %s; cluster %s has %s; %s",
			strings.Join(asks, ", "), c.st.Name, c.describeNodes(), todo), nil)
}

// describeNodes says what the cluster's nodes are like, alike nodes counted together.
func (c *cluster) describeNodes() string {
	var kinds []string
	counts := map[string]int{}
	for _, nd := range c.sortedNodes() {
		if nd.State == control.NodeDeleting {
			continue
		}
		d := describeNode(nd)
		if counts[d] == 0 {
			kinds = append(kinds, d)
		}
		counts[d]++
	}
	if len(kinds) == 0 {
		sb := placement.StandbyNode(c.st.Standby)
		return fmt.Sprintf("no nodes (its standby nodes would have %s)", describeNode(&sb))
	}
	out := make([]string, len(kinds))
	for i, d := range kinds {
		out[i] = fmt.Sprintf("%d node(s) with %s", counts[d], d)
	}
	return strings.Join(out, "; ")
}

func describeNode(nd *control.ClusterNode) string {
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
func (c *cluster) claimed(cl *control.JobClaim) int {
	total := 0
	for _, id := range cl.Nodes {
		if nd, ok := c.st.Nodes[id]; ok {
			total += placement.Slots(*nd, *cl)
		}
	}
	return total
}

// assign gives a ready node to a claim.
func (c *cluster) assign(nd *control.ClusterNode, cl *control.JobClaim) control.Assignment {
	nd.State, nd.Job = control.NodeAssigned, cl.JobID
	cl.Nodes = append(cl.Nodes, nd.ID)
	want := cl.Slots - c.claimed(cl) + placement.Slots(*nd, *cl)
	return control.Assignment{NodeID: nd.ID, TaskQueue: control.NodeTaskQueue(nd.ID),
		Workers: max(1, min(placement.Slots(*nd, *cl), want))}
}

// reserve gives a job the ready nodes it can use at once, starts more in the
// background when it wants more than are ready (they are handed to it as they
// become ready), and refills standby behind it.
func (c *cluster) reserve(ctx workflow.Context, r control.ReserveRequest) (control.ReserveResponse, error) {
	if cl, ok := c.st.Jobs[r.JobID]; ok {
		// A retried request: answer with what the job holds. One that holds no
		// node yet was told to ask again by a run that ended (ClusterContinuing):
		// version 1 of "requeue" waits on for it, in its place.
		if len(cl.Nodes) == 0 && workflow.GetVersion(ctx, "requeue", workflow.DefaultVersion, 1) >= 1 {
			return c.awaitFirstNode(ctx, r, cl, func(nd *control.ClusterNode) bool { return placement.Slots(*nd, *cl) >= 1 })
		}
		var resp control.ReserveResponse
		for _, id := range cl.Nodes {
			if nd, ok := c.st.Nodes[id]; ok {
				resp.Nodes = append(resp.Nodes, control.Assignment{NodeID: id, TaskQueue: control.NodeTaskQueue(id), Workers: placement.Slots(*nd, *cl)})
			}
		}
		return resp, nil
	}
	cl := &control.JobClaim{JobID: r.JobID, Slots: r.Slots, FuncCPU: r.FuncCPU, FuncRAMMB: r.FuncRAMMB, Grow: r.Grow}
	if r.GPU != "" || r.Region != "" || r.DiskGB != 0 {
		// Version 1 gives a job that needs GPUs, a region or a disk only nodes
		// that have them; the default version knew of no such needs.
		if workflow.GetVersion(ctx, "node-needs", workflow.DefaultVersion, 1) != workflow.DefaultVersion {
			cl.GPU, cl.Region, cl.DiskGB = r.GPU, r.Region, r.DiskGB
		}
	}
	perNode := placement.PerGrownNode(c.st.Standby, *cl)
	fits := func(nd *control.ClusterNode) bool { return placement.Slots(*nd, *cl) >= 1 }
	if cl.HasNeeds() {
		if err := c.compatible(cl, fits); err != nil {
			return control.ReserveResponse{}, err
		}
	}
	anyFits := perNode >= 1
	for _, nd := range c.sortedNodes() {
		anyFits = anyFits || fits(nd)
	}
	if !anyFits {
		return control.ReserveResponse{}, control.ErrNoNodes.New(
			fmt.Sprintf("no node of cluster %s can run a call with func_cpu=%d func_ram=%dMB (nodes have %d CPUs)", c.st.Name, r.FuncCPU, r.FuncRAMMB, c.st.Standby.CPUs), nil)
	}
	readyFit := func() bool {
		if !c.tenantRoom(cl) {
			return false // the tenant waits for its share as for busy nodes
		}
		for _, nd := range c.sortedNodes() {
			if nd.State == control.NodeReady && nd.Job == "" && fits(nd) {
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
	var resp control.ReserveResponse
	for _, nd := range c.sortedNodes() {
		if c.claimed(cl) >= cl.Slots || !c.tenantRoom(cl) {
			break
		}
		if nd.State == control.NodeReady && nd.Job == "" && fits(nd) {
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
func (c *cluster) awaitFirstNode(ctx workflow.Context, r control.ReserveRequest, cl *control.JobClaim, fits func(*control.ClusterNode) bool) (control.ReserveResponse, error) {
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
		return control.ReserveResponse{}, err
	}
	if !ok && left > wait && !released() {
		return control.ReserveResponse{}, control.ErrStillQueued.Retryable(
			fmt.Sprintf("job %s is still queued for nodes of cluster %s: it asks again", r.JobID, c.st.Name))
	}
	if c.closing && len(cl.Nodes) == 0 && !released() {
		// The claim keeps its place (and the nodes coming for it): the job
		// asks the next run again, which waits on for it.
		return control.ReserveResponse{}, control.ErrClusterContinuing.Retryable(
			fmt.Sprintf("cluster %s is continuing as new: job %s asks again", c.st.Name, r.JobID))
	}
	if released() {
		// The job ended while it waited (it was terminated, say): nobody
		// reads this answer.
		return control.ReserveResponse{}, control.ErrNoNodes.New(
			fmt.Sprintf("job %s ended while it waited for nodes", r.JobID), nil)
	}
	if !ok || len(cl.Nodes) == 0 {
		delete(c.st.Jobs, r.JobID)
		if why == 1 {
			return control.ReserveResponse{}, c.noNodeError(cl, fits, !ok)
		}
		return control.ReserveResponse{}, control.ErrNoNodes.New(
			fmt.Sprintf("no node of cluster %s became ready within 5 minutes", c.st.Name), nil)
	}
	var resp control.ReserveResponse
	for _, id := range cl.Nodes {
		nd := c.st.Nodes[id]
		resp.Nodes = append(resp.Nodes, control.Assignment{NodeID: id, TaskQueue: control.NodeTaskQueue(id), Workers: placement.Slots(*nd, *cl)})
	}
	return resp, nil
}

// shuttingDown is the error of a request the cluster refuses as it shuts down.
func (c *cluster) shuttingDown() error {
	return control.ErrShuttingDown.New("cluster "+c.st.Name+" is shutting down", nil)
}

// bootFailed reports whether nodes were started for a claim that holds none and
// every one of them failed to boot, with none left coming.
func (c *cluster) bootFailed(cl *control.JobClaim) bool {
	if len(cl.BootFailures) == 0 || len(cl.Nodes) > 0 {
		return false
	}
	for _, nd := range c.sortedNodes() {
		if nd.Job == cl.JobID && (nd.State == control.NodeProvisioning || nd.State == control.NodeResetting) {
			return false
		}
	}
	return true
}

// noNodeError says why a claim got no node: the nodes started for it failed to
// boot, every node that fits it stayed busy with other jobs (timedOut), or the
// cluster has none.
func (c *cluster) noNodeError(cl *control.JobClaim, fits func(*control.ClusterNode) bool, timedOut bool) error {
	switch {
	case c.st.ShuttingDown:
		return c.shuttingDown()
	case len(cl.BootFailures) > 0:
		return control.ErrNodesFailedToBoot.New(fmt.Sprintf(
			"the %d node(s) cluster %s started for the job failed to boot; the last: %s. Check the provider's quota and the node image (burla cluster status shows the nodes)",
			len(cl.BootFailures), c.st.Name, cl.BootFailures[len(cl.BootFailures)-1]), nil)
	case timedOut && !c.tenantRoom(cl):
		return c.tenantLimitError(cl)
	}
	busy, jobs := 0, map[string]bool{}
	for _, nd := range c.sortedNodes() {
		if nd.State == control.NodeAssigned && nd.Job != cl.JobID && fits(nd) {
			busy++
			jobs[nd.Job] = true
		}
	}
	if timedOut && busy > 0 {
		return control.ErrAllNodesBusy.New(fmt.Sprintf(
			"all %d node(s) of cluster %s that fit the job stayed busy with %d other job(s) for 5 minutes, and the job may not grow: start it with burla.Grow(), raise the standby (burla cluster set-standby --nodes N), or retry when they finish",
			busy, c.st.Name, len(jobs)), nil)
	}
	return control.ErrNoNodes.New(
		fmt.Sprintf("no node of cluster %s became ready within 5 minutes", c.st.Name), nil)
}

// earmark sets idle nodes that are resetting or starting aside for a claim that
// wants more than it holds: they go to it when they are ready, which is sooner than
// a node started now would be.
func (c *cluster) earmark(cl *control.JobClaim, fits func(*control.ClusterNode) bool) {
	coming := c.claimed(cl)
	for _, nd := range c.sortedNodes() {
		if coming >= cl.Slots || !c.tenantRoom(cl) {
			return
		}
		if nd.Job == "" && (nd.State == control.NodeResetting || nd.State == control.NodeProvisioning) && fits(nd) {
			nd.Job = cl.JobID
			coming += placement.Slots(*nd, *cl)
		}
	}
}

// grow starts nodes for a claim that wants more slots than it holds or has coming.
func (c *cluster) grow(cl *control.JobClaim, perNode int) {
	if !cl.Grow || perNode < 1 || c.st.ShuttingDown || !placement.CanGrowFor(c.caps(), *cl) {
		return
	}
	coming := 0
	for _, nd := range c.sortedNodes() {
		if nd.Job == cl.JobID && (nd.State == control.NodeProvisioning || nd.State == control.NodeResetting) {
			coming += placement.Slots(*nd, *cl)
		}
	}
	maxGrow := c.st.Standby.MaxGrow
	if maxGrow == 0 {
		maxGrow = 16
	}
	for started := 0; c.claimed(cl)+coming < cl.Slots && started < maxGrow && c.canStart() && c.tenantRoom(cl); started++ {
		if !cl.HasNeeds() {
			c.startNode(cl.JobID)
			coming += perNode
			continue
		}
		shape := placement.GrowNode(c.st.Standby, *cl, cl.Slots-c.claimed(cl)-coming)
		c.startShaped(cl.JobID, shape, shape.GPU != "" || cl.Region != "")
		coming += max(placement.Slots(shape, *cl), 1)
	}
}

// nodeEvent handles a NodeWorkflow's report.
func (c *cluster) nodeEvent(e control.NodeEvent) {
	nd, ok := c.st.Nodes[e.NodeID]
	if !ok {
		return
	}
	switch e.Event {
	case "ready":
		wasFor := nd.Job
		nd.State, nd.Job = control.NodeReady, ""
		if c.st.ShuttingDown {
			c.deleteNode(nd)
			return
		}
		// A job that wants more gets it: the one it was started for first.
		for _, cl := range c.claimsWanting(wasFor) {
			if placement.Slots(*nd, *cl) < 1 || !c.tenantRoom(cl) {
				continue
			}
			a := c.assign(nd, cl)
			c.signalJob(cl.JobID, control.SignalNodesAdded, control.NodesAdded{Nodes: []control.Assignment{a}})
			c.ensureStandby()
			return
		}
		if c.idle() > c.st.Standby.Nodes || !placement.StandbyShaped(c.st.Standby, *nd) {
			c.deleteNode(nd) // standby is full already, or this is no standby node (a GPU node started for a job)
		}
	case "lost", "failed":
		c.log.Warn("node gone", "node", nd.ID, "event", e.Event, "reason", e.Reason)
		c.st.Lost++
		c.st.LastLost = append(c.st.LastLost, control.LostNode{ID: nd.ID, Reason: e.Event + ": " + e.Reason, At: workflow.Now(c.ctx)})
		if n := len(c.st.LastLost); n > lastLostKept {
			c.st.LastLost = slices.Delete(c.st.LastLost, 0, n-lastLostKept)
		}
		if cl, ok := c.st.Jobs[nd.Job]; ok && e.Event == "failed" && nd.State == control.NodeProvisioning {
			cl.BootFailures = append(cl.BootFailures, nd.ID+": "+e.Reason)
		}
		if cl, ok := c.st.Jobs[nd.Job]; ok && nd.State == control.NodeAssigned {
			cl.Nodes = slices.DeleteFunc(cl.Nodes, func(id string) bool { return id == nd.ID })
			c.signalJob(cl.JobID, control.SignalNodeLost, control.NodeLost{NodeID: nd.ID})
			c.grow(cl, placement.PerGrownNode(c.st.Standby, *cl))
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
		if (nd.State == control.NodeProvisioning || nd.State == control.NodeResetting) && nd.Job != "" && c.st.Jobs[nd.Job] != nil && job.TenantOf(nd.Job) == tenant {
			n++
		}
	}
	return n
}

// tenantRoom reports whether the claim's tenant may hold one more node.
func (c *cluster) tenantRoom(cl *control.JobClaim) bool {
	tenant := job.TenantOf(cl.JobID)
	bound := c.tenantBound(tenant)
	return bound == 0 || c.tenantHeld(tenant) < bound
}

// tenantLimitError is the error of a claim that waited in vain for a node of its
// tenant's share: it names the bound, what the tenant holds, and what to do.
func (c *cluster) tenantLimitError(cl *control.JobClaim) error {
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
	return control.ErrTenantLimit.New(fmt.Sprintf(
		"tenant %s is at its limit of %d node(s) at once on cluster %s: it holds %d, for %d other job(s) (%s), and none came free for the job within 5 minutes: "+
			"retry when they finish, give them less parallelism, or have the cluster's operator raise the tenant's share (burla cluster set-standby --tenant-max-nodes N or --tenant-nodes %s=N)",
		tenant, c.tenantBound(tenant), c.st.Name, c.tenantHeld(tenant), len(others), named, tenant), nil)
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
		fits := func(nd *control.ClusterNode) bool { return placement.Slots(*nd, *cl) >= 1 }
		var added []control.Assignment
		for _, nd := range c.sortedNodes() {
			if c.claimed(cl) >= cl.Slots || !c.tenantRoom(cl) {
				break
			}
			if nd.State == control.NodeReady && nd.Job == "" && fits(nd) {
				added = append(added, c.assign(nd, cl))
			}
		}
		if len(added) > 0 {
			c.signalJob(cl.JobID, control.SignalNodesAdded, control.NodesAdded{Nodes: added})
		}
		c.earmark(cl, fits)
		c.grow(cl, placement.PerGrownNode(c.st.Standby, *cl))
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
func (c *cluster) claimsWanting(first string) []*control.JobClaim {
	var out []*control.JobClaim
	for _, id := range c.sortedJobIDs() {
		cl := c.st.Jobs[id]
		if c.claimed(cl) >= cl.Slots {
			continue
		}
		if id == first {
			out = append([]*control.JobClaim{cl}, out...)
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
		case control.NodeAssigned:
			nd.Job = ""
			if c.handOver(nd) {
				continue
			}
			if c.st.ShuttingDown || c.idle() > c.st.Standby.Nodes || !placement.StandbyShaped(c.st.Standby, *nd) {
				c.deleteNode(nd)
				continue
			}
			nd.State = control.NodeResetting
			c.signalNode(nd.ID, control.SignalResetNode)
		case control.NodeProvisioning, control.NodeResetting:
			nd.Job = "" // set aside for the job, no longer needed: it joins standby, or goes
		}
	}
	if tenant := job.TenantOf(jobID); c.tenantBound(tenant) > 0 {
		c.serveWanting(tenant) // the job's tenant has room again
	}
}

// handOver gives a node its job has released to a job that wants more nodes,
// at once, rather than after a reset and the node's "ready" (version 1 of
// "hand-over"): four Temporal round trips and the wait for every worker to be
// fresh, on the path of every job that queues behind another. The reset is not
// what keeps the next job from the last one's: the node's agent gives a job
// only workers that served no other (a worker that served the last job is
// replaced before the next job's calls run on its slot), whichever tenant's it
// is. A node that no job wants, or that a run about to continue as new
// releases, is reset and rejoins standby.
func (c *cluster) handOver(nd *control.ClusterNode) bool {
	if c.st.ShuttingDown || c.closing || workflow.GetInfo(c.ctx).GetContinueAsNewSuggested() {
		return false
	}
	wanting := c.claimsWanting("")
	if len(wanting) == 0 || workflow.GetVersion(c.ctx, "hand-over", workflow.DefaultVersion, 1) < 1 {
		return false
	}
	for _, cl := range wanting {
		if placement.Slots(*nd, *cl) < 1 || !c.tenantRoom(cl) {
			continue
		}
		a := c.assign(nd, cl)
		c.signalJob(cl.JobID, control.SignalNodesAdded, control.NodesAdded{Nodes: []control.Assignment{a}})
		return true
	}
	return false
}

func (c *cluster) setStandby(ctx workflow.Context, s control.StandbySpec) (control.ClusterState, error) {
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
		if nd.Job == "" && nd.State == control.NodeReady {
			c.deleteNode(nd)
		}
	}
	c.ensureStandby()
	return c.st, nil
}

func (c *cluster) restart(ctx workflow.Context) (control.ClusterState, error) {
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
func (c *cluster) shutdown(ctx workflow.Context) (control.ClusterState, error) {
	c.st.ShuttingDown = true
	c.wake.SendAsync(struct{}{})
	for _, nd := range c.sortedNodes() {
		if nd.State != control.NodeAssigned {
			c.deleteNode(nd)
		}
	}
	return c.st, nil
}

// caps is what the cluster's provider can do.
func (c *cluster) caps() provider.Capabilities { return c.capsOf(c.st.Standby) }

// capsOf is what the provider a standby spec names can do: nothing beyond CPUs
// and memory when this worker knows no such provider.
func (c *cluster) capsOf(s control.StandbySpec) provider.Capabilities { return c.providers[s.Provider] }
