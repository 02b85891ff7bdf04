package control

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/burla-temporal/burla/gpu"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/provider"
)

// StandbySpec is what a cluster keeps warm while no job runs.
type StandbySpec struct {
	Nodes    int    `json:"nodes"`
	CPUs     int    `json:"cpus"`
	RAMMB    int    `json:"ram_mb,omitempty"`
	Provider string `json:"provider"`
	// MaxGrow bounds how many nodes beyond standby one job may add; 0 means 16.
	MaxGrow int `json:"max_grow,omitempty"`
	// MaxNodes bounds the nodes the cluster runs at once, replacements and grows
	// included; 0 means no bound. On one machine it is the standby count.
	MaxNodes int `json:"max_nodes,omitempty"`
	// Envs are users' images every node keeps warm workers in, one per CPU each,
	// besides the default environment's.
	Envs []string `json:"envs,omitempty"`
	// Project and Zone place cloud nodes (gce); empty means the provider's own.
	Project string `json:"project,omitempty"`
	Zone    string `json:"zone,omitempty"`
	// GPU gives standby nodes GPUs ("A100:4", a count a machine of the model
	// has); their CPUs and memory are then the machine's. Region places them in
	// a region when Zone names none; DiskGB sizes their boot disks. Only gce
	// nodes have them.
	GPU    string `json:"gpu,omitempty"`
	Region string `json:"region,omitempty"`
	DiskGB int    `json:"disk_gb,omitempty"`
	// TenantMaxNodes bounds the nodes each tenant's jobs hold at once, those
	// started or set aside for them included, so that no tenant takes the whole
	// cluster from the others; 0 means no bound. A job of a tenant at its bound
	// waits for a node of its share as a job waits for busy nodes.
	TenantMaxNodes int `json:"tenant_max_nodes,omitempty"`
	// TenantNodes bounds the tenants it names instead of TenantMaxNodes: a
	// larger share for some, a smaller one for others; 0 frees a tenant of any.
	TenantNodes map[string]int `json:"tenant_nodes,omitempty"`
}

// Validate reports the first thing wrong with s, for a provider of the given
// capabilities (provider.Declared).
func (s StandbySpec) Validate(caps provider.Capabilities) error {
	switch {
	case s.Nodes < 0:
		return fmt.Errorf("standby nodes %d is negative", s.Nodes)
	case s.CPUs < 1:
		return fmt.Errorf("standby CPUs per node %d is less than 1", s.CPUs)
	case s.Provider == "":
		return errors.New("standby spec names no provider")
	case (s.Project != "" || s.Zone != "") && !caps.Zones:
		return fmt.Errorf("a project and zone place gce nodes, not %s ones", s.Provider)
	case s.MaxNodes != 0 && s.MaxNodes < s.Nodes:
		return fmt.Errorf("max nodes %d is less than the %d standby nodes", s.MaxNodes, s.Nodes)
	case s.GPU != "" && !caps.GPUs, s.Region != "" && !caps.Regions, s.DiskGB != 0 && !caps.Disks:
		return fmt.Errorf("GPUs, a region and a disk size are for gce nodes, not %s ones", s.Provider)
	case s.Region != "" && !job.ValidRegion(s.Region):
		return fmt.Errorf("standby region %q is not a region name such as us-central1", s.Region)
	case s.Region != "" && s.Zone != "" && provider.RegionOf(s.Zone) != s.Region:
		return fmt.Errorf("standby zone %s is not in region %s", s.Zone, s.Region)
	case s.DiskGB != 0 && (s.DiskGB < job.MinDiskGB || s.DiskGB > job.MaxDiskGB):
		return fmt.Errorf("standby disk of %d GB is outside %d to %d", s.DiskGB, job.MinDiskGB, job.MaxDiskGB)
	case s.TenantMaxNodes < 0:
		return fmt.Errorf("tenant max nodes %d is negative", s.TenantMaxNodes)
	}
	for _, t := range s.TenantNames() {
		switch n := s.TenantNodes[t]; {
		case !job.ValidTenant(t):
			return fmt.Errorf("tenant nodes: %q is not a tenant name (lower-case letters, digits and dashes)", t)
		case n < 0:
			return fmt.Errorf("tenant nodes of %s: %d is negative", t, n)
		}
	}
	g, err := gpu.Parse(s.GPU)
	if err != nil {
		return fmt.Errorf("standby GPU: %w", err)
	}
	if !g.IsZero() {
		if _, ok := g.Model.ShapeOf(g.Count); !ok {
			return fmt.Errorf("standby GPU %s: no machine has exactly %d %s GPUs", s.GPU, g.Count, g.Model.Name)
		}
	}
	return nil
}

