package workflows_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdkpb "go.temporal.io/api/sdk/v1"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/burla-temporal/burla/activities"
	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/store"
	"github.com/burla-temporal/burla/workers"
	"github.com/burla-temporal/burla/workflows"
)

// fakeStore is the part of the store the control activities use.
type fakeStore struct {
	nodes    []store.Node
	deleted  atomic.Int32
	lastBeat time.Time
	drained  atomic.Bool // Progress says every chunk is done
	released atomic.Bool // the client called Release
}

func (f *fakeStore) PutNode(context.Context, store.Node) error       { return nil }
func (f *fakeStore) ListNodes(context.Context) ([]store.Node, error) { return f.nodes, nil }
func (f *fakeStore) DeleteNode(context.Context, string) error        { return nil }
func (f *fakeStore) GetNode(_ context.Context, id string) (store.Node, error) {
	for _, n := range f.nodes {
		if n.ID == id {
			return n, nil
		}
	}
	return store.Node{}, store.ErrNotFound
}
func (f *fakeStore) Heartbeat(context.Context, string) error                { return nil }
func (f *fakeStore) Release(context.Context, string) error                  { f.released.Store(true); return nil }
func (f *fakeStore) CreateJob(context.Context, job.Spec) error              { return nil }
func (f *fakeStore) Job(context.Context, string) (job.Spec, error)          { return job.Spec{}, nil }
func (f *fakeStore) PutChunks(context.Context, string, []store.Chunk) error { return nil }
func (f *fakeStore) Seal(context.Context, string, int) error                { return nil }
func (f *fakeStore) Claim(context.Context, string, time.Duration) (store.Claim, error) {
	return nil, store.ErrNoChunk
}
func (f *fakeStore) Progress(context.Context, string) (store.Progress, error) {
	return store.Progress{Sealed: f.drained.Load()}, nil
}
func (f *fakeStore) DeleteInputs(context.Context, string) error { f.deleted.Add(1); return nil }
func (f *fakeStore) LastHeartbeat(context.Context, string) (time.Time, error) {
	if f.released.Load() {
		return time.Time{}, store.ErrReleased
	}
	if f.lastBeat.IsZero() {
		return time.Time{}, store.ErrNotFound
	}
	return f.lastBeat, nil
}

func twoNodes() []store.Node {
	return []store.Node{
		{ID: "a", CPUs: 2, TaskQueue: control.NodeTaskQueue("a"), Warm: 2},
		{ID: "b", CPUs: 2, TaskQueue: control.NodeTaskQueue("b"), Warm: 2},
	}
}

func spec(inputs int, detached bool) job.Spec {
	return job.Spec{ID: "j-test", Function: "double", Binary: strings.Repeat("a", 64), Inputs: inputs,
		FuncCPU: 1, Lease: 5 * time.Second, ClientTimeout: 10 * time.Second, Detached: detached}
}

type env struct {
	*testsuite.TestWorkflowEnvironment
	st *fakeStore
}

// newEnv registers the real control activities over a fake store and runNode as
// every node's RunJobOnNode.
func newEnv(t *testing.T, nodes []store.Node, runNode func(context.Context, control.RunInput) (control.RunOutput, error)) env {
	var s testsuite.WorkflowTestSuite
	e := s.NewTestWorkflowEnvironment()
	// A job runs under its own ID: the one spec() gives.
	e.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: spec(0, false).ID})
	st := &fakeStore{nodes: nodes}
	workers.RegisterControl(e, &activities.Control{Nodes: st, Queue: st, Jobs: st}, &activities.Nodes{}, &activities.Env{})
	e.RegisterActivityWithOptions(runNode, activity.RegisterOptions{Name: control.ActivityRunJobOnNode})
	// The cluster's answer to a reserve, without a ClusterWorkflow: the same placement
	// over the same nodes.
	e.RegisterActivityWithOptions(func(ctx context.Context, r control.ReserveRequest) (control.ReserveResponse, error) {
		out, err := activities.Place(job.Spec{ID: r.JobID, Inputs: r.Slots, FuncCPU: r.FuncCPU, FuncRAMMB: r.FuncRAMMB}, st.nodes)
		return control.ReserveResponse{Nodes: out.Nodes}, err
	}, activity.RegisterOptions{Name: control.ActivityReserveNodes, DisableAlreadyRegisteredCheck: true})
	e.OnSignalExternalWorkflow(mock.Anything, control.ClusterWorkflowID(control.DefaultCluster), "", control.SignalRelease, mock.Anything).Return(nil)
	return env{e, st}
}

