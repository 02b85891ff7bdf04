package workflows_test

import (
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/burla-temporal/burla/control"
)

// A job that may not grow, on a cluster whose every node stays on another job,
// fails after the wait with AllNodesBusy, which says what to do.
func TestReserveFailsWhenAllNodesStayBusy(t *testing.T) {
	e := newClusterEnv(t)
	var second error
	e.RegisterDelayedCallback(func() {
		e.update(control.UpdateReserve, nil, control.ReserveRequest{Cluster: "c", JobID: "j-1", Slots: 4, FuncCPU: 1})
	}, 5*time.Second)
	e.RegisterDelayedCallback(func() {
		e.update(control.UpdateReserve, func(_ control.ReserveResponse, err error) { second = err },
			control.ReserveRequest{Cluster: "c", JobID: "j-2", Slots: 1, FuncCPU: 1})
	}, 6*time.Second)
	e.RegisterDelayedCallback(func() {
		if control.TypeOf(second) != control.ErrAllNodesBusy || !strings.Contains(second.Error(), "burla.Grow()") {
			t.Errorf("second reserve: %v; want AllNodesBusy saying to grow", second)
		}
		e.SignalWorkflow(control.SignalRelease, control.ReleaseRequest{JobID: "j-1"})
		e.update(control.UpdateShutdown, nil)
	}, 7*time.Minute)
	e.acceptJobSignals()
	bounded := standby
	bounded.MaxNodes = 2
	e.ExecuteWorkflow(clusterWorkflow, control.ClusterInput{State: control.ClusterState{Name: "c", Standby: bounded}})
	if err := e.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
}

// failingNode is a node whose provider cannot start it.
func failingNode(ctx workflow.Context, in control.NodeInput) error {
	workflow.Sleep(ctx, time.Second)
	return workflow.SignalExternalWorkflow(ctx, in.ClusterWorkflowID, "", control.SignalNodeEvent,
		control.NodeEvent{NodeID: in.Spec.ID, Event: "failed", Reason: "quota exceeded for CPUS in us-central1"}).Get(ctx, nil)
}

// A job that grows a cluster whose nodes fail to boot fails as soon as they
// have, with NodesFailedToBoot and the provider's reason, not after the wait.
func TestReserveFailsWhenNodesFailToBoot(t *testing.T) {
	e := newClusterEnvWith(t, failingNode)
	var got error
	var at time.Duration
	begin := time.Time{}
	e.RegisterDelayedCallback(func() {
		begin = e.Now()
		e.update(control.UpdateReserve, func(_ control.ReserveResponse, err error) { got, at = err, e.Now().Sub(begin) },
			control.ReserveRequest{Cluster: "c", JobID: "j-1", Slots: 2, FuncCPU: 1, Grow: true})
	}, time.Second)
	e.RegisterDelayedCallback(func() {
		if control.TypeOf(got) != control.ErrNodesFailedToBoot || !strings.Contains(got.Error(), "quota exceeded") {
			t.Errorf("reserve: %v; want NodesFailedToBoot with the provider's reason", got)
		}
		if at > time.Minute {
			t.Errorf("the reserve failed after %v; want as soon as the node failed", at)
		}
		e.update(control.UpdateShutdown, nil)
	}, 2*time.Minute)
	e.acceptJobSignals()
	none := standby
	none.Nodes = 0
	e.ExecuteWorkflow(clusterWorkflow, control.ClusterInput{State: control.ClusterState{Name: "c", Standby: none}})
	if err := e.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
}

// A cluster with no node ends at once when shut down.
func TestClusterWithoutNodesShutsDown(t *testing.T) {
	e := newClusterEnv(t)
	e.RegisterDelayedCallback(func() { e.update(control.UpdateShutdown, nil) }, time.Second)
	none := standby
	none.Nodes = 0
	e.ExecuteWorkflow(clusterWorkflow, control.ClusterInput{State: control.ClusterState{Name: "c", Standby: none}})
	if !e.IsWorkflowCompleted() {
		t.Fatal("the cluster did not end")
	}
	if err := e.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
}

// A reserve that finds every node busy answers within seconds that the job is
// still queued, and the job keeps its place: no update waits for minutes, since
// a workflow admits only ten in flight and the answers of jobs that got their
// nodes must get through. The job's five minutes count from its first request.
func TestReserveWaitsInShortSlices(t *testing.T) {
	e := newClusterEnv(t)
	var sent time.Time
	var answered time.Duration
	var answer error
	e.RegisterDelayedCallback(func() {
		e.update(control.UpdateReserve, nil, control.ReserveRequest{Cluster: "c", JobID: "j-1", Slots: 4, FuncCPU: 1})
	}, 5*time.Second)
	e.RegisterDelayedCallback(func() {
		sent = e.Now()
		e.UpdateWorkflow(control.UpdateReserve, "", &testsuite.TestUpdateCallback{
			OnAccept: func() {},
			OnReject: func(err error) { answer = err },
			OnComplete: func(_ interface{}, err error) {
				answered, answer = e.Now().Sub(sent), err
			},
		}, control.ReserveRequest{Cluster: "c", JobID: "j-2", Slots: 1, FuncCPU: 1})
	}, 6*time.Second)
	e.RegisterDelayedCallback(func() {
		if control.TypeOf(answer) != control.ErrStillQueued || answered > 10*time.Second {
			t.Errorf("a waiting reserve answered %v after %v; want StillQueued within 10 s", answer, answered)
		}
		st := e.status()
		if cl, ok := st.Jobs["j-2"]; !ok || cl.WaitingSince.IsZero() {
			t.Errorf("the queued job's claim %+v; want it kept, with when it began waiting", st.Jobs["j-2"])
		}
		e.SignalWorkflow(control.SignalRelease, control.ReleaseRequest{JobID: "j-1"})
		e.SignalWorkflow(control.SignalRelease, control.ReleaseRequest{JobID: "j-2"})
		e.update(control.UpdateShutdown, nil)
	}, 30*time.Second)
	e.acceptJobSignals()
	bounded := standby
	bounded.MaxNodes = 2
	e.ExecuteWorkflow(clusterWorkflow, control.ClusterInput{State: control.ClusterState{Name: "c", Standby: bounded}})
	if err := e.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
}