// tenantNames returns the tenants TenantNodes names, in order: Validate runs in
// the workflow too, and its first complaint must not depend on map order.
//
//workflowcheck:ignore the map is read in any order, then sorted
func (s StandbySpec) TenantNames() []string { return slices.Sorted(maps.Keys(s.TenantNodes)) }

// NodeState is where a node is in its life.
type NodeState string

const (
	NodeProvisioning NodeState = "provisioning"
	NodeReady        NodeState = "ready"
	NodeAssigned     NodeState = "assigned"
	NodeResetting    NodeState = "resetting"
	NodeDeleting     NodeState = "deleting"
)

// ClusterNode is the cluster's record of one node.
type ClusterNode struct {
	ID    string    `json:"id"`
	State NodeState `json:"state"`
	// Job is the job the node works on, or, while provisioning, the job it was
	// started for (a grow).
	Job   string `json:"job,omitempty"`
	CPUs  int    `json:"cpus"`
	RAMMB int    `json:"ram_mb,omitempty"`
	// GPU is the node's GPUs ("A100:4"), Region the region it is in when the
	// cluster knows it, DiskGB its boot disk when the cluster chose it.
	GPU    string `json:"gpu,omitempty"`
	Region string `json:"region,omitempty"`
	DiskGB int    `json:"disk_gb,omitempty"`
}

// JobClaim is a job's hold on the cluster.
type JobClaim struct {
	JobID     string   `json:"job"`
	Slots     int      `json:"slots"` // calls it wants to run at once
	FuncCPU   int      `json:"func_cpu"`
	FuncRAMMB int      `json:"func_ram_mb,omitempty"`
	Grow      bool     `json:"grow,omitempty"` // start nodes for the job when too few are ready
	Nodes     []string `json:"nodes"`
	// GPU (per call), Region and DiskGB are what the job needs of its nodes
	// besides CPUs and memory; only nodes that have them take it.
	GPU    string `json:"gpu,omitempty"`
	Region string `json:"region,omitempty"`
	DiskGB int    `json:"disk_gb,omitempty"`
	// BootFailures are the reasons the nodes started for the job, while it
	// waited for its first, failed to boot.
	BootFailures []string `json:"boot_failures,omitempty"`
	// WaitingSince is when the job began waiting for its first node, in
	// version 1 of "short-wait": the job's requests each wait a slice of its
	// wait, and it fails once the whole has passed with no node.
	WaitingSince time.Time `json:"waiting_since,omitempty"`
}

// ClusterState is everything a ClusterWorkflow carries across continue-as-new.
type ClusterState struct {
	Name         string                  `json:"name"`
	Standby      StandbySpec             `json:"standby"`
	Nodes        map[string]*ClusterNode `json:"nodes"`
	Jobs         map[string]*JobClaim    `json:"jobs"`
	Seq          int                     `json:"seq"` // node IDs are <cluster>-<seq>
	ShuttingDown bool                    `json:"shutting_down,omitempty"`
	// Lost counts nodes lost over the cluster's life.
	Lost int `json:"lost"`
	// LastLost are the last few nodes lost or failed, and why, newest last.
	LastLost []LostNode `json:"last_lost,omitempty"`
}