func TestJobSucceedsWhenANodeDrainsTheQueue(t *testing.T) {
	var workers atomic.Int32
	var bothRunning sync.WaitGroup
	bothRunning.Add(2)
	e := newEnv(t, twoNodes(), func(ctx context.Context, in control.RunInput) (control.RunOutput, error) {
		workers.Add(int32(in.Workers))
		// Both nodes start before either finds the queue drained, as on a real
		// cluster where every node works until the last chunk is done.
		bothRunning.Done()
		bothRunning.Wait()
		return control.RunOutput{Drained: true}, nil
	})
	e.ExecuteWorkflow(workflows.Job, control.JobInput{Spec: spec(3, true)})
	if !e.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	var out control.JobOutput
	if err := e.GetWorkflowResult(&out); err != nil {
		t.Fatalf("workflow failed: %v", err)
	}
	if out.State != job.StateSucceeded || out.Nodes != 2 {
		t.Errorf("output %+v; want Succeeded on 2 nodes", out)
	}
	if got := workers.Load(); got != 3 {
		t.Errorf("placed %d workers for 3 inputs; want 3", got)
	}
	if e.st.deleted.Load() != 1 {
		t.Errorf("inputs deleted %d times; want once", e.st.deleted.Load())
	}
	checkProgress(t, e, control.JobProgress{State: job.StateSucceeded, Used: 2}, "Succeeded after running on 2 nodes")
}

// checkProgress queries a job's progress and its current details.
func checkProgress(t *testing.T, e env, want control.JobProgress, details string) {
	t.Helper()
	v, err := e.QueryWorkflow(control.QueryProgress)
	if err != nil {
		t.Fatalf("progress query: %v", err)
	}
	var got control.JobProgress
	if err := v.Get(&got); err != nil || got != want {
		t.Errorf("progress %+v, %v; want %+v", got, err, want)
	}
	if v, err = e.QueryWorkflow("__temporal_workflow_metadata"); err != nil {
		t.Fatalf("metadata query: %v", err)
	}
	var md sdkpb.WorkflowMetadata
	if err := v.Get(&md); err != nil || md.GetCurrentDetails() != details {
		t.Errorf("current details %q, %v; want %q", md.GetCurrentDetails(), err, details)
	}
}

func TestJobFailsFastOnUserError(t *testing.T) {
	e := newEnv(t, twoNodes(), func(ctx context.Context, in control.RunInput) (control.RunOutput, error) {
		return control.RunOutput{}, activities.UserError("input 7 failed (panic): boom", 7)
	})
	e.ExecuteWorkflow(workflows.Job, control.JobInput{Spec: spec(10, true)})
	err := e.GetWorkflowError()
	if control.TypeOf(err) != control.ErrUserError || !strings.Contains(err.Error(), "input 7") {
		t.Fatalf("workflow error %v; want a UserError naming input 7", err)
	}
	if e.st.deleted.Load() != 1 {
		t.Errorf("inputs deleted %d times; want once", e.st.deleted.Load())
	}
}

// A chunk that failed on the cluster's side on its last delivery fails the job
// at once, naming the input: on another node it would fail again.
func TestJobFailsOnAChunkThatKeepsFailing(t *testing.T) {
	e := newEnv(t, twoNodes(), func(ctx context.Context, in control.RunInput) (control.RunOutput, error) {
		return control.RunOutput{}, control.ErrChunkFailed.New(
			"input 12: its chunk (4 inputs) failed on the cluster's side on each of its 5 deliveries; the last time: store full", nil, int64(12))
	})
	e.ExecuteWorkflow(workflows.Job, control.JobInput{Spec: spec(16, true)})
	err := e.GetWorkflowError()
	if control.TypeOf(err) != control.ErrChunkFailed || !strings.Contains(err.Error(), "input 12") || !strings.Contains(err.Error(), "store full") {
		t.Fatalf("workflow error %v; want a ChunkFailed naming input 12 and the reason", err)
	}
	if e.st.deleted.Load() != 1 {
		t.Errorf("inputs deleted %d times; want once", e.st.deleted.Load())
	}
}

func TestJobFailsWhenEveryNodeIsLost(t *testing.T) {
	var attempts atomic.Int32
	e := newEnv(t, twoNodes(), func(ctx context.Context, in control.RunInput) (control.RunOutput, error) {
		attempts.Add(1)
		return control.RunOutput{}, errors.New("agent gone")
	})
	e.ExecuteWorkflow(workflows.Job, control.JobInput{Spec: spec(10, true)})
	if err := e.GetWorkflowError(); control.TypeOf(err) != control.ErrNodesLost {
		t.Fatalf("workflow error %v; want NodesLost", err)
	}
	if got := attempts.Load(); got != 6 {
		t.Errorf("%d node attempts; want 3 per node", got)
	}
	checkProgress(t, e, control.JobProgress{State: job.StateFailed, Used: 2, Lost: 2}, "Failed after running on 2 nodes")
}

