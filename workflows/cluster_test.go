package workflows_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/provider"
	"github.com/burla-temporal/burla/workflows"
)

// providers are the capabilities the tests' clusters see: local and docker nodes
// choose nothing beyond CPUs and memory; gce nodes choose their GPUs, region,
// disk and zone, as provider/gce declares (a test of package provider/gce holds
// that its declaration says so).
var providers = map[string]provider.Capabilities{
	"local":  {},
	"docker": {},
	"gce":    {GPUs: true, Regions: true, Disks: true, Zones: true},
}

var clusterWorkflow = workflows.Clusters{Providers: providers}.Cluster

// fakeNode stands in for NodeWorkflow: ready after a second, reset on request, gone
// when deleted, or lost when the test says "lose".
func fakeNode(ctx workflow.Context, in control.NodeInput) error {
	tell := func(event string) {
		workflow.SignalExternalWorkflow(ctx, in.ClusterWorkflowID, "", control.SignalNodeEvent,
			control.NodeEvent{NodeID: in.Spec.ID, Event: event}).Get(ctx, nil)
	}
	workflow.Sleep(ctx, time.Second)
	tell("ready")
	for {
		var signal string
		sel := workflow.NewSelector(ctx)
		for _, name := range []string{control.SignalDeleteNode, control.SignalResetNode, "lose"} {
			sel.AddReceive(workflow.GetSignalChannel(ctx, name), func(ch workflow.ReceiveChannel, _ bool) {
				ch.Receive(ctx, nil)
				signal = name
			})
		}
		sel.Select(ctx)
		switch signal {
		case control.SignalDeleteNode:
			tell("deleted")
			return nil
		case "lose":
			tell("lost")
			return nil
		case control.SignalResetNode:
			workflow.Sleep(ctx, 500*time.Millisecond)
			tell("ready")
		}
	}
}

type clusterEnv struct {
	*testsuite.TestWorkflowEnvironment
	t     *testing.T
	ended *endedJobs
}

// endedJobs are the jobs whose workflows the test has closed, as ClosedJobs
// reports them.
type endedJobs struct {
	mu  sync.Mutex
	ids map[string]bool
}

func (j *endedJobs) end(id string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.ids[id] = true
}

func (j *endedJobs) closed(_ context.Context, in control.ClosedJobsInput) ([]string, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []string
	for _, id := range in.JobIDs {
		if j.ids[id] {
			out = append(out, id)
		}
	}
	return out, nil
}

func newClusterEnv(t *testing.T) clusterEnv {
	return newClusterEnvWith(t, fakeNode)
}

func newClusterEnvWith(t *testing.T, node any) clusterEnv {
	var s testsuite.WorkflowTestSuite
	e := s.NewTestWorkflowEnvironment()
	e.RegisterWorkflowWithOptions(clusterWorkflow, workflow.RegisterOptions{Name: control.WorkflowCluster})
	e.RegisterWorkflowWithOptions(node, workflow.RegisterOptions{Name: control.WorkflowNode})
	ended := &endedJobs{ids: map[string]bool{}}
	e.RegisterActivityWithOptions(ended.closed, activity.RegisterOptions{Name: control.ActivityClosedJobs})
	return clusterEnv{e, t, ended}
}

// acceptJobSignals accepts and drops signals to job workflows, which do not run
// here. Tests that check such signals mock them first.
func (e clusterEnv) acceptJobSignals() {
	e.OnSignalExternalWorkflow(mock.Anything, mock.MatchedBy(func(id string) bool { return strings.HasPrefix(id, "j-") }),
		mock.Anything, mock.Anything, mock.Anything).Return(nil)
}

func (e clusterEnv) status() control.ClusterState {
	e.t.Helper()
	v, err := e.QueryWorkflow(control.QueryStatus)
	if err != nil {
		e.t.Fatal(err)
	}
	var st control.ClusterState
	if err := v.Get(&st); err != nil {
		e.t.Fatal(err)
	}
	return st
}