// LostNode is a node the cluster lost, and why.
type LostNode struct {
	ID     string    `json:"id"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// ClusterInput starts or continues a ClusterWorkflow.
type ClusterInput struct {
	State ClusterState
}

// NodeEvent is what a NodeWorkflow tells its cluster.
type NodeEvent struct {
	NodeID string
	Event  string // "ready", "lost", "deleted", "failed"
	Reason string
}

// ReleaseRequest tells the cluster a job has ended.
type ReleaseRequest struct {
	JobID string
}

// NodesAdded hands a running job more nodes.
type NodesAdded struct {
	Nodes []Assignment
}

// NodeLost tells a job one of its nodes is gone.
type NodeLost struct {
	NodeID string
}

// hasNeeds reports whether the claim's job needs more of its nodes than CPUs and
// memory: GPUs, a region or a disk.
func (cl *JobClaim) HasNeeds() bool { return cl.GPU != "" || cl.Region != "" || cl.DiskGB != 0 }

// ReserveRequest asks a cluster for nodes for a job.
type ReserveRequest struct {
	Cluster   string
	JobID     string
	Slots     int // calls the job wants to run at once
	FuncCPU   int
	FuncRAMMB int
	// Grow asks the cluster to start nodes when too few are ready.
	Grow bool
	// GPU, Region and DiskGB are what the job needs of its nodes besides CPUs
	// and memory (see job.Spec); empty or 0: anything.
	GPU    string `json:",omitempty"`
	Region string `json:",omitempty"`
	DiskGB int    `json:",omitempty"`
	// Spec is the job's, which the job workflow gives its reserve so that the
	// nodes the cluster grants hear of it at once (store.Grant). The reserve
	// does not send it on to the cluster.
	Spec *job.Spec `json:",omitempty"`
}

// ReserveResponse is the nodes a job got at once; more may follow by signal.
type ReserveResponse struct {
	Nodes []Assignment
}

// Ready counts the cluster's nodes that are up and on no job.
func (s ClusterState) Ready() int {
	n := 0
	for _, nd := range s.Nodes {
		if nd.State == NodeReady {
			n++
		}
	}
	return n
}

// Details is s as Temporal's UI shows a ClusterWorkflow's current details: its
// standby, its nodes by state, its jobs, and its losses.
func (s ClusterState) Details() string {
	var b strings.Builder
	fmt.Fprintf(&b, "**standby** %d %s × %d CPUs (%s)", s.Standby.Nodes, plural(s.Standby.Nodes, "node"), s.Standby.CPUs, cmp.Or(s.Standby.Provider, "no provider"))
	if s.ShuttingDown {
		b.WriteString(", shutting down")
	}
	counts := map[NodeState]int{}
	for _, n := range s.Nodes {
		counts[n.State]++
	}
	var states []string
	for _, st := range []NodeState{NodeReady, NodeAssigned, NodeProvisioning, NodeResetting, NodeDeleting} {
		if counts[st] > 0 {
			states = append(states, fmt.Sprintf("%d %s", counts[st], st))
		}
	}
	fmt.Fprintf(&b, "  \n**nodes** %d", len(s.Nodes))
	if len(states) > 0 {
		fmt.Fprintf(&b, ": %s", strings.Join(states, ", "))
	}
	waiting := 0
	for _, j := range s.Jobs {
		if len(j.Nodes) == 0 {
			waiting++
		}
	}
	fmt.Fprintf(&b, "  \n**jobs** %d", len(s.Jobs))
	if waiting > 0 {
		fmt.Fprintf(&b, " (%d waiting for nodes)", waiting)
	}
	if s.Lost > 0 {
		fmt.Fprintf(&b, "  \n**lost** %d %s", s.Lost, plural(s.Lost, "node"))
		if n := len(s.LastLost); n > 0 {
			fmt.Fprintf(&b, ", the last %s: %s", s.LastLost[n-1].ID, s.LastLost[n-1].Reason)
		}
	}
	return b.String()
}