func TestJobGoesOnWhenOneNodeIsLost(t *testing.T) {
	e := newEnv(t, twoNodes(), func(ctx context.Context, in control.RunInput) (control.RunOutput, error) {
		if activity.GetInfo(ctx).TaskQueue == control.NodeTaskQueue("a") {
			return control.RunOutput{}, errors.New("agent gone")
		}
		// Node b finishes after a's retries are spent.
		time.Sleep(50 * time.Millisecond)
		return control.RunOutput{Drained: true}, nil
	})
	e.ExecuteWorkflow(workflows.Job, control.JobInput{Spec: spec(10, true)})
	if err := e.GetWorkflowError(); err != nil {
		t.Fatalf("workflow failed: %v; want success from the node that lived", err)
	}
	// a's loss comes after b decided the job.
	checkProgress(t, e, control.JobProgress{State: job.StateSucceeded, Used: 2}, "Succeeded after running on 2 nodes")
}

func TestJobWithNoNodes(t *testing.T) {
	e := newEnv(t, nil, func(ctx context.Context, in control.RunInput) (control.RunOutput, error) {
		t.Error("a node ran although there are none")
		return control.RunOutput{}, nil
	})
	e.ExecuteWorkflow(workflows.Job, control.JobInput{Spec: spec(3, true)})
	err := e.GetWorkflowError()
	if control.TypeOf(err) != control.ErrNoNodes || !strings.Contains(err.Error(), "burla dev") {
		t.Fatalf("workflow error %v; want NoNodes saying how to start nodes", err)
	}
}

func TestJobTooBigForEveryNode(t *testing.T) {
	e := newEnv(t, twoNodes(), func(ctx context.Context, in control.RunInput) (control.RunOutput, error) {
		return control.RunOutput{}, nil
	})
	s := spec(3, true)
	s.FuncCPU = 4
	e.ExecuteWorkflow(workflows.Job, control.JobInput{Spec: s})
	if err := e.GetWorkflowError(); control.TypeOf(err) != control.ErrNoNodes || !strings.Contains(err.Error(), "func_cpu=4") {
		t.Fatalf("workflow error %v; want NoNodes naming func_cpu=4", err)
	}
}

func TestJobCancelledWhenClientStopsHeartbeating(t *testing.T) {
	e := newEnv(t, twoNodes(), func(ctx context.Context, in control.RunInput) (control.RunOutput, error) {
		<-ctx.Done() // a long job
		return control.RunOutput{}, ctx.Err()
	})
	// The client never beats while the job runs: its silence counts from the
	// watch's start (the control plane's clock alone judges it).
	e.st.lastBeat = time.Now().Add(-time.Hour)
	s := spec(3, false)
	s.ClientTimeout = time.Second
	e.SetTestTimeout(time.Minute)
	e.ExecuteWorkflow(workflows.Job, control.JobInput{Spec: s})
	if err := e.GetWorkflowError(); control.TypeOf(err) != control.ErrClientGone {
		t.Fatalf("workflow error %v; want ClientGone", err)
	}
	if e.st.deleted.Load() != 1 {
		t.Errorf("inputs deleted %d times; want once", e.st.deleted.Load())
	}
}

// A detached job whose client went away before its inputs were all uploaded
// fails with ClientGone; one whose inputs were all
// uploaded runs on without its client. Both end cleaned up.
func TestDetachedJobNeedsItsClientUntilUploaded(t *testing.T) {
	for _, sealed := range []bool{false, true} {
		e := newEnv(t, twoNodes(), func(ctx context.Context, in control.RunInput) (control.RunOutput, error) {
			select {
			case <-ctx.Done():
				return control.RunOutput{}, ctx.Err()
			case <-time.After(5 * time.Second): // a silent client is gone after about 3s
				return control.RunOutput{Drained: true}, nil
			}
		})
		e.st.lastBeat = time.Now().Add(-time.Hour)
		e.st.drained.Store(sealed)
		s := spec(3, true)
		s.UploadWatched = true
		s.ClientTimeout = time.Second // silent from the watch's start: gone after 2 looks
		e.SetTestTimeout(time.Minute)
		e.ExecuteWorkflow(workflows.Job, control.JobInput{Spec: s})
		err := e.GetWorkflowError()
		switch {
		case !sealed && control.TypeOf(err) != control.ErrClientGone:
			t.Errorf("client gone mid-upload: workflow error %v; want ClientGone", err)
		case sealed && err != nil:
			t.Errorf("client gone after the upload: workflow error %v; want success", err)
		}
		if e.st.deleted.Load() != 1 { // the job's end, which also releases its nodes
			t.Errorf("sealed=%v: the job was cleaned up %d times; want once", sealed, e.st.deleted.Load())
		}
	}
}

