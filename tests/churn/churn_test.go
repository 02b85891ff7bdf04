// Package churn runs many jobs through a cluster whose workflows continue as new
// every few dozen events (burla dev --suggest-continue-as-new): every job must
// complete, every node must come back to standby, and every closed run of the
// cluster's and the nodes' workflows must replay against today's code.
package churn

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/burla-temporal/burla/control"
	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/tests/clustertest"
	"github.com/burla-temporal/burla/tests/histories"
)

var record = flag.Bool("record", false, "write a continued run of the cluster's and of a node's workflow into workflows/testdata")

var dev *clustertest.Dev

var square = burla.Func("square", func(ctx context.Context, x int) (int, error) { return x * x, nil })

func TestMain(m *testing.M) {
	burla.Main()
	flag.Parse()
	var err error
	// Four nodes at most on two standby: grows start nodes, and releases delete
	// them, so that the cluster starts children and signals them across runs.
	dev, err = clustertest.Start(context.Background(), clustertest.Options{Nodes: 2, CPUs: 2, MaxNodes: 4, SuggestContinueAsNew: 50})
	if err != nil {
		fmt.Fprintln(os.Stderr, "churn: start cluster:", err)
		os.Exit(1)
	}
	code := m.Run()
	dev.Keep = code != 0
	if err := dev.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "churn: stop cluster:", err)
		code = 1
	}
	os.Exit(code)
}

const (
	jobs    = 200
	clients = 8 // jobs waiting for nodes at once, within Temporal's 10 updates in flight per workflow
)

// 200 jobs that grow the cluster, 8 at a time, while its workflows continue as
// new every 50 events or so: nothing is lost across a run's end.
func TestManyJobsAcrossContinueAsNew(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed []string
		next   = make(chan int)
	)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range next {
				in := []int{n, n + 1, n + 2, n + 3}
				out, err := burla.RemoteParallelMap(ctx, square, in, burla.OnCluster(dev.Cluster), burla.Grow(), burla.Spinner(false))
				if err != nil || !slices.Equal(out, []int{n * n, (n + 1) * (n + 1), (n + 2) * (n + 2), (n + 3) * (n + 3)}) {
					mu.Lock()
					failed = append(failed, fmt.Sprintf("job %d: %v, %v", n, out, err))
					mu.Unlock()
				}
			}
		}()
	}
	for n := range jobs {
		next <- n
	}
	close(next)
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d of %d jobs failed; the first: %s", len(failed), jobs, failed[0])
	}
	took := time.Since(start)
	st := waitStandby(t, ctx)
	tc := dev.Cluster.Temporal()
	runs := closedRuns(t, ctx, tc, control.WorkflowCluster)
	nodeRuns := closedRuns(t, ctx, tc, control.WorkflowNode)
	t.Logf("%d jobs in %v; the cluster's workflow continued as new %d times, nodes' %d times; standby after: %d nodes ready",
		jobs, took.Round(100*time.Millisecond), len(runs), len(nodeRuns), len(st.Nodes))
	if len(runs) < 3 {
		t.Errorf("the cluster's workflow continued as new %d times; want at least 3 (is --suggest-continue-as-new in effect?)", len(runs))
	}
	replayRuns(t, ctx, tc, "cluster_continued", runs)
	replayRuns(t, ctx, tc, "node_continued", nodeRuns)
}

// waitStandby waits until no job holds a node and the standby's two nodes are
// ready (grown nodes deleted).
func waitStandby(t *testing.T, ctx context.Context) control.ClusterState {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	var st control.ClusterState
	var last string
	for time.Now().Before(deadline) {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var err error
		st, err = control.NewClient(dev.Cluster.Temporal()).Status(qctx, control.DefaultCluster)
		cancel()
		if err == nil {
			ready := 0
			for _, nd := range st.Nodes {
				if nd.State == control.NodeReady {
					ready++
				}
			}
			if len(st.Jobs) == 0 && ready == 2 && len(st.Nodes) == 2 {
				return st
			}
			last = fmt.Sprintf("%d claims, %d nodes, %d ready:", len(st.Jobs), len(st.Nodes), ready)
			for id, nd := range st.Nodes {
				last += fmt.Sprintf(" %s %s %q;", id, nd.State, nd.Job)
			}
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the cluster did not come back to 2 ready nodes and no claims: %s", last)
	return st
}

// closedRuns lists the runs of workflows of the type that continued as new.
func closedRuns(t *testing.T, ctx context.Context, tc client.Client, wfType string) []*workflowpb.WorkflowExecutionInfo {
	t.Helper()
	var runs []*workflowpb.WorkflowExecutionInfo
	var token []byte
	for {
		resp, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query: "WorkflowType='" + wfType + "' AND ExecutionStatus='ContinuedAsNew'", NextPageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, resp.Executions...)
		if token = resp.NextPageToken; len(token) == 0 {
			return runs
		}
	}
}

// replayRuns replays every run listed against today's workflows; with -record,
// the longest one that itself began from a continue-as-new is kept as name.json
// in workflows/testdata.
func replayRuns(t *testing.T, ctx context.Context, tc client.Client, name string, runs []*workflowpb.WorkflowExecutionInfo) {
	t.Helper()
	var keep *historypb.History
	for _, ex := range runs {
		id, run := ex.Execution.WorkflowId, ex.Execution.RunId
		h, err := histories.Fetch(ctx, tc, id, run)
		if err != nil {
			t.Fatal(err)
		}
		if err := histories.Replay(h, id, run); err != nil {
			t.Errorf("replay of %s run %s: %v", id, run, err)
		}
		started := h.GetEvents()[0].GetWorkflowExecutionStartedEventAttributes()
		last := h.GetEvents()[len(h.GetEvents())-1]
		if started.GetContinuedExecutionRunId() != "" && last.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW &&
			(keep == nil || len(h.GetEvents()) > len(keep.GetEvents())) {
			keep = h
		}
	}
	if *record {
		if keep == nil {
			t.Fatalf("%s: no run both began and ended with a continue-as-new", name)
		}
		path, err := histories.Record(name, keep)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("recorded %s (%d events)", path, len(keep.GetEvents()))
	}
}
