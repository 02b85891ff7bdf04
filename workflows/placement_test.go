package workflows_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/provider"
	"github.com/burla-temporal/burla/workflows"
)

// specRecorder runs fakeNode for every node and keeps the specs the cluster
// started them with.
type specRecorder struct {
	mu    sync.Mutex
	specs map[string]provider.NodeSpec
}

func (r *specRecorder) node(ctx workflow.Context, in control.NodeInput) error {
	r.mu.Lock()
	r.specs[in.Spec.ID] = in.Spec
	r.mu.Unlock()
	return fakeNode(ctx, in)
}

func (r *specRecorder) spec(id string) provider.NodeSpec {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.specs[id]
}

// newPlacementEnv is a cluster environment whose nodes' specs are recorded.
func newPlacementEnv(t *testing.T) (clusterEnv, *specRecorder) {
	e := newClusterEnv(t)
	rec := &specRecorder{specs: map[string]provider.NodeSpec{}}
	e.RegisterWorkflowWithOptions(rec.node, workflow.RegisterOptions{Name: control.WorkflowNode, DisableAlreadyRegisteredCheck: true})
	return e, rec
}

// gceStandby is two plain standby nodes in us-central1-a.
var gceStandby = control.StandbySpec{Nodes: 2, CPUs: 2, Provider: "gce", Zone: "us-central1-a"}

func startWith(e clusterEnv, sb control.StandbySpec) {
	e.acceptJobSignals()
	e.ExecuteWorkflow(clusterWorkflow, control.ClusterInput{State: control.ClusterState{Name: "c", Standby: sb}})
}

func appTypeMessage(err error) (control.ErrorType, string) {
	var app *temporal.ApplicationError
	if !asApp(err, &app) {
		return "", ""
	}
	return control.ErrorType(app.Type()), app.Message()
}