func count(st control.ClusterState, state control.NodeState) int {
	n := 0
	for _, nd := range st.Nodes {
		if nd.State == state {
			n++
		}
	}
	return n
}

// update sends an update; done gets its outcome once the handler returns. A
// reserve told it is still queued (StillQueued) asks again a second later, as a
// job's reserve does.
func (e clusterEnv) update(name string, done func(resp control.ReserveResponse, err error), args ...any) {
	if done == nil {
		done = func(control.ReserveResponse, error) {}
	}
	if name == control.UpdateReserve {
		final := done
		done = func(resp control.ReserveResponse, err error) {
			if control.TypeOf(err) == control.ErrStillQueued {
				e.RegisterDelayedCallback(func() { e.update(name, final, args...) }, time.Second)
				return
			}
			final(resp, err)
		}
	}
	e.UpdateWorkflow(name, "", &testsuite.TestUpdateCallback{
		OnAccept: func() {},
		OnReject: func(err error) { done(control.ReserveResponse{}, err) },
		OnComplete: func(v interface{}, err error) {
			var resp control.ReserveResponse
			switch v := v.(type) {
			case control.ReserveResponse:
				resp = v
			case converter.EncodedValue:
				if v != nil && v.HasValue() {
					_ = v.Get(&resp)
				}
			}
			done(resp, err)
		},
	}, args...)
}

var standby = control.StandbySpec{Nodes: 2, CPUs: 2, Provider: "local"}

func start(e clusterEnv) {
	e.acceptJobSignals()
	e.ExecuteWorkflow(clusterWorkflow, control.ClusterInput{State: control.ClusterState{Name: "c", Standby: standby}})
}

// runBounded runs the cluster with standby of 2 nodes and at most 2 nodes in
// all, as start does, and returns how it ended.
func runBounded(e clusterEnv) error {
	bounded := standby
	bounded.MaxNodes = 2
	e.acceptJobSignals()
	e.ExecuteWorkflow(clusterWorkflow, control.ClusterInput{State: control.ClusterState{Name: "c", Standby: bounded}})
	return e.GetWorkflowError()
}

func TestClusterKeepsStandby(t *testing.T) {
	e := newClusterEnv(t)
	e.RegisterDelayedCallback(func() {
		st := e.status()
		if len(st.Nodes) != 2 || count(st, control.NodeReady) != 2 {
			t.Errorf("standby after start: %d nodes, %d ready; want 2 ready", len(st.Nodes), count(st, control.NodeReady))
		}
		e.update(control.UpdateShutdown, nil)
	}, 5*time.Second)
	start(e)
	if err := e.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var final control.ClusterState
	if err := e.GetWorkflowResult(&final); err != nil || len(final.Nodes) != 0 {
		t.Errorf("after shutdown: %d nodes, %v; want none", len(final.Nodes), err)
	}
}

func TestClusterReservesAndRefillsStandby(t *testing.T) {
	e := newClusterEnv(t)
	var resp control.ReserveResponse
	e.RegisterDelayedCallback(func() {
		e.update(control.UpdateReserve, func(r control.ReserveResponse, err error) {
			if resp = r; err != nil {
				t.Errorf("reserve: %v", err)
			}
		}, control.ReserveRequest{Cluster: "c", JobID: "j-1", Slots: 3, FuncCPU: 1})
	}, 5*time.Second)
	e.RegisterDelayedCallback(func() {
		st := e.status()
		// Both standby nodes went to the job; two replacements keep standby full.
		if count(st, control.NodeAssigned) != 2 || count(st, control.NodeReady) != 2 {
			t.Errorf("while the job runs: %d assigned, %d ready; want 2 and 2", count(st, control.NodeAssigned), count(st, control.NodeReady))
		}
		e.SignalWorkflow(control.SignalRelease, control.ReleaseRequest{JobID: "j-1"})
	}, 10*time.Second)
	e.RegisterDelayedCallback(func() {
		st := e.status()
		// After the job, standby is full already: its nodes are deleted, not kept.
		if len(st.Nodes) != 2 || count(st, control.NodeReady) != 2 || len(st.Jobs) != 0 {
			t.Errorf("after release: %d nodes, %d ready, %d jobs; want 2 ready and no job", len(st.Nodes), count(st, control.NodeReady), len(st.Jobs))
		}
		e.update(control.UpdateShutdown, nil)
	}, 20*time.Second)
	start(e)
	if err := e.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	workers := 0
	for _, a := range resp.Nodes {
		workers += a.Workers
	}
	if len(resp.Nodes) != 2 || workers != 3 {
		t.Errorf("reserved %+v; want 2 nodes running 3 calls", resp.Nodes)
	}
}

