package status

import (
	"fmt"
	"testing"
	"time"

	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/store"
)

func TestDiagnose(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	now := t0.Add(42 * time.Second)
	id, other, other2 := jobID("acme", 1), jobID("acme", 2), jobID("zeta", 3)
	placing := Job{ID: id, State: job.StatePlacing, Started: t0, Inputs: 5000,
		Progress: &Progress{Sealed: true, Chunks: 10, Waiting: 10}}
	running := placing
	running.State = job.StateRunning
	uploading := placing
	uploading.Progress = &Progress{Sealed: false, Waiting: 0}
	node := func(nid string, s control.NodeState, j string) *control.ClusterNode {
		return &control.ClusterNode{ID: nid, State: s, Job: j, CPUs: 2}
	}
	cluster := func(claim *control.JobClaim, nodes ...*control.ClusterNode) *control.ClusterState {
		cs := &control.ClusterState{Name: "default", Nodes: map[string]*control.ClusterNode{}, Jobs: map[string]*control.JobClaim{}}
		for _, n := range nodes {
			cs.Nodes[n.ID] = n
		}
		if claim != nil {
			cs.Jobs[claim.JobID] = claim
		}
		return cs
	}
	claim := &control.JobClaim{JobID: id, Slots: 4, FuncCPU: 1}
	growing := &control.JobClaim{JobID: id, Slots: 4, FuncCPU: 1, Grow: true}
	for _, tc := range []struct {
		name   string
		e      Evidence
		reason Reason // "" for no diagnosis
		detail string
		since  time.Time
	}{
		{name: "ended", e: Evidence{Job: Job{ID: id, State: job.StateSucceeded, Started: t0}}},
		{name: "calls in flight", e: Evidence{Job: withProgress(running, Progress{Sealed: true, Chunks: 10, Waiting: 4, InFlight: 2}),
			Cluster: cluster(claim, node("n-1", control.NodeAssigned, id))}},
		{name: "a node's workers busy", e: Evidence{Job: running, Records: []store.Node{{ID: "n-1", Job: id, Busy: 2}}}},
		{name: "finishing", e: Evidence{Job: withProgress(running, Progress{Sealed: true, Chunks: 10})}},
		{name: "still uploading, with calls running", e: Evidence{Job: withProgress(running, Progress{Waiting: 3, InFlight: 2})}},

		{name: "client uploading, as it records", reason: WaitUploadingInputs, detail: "uploading inputs 1200/5000", since: t0.Add(time.Second),
			e: Evidence{Job: uploading, Upload: &store.Upload{Inputs: 5000, Uploaded: 1200, Started: t0.Add(time.Second), Updated: now.Add(-time.Second)}}},
		{name: "client uploading, no word for a while", reason: WaitUploadingInputs,
			detail: "uploading inputs 1200/5000, none written for 40s: is the client still running?", since: t0,
			e: Evidence{Job: uploading, Upload: &store.Upload{Inputs: 5000, Uploaded: 1200, Started: t0.Add(-time.Second), Updated: t0.Add(2 * time.Second)}}},
		{name: "client uploading, no record", reason: WaitUploadingInputs, detail: "uploading the job's 5000 inputs", since: t0,
			e: Evidence{Job: uploading}},
		{name: "workers wait for the client", reason: WaitUploadingInputs, detail: "uploading inputs 10/5000", since: t0,
			e: Evidence{Job: withProgress(running, Progress{InFlight: 2}), Upload: &store.Upload{Inputs: 5000, Uploaded: 10, Started: t0, Updated: now}}},

		{name: "nothing known", reason: WaitPlacing, detail: "waiting for nodes", since: t0, e: Evidence{Job: placing}},
		{name: "records: the job's node starting workers", reason: WaitWorkersStarting, detail: "1 node assigned, starting its workers", since: t0,
			e: Evidence{Job: running, Records: []store.Node{{ID: "n-1", Job: id}, {ID: "n-2", Job: other, Busy: 2}}}},
		{name: "records: every node busy", reason: WaitNodesBusy, detail: "every node is busy with another job (" + other + ")", since: t0,
			e: Evidence{Job: placing, Viewer: "acme", Records: []store.Node{{ID: "n-1", Job: other, Busy: 2}, {ID: "n-2", Job: other, Busy: 2}}}},
		{name: "records: an idle node", reason: WaitPlacing, detail: "waiting for nodes", since: t0,
			e: Evidence{Job: placing, Records: []store.Node{{ID: "n-1", Job: other, Busy: 2}, {ID: "n-2"}}}},

		{name: "no claim yet", reason: WaitPlacing, detail: "asking the cluster for nodes", since: t0,
			e: Evidence{Job: placing, Cluster: cluster(nil, node("n-1", control.NodeReady, ""))}},
		{name: "assigned, workers starting", reason: WaitWorkersStarting, detail: "2 nodes assigned, starting their workers", since: t0,
			e: Evidence{Job: running, Cluster: cluster(claim, node("n-1", control.NodeAssigned, id), node("n-2", control.NodeAssigned, id))}},
		{name: "grown nodes booting", reason: WaitNodesBooting, detail: "3 nodes booting", since: t0.Add(2 * time.Second),
			e: Evidence{Job: placing, Cluster: cluster(growing, node("n-1", control.NodeProvisioning, id), node("n-2", control.NodeProvisioning, id),
				node("n-3", control.NodeProvisioning, id), node("n-4", control.NodeAssigned, other)),
				Booted: map[string]time.Time{"n-1": t0.Add(3 * time.Second), "n-2": t0.Add(2 * time.Second)}}},
		{name: "a lost node's replacement booting", reason: WaitNodesBooting, detail: "1 node booting", since: t0.Add(30 * time.Second),
			e: Evidence{Job: running, Cluster: cluster(growing, node("n-9", control.NodeProvisioning, id)),
				Booted: map[string]time.Time{"n-9": t0.Add(30 * time.Second)}}},
		{name: "standby node booting, boot began before the job", reason: WaitNodesBooting, detail: "1 node booting", since: t0,
			e: Evidence{Job: placing, Cluster: cluster(claim, node("n-1", control.NodeProvisioning, ""), node("n-2", control.NodeAssigned, other)),
				Booted: map[string]time.Time{"n-1": t0.Add(-time.Minute)}}},
		{name: "nodes resetting after their last job", reason: WaitNodesResetting, detail: "2 nodes resetting after their last job", since: t0,
			e: Evidence{Job: placing, Cluster: cluster(claim, node("n-1", control.NodeResetting, id), node("n-2", control.NodeResetting, ""))}},
		{name: "busy with another job the viewer may see", reason: WaitNodesBusy, detail: "every node is busy with another job (" + other + ")", since: t0,
			e: Evidence{Job: placing, Viewer: "acme", Cluster: cluster(claim, node("n-1", control.NodeAssigned, other), node("n-2", control.NodeAssigned, other))}},
		{name: "busy with another tenant's job", reason: WaitNodesBusy, detail: "every node is busy with another tenant's job", since: t0,
			e: Evidence{Job: placing, Viewer: "acme", Cluster: cluster(claim, node("n-1", control.NodeAssigned, other2))}},
		{name: "no viewer names no job", reason: WaitNodesBusy, detail: "every node is busy with another tenant's job", since: t0,
			e: Evidence{Job: placing, Cluster: cluster(claim, node("n-1", control.NodeAssigned, other))}},
		{name: "busy with several jobs, one hidden", reason: WaitNodesBusy, detail: "every node is busy with other jobs (" + other + ", one of another tenant)", since: t0,
			e: Evidence{Job: placing, Viewer: "acme", Cluster: cluster(claim, node("n-1", control.NodeAssigned, other), node("n-2", control.NodeAssigned, other2))}},
		{name: "busy, an operator sees every job", reason: WaitNodesBusy, detail: "every node is busy with other jobs (" + other + ", " + other2 + ")", since: t0,
			e: Evidence{Job: placing, Viewer: AllTenants, Cluster: cluster(claim, node("n-1", control.NodeAssigned, other), node("n-2", control.NodeResetting, other2))}},
		{name: "busy, and the cluster may not grow", reason: WaitNodesBusy, since: t0,
			detail: "every node is busy with another job (" + other + "); the cluster is at its limit of 2 nodes",
			e:      Evidence{Job: placing, Viewer: "acme", Cluster: withMax(cluster(growing, node("n-1", control.NodeAssigned, other), node("n-2", control.NodeAssigned, other)), 2)}},
		{name: "queued behind jobs that wait, before its claim", reason: WaitPlacing, detail: "queued behind 2 jobs waiting for nodes", since: t0,
			e: Evidence{Job: placing, Cluster: withClaims(cluster(nil, node("n-1", control.NodeAssigned, other)), jobID("acme", 0), jobID("aaa", 5))}},
		{name: "queued behind a job that waits, with its claim", reason: WaitNodesBusy, since: t0,
			detail: "queued behind 1 job waiting for nodes; every node is busy with another job (" + other + ")",
			e:      Evidence{Job: placing, Viewer: "acme", Cluster: withClaims(cluster(claim, node("n-1", control.NodeAssigned, other)), jobID("acme", 0), jobID("zz", 0))}},
		{name: "no nodes and no grow", reason: WaitNoNodes, since: t0,
			detail: "the cluster has no nodes, and the job does not start any (it was not started with burla.Grow)",
			e:      Evidence{Job: placing, Cluster: cluster(claim, node("n-1", control.NodeDeleting, ""))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := Diagnose(tc.e, now)
			switch {
			case tc.reason == "" && w != nil:
				t.Fatalf("Diagnose = %+v; want no diagnosis", *w)
			case tc.reason == "":
				return
			case w == nil:
				t.Fatalf("Diagnose = nil; want %s: %q", tc.reason, tc.detail)
			}
			if w.Reason != tc.reason || w.Detail != tc.detail || !w.Since.Equal(tc.since) {
				t.Errorf("Diagnose = %s: %q since %v;\n          want %s: %q since %v", w.Reason, w.Detail, w.Since, tc.reason, tc.detail, tc.since)
			}
			if want := int64(now.Sub(tc.since) / time.Second); w.Seconds != want {
				t.Errorf("Seconds = %d; want %d", w.Seconds, want)
			}
		})
	}
}

