// Package provider is the contract for where nodes come from: a local process, a
// Docker container, a cloud VM. The NodeWorkflow's activities call a Provider to
// create and delete the node it owns; both calls are idempotent, because Temporal
// retries activities.
package provider

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
)

// NodeSpec is a node to create.
type NodeSpec struct {
	ID      string `json:"id"`
	Cluster string `json:"cluster"`
	CPUs    int    `json:"cpus"`
	RAMMB   int    `json:"ram_mb,omitempty"`
	// Envs are users' images whose workers the node keeps warm besides its default's.
	Envs []string `json:"envs,omitempty"`
	// Project and Zone place a cloud node (gce); empty means the provider's own.
	Project string `json:"project,omitempty"`
	Zone    string `json:"zone,omitempty"`
	// GPU is the node's GPUs, in the form gpu.Parse reads ("A100:4"); Region
	// the region it must be in when Zone names none; DiskGB its boot disk. Only
	// a provider that can choose them (gce) accepts them; empty or 0 is its own.
	GPU    string `json:"gpu,omitempty"`
	Region string `json:"region,omitempty"`
	DiskGB int    `json:"disk_gb,omitempty"`
}

// RegionOf is the region of a cloud zone ("us-central1" of "us-central1-a"), or
// "" if zone names none.
func RegionOf(zone string) string {
	i := strings.LastIndexByte(zone, '-')
	if i <= 0 || i == len(zone)-1 {
		return ""
	}
	return zone[:i]
}

// Capabilities are what a provider chooses about the nodes it makes besides their
// CPUs and memory. Each provider declares its own (Declare, from its package's
// init), so that placement and a standby spec's validation ask what a provider
// can do rather than which one it is.
type Capabilities struct {
	GPUs    bool // machines with GPUs attached
	Regions bool // the region a node is made in
	Disks   bool // the size of a node's boot disk
	Zones   bool // a project and zone per cluster
}

var (
	declaredMu sync.Mutex
	declared   = map[string]Capabilities{}
)

// Declare records the capabilities of the provider of the given name. It panics
// if the name is declared twice, as a second database/sql driver of one name does.
func Declare(name string, c Capabilities) {
	declaredMu.Lock()
	defer declaredMu.Unlock()
	if _, dup := declared[name]; dup {
		panic("provider: " + name + " declared twice")
	}
	declared[name] = c
}

// Declared returns the capabilities of every provider this program links, by
// name: the control plane hands them to the cluster workflow, whose placement
// reads them.
func Declared() map[string]Capabilities {
	declaredMu.Lock()
	defer declaredMu.Unlock()
	return maps.Clone(declared)
}

// Provider creates and deletes nodes. A created node runs a node agent that
// registers itself with its NodeWorkflow. Implementations are safe for concurrent
// use.
type Provider interface {
	// Name is the provider's name in a standby spec ("local", "docker", "gce").
	Name() string
	// Create makes the node and starts its agent. Creating a node that exists (and
	// runs) is not an error.
	Create(ctx context.Context, n NodeSpec) error
	// Delete stops and removes the node n, the spec it was created from. Deleting a
	// node that does not exist is not an error.
	Delete(ctx context.Context, n NodeSpec) error
	// List returns the IDs of the nodes of cluster this provider knows of, so that
	// orphans can be found.
	List(ctx context.Context, cluster string) ([]string, error)
}

// Set is the providers a control plane can use, by name.
type Set map[string]Provider

// Get returns the named provider.
func (s Set) Get(name string) (Provider, error) {
	p, ok := s[name]
	if !ok {
		return nil, fmt.Errorf("no provider %q in this control plane (it has %v)", name, s.Names())
	}
	return p, nil
}

// Names returns the providers' names, sorted.
func (s Set) Names() []string {
	return slices.Sorted(maps.Keys(s))
}