func TestClusterGrowsForABigJob(t *testing.T) {
	e := newClusterEnv(t)
	// The environment runs the signal's mock on the goroutines of the workflows
	// that send it, at once.
	var mu sync.Mutex
	var added []control.NodesAdded
	e.OnSignalExternalWorkflow(mock.Anything, "j-big", "", control.SignalNodesAdded, mock.Anything).Run(
		func(args mock.Arguments) {
			mu.Lock()
			defer mu.Unlock()
			added = append(added, args.Get(4).(control.NodesAdded))
		}).Return(nil)
	e.RegisterDelayedCallback(func() {
		e.update(control.UpdateReserve, func(resp control.ReserveResponse, err error) {
			if err != nil || len(resp.Nodes) != 2 {
				t.Errorf("reserve: %+v, %v; want the 2 ready nodes at once", resp, err)
			}
		}, control.ReserveRequest{Cluster: "c", JobID: "j-big", Slots: 10, FuncCPU: 1, Grow: true})
	}, 5*time.Second)
	e.RegisterDelayedCallback(func() {
		st := e.status()
		// 10 calls on 2-CPU nodes: 5 nodes for the job, and standby (2) kept full.
		if count(st, control.NodeAssigned) != 5 || count(st, control.NodeReady) != 2 {
			t.Errorf("after growing: %d assigned, %d ready; want 5 and 2", count(st, control.NodeAssigned), count(st, control.NodeReady))
		}
		e.update(control.UpdateShutdown, nil)
		e.SignalWorkflow(control.SignalRelease, control.ReleaseRequest{JobID: "j-big"})
	}, 15*time.Second)
	start(e)
	if err := e.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(added) != 3 {
		t.Errorf("job was handed %d more nodes as they became ready; want 3", len(added))
	}
}

func TestClusterReplacesALostNode(t *testing.T) {
	e := newClusterEnv(t)
	var mu sync.Mutex
	var lost []control.NodeLost
	e.OnSignalExternalWorkflow(mock.Anything, "j-1", "", control.SignalNodeLost, mock.Anything).Run(
		func(args mock.Arguments) {
			mu.Lock()
			defer mu.Unlock()
			lost = append(lost, args.Get(4).(control.NodeLost))
		}).Return(nil)
	var victim string
	e.RegisterDelayedCallback(func() {
		e.update(control.UpdateReserve, func(resp control.ReserveResponse, err error) {
			if err != nil || len(resp.Nodes) != 2 {
				t.Errorf("reserve: %+v, %v", resp, err)
				return
			}
			victim = resp.Nodes[0].NodeID
		}, control.ReserveRequest{Cluster: "c", JobID: "j-1", Slots: 4, FuncCPU: 1, Grow: true})
	}, 5*time.Second)
	e.RegisterDelayedCallback(func() {
		if err := e.SignalWorkflowByID(control.NodeWorkflowID(victim), "lose", nil); err != nil {
			t.Error(err)
		}
	}, 6*time.Second)
	e.RegisterDelayedCallback(func() {
		st := e.status()
		if _, ok := st.Nodes[victim]; ok || st.Lost != 1 {
			t.Errorf("lost node %s still listed (lost count %d)", victim, st.Lost)
		}
		// The job wanted 4 calls on 2 nodes; it lost one, so one more was started for
		// it and handed over, and standby is full.
		if count(st, control.NodeAssigned) != 2 || count(st, control.NodeReady) != 2 {
			t.Errorf("after the loss: %d assigned, %d ready; want 2 and 2", count(st, control.NodeAssigned), count(st, control.NodeReady))
		}
		e.update(control.UpdateShutdown, nil)
		e.SignalWorkflow(control.SignalRelease, control.ReleaseRequest{JobID: "j-1"})
	}, 15*time.Second)
	start(e)
	if err := e.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(lost) != 1 || lost[0].NodeID != victim {
		t.Errorf("job told of lost nodes %+v; want %s", lost, victim)
	}
}

