package workflows

import (
	"errors"
	"fmt"
	"slices"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/burla-temporal/burla/activities"
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
	}
	return nil
}

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
}

// JobClaim is a job's hold on the cluster.
type JobClaim struct {
	JobID     string   `json:"job"`
	Slots     int      `json:"slots"` // calls it wants to run at once
	FuncCPU   int      `json:"func_cpu"`
	FuncRAMMB int      `json:"func_ram_mb,omitempty"`
	Grow      bool     `json:"grow,omitempty"` // start nodes for the job when too few are ready
	Nodes     []string `json:"nodes"`
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
}

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
	c := &cluster{ctx: ctx, st: in.State, log: workflow.GetLogger(ctx)}
	if c.st.Nodes == nil {
		c.st.Nodes = map[string]*ClusterNode{}
	}
	if c.st.Jobs == nil {
		c.st.Jobs = map[string]*JobClaim{}
	}
	if err := c.st.Standby.Validate(); err != nil {
		return c.st, temporal.NewNonRetryableApplicationError("cluster "+c.st.Name+": "+err.Error(), "BadStandby", nil)
	}
	if err := workflow.SetQueryHandler(ctx, names.QueryStatus, func() (ClusterState, error) { return c.st, nil }); err != nil {
		return c.st, err
	}
	notShuttingDown := func() error {
		if c.st.ShuttingDown {
			return temporal.NewNonRetryableApplicationError("cluster "+c.st.Name+" is shutting down", names.ErrShuttingDown, nil)
		}
		return nil
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, names.UpdateReserve, c.reserve, workflow.UpdateHandlerOptions{
		Validator: func(ctx workflow.Context, r activities.ReserveRequest) error {
			if r.JobID == "" || r.Slots < 1 || r.FuncCPU < 1 {
				return fmt.Errorf("bad reserve request %+v", r)
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
	c.ensureStandby()
	for {
		sel := workflow.NewSelector(ctx)
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
		sel.Select(ctx)
		if c.st.ShuttingDown && len(c.st.Nodes) == 0 {
			break
		}
		if workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
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

type cluster struct {
	ctx workflow.Context
	st  ClusterState
	log interface {
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

// startNode starts a NodeWorkflow for a new node, for a job's grow if job is set.
func (c *cluster) startNode(job string) *ClusterNode {
	c.st.Seq++
	id := fmt.Sprintf("%s-%d", c.st.Name, c.st.Seq)
	nd := &ClusterNode{ID: id, State: NodeProvisioning, Job: job, CPUs: c.st.Standby.CPUs, RAMMB: c.st.Standby.RAMMB}
	c.st.Nodes[id] = nd
	cctx := workflow.WithChildOptions(c.ctx, workflow.ChildWorkflowOptions{
		WorkflowID:        names.NodeWorkflowID(id),
		TaskQueue:         names.TaskQueueControl,
		ParentClosePolicy: enumspb.PARENT_CLOSE_POLICY_ABANDON,
	})
	workflow.ExecuteChildWorkflow(cctx, names.WorkflowNode, NodeInput{
		Spec: provider.NodeSpec{ID: id, Cluster: c.st.Name, CPUs: nd.CPUs, RAMMB: nd.RAMMB, Envs: c.st.Standby.Envs,
			Project: c.st.Standby.Project, Zone: c.st.Standby.Zone},
		Provider:          c.st.Standby.Provider,
		ClusterWorkflowID: workflow.GetInfo(c.ctx).WorkflowExecution.ID,
	})
	c.log.Info("starting node", "node", id, "for_job", job)
	return nd
}

func (c *cluster) signalNode(id, signal string) {
	workflow.SignalExternalWorkflow(c.ctx, names.NodeWorkflowID(id), "", signal, nil)
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

// claimed is how many slots the nodes of a claim give it.
func (c *cluster) claimed(cl *JobClaim) int {
	total := 0
	for _, id := range cl.Nodes {
		if nd, ok := c.st.Nodes[id]; ok {
			total += slotsOn(nd, cl.FuncCPU, cl.FuncRAMMB)
		}
	}
	return total
}

// assign gives a ready node to a claim.
func (c *cluster) assign(nd *ClusterNode, cl *JobClaim) activities.Assignment {
	nd.State, nd.Job = NodeAssigned, cl.JobID
	cl.Nodes = append(cl.Nodes, nd.ID)
	want := cl.Slots - c.claimed(cl) + slotsOn(nd, cl.FuncCPU, cl.FuncRAMMB)
	return activities.Assignment{NodeID: nd.ID, TaskQueue: names.NodeTaskQueue(nd.ID),
		Workers: max(1, min(slotsOn(nd, cl.FuncCPU, cl.FuncRAMMB), want))}
}

// reserve gives a job the ready nodes it can use at once, starts more in the
// background when it wants more than are ready (they are handed to it as they
// become ready), and refills standby behind it.
func (c *cluster) reserve(ctx workflow.Context, r activities.ReserveRequest) (activities.ReserveResponse, error) {
	if cl, ok := c.st.Jobs[r.JobID]; ok {
		// A retried request: answer with what the job holds.
		var resp activities.ReserveResponse
		for _, id := range cl.Nodes {
			if nd, ok := c.st.Nodes[id]; ok {
				resp.Nodes = append(resp.Nodes, activities.Assignment{NodeID: id, TaskQueue: names.NodeTaskQueue(id), Workers: slotsOn(nd, cl.FuncCPU, cl.FuncRAMMB)})
			}
		}
		return resp, nil
	}
	perNode := slotsOn(&ClusterNode{CPUs: c.st.Standby.CPUs, RAMMB: c.st.Standby.RAMMB}, r.FuncCPU, r.FuncRAMMB)
	fits := func(nd *ClusterNode) bool { return slotsOn(nd, r.FuncCPU, r.FuncRAMMB) >= 1 }
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
		for _, nd := range c.sortedNodes() {
			if nd.State == NodeReady && nd.Job == "" && fits(nd) {
				return true
			}
		}
		return false
	}
	cl := &JobClaim{JobID: r.JobID, Slots: r.Slots, FuncCPU: r.FuncCPU, FuncRAMMB: r.FuncRAMMB, Grow: r.Grow}
	c.st.Jobs[r.JobID] = cl
	if !readyFit() {
		// Nothing ready: take what is coming (nodes resetting or starting), grow
		// for the rest, and wait for the job's first node.
		c.earmark(cl, fits)
		c.grow(cl, perNode)
		// Without grow, this waits for a node to come free from another job.
		ok, err := workflow.AwaitWithTimeout(ctx, 5*time.Minute, func() bool { return len(cl.Nodes) > 0 || c.st.ShuttingDown })
		if err != nil {
			return activities.ReserveResponse{}, err
		}
		if !ok || len(cl.Nodes) == 0 {
			delete(c.st.Jobs, r.JobID)
			return activities.ReserveResponse{}, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("no node of cluster %s became ready within 5 minutes", c.st.Name), names.ErrNoNodes, nil)
		}
		var resp activities.ReserveResponse
		for _, id := range cl.Nodes {
			nd := c.st.Nodes[id]
			resp.Nodes = append(resp.Nodes, activities.Assignment{NodeID: id, TaskQueue: names.NodeTaskQueue(id), Workers: slotsOn(nd, r.FuncCPU, r.FuncRAMMB)})
		}
		return resp, nil
	}
	var resp activities.ReserveResponse
	for _, nd := range c.sortedNodes() {
		if c.claimed(cl) >= cl.Slots {
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

// earmark sets idle nodes that are resetting or starting aside for a claim that
// wants more than it holds: they go to it when they are ready, which is sooner than
// a node started now would be.
func (c *cluster) earmark(cl *JobClaim, fits func(*ClusterNode) bool) {
	coming := c.claimed(cl)
	for _, nd := range c.sortedNodes() {
		if coming >= cl.Slots {
			return
		}
		if nd.Job == "" && (nd.State == NodeResetting || nd.State == NodeProvisioning) && fits(nd) {
			nd.Job = cl.JobID
			coming += slotsOn(nd, cl.FuncCPU, cl.FuncRAMMB)
		}
	}
}

// grow starts nodes for a claim that wants more slots than it holds or has coming.
func (c *cluster) grow(cl *JobClaim, perNode int) {
	if !cl.Grow || perNode < 1 || c.st.ShuttingDown {
		return
	}
	coming := 0
	for _, nd := range c.sortedNodes() {
		if nd.Job == cl.JobID && (nd.State == NodeProvisioning || nd.State == NodeResetting) {
			coming += slotsOn(nd, cl.FuncCPU, cl.FuncRAMMB)
		}
	}
	maxGrow := c.st.Standby.MaxGrow
	if maxGrow == 0 {
		maxGrow = 16
	}
	for started := 0; c.claimed(cl)+coming < cl.Slots && started < maxGrow && c.canStart(); started++ {
		c.startNode(cl.JobID)
		coming += perNode
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
			if slotsOn(nd, cl.FuncCPU, cl.FuncRAMMB) < 1 {
				continue
			}
			a := c.assign(nd, cl)
			workflow.SignalExternalWorkflow(c.ctx, cl.JobID, "", names.SignalNodesAdded, NodesAdded{Nodes: []activities.Assignment{a}})
			c.ensureStandby()
			return
		}
		if c.idle() > c.st.Standby.Nodes {
			c.deleteNode(nd) // standby is full already
		}
	case "lost", "failed":
		c.log.Warn("node gone", "node", nd.ID, "event", e.Event, "reason", e.Reason)
		c.st.Lost++
		if cl, ok := c.st.Jobs[nd.Job]; ok && nd.State == NodeAssigned {
			cl.Nodes = slices.DeleteFunc(cl.Nodes, func(id string) bool { return id == nd.ID })
			workflow.SignalExternalWorkflow(c.ctx, cl.JobID, "", names.SignalNodeLost, NodeLost{NodeID: nd.ID})
			c.grow(cl, slotsOn(&ClusterNode{CPUs: c.st.Standby.CPUs, RAMMB: c.st.Standby.RAMMB}, cl.FuncCPU, cl.FuncRAMMB))
		}
		delete(c.st.Nodes, nd.ID)
		c.ensureStandby()
	case "deleted":
		delete(c.st.Nodes, nd.ID)
		c.ensureStandby()
	}
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
			if c.st.ShuttingDown || c.idle() > c.st.Standby.Nodes {
				c.deleteNode(nd)
				continue
			}
			nd.State = NodeResetting
			c.signalNode(nd.ID, names.SignalResetNode)
		case NodeProvisioning, NodeResetting:
			nd.Job = "" // set aside for the job, no longer needed: it joins standby, or goes
		}
	}
}

func (c *cluster) setStandby(ctx workflow.Context, s StandbySpec) (ClusterState, error) {
	c.st.Standby = s
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
	for _, nd := range c.sortedNodes() {
		if nd.State != NodeAssigned {
			c.deleteNode(nd)
		}
	}
	return c.st, nil
}
