package workflows_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"

	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/job"
)

// jobOf is the ID of tenant's job n, as job.NewID makes them.
func jobOf(tenant, n string) string {
	return "j-" + tenant + "-" + strings.Repeat("0", 20-len(n)) + n
}

// held counts the nodes tenant's jobs hold or have coming, as the cluster
// bounds them.
func held(st control.ClusterState, tenant string) int {
	n := 0
	for _, nd := range st.Nodes {
		if nd.Job != "" && nd.State != control.NodeDeleting && st.Jobs[nd.Job] != nil && job.TenantOf(nd.Job) == tenant {
			n++
		}
	}
	return n
}

// reserves records the outcome of each job's reserve as it ends, and the
// nodes each job is handed afterwards.
type reserves struct {
	e clusterEnv

	mu    sync.Mutex
	done  map[string]bool
	resp  map[string]control.ReserveResponse
	err   map[string]error
	nodes map[string]map[string]bool // every node each job was handed, by its reserve or by nodes-added
}

// newReserves records the nodes-added signals to the jobs; call it before the
// cluster starts.
func newReserves(e clusterEnv, jobs ...string) *reserves {
	r := &reserves{e: e, done: map[string]bool{}, resp: map[string]control.ReserveResponse{}, err: map[string]error{}, nodes: map[string]map[string]bool{}}
	for _, id := range jobs {
		r.nodes[id] = map[string]bool{}
		e.OnSignalExternalWorkflow(mock.Anything, id, "", control.SignalNodesAdded, mock.Anything).Run(func(args mock.Arguments) {
			r.mu.Lock()
			defer r.mu.Unlock()
			for _, a := range args.Get(4).(control.NodesAdded).Nodes {
				r.nodes[id][a.NodeID] = true
			}
		}).Return(nil)
	}
	return r
}

func (r *reserves) reserve(req control.ReserveRequest) {
	req.Cluster = "c"
	if req.FuncCPU == 0 {
		req.FuncCPU = 1
	}
	r.e.update(control.UpdateReserve, func(resp control.ReserveResponse, err error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.done[req.JobID], r.resp[req.JobID], r.err[req.JobID] = true, resp, err
		for _, a := range resp.Nodes {
			r.nodes[req.JobID][a.NodeID] = true
		}
	}, req)
}

// outcome is a job's reserve: whether it has ended, the nodes it got and its error.
func (r *reserves) outcome(id string) (bool, int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.done[id], len(r.resp[id].Nodes), r.err[id]
}

// handed counts the nodes a job was handed, by its reserve or later, once each:
// a node handed to a job still in its reserve comes both ways.
func (r *reserves) handed(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.nodes[id])
}

// watchHeld checks every half second from from to until that tenant holds at
// most bound nodes.
func watchHeld(e clusterEnv, tenant string, bound int, from, until time.Duration) {
	for at := from; at <= until; at += 500 * time.Millisecond {
		e.RegisterDelayedCallback(func() {
			if n := held(e.status(), tenant); n > bound {
				e.t.Errorf("at %v tenant %s holds %d nodes; its share is %d", at, tenant, n, bound)
			}
		}, at)
	}
}

func release(e clusterEnv, ids ...string) {
	for _, id := range ids {
		e.SignalWorkflow(control.SignalRelease, control.ReleaseRequest{JobID: id})
	}
}