func TestClusterRefusesReservationsWhileShuttingDown(t *testing.T) {
	e := newClusterEnv(t)
	e.RegisterDelayedCallback(func() {
		// A job holds a node, so the cluster stays up, shutting down, until it ends.
		e.update(control.UpdateReserve, func(resp control.ReserveResponse, err error) {
			if err != nil {
				t.Error(err)
			}
		}, control.ReserveRequest{Cluster: "c", JobID: "j-1", Slots: 1, FuncCPU: 1})
	}, 5*time.Second)
	e.RegisterDelayedCallback(func() { e.update(control.UpdateShutdown, nil) }, 6*time.Second)
	e.RegisterDelayedCallback(func() {
		e.update(control.UpdateReserve, func(resp control.ReserveResponse, err error) {
			if err == nil || !strings.Contains(err.Error(), "shutting down") {
				t.Errorf("reserve while shutting down: %+v, %v; want it refused", resp, err)
			}
		}, control.ReserveRequest{Cluster: "c", JobID: "j-2", Slots: 1, FuncCPU: 1})
		e.SignalWorkflow(control.SignalRelease, control.ReleaseRequest{JobID: "j-1"})
	}, 8*time.Second)
	start(e)
	if err := e.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
}

// With MaxNodes at standby and no grow, a second job waits for the first job's
// nodes to be reset and then gets them; no node is started for either.
func TestClusterWithoutGrowWaitsForFreeNodes(t *testing.T) {
	e := newClusterEnv(t)
	var second control.ReserveResponse
	secondDone := false
	e.RegisterDelayedCallback(func() {
		e.update(control.UpdateReserve, func(r control.ReserveResponse, err error) {
			if err != nil || len(r.Nodes) != 2 {
				t.Errorf("first reserve: %+v, %v; want both nodes", r, err)
			}
		}, control.ReserveRequest{Cluster: "c", JobID: "j-1", Slots: 4, FuncCPU: 1})
	}, 5*time.Second)
	e.RegisterDelayedCallback(func() {
		e.update(control.UpdateReserve, func(r control.ReserveResponse, err error) {
			second, secondDone = r, err == nil
		}, control.ReserveRequest{Cluster: "c", JobID: "j-2", Slots: 1, FuncCPU: 1})
	}, 6*time.Second)
	e.RegisterDelayedCallback(func() {
		if secondDone {
			t.Error("the second job got nodes while the first held them all")
		}
		if st := e.status(); len(st.Nodes) != 2 {
			t.Errorf("%d nodes; want MaxNodes (2): no replacements, no grow", len(st.Nodes))
		}
		e.SignalWorkflow(control.SignalRelease, control.ReleaseRequest{JobID: "j-1"})
	}, 10*time.Second)
	e.RegisterDelayedCallback(func() {
		if !secondDone || len(second.Nodes) != 1 {
			t.Errorf("second reserve after the first job ended: %+v (done %v); want one reset node", second, secondDone)
		}
		e.SignalWorkflow(control.SignalRelease, control.ReleaseRequest{JobID: "j-2"})
		e.update(control.UpdateShutdown, nil)
	}, 15*time.Second)
	e.acceptJobSignals()
	bounded := standby
	bounded.MaxNodes = 2
	e.ExecuteWorkflow(clusterWorkflow, control.ClusterInput{State: control.ClusterState{Name: "c", Standby: bounded}})
	if err := e.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
}

