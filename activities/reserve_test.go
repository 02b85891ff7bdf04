package activities_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"

	"github.com/burla-temporal/burla/activities"
	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/store"
)

// noCluster is a Temporal where the cluster's workflow is not running.
type noCluster struct{ updates int }

func (n *noCluster) UpdateWorkflow(context.Context, client.UpdateWorkflowOptions) (client.WorkflowUpdateHandle, error) {
	n.updates++
	return nil, serviceerror.NewNotFound("workflow not found for ID: burla-cluster-default")
}

func (n *noCluster) DescribeWorkflowExecution(context.Context, string, string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	return nil, serviceerror.NewNotFound("workflow not found")
}

// A job on a cluster that is not running fails at once, saying how to start it,
// rather than retrying its reserve for as long as a cluster may take to continue
// as new.
func TestReserveOnAClusterNotRunning(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	tc := &noCluster{}
	env.RegisterActivity(&activities.Control{Temporal: tc})
	_, err := env.ExecuteActivity(control.ActivityReserveNodes, control.ReserveRequest{Cluster: "default", JobID: "j-1", Slots: 1, FuncCPU: 1})
	if err == nil || !strings.Contains(err.Error(), "burla cluster up") || !strings.Contains(err.Error(), "retryable: false") {
		t.Fatalf("ReserveNodes = %v; want a non-retryable error saying to start the cluster", err)
	}
	if tc.updates != 1 {
		t.Errorf("%d updates sent; want 1", tc.updates)
	}
}

// lostAnswer is a cluster that completes a reserve but does not tell the first
// request that waits on it, as the server sometimes fails to.
type lostAnswer struct {
	noCluster
	ids []string
}

func (l *lostAnswer) UpdateWorkflow(_ context.Context, o client.UpdateWorkflowOptions) (client.WorkflowUpdateHandle, error) {
	l.ids = append(l.ids, o.UpdateID)
	return &answer{lost: len(l.ids) == 1}, nil
}

type answer struct{ lost bool }

func (a *answer) WorkflowID() string { return "burla-cluster-default" }
func (a *answer) RunID() string      { return "" }
func (a *answer) UpdateID() string   { return "" }
func (a *answer) Get(ctx context.Context, v interface{}) error {
	if a.lost {
		<-ctx.Done()
		return ctx.Err()
	}
	*v.(*control.ReserveResponse) = control.ReserveResponse{Nodes: []control.Assignment{{NodeID: "default-1", TaskQueue: "node-default-1", Workers: 2}}}
	return nil
}

// A reserve whose answer the server never delivers asks again about the same
// update, and gets the answer, rather than waiting out its attempt.
func TestReserveAsksAgainForALostAnswer(t *testing.T) {
	defer activities.SetReservePoll(200 * time.Millisecond)()
	tc := &lostAnswer{}
	c := &activities.Control{Temporal: tc}
	start := time.Now()
	resp, err := c.ReserveNodes(context.Background(), control.ReserveRequest{Cluster: "default", JobID: "j-1", Slots: 2, FuncCPU: 1})
	if err != nil || len(resp.Nodes) != 1 || resp.Nodes[0].NodeID != "default-1" {
		t.Fatalf("ReserveNodes = %+v, %v; want default-1", resp, err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the answer took %v; want about one 200 ms poll", took)
	}
	if len(tc.ids) != 2 || tc.ids[0] == "" || tc.ids[0] != tc.ids[1] {
		t.Errorf("update IDs %q; want the same one twice", tc.ids)
	}
}

// granting is a cluster that grants every reserve node default-1, recording
// what the reserve sent it.
type granting struct {
	noCluster
	args []any
}

func (g *granting) UpdateWorkflow(_ context.Context, o client.UpdateWorkflowOptions) (client.WorkflowUpdateHandle, error) {
	g.args = o.Args
	return &answer{}, nil
}

// grants records the grants put to each node.
type grants struct {
	mu  sync.Mutex
	put map[string]store.Grant
}

func (g *grants) PutGrant(_ context.Context, node string, gr store.Grant) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.put[node] = gr
	return nil
}

func (g *grants) WatchGrants(context.Context, string, func(store.Grant)) (func(), error) {
	return func() {}, nil
}

// A reserve tells the nodes the cluster granted, through the store, with the
// job's spec, which it does not send the cluster.
func TestReserveRelaysTheGrant(t *testing.T) {
	tc, gs := &granting{}, &grants{put: map[string]store.Grant{}}
	c := &activities.Control{Temporal: tc, Grants: gs}
	spec := job.Spec{ID: "j-1", Function: "f"}
	if _, err := c.ReserveNodes(context.Background(), control.ReserveRequest{Cluster: "default", JobID: "j-1", Slots: 2, FuncCPU: 1, Spec: &spec}); err != nil {
		t.Fatal(err)
	}
	if got, ok := gs.put["default-1"]; !ok || got.Spec.ID != "j-1" || got.Spec.Function != "f" || got.Workers != 2 {
		t.Errorf("grants put: %+v; want j-1's spec on default-1's 2 workers", gs.put)
	}
	if len(tc.args) != 1 || tc.args[0].(control.ReserveRequest).Spec != nil {
		t.Errorf("the cluster was sent %+v; want the request without the spec", tc.args)
	}
}