// jobID is a job ID of tenant, told apart by n.
func jobID(tenant string, n int) string { return fmt.Sprintf("j-%s-%020d", tenant, n) }

func withProgress(j Job, p Progress) Job { j.Progress = &p; return j }

// withClaims adds claims that hold no node yet, of the jobs named.
func withClaims(cs *control.ClusterState, ids ...string) *control.ClusterState {
	for _, id := range ids {
		cs.Jobs[id] = &control.JobClaim{JobID: id, Slots: 1, FuncCPU: 1}
	}
	return cs
}

func withMax(cs *control.ClusterState, n int) *control.ClusterState {
	cs.Standby.MaxNodes = n
	return cs
}

func TestWaitingText(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		w    Waiting
		now  time.Time
		want string
	}{
		{Waiting{Reason: WaitNodesBooting, Detail: "3 nodes booting", Since: t0}, t0.Add(42 * time.Second), "waiting 42s: 3 nodes booting"},
		{Waiting{Reason: WaitNodesBusy, Detail: "every node is busy with another job", Since: t0}, t0.Add(1500 * time.Millisecond), "waiting 1.5s: every node is busy with another job"},
		{Waiting{Reason: WaitUploadingInputs, Detail: "uploading inputs 1200/5000", Since: t0}, t0.Add(12 * time.Second), "uploading inputs 1200/5000 (12s)"},
		{Waiting{Reason: WaitBuildingEnv, Detail: "building the environment", Since: t0}, t0.Add(2 * time.Hour), "building the environment (2h0m0s)"},
		// A clock behind the reader's never shows a negative wait.
		{Waiting{Reason: WaitPlacing, Detail: "waiting for nodes", Since: t0}, t0.Add(-time.Second), "waiting 0s: waiting for nodes"},
	} {
		if got := tc.w.Text(tc.now); got != tc.want {
			t.Errorf("Text = %q; want %q", got, tc.want)
		}
	}
}

func TestBusyWithNamesAtMostThree(t *testing.T) {
	others := map[string]int{}
	for n := range 5 {
		others[jobID("acme", n)] = 1
	}
	others[jobID("zeta", 1)] = 1
	others[jobID("zeta", 2)] = 1
	got := busyWith(others, "acme")
	want := "every node is busy with other jobs (" + jobID("acme", 0) + ", " + jobID("acme", 1) + ", " + jobID("acme", 2) + ", 2 more, 2 of other tenants)"
	if got != want {
		t.Errorf("busyWith = %q;\n            want %q", got, want)
	}
}