// A job whose workflow closed without releasing its nodes (terminated from
// outside) has them taken back within a minute; and one terminated while it
// waits for nodes stops waiting.
func TestClusterTakesBackTheNodesOfEndedJobs(t *testing.T) {
	e := newClusterEnv(t)
	var waited error
	waitedDone := false
	e.RegisterDelayedCallback(func() {
		e.update(control.UpdateReserve, nil, control.ReserveRequest{Cluster: "c", JobID: "j-held", Slots: 4, FuncCPU: 1})
		e.update(control.UpdateReserve, func(_ control.ReserveResponse, err error) { waited, waitedDone = err, true },
			control.ReserveRequest{Cluster: "c", JobID: "j-waiting", Slots: 1, FuncCPU: 1})
	}, 5*time.Second)
	e.RegisterDelayedCallback(func() {
		if st := e.status(); len(st.Jobs) != 2 || count(st, control.NodeAssigned) != 2 {
			t.Errorf("before the jobs end: %d claims, %d nodes assigned; want 2 and 2", len(st.Jobs), count(st, control.NodeAssigned))
		}
		e.ended.end("j-held")
		e.ended.end("j-waiting")
	}, 10*time.Second)
	e.RegisterDelayedCallback(func() {
		st := e.status()
		if len(st.Jobs) != 0 || count(st, control.NodeReady) != 2 {
			t.Errorf("a minute after the jobs ended: %d claims, %d ready nodes; want none and 2", len(st.Jobs), count(st, control.NodeReady))
		}
		if !waitedDone || !strings.Contains(fmt.Sprint(waited), "ended while it waited") {
			t.Errorf("the waiting reserve: done %v, %v; want an error saying the job ended", waitedDone, waited)
		}
		e.update(control.UpdateShutdown, nil)
	}, 70*time.Second)
	if err := runBounded(e); err != nil {
		t.Fatal(err)
	}
}

// Once Temporal suggests continuing as new, a reserve waiting for nodes is told
// to ask again (the job retries it on the next run, where its claim waits in its
// place), the signals the run sent are acknowledged, and the run continues as
// new with what it holds.
func TestClusterContinuesAsNewWhenQuiet(t *testing.T) {
	e := newClusterEnv(t)
	var second error
	secondDone := false
	e.RegisterDelayedCallback(func() {
		e.update(control.UpdateReserve, nil, control.ReserveRequest{Cluster: "c", JobID: "j-1", Slots: 4, FuncCPU: 1})
		e.update(control.UpdateReserve, func(_ control.ReserveResponse, err error) { second, secondDone = err, true },
			control.ReserveRequest{Cluster: "c", JobID: "j-2", Slots: 2, FuncCPU: 1})
	}, 3*time.Second)
	e.RegisterDelayedCallback(func() { e.SetContinueAsNewSuggested(true) }, 4*time.Second)
	e.RegisterDelayedCallback(func() { e.SignalWorkflow(control.SignalRelease, control.ReleaseRequest{JobID: "j-1"}) }, 6*time.Second)
	e.SetDetachedChildWait(false) // the nodes outlive the run
	var can *workflow.ContinueAsNewError
	if err := runBounded(e); !errors.As(err, &can) {
		t.Fatalf("the cluster ended with %v; want it to continue as new", err)
	}
	if !secondDone || control.TypeOf(second) != control.ErrClusterContinuing {
		t.Fatalf("the reserve that waited across the suggestion: done %v, %v; want ClusterContinuing", secondDone, second)
	}
	var next control.ClusterInput
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &next); err != nil {
		t.Fatal(err)
	}
	if cl := next.State.Jobs["j-2"]; len(next.State.Jobs) != 1 || cl == nil || len(cl.Nodes) != 0 {
		t.Errorf("the next run holds claims %v; want j-2's alone, in its place, with no node yet (j-1 was released)", next.State.Jobs)
	}
	if n := count(next.State, control.NodeResetting); n != 2 {
		t.Errorf("the next run has %d nodes resetting; want the 2 j-1 released", n)
	}

	// The next run: j-2 asks again, waits in its place, and gets a node once one
	// is back from its reset.
	e2 := newClusterEnv(t)
	var again control.ReserveResponse
	var againErr error
	e2.RegisterDelayedCallback(func() {
		e2.update(control.UpdateReserve, func(r control.ReserveResponse, err error) { again, againErr = r, err },
			control.ReserveRequest{Cluster: "c", JobID: "j-2", Slots: 2, FuncCPU: 1})
	}, 100*time.Millisecond)
	e2.RegisterDelayedCallback(func() {
		for _, nd := range next.State.Nodes { // the nodes' resets end (the fake nodes of the first run are gone)
			e2.SignalWorkflow(control.SignalNodeEvent, control.NodeEvent{NodeID: nd.ID, Event: "ready"})
		}
	}, time.Second)
	e2.RegisterDelayedCallback(func() {
		e2.SignalWorkflow(control.SignalRelease, control.ReleaseRequest{JobID: "j-2"})
		e2.update(control.UpdateShutdown, nil)
		for _, nd := range next.State.Nodes {
			e2.SignalWorkflow(control.SignalNodeEvent, control.NodeEvent{NodeID: nd.ID, Event: "deleted"})
		}
	}, 5*time.Second)
	e2.acceptJobSignals()
	e2.OnSignalExternalWorkflow(mock.Anything, mock.Anything, mock.Anything, mock.Anything, mock.Anything).Return(nil) // the nodes of the first run
	e2.ExecuteWorkflow(clusterWorkflow, next)
	if againErr != nil || len(again.Nodes) == 0 {
		t.Errorf("j-2 asking the next run again: %+v, %v; want a node", again, againErr)
	}
}