func asApp(err error, app **temporal.ApplicationError) bool {
	for err != nil {
		if a, ok := err.(*temporal.ApplicationError); ok {
			*app = a
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

// A job that wants 3 calls on one A100 each, on a gce cluster of plain nodes,
// gets none of them: the cluster starts one machine with 4 A100s for it, placed
// by the provider anywhere in the standby's region, and hands it over once ready;
// once the job is done the GPU node goes, and the plain standby stays.
func TestClusterGrowsAGPUNodeForAGPUJob(t *testing.T) {
	e, rec := newPlacementEnv(t)
	var resp control.ReserveResponse
	var reserveErr error
	reserved := false
	e.RegisterDelayedCallback(func() {
		e.update(control.UpdateReserve, func(r control.ReserveResponse, err error) {
			resp, reserveErr, reserved = r, err, true
		}, control.ReserveRequest{Cluster: "c", JobID: "j-gpu", Slots: 3, FuncCPU: 1, Grow: true, GPU: "A100"})
	}, 5*time.Second)
	e.RegisterDelayedCallback(func() {
		if !reserved || reserveErr != nil || len(resp.Nodes) != 1 {
			t.Fatalf("reserve: %+v, %v (done %v); want the one GPU node", resp, reserveErr, reserved)
		}
		a := resp.Nodes[0]
		if a.Workers != 4 {
			t.Errorf("GPU node runs %d calls; want 4 (one per A100 it has)", a.Workers)
		}
		st := e.status()
		nd := st.Nodes[a.NodeID]
		if nd == nil || nd.GPU != "A100:4" || nd.CPUs != 48 || nd.Region != "us-central1" || nd.State != control.NodeAssigned {
			t.Errorf("GPU node record %+v; want an assigned A100:4 node with 48 CPUs in us-central1", nd)
		}
		want := provider.NodeSpec{ID: a.NodeID, Cluster: "c", CPUs: 48, RAMMB: 340 * 1024, GPU: "A100:4", Region: "us-central1"}
		if got := rec.spec(a.NodeID); got.ID != want.ID || got.CPUs != want.CPUs || got.RAMMB != want.RAMMB ||
			got.GPU != want.GPU || got.Region != want.Region || got.Zone != "" {
			t.Errorf("GPU node started with %+v; want %+v (no zone: the provider picks one with A100s)", got, want)
		}
		if count(st, control.NodeReady) != 2 {
			t.Errorf("%d plain nodes ready; want both standby nodes left to other jobs", count(st, control.NodeReady))
		}
		for id, nd := range st.Nodes {
			if id != a.NodeID && (nd.GPU != "" || nd.Job != "") {
				t.Errorf("node %+v; want plain standby", nd)
			}
			if id != a.NodeID && rec.spec(id).Zone != "us-central1-a" {
				t.Errorf("standby node %s started with %+v; want the standby's zone", id, rec.spec(id))
			}
		}
		e.SignalWorkflow(control.SignalRelease, control.ReleaseRequest{JobID: "j-gpu"})
	}, 10*time.Second)
	e.RegisterDelayedCallback(func() {
		st := e.status()
		for _, nd := range st.Nodes {
			if nd.GPU != "" {
				t.Errorf("GPU node %+v still there after its job; want it deleted", nd)
			}
		}
		if len(st.Nodes) != 2 || count(st, control.NodeReady) != 2 {
			t.Errorf("after the job: %d nodes, %d ready; want the 2 standby", len(st.Nodes), count(st, control.NodeReady))
		}
		e.update(control.UpdateShutdown, nil)
	}, 15*time.Second)
	startWith(e, gceStandby)
	if err := e.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
}

// A job that needs the standby's region (or less disk than it has) takes the
// standby nodes; one that needs another region or a bigger disk gets a node
// started there.
func TestClusterPlacesByRegionAndDisk(t *testing.T) {
	e, rec := newPlacementEnv(t)
	sb := gceStandby
	sb.DiskGB = 50
	type outcome struct {
		resp control.ReserveResponse
		err  error
	}
	got := map[string]*outcome{}
	reserve := func(r control.ReserveRequest) {
		e.update(control.UpdateReserve, func(resp control.ReserveResponse, err error) {
			got[r.JobID] = &outcome{resp, err}
		}, r)
	}
	e.RegisterDelayedCallback(func() {
		reserve(control.ReserveRequest{Cluster: "c", JobID: "j-here", Slots: 2, FuncCPU: 1, Region: "us-central1", DiskGB: 40})
	}, 5*time.Second)
	e.RegisterDelayedCallback(func() {
		reserve(control.ReserveRequest{Cluster: "c", JobID: "j-eu", Slots: 2, FuncCPU: 1, Region: "europe-west4", Grow: true})
		reserve(control.ReserveRequest{Cluster: "c", JobID: "j-disk", Slots: 2, FuncCPU: 1, DiskGB: 500, Grow: true})
	}, 6*time.Second)
	e.RegisterDelayedCallback(func() {
		here := got["j-here"]
		if here == nil || here.err != nil || len(here.resp.Nodes) != 1 || here.resp.Nodes[0].Workers != 2 {
			t.Errorf("job in the standby's region: %+v; want a standby node", here)
		} else if spec := rec.spec(here.resp.Nodes[0].NodeID); spec.Zone != "us-central1-a" || spec.DiskGB != 50 {
			t.Errorf("job in the standby's region ran on %+v; want a standby node", spec)
		}
		eu := got["j-eu"]
		if eu == nil || eu.err != nil || len(eu.resp.Nodes) != 1 {
			t.Fatalf("job in europe-west4: %+v; want a node started there", eu)
		}
		if spec := rec.spec(eu.resp.Nodes[0].NodeID); spec.Region != "europe-west4" || spec.Zone != "" || spec.GPU != "" || spec.CPUs != 2 {
			t.Errorf("node for europe-west4 started with %+v; want a plain 2-CPU node in region europe-west4, zone left to the provider", spec)
		}
		disk := got["j-disk"]
		if disk == nil || disk.err != nil || len(disk.resp.Nodes) != 1 {
			t.Fatalf("job wanting 500 GB: %+v; want a node started with that disk", disk)
		}
		if spec := rec.spec(disk.resp.Nodes[0].NodeID); spec.DiskGB != 500 || spec.Zone != "us-central1-a" {
			t.Errorf("node for 500 GB started with %+v; want a 500 GB disk in the standby's zone", spec)
		}
		e.update(control.UpdateShutdown, nil)
		for _, id := range []string{"j-here", "j-eu", "j-disk"} {
			e.SignalWorkflow(control.SignalRelease, control.ReleaseRequest{JobID: id})
		}
	}, 12*time.Second)
	startWith(e, sb)
	if err := e.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
}

// A job whose needs no node has and the cluster cannot start is refused at
// once, not after the five minutes a reserve waits for busy nodes, with an
// error that says what it asked for, what the nodes have, and what to do.
func TestClusterRefusesJobsNoNodeCanFit(t *testing.T) {
	tests := []struct {
		name    string
		standby control.StandbySpec
		req     control.ReserveRequest
		want    []string
	}{{
		name:    "GPU on local nodes",
		standby: standby,
		req:     control.ReserveRequest{GPU: "A100", Grow: true},
		want:    []string{"GPU A100 per call", "2 node(s) with 2 CPUs, no GPU", "local provider", "run the job on a gce cluster with burla.Grow()", "drop burla.FuncGPU"},
	}, {
		name:    "GPU on gce without grow",
		standby: gceStandby,
		req:     control.ReserveRequest{GPU: "H100:2"},
		want:    []string{"GPU H100:2 per call", "in us-central1", "start the job with burla.Grow()"},
	}, {
		name:    "region on docker nodes",
		standby: control.StandbySpec{Nodes: 1, CPUs: 4, Provider: "docker"},
		req:     control.ReserveRequest{Region: "us-east1", DiskGB: 100, Grow: true},
		want:    []string{"region us-east1, a disk of at least 100 GB", "docker provider", "drop burla.Region and burla.DiskGB"},
	}, {
		name:    "region elsewhere without grow",
		standby: gceStandby,
		req:     control.ReserveRequest{Region: "europe-west4"},
		want:    []string{"region europe-west4", "burla.Grow()"},
	}, {
		name:    "GPU machine too small for a call",
		standby: gceStandby,
		req:     control.ReserveRequest{GPU: "T4", FuncCPU: 64, Grow: true},
		want:    []string{"GPU T4 per call, func_cpu=64", "a node started for it would have 16 CPUs", "lower func_cpu"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, _ := newPlacementEnv(t)
			req := tt.req
			req.Cluster, req.JobID, req.Slots = "c", "j-1", 4
			if req.FuncCPU == 0 {
				req.FuncCPU = 1
			}
			var refused error
			answered := false
			e.RegisterDelayedCallback(func() {
				e.update(control.UpdateReserve, func(r control.ReserveResponse, err error) {
					answered, refused = true, err
					if err == nil {
						t.Errorf("reserve: %+v; want it refused", r)
					}
				}, req)
			}, 5*time.Second)
			e.RegisterDelayedCallback(func() {
				if !answered {
					t.Error("reserve still waiting a second later; want it refused at once")
				}
				st := e.status()
				if len(st.Jobs) != 0 || len(st.Nodes) != tt.standby.Nodes {
					t.Errorf("after the refusal: %d claims, %d nodes; want none and the %d standby", len(st.Jobs), len(st.Nodes), tt.standby.Nodes)
				}
				e.update(control.UpdateShutdown, nil)
			}, 6*time.Second)
			startWith(e, tt.standby)
			if err := e.GetWorkflowError(); err != nil {
				t.Fatal(err)
			}
			typ, msg := appTypeMessage(refused)
			if typ != control.ErrNoCompatibleNodes {
				t.Fatalf("refused with %v (type %q); want %s", refused, typ, control.ErrNoCompatibleNodes)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q does not say %q", msg, w)
				}
			}
		})
	}
}

// Standby GPU nodes are the machine with their GPUs: a GPU job takes them at
// once; a CPU job may too.
func TestClusterStandbyGPUNodes(t *testing.T) {
	e, rec := newPlacementEnv(t)
	sb := control.StandbySpec{Nodes: 1, CPUs: 1, Provider: "gce", Region: "us-east4", GPU: "L4:2"}
	var resp control.ReserveResponse
	var rerr error
	e.RegisterDelayedCallback(func() {
		e.update(control.UpdateReserve, func(r control.ReserveResponse, err error) { resp, rerr = r, err },
			control.ReserveRequest{Cluster: "c", JobID: "j-1", Slots: 8, FuncCPU: 1, GPU: "L4"})
	}, 5*time.Second)
	e.RegisterDelayedCallback(func() {
		if rerr != nil || len(resp.Nodes) != 1 || resp.Nodes[0].Workers != 2 {
			t.Errorf("reserve: %+v, %v; want the standby node running 2 calls (one per L4)", resp, rerr)
		} else if spec := rec.spec(resp.Nodes[0].NodeID); spec.GPU != "L4:2" || spec.CPUs != 24 || spec.Region != "us-east4" {
			t.Errorf("standby node started with %+v; want g2-standard-24's 24 CPUs and 2 L4s in us-east4", spec)
		}
		e.update(control.UpdateShutdown, nil)
		e.SignalWorkflow(control.SignalRelease, control.ReleaseRequest{JobID: "j-1"})
	}, 8*time.Second)
	startWith(e, sb)
	if err := e.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
}

func TestStandbySpecValidatesPlacement(t *testing.T) {
	for _, tt := range []struct {
		sb   control.StandbySpec
		want string
	}{
		{control.StandbySpec{Nodes: 1, CPUs: 1, Provider: "local", GPU: "A100"}, "GPUs, a region and a disk size are for gce nodes, not local ones"},
		{control.StandbySpec{Nodes: 1, CPUs: 1, Provider: "gce", GPU: "A100:3"}, "no machine has exactly 3 A100 GPUs"},
		{control.StandbySpec{Nodes: 1, CPUs: 1, Provider: "gce", GPU: "B200"}, `unknown GPU "B200"`},
		{control.StandbySpec{Nodes: 1, CPUs: 1, Provider: "gce", Zone: "us-central1-a", Region: "europe-west4"}, "zone us-central1-a is not in region europe-west4"},
		{control.StandbySpec{Nodes: 1, CPUs: 1, Provider: "gce", DiskGB: 3}, "disk of 3 GB"},
		{control.StandbySpec{Nodes: 1, CPUs: 1, Provider: "gce", GPU: "A100:8", Region: "us-central1", DiskGB: 200}, ""},
	} {
		err := tt.sb.Validate(providers[tt.sb.Provider])
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("Validate(%+v) = %v; want %q", tt.sb, err, tt.want)
		}
	}
}

// The job workflow asks its cluster for nodes with the GPU, region and disk of
// its spec, and fails at once, with the cluster's error, when none fits.
func TestJobAsksForItsNeedsAndFailsWithoutCompatibleNodes(t *testing.T) {
	e := newEnv(t, twoNodes(), func(ctx context.Context, in control.RunInput) (control.RunOutput, error) {
		t.Error("a node ran the job although none fits it")
		return control.RunOutput{}, nil
	})
	var mu sync.Mutex
	var asked []control.ReserveRequest
	e.RegisterActivityWithOptions(func(ctx context.Context, r control.ReserveRequest) (control.ReserveResponse, error) {
		mu.Lock()
		asked = append(asked, r)
		mu.Unlock()
		return control.ReserveResponse{}, control.ErrNoCompatibleNodes.New("no compatible nodes: the job asks for GPU A100:2 per call", nil)
	}, activity.RegisterOptions{Name: control.ActivityReserveNodes, DisableAlreadyRegisteredCheck: true})
	s := spec(3, true)
	s.GPU, s.Region, s.DiskGB = "A100:2", "us-central1", 100
	e.ExecuteWorkflow(workflows.Job, control.JobInput{Spec: s})
	err := e.GetWorkflowError()
	if typ, msg := appTypeMessage(err); typ != control.ErrNoCompatibleNodes || !strings.Contains(msg, "A100:2") {
		t.Fatalf("workflow error %v; want NoCompatibleNodes naming the GPU", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(asked) != 1 || asked[0].GPU != "A100:2" || asked[0].Region != "us-central1" || asked[0].DiskGB != 100 {
		t.Errorf("reserve requests %+v; want one asking for A100:2 in us-central1 with 100 GB", asked)
	}
}