// On a cluster of three ready nodes where each tenant may hold one, tenant
// acme's first job gets one node of the two it wants and its second waits,
// while tenant beta's job gets its node at once; once acme's first job ends,
// its second gets the node acme's share frees. Before shares, acme's first job
// took two nodes and its second one more.
func TestTenantShareBoundsItsJobs(t *testing.T) {
	e := newClusterEnv(t)
	a1, a2, b1 := jobOf("acme", "1"), jobOf("acme", "2"), jobOf("beta", "1")
	r := newReserves(e, a1, a2, b1)
	e.RegisterDelayedCallback(func() { r.reserve(control.ReserveRequest{JobID: a1, Slots: 4}) }, 5*time.Second)
	e.RegisterDelayedCallback(func() { r.reserve(control.ReserveRequest{JobID: a2, Slots: 2}) }, 6*time.Second)
	e.RegisterDelayedCallback(func() { r.reserve(control.ReserveRequest{JobID: b1, Slots: 2}) }, 7*time.Second)
	watchHeld(e, "acme", 1, 5*time.Second, 20*time.Second)
	e.RegisterDelayedCallback(func() {
		if done, n, err := r.outcome(a1); !done || err != nil || n != 1 {
			t.Errorf("acme's first job: done %v, %d nodes, %v; want 1 node, its tenant's share", done, n, err)
		}
		if done, n, err := r.outcome(a2); done {
			t.Errorf("acme's second job got %d nodes (%v) while its first held acme's share; want it waiting", n, err)
		}
		if done, n, err := r.outcome(b1); !done || err != nil || n != 1 {
			t.Errorf("beta's job while acme is at its share: done %v, %d nodes, %v; want its node at once", done, n, err)
		}
		st := e.status()
		if held(st, "acme") != 1 || held(st, "beta") != 1 || count(st, control.NodeReady) != 3 {
			t.Errorf("acme holds %d nodes, beta %d, %d ready; want 1, 1 and standby (3) full", held(st, "acme"), held(st, "beta"), count(st, control.NodeReady))
		}
		release(e, a1)
	}, 10*time.Second)
	e.RegisterDelayedCallback(func() {
		if done, n, err := r.outcome(a2); !done || err != nil || n != 1 {
			t.Errorf("acme's second job after its first ended: done %v, %d nodes, %v; want the node acme's share frees", done, n, err)
		}
		if st := e.status(); held(st, "acme") != 1 || count(st, control.NodeReady) < 3 {
			t.Errorf("after acme's first job: acme holds %d nodes, %d ready; want 1 and standby (3) full", held(st, "acme"), count(st, control.NodeReady))
		}
		release(e, a2, b1)
		e.update(control.UpdateShutdown, nil)
	}, 15*time.Second)
	sb := standby
	sb.Nodes, sb.TenantMaxNodes = 3, 1
	startWith(e, sb)
	if err := e.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
}

// A job that grows starts nodes only up to its tenant's share, and another
// tenant's job grows beside it; a job of the tenant at its share waits, starts
// nothing, and grows once the first job ends.
func TestTenantShareBoundsGrow(t *testing.T) {
	e := newClusterEnv(t)
	a1, a2, b1 := jobOf("acme", "1"), jobOf("acme", "2"), jobOf("beta", "1")
	r := newReserves(e, a1, a2, b1)
	e.RegisterDelayedCallback(func() { r.reserve(control.ReserveRequest{JobID: a1, Slots: 20, Grow: true}) }, 5*time.Second)
	watchHeld(e, "acme", 3, 5*time.Second, 30*time.Second)
	e.RegisterDelayedCallback(func() {
		if done, n, err := r.outcome(a1); !done || err != nil || n != 1 {
			t.Errorf("acme's big job: done %v, %d nodes, %v; want the standby node at once", done, n, err)
		}
		if got := r.handed(a1); got != 3 {
			t.Errorf("acme's big job was handed %d nodes; want 3, acme's share (not the 10 it wants)", got)
		}
		st := e.status()
		if held(st, "acme") != 3 || len(st.Nodes) != 4 {
			t.Errorf("acme holds %d of %d nodes; want 3, and the standby one", held(st, "acme"), len(st.Nodes))
		}
		r.reserve(control.ReserveRequest{JobID: b1, Slots: 6, Grow: true})
	}, 10*time.Second)
	e.RegisterDelayedCallback(func() {
		if done, _, err := r.outcome(b1); !done || err != nil || r.handed(b1) != 3 {
			t.Errorf("beta's job while acme is at its share: done %v, %d nodes, %v; want 3, its own share", done, r.handed(b1), err)
		}
		r.reserve(control.ReserveRequest{JobID: a2, Slots: 4, Grow: true})
	}, 15*time.Second)
	e.RegisterDelayedCallback(func() {
		if done, n, err := r.outcome(a2); done {
			t.Errorf("acme's second job got %d nodes (%v) while its first held acme's share; want it waiting", n, err)
		}
		for _, nd := range e.status().Nodes {
			if nd.Job == a2 {
				t.Errorf("node %+v started or set aside for acme's second job while acme is at its share", nd)
			}
		}
		release(e, a1)
	}, 20*time.Second)
	e.RegisterDelayedCallback(func() {
		if done, _, err := r.outcome(a2); !done || err != nil || r.handed(a2) != 2 {
			t.Errorf("acme's second job after its first ended: done %v, %d nodes, %v; want the 2 it asks for", done, r.handed(a2), err)
		}
		if st := e.status(); held(st, "acme") != 2 || held(st, "beta") != 3 {
			t.Errorf("acme holds %d nodes and beta %d; want 2 and 3", held(st, "acme"), held(st, "beta"))
		}
		release(e, a2, b1)
		e.update(control.UpdateShutdown, nil)
	}, 26*time.Second)
	sb := standby
	sb.Nodes, sb.TenantMaxNodes = 1, 3
	startWith(e, sb)
	if err := e.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
}