// A client that read every result and went away before the job's workflow saw the
// queue drained does not fail the job: the nodes end it.
func TestDrainedJobOutlivesItsClient(t *testing.T) {
	e := newEnv(t, twoNodes(), func(ctx context.Context, in control.RunInput) (control.RunOutput, error) {
		// The nodes are slow to see the queue drained (a store restarting, say),
		// past the client watch's first look at a long-silent client (after 1s).
		time.Sleep(1500 * time.Millisecond)
		return control.RunOutput{Drained: true}, nil
	})
	e.st.drained.Store(true)
	e.st.lastBeat = time.Now().Add(-time.Hour)
	e.SetTestTimeout(time.Minute)
	e.ExecuteWorkflow(workflows.Job, control.JobInput{Spec: spec(3, false)})
	var out control.JobOutput
	if err := e.GetWorkflowResult(&out); err != nil || out.State != job.StateSucceeded {
		t.Fatalf("workflow ended %+v, %v; want Succeeded", out, err)
	}
}

func TestJobCancelled(t *testing.T) {
	e := newEnv(t, twoNodes(), func(ctx context.Context, in control.RunInput) (control.RunOutput, error) {
		for ctx.Err() == nil {
			activity.RecordHeartbeat(ctx)
			time.Sleep(10 * time.Millisecond)
		}
		return control.RunOutput{}, ctx.Err()
	})
	e.RegisterDelayedCallback(e.CancelWorkflow, time.Second)
	e.ExecuteWorkflow(workflows.Job, control.JobInput{Spec: spec(3, true)})
	if err := e.GetWorkflowError(); !temporal.IsCanceledError(err) {
		t.Fatalf("workflow error %v; want cancelled", err)
	}
	if e.st.deleted.Load() != 1 {
		t.Errorf("inputs deleted %d times after cancel; want once", e.st.deleted.Load())
	}
}

func TestPlaceSpreadsAndRespectsLimits(t *testing.T) {
	nodes := []store.Node{
		{ID: "busy", CPUs: 8, Job: "j-other"},
		{ID: "small", CPUs: 2},
		{ID: "big", CPUs: 4},
	}
	for _, tc := range []struct {
		name string
		spec job.Spec
		want string
	}{
		{"idle first, largest first", job.Spec{Inputs: 100, FuncCPU: 1}, "big:4 small:2 busy:8"},
		{"few inputs", job.Spec{Inputs: 3, FuncCPU: 1}, "big:3"},
		{"max parallelism", job.Spec{Inputs: 100, FuncCPU: 1, MaxParallelism: 5}, "big:4 small:1"},
		{"func_cpu", job.Spec{Inputs: 100, FuncCPU: 4}, "big:1 busy:2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := activities.Place(tc.spec, append([]store.Node(nil), nodes...))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, a := range out.Nodes {
				got = append(got, fmt.Sprintf("%s:%d", a.NodeID, a.Workers))
			}
			if s := strings.Join(got, " "); s != tc.want {
				t.Errorf("placed %q; want %q", s, tc.want)
			}
		})
	}
}

// Nodes the cluster hands a job (nodes-added) while its reserve still waits to
// ask again start the job at once; the reserve is stopped.
func TestJobStartsOnNodesAddedWhileItsReserveWaits(t *testing.T) {
	var ran []string
	e := newEnv(t, nil, func(ctx context.Context, in control.RunInput) (control.RunOutput, error) {
		ran = append(ran, activity.GetInfo(ctx).TaskQueue)
		return control.RunOutput{}, nil
	})
	e.RegisterActivityWithOptions(func(ctx context.Context, r control.ReserveRequest) (control.ReserveResponse, error) {
		time.Sleep(50 * time.Millisecond) // still queued, every time it asks
		return control.ReserveResponse{}, control.ErrStillQueued.Retryable("still queued")
	}, activity.RegisterOptions{Name: control.ActivityReserveNodes, DisableAlreadyRegisteredCheck: true})
	e.RegisterDelayedCallback(func() {
		e.SignalWorkflow(control.SignalNodesAdded, control.NodesAdded{Nodes: []control.Assignment{{NodeID: "a", TaskQueue: "node-a", Workers: 2}}})
	}, 3*time.Second)
	e.ExecuteWorkflow(workflows.Job, control.JobInput{Spec: spec(4, true)})
	if err := e.GetWorkflowError(); err != nil {
		t.Fatalf("workflow error %v; want the job to run on the node it was handed", err)
	}
	if len(ran) != 1 || ran[0] != "node-a" {
		t.Errorf("ran on %q; want node-a", ran)
	}
}