// A node its job releases goes straight to a job waiting for nodes, without a
// reset between (the node's agent gives the next job fresh workers); a node no
// job waits for is reset and rejoins standby.
func TestClusterHandsReleasedNodesToWaitingJobs(t *testing.T) {
	e := newClusterEnv(t)
	var waited control.ReserveResponse
	var waitedErr error
	waitedDone := false
	e.RegisterDelayedCallback(func() {
		e.update(control.UpdateReserve, nil, control.ReserveRequest{Cluster: "c", JobID: "j-1", Slots: 4, FuncCPU: 1})
		e.update(control.UpdateReserve, func(r control.ReserveResponse, err error) { waited, waitedErr, waitedDone = r, err, true },
			control.ReserveRequest{Cluster: "c", JobID: "j-2", Slots: 4, FuncCPU: 1})
	}, 3*time.Second)
	e.RegisterDelayedCallback(func() {
		if waitedDone {
			t.Errorf("j-2 got %+v, %v while j-1 held every node", waited, waitedErr)
		}
		e.SignalWorkflow(control.SignalRelease, control.ReleaseRequest{JobID: "j-1"})
	}, 5*time.Second)
	// Sooner than a reset (half a second for the fake nodes) would have let it.
	e.RegisterDelayedCallback(func() {
		if !waitedDone || waitedErr != nil || len(waited.Nodes) != 2 {
			t.Errorf("j-2, 100ms after j-1 released its nodes: done %v, %+v, %v; want both nodes", waitedDone, waited, waitedErr)
		}
		st := e.status()
		if count(st, control.NodeAssigned) != 2 || count(st, control.NodeResetting) != 0 {
			t.Errorf("nodes after the hand-over: %d assigned, %d resetting; want 2 and none", count(st, control.NodeAssigned), count(st, control.NodeResetting))
		}
		e.SignalWorkflow(control.SignalRelease, control.ReleaseRequest{JobID: "j-2"})
	}, 5100*time.Millisecond)
	e.RegisterDelayedCallback(func() {
		if st := e.status(); count(st, control.NodeReady) != 2 {
			t.Errorf("after j-2, which no job followed: %d ready nodes; want 2, reset", count(st, control.NodeReady))
		}
		e.update(control.UpdateShutdown, nil)
	}, 8*time.Second)
	if err := runBounded(e); err != nil {
		t.Fatal(err)
	}
}