// A node lost from a job at its tenant's share leaves the share at once: the
// node started to replace it fits.
func TestTenantShareReplacesALostNode(t *testing.T) {
	e := newClusterEnv(t)
	a1 := jobOf("acme", "1")
	r := newReserves(e, a1)
	e.RegisterDelayedCallback(func() { r.reserve(control.ReserveRequest{JobID: a1, Slots: 8, Grow: true}) }, 5*time.Second)
	var victim string
	e.RegisterDelayedCallback(func() {
		st := e.status()
		if held(st, "acme") != 2 || len(st.Jobs[a1].Nodes) != 2 {
			t.Fatalf("acme's job holds %v; want 2 nodes, acme's share", st.Jobs[a1].Nodes)
		}
		victim = st.Jobs[a1].Nodes[0]
		if err := e.SignalWorkflowByID(control.NodeWorkflowID(victim), "lose", nil); err != nil {
			t.Error(err)
		}
	}, 8*time.Second)
	watchHeld(e, "acme", 2, 5*time.Second, 15*time.Second)
	e.RegisterDelayedCallback(func() {
		st := e.status()
		if nodes := st.Jobs[a1].Nodes; len(nodes) != 2 || nodes[0] == victim || nodes[1] == victim {
			t.Errorf("after losing %s acme's job holds %v; want 2 nodes, a replacement for it", victim, nodes)
		}
		release(e, a1)
		e.update(control.UpdateShutdown, nil)
	}, 15*time.Second)
	sb := standby
	sb.TenantMaxNodes = 2
	startWith(e, sb)
	if err := e.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
}

// A job that waits at its tenant's share as long as a job waits for busy nodes
// fails with TenantLimit, which names the share, what the tenant holds and for
// which job, and what to do.
func TestTenantShareFailsAJobThatWaitsTooLong(t *testing.T) {
	e := newClusterEnv(t)
	a1, a2 := jobOf("acme", "1"), jobOf("acme", "2")
	r := newReserves(e, a1, a2)
	e.RegisterDelayedCallback(func() { r.reserve(control.ReserveRequest{JobID: a1, Slots: 4}) }, 5*time.Second)
	e.RegisterDelayedCallback(func() { r.reserve(control.ReserveRequest{JobID: a2, Slots: 1, Grow: true}) }, 6*time.Second)
	e.RegisterDelayedCallback(func() {
		done, _, err := r.outcome(a2)
		typ, msg := appTypeMessage(err)
		if !done || typ != control.ErrTenantLimit {
			t.Fatalf("acme's second job after the wait: done %v, %v; want TenantLimit", done, err)
		}
		for _, want := range []string{"tenant acme is at its limit of 1 node(s)", "it holds 1, for 1 other job(s) (" + a1 + ")", "--tenant-max-nodes N", "--tenant-nodes acme=N"} {
			if !strings.Contains(msg, want) {
				t.Errorf("message %q does not say %q", msg, want)
			}
		}
		if st := e.status(); st.Jobs[a2] != nil || held(st, "acme") != 1 {
			t.Errorf("after the refusal: claim %+v, acme holds %d; want no claim and acme's first job's node", st.Jobs[a2], held(st, "acme"))
		}
		release(e, a1)
		e.update(control.UpdateShutdown, nil)
	}, 7*time.Minute)
	sb := standby
	sb.TenantMaxNodes = 1
	startWith(e, sb)
	if err := e.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
}

