package sweep_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/provider"
	"github.com/burla-temporal/burla/provider/sweep"
)

// nodes is a provider whose nodes are IDs by cluster; List can add a node first,
// as a create that lands while the sweep runs.
type nodes struct {
	name string
	mu   sync.Mutex
	by   map[string][]string
	// onList runs at the start of each List.
	onList func(cluster string)
	// zone is the zone In was last asked for.
	zone string
}

func (n *nodes) Name() string                                          { return n.name }
func (n *nodes) Create(ctx context.Context, s provider.NodeSpec) error { return errors.New("not here") }
func (n *nodes) Delete(ctx context.Context, s provider.NodeSpec) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.by[s.Cluster] = slices.DeleteFunc(n.by[s.Cluster], func(id string) bool { return id == s.ID })
	return nil
}
func (n *nodes) List(ctx context.Context, cluster string) ([]string, error) {
	if n.onList != nil {
		n.onList(cluster)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.by[cluster]), nil
}

// regional is a provider that places nodes by zone, as gce does.
type regional struct{ *nodes }

func (r regional) In(project, zone string) provider.Provider { r.nodes.zone = zone; return r.nodes }

// states are clusters' states, each node known by ID.
type states struct {
	mu      sync.Mutex
	running []string
	spec    map[string]control.StandbySpec
	known   map[string][]string
	err     error
}

func (s *states) Running(context.Context) ([]string, error) { return s.running, s.err }
func (s *states) State(_ context.Context, cluster string) (control.ClusterState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := control.ClusterState{Name: cluster, Standby: s.spec[cluster], Nodes: map[string]*control.ClusterNode{}}
	for _, id := range s.known[cluster] {
		st.Nodes[id] = &control.ClusterNode{}
	}
	return st, nil
}

func (s *states) add(cluster, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.known[cluster] = append(s.known[cluster], id)
}

// The sweeper deletes the nodes a provider has that their running cluster does
// not know, keeps a node the cluster records while the sweep lists (a create in
// flight), leaves clusters of providers it lacks alone, and asks a regional
// provider in the cluster's zone.
func TestSweep(t *testing.T) {
	ctx := context.Background()
	local := &nodes{name: "local", by: map[string][]string{
		"a": {"a-1", "a-2", "a-3", "a-4"},
	}}
	gce := &nodes{name: "gce", by: map[string][]string{"b": {"b-1", "b-9"}}}
	st := &states{
		running: []string{"a", "b", "c"},
		spec: map[string]control.StandbySpec{
			"a": {Provider: "local"}, "b": {Provider: "gce", Zone: "us-central1-a"}, "c": {Provider: "docker"},
		},
		known: map[string][]string{"a": {"a-1", "a-2"}, "b": {"b-1"}},
	}
	// a-4 is being created: the cluster records it as the provider lists it.
	local.onList = func(cluster string) {
		if cluster == "a" {
			st.add("a", "a-4")
		}
	}
	s := &sweep.Sweeper{Clusters: st, Providers: provider.Set{"local": local, "gce": regional{gce}}}
	n, err := s.Sweep(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("deleted %d nodes; want 2 (a-3 and b-9)", n)
	}
	if got := local.by["a"]; !slices.Equal(got, []string{"a-1", "a-2", "a-4"}) {
		t.Errorf("cluster a keeps %v; want a-1, a-2 and a-4, the one created during the sweep", got)
	}
	if got := gce.by["b"]; !slices.Equal(got, []string{"b-1"}) {
		t.Errorf("cluster b keeps %v; want b-1", got)
	}
	if gce.zone != "us-central1-a" {
		t.Errorf("the regional provider was asked in zone %q; want the cluster's, us-central1-a", gce.zone)
	}

	st.err = errors.New("Temporal is down")
	if _, err := s.Sweep(ctx); err == nil {
		t.Error("a sweep that could not list the clusters reported no error")
	}
}
