package workflows_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/provider"
	"github.com/burla-temporal/burla/workflows"
)

// A node asked to continue as new while it resets waits for the reset to end
// and for its cluster to have the "ready" that follows: a run that closes drops
// a running activity and a signal it sent but the server had not yet handled.
func TestNodeContinuesAsNewWhenQuiet(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	e := s.NewTestWorkflowEnvironment()
	e.RegisterWorkflowWithOptions(workflows.Node, workflow.RegisterOptions{Name: control.WorkflowNode})
	e.RegisterActivityWithOptions(func(context.Context, control.CreateNodeInput) error { return nil },
		activity.RegisterOptions{Name: control.ActivityCreateNode})
	e.RegisterActivityWithOptions(func(ctx context.Context, _ control.WatchNodeInput) (control.WatchNodeResult, error) {
		<-ctx.Done()
		return control.WatchNodeResult{}, ctx.Err()
	}, activity.RegisterOptions{Name: control.ActivityWatchNode})
	var mu sync.Mutex
	var resetDone time.Time
	e.RegisterActivityWithOptions(func(ctx context.Context) error {
		time.Sleep(300 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		resetDone = time.Now()
		return nil
	}, activity.RegisterOptions{Name: control.ActivityResetNode})
	var told []string
	e.OnSignalExternalWorkflow(mock.Anything, "cluster-c", "", control.SignalNodeEvent, mock.Anything).Return(
		func(_, _, _, _ string, arg interface{}) error {
			mu.Lock()
			defer mu.Unlock()
			told = append(told, arg.(control.NodeEvent).Event)
			return nil
		})
	e.RegisterDelayedCallback(func() { e.SignalWorkflow(control.SignalRegistered, nil) }, time.Second)
	e.RegisterDelayedCallback(func() {
		e.SignalWorkflow(control.SignalResetNode, nil)
		e.SetContinueAsNewSuggested(true)
		e.SignalWorkflow(control.SignalRegistered, nil) // an agent restart, while the reset runs
	}, 2*time.Second)
	e.ExecuteWorkflow(workflows.Node, control.NodeInput{Spec: provider.NodeSpec{ID: "c-1", Cluster: "c", CPUs: 2}, Provider: "local", ClusterWorkflowID: "cluster-c"})
	var can *workflow.ContinueAsNewError
	if err := e.GetWorkflowError(); !errors.As(err, &can) {
		t.Fatalf("the node ended with %v; want it to continue as new", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if resetDone.IsZero() {
		t.Error("the node continued as new before its reset ended")
	}
	if len(told) != 2 || told[0] != "ready" || told[1] != "ready" {
		t.Errorf("the node told its cluster %q; want ready twice (registered, then reset)", told)
	}
}

// A node whose agent reports a fault (its disk is full) is deleted, and its
// cluster is told it is lost and why, so that it replaces the node.
func TestNodeWithFaultIsReplaced(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	e := s.NewTestWorkflowEnvironment()
	e.RegisterWorkflowWithOptions(workflows.Node, workflow.RegisterOptions{Name: control.WorkflowNode})
	e.RegisterActivityWithOptions(func(context.Context, control.CreateNodeInput) error { return nil },
		activity.RegisterOptions{Name: control.ActivityCreateNode})
	e.RegisterActivityWithOptions(func(ctx context.Context, _ control.WatchNodeInput) (control.WatchNodeResult, error) {
		return control.WatchNodeResult{Fault: "disk full: 12 MiB free under /var/lib/burla"}, nil
	}, activity.RegisterOptions{Name: control.ActivityWatchNode})
	deleted := false
	e.RegisterActivityWithOptions(func(context.Context, control.DeleteNodeInput) error { deleted = true; return nil },
		activity.RegisterOptions{Name: control.ActivityDeleteNode})
	var (
		mu   sync.Mutex
		told []control.NodeEvent
	)
	e.OnSignalExternalWorkflow(mock.Anything, "cluster-c", "", control.SignalNodeEvent, mock.Anything).Return(
		func(_, _, _, _ string, arg interface{}) error {
			mu.Lock()
			defer mu.Unlock()
			told = append(told, arg.(control.NodeEvent))
			return nil
		})
	e.RegisterDelayedCallback(func() { e.SignalWorkflow(control.SignalRegistered, nil) }, time.Second)
	e.ExecuteWorkflow(workflows.Node, control.NodeInput{Spec: provider.NodeSpec{ID: "c-1", Cluster: "c", CPUs: 2}, Provider: "local", ClusterWorkflowID: "cluster-c"})
	if err := e.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if !deleted {
		t.Error("the node with a full disk was not deleted")
	}
	mu.Lock()
	defer mu.Unlock()
	if n := len(told); n == 0 || told[n-1].Event != "lost" || !strings.Contains(told[n-1].Reason, "disk full: 12 MiB free") {
		t.Errorf("the node told its cluster %+v; want it lost, last, with the agent's fault", told)
	}
}