// A tenant named in TenantNodes has its own share, 0 none; raising the shares
// with set-standby lets a job waiting at its tenant's share go on at once.
func TestTenantNodesAndRaisedShares(t *testing.T) {
	e := newClusterEnv(t)
	acme, beta, beta2, free := jobOf("acme", "1"), jobOf("beta", "1"), jobOf("beta", "2"), jobOf("free", "1")
	r := newReserves(e, acme, beta, beta2, free)
	sb := standby
	sb.Nodes, sb.TenantMaxNodes, sb.TenantNodes = 4, 1, map[string]int{"acme": 3, "free": 0}
	e.RegisterDelayedCallback(func() { r.reserve(control.ReserveRequest{JobID: acme, Slots: 10}) }, 5*time.Second)
	e.RegisterDelayedCallback(func() { r.reserve(control.ReserveRequest{JobID: beta, Slots: 2}) }, 7*time.Second)
	e.RegisterDelayedCallback(func() { r.reserve(control.ReserveRequest{JobID: beta2, Slots: 2}) }, 8*time.Second)
	e.RegisterDelayedCallback(func() { r.reserve(control.ReserveRequest{JobID: free, Slots: 8}) }, 9*time.Second)
	e.RegisterDelayedCallback(func() {
		st := e.status()
		if held(st, "acme") != 3 || held(st, "beta") != 1 || held(st, "free") != 4 {
			t.Errorf("acme holds %d nodes, beta %d, free %d; want 3 (its own share), 1 (the cluster's) and the 4 it asks for (no share)",
				held(st, "acme"), held(st, "beta"), held(st, "free"))
		}
		if done, _, _ := r.outcome(beta2); done {
			t.Error("beta's second job got a node while beta's first held beta's share")
		}
		raised := sb
		raised.TenantMaxNodes = 2
		e.update(control.UpdateSetStandby, nil, raised)
	}, 12*time.Second)
	e.RegisterDelayedCallback(func() {
		if done, n, err := r.outcome(beta2); !done || err != nil || n != 1 {
			t.Errorf("beta's second job once beta's share is 2: done %v, %d nodes, %v; want a node at once", done, n, err)
		}
		release(e, acme, beta, beta2, free)
		e.update(control.UpdateShutdown, nil)
	}, 12*time.Second+100*time.Millisecond)
	startWith(e, sb)
	if err := e.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
}

func TestStandbySpecValidatesTenantShares(t *testing.T) {
	for _, tt := range []struct {
		sb   control.StandbySpec
		want string
	}{
		{control.StandbySpec{Nodes: 1, CPUs: 1, Provider: "local", TenantMaxNodes: -1}, "tenant max nodes -1 is negative"},
		{control.StandbySpec{Nodes: 1, CPUs: 1, Provider: "local", TenantNodes: map[string]int{"Acme": 1}}, `"Acme" is not a tenant name`},
		{control.StandbySpec{Nodes: 1, CPUs: 1, Provider: "local", TenantNodes: map[string]int{"acme": -2}}, "tenant nodes of acme: -2 is negative"},
		{control.StandbySpec{Nodes: 1, CPUs: 1, Provider: "local", TenantMaxNodes: 2, TenantNodes: map[string]int{"acme": 5, "beta": 0}}, ""},
	} {
		err := tt.sb.Validate(providers[tt.sb.Provider])
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("Validate(%+v) = %v; want %q", tt.sb, err, tt.want)
		}
	}
}
