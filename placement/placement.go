// Package placement is how a cluster fits jobs to nodes, as pure functions of the
// cluster's standby spec, a node's shape and a job's claim: how many of a job's
// calls a node runs at once, what a standby node is like, and what node the
// cluster starts for a job that grows. The ClusterWorkflow calls them; their
// table tests hold every rule (CPUs, memory, GPUs, region, disk, growing) without
// a workflow.
package placement

import (
	"cmp"

	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/gpu"
	"github.com/burla-temporal/burla/provider"
)

// SlotsOn is how many calls of funcCPU CPUs and funcRAMMB MB (0: any) a node
// runs at once by its CPUs and memory alone. A node of unknown memory is bound
// by its CPUs.
func SlotsOn(nd control.ClusterNode, funcCPU, funcRAMMB int) int {
	s := nd.CPUs / funcCPU
	if funcRAMMB > 0 && nd.RAMMB > 0 {
		s = min(s, nd.RAMMB/funcRAMMB)
	}
	return s
}

// Slots is how many of a claim's calls node nd runs at once: none if it lacks
// the GPUs, region or disk the claim needs, and no more than its GPUs allow.
func Slots(nd control.ClusterNode, cl control.JobClaim) int {
	s := SlotsOn(nd, cl.FuncCPU, cl.FuncRAMMB)
	if !cl.HasNeeds() {
		return s
	}
	if cl.Region != "" && nd.Region != cl.Region || cl.DiskGB > 0 && nd.DiskGB < cl.DiskGB {
		return 0
	}
	have, _ := gpu.Parse(nd.GPU) // specs were validated; a bad one is no GPU
	want, _ := gpu.Parse(cl.GPU)
	calls, ok := gpu.Fits(have, want)
	switch {
	case !ok:
		return 0
	case calls >= 0:
		return min(s, calls)
	}
	return s
}

// StandbyRegion is the region of a cluster's standby nodes, "" when the cluster
// does not know it (the provider's own).
func StandbyRegion(sb control.StandbySpec) string {
	if sb.Zone != "" {
		return provider.RegionOf(sb.Zone)
	}
	return sb.Region
}

// StandbyNode is what a standby node is like. Standby GPU nodes are the machine
// that has their GPUs, with its CPUs and memory.
func StandbyNode(sb control.StandbySpec) control.ClusterNode {
	nd := control.ClusterNode{CPUs: sb.CPUs, RAMMB: sb.RAMMB, GPU: sb.GPU, Region: StandbyRegion(sb), DiskGB: sb.DiskGB}
	if g, err := gpu.Parse(sb.GPU); err == nil && !g.IsZero() {
		if shape, ok := g.Model.ShapeOf(g.Count); ok {
			nd.CPUs, nd.RAMMB = shape.CPUs, shape.RAMMB
		}
	}
	return nd
}

// StandbyShaped reports whether nd is like the standby nodes, so that it may
// join them when no job holds it. A node started for a job's GPUs, region or
// disk is not: it goes once the job is done with it.
func StandbyShaped(sb control.StandbySpec, nd control.ClusterNode) bool {
	return nd.GPU == sb.GPU && nd.DiskGB == sb.DiskGB && (nd.Region == "" || nd.Region == StandbyRegion(sb))
}

// GrowNode is the node a cluster starts for a claim that wants want more calls
// at once: a standby-sized node without GPUs, in the region and with the disk
// the claim needs; for a claim that needs GPUs, the machine with the fewest of
// them that runs want calls (or as many as a machine can), and at least one.
func GrowNode(sb control.StandbySpec, cl control.JobClaim, want int) control.ClusterNode {
	nd := control.ClusterNode{CPUs: sb.CPUs, RAMMB: sb.RAMMB}
	if !cl.HasNeeds() {
		return nd
	}
	nd.Region = cmp.Or(cl.Region, StandbyRegion(sb))
	nd.DiskGB = max(cl.DiskGB, sb.DiskGB)
	g, err := gpu.Parse(cl.GPU)
	if err != nil || g.IsZero() {
		return nd
	}
	need := min(max(want, 1)*g.Count, g.Model.MaxGPUs())
	for _, shape := range g.Model.Shapes {
		if shape.GPUs < need && shape.GPUs < g.Model.MaxGPUs() {
			continue
		}
		nd.CPUs, nd.RAMMB, nd.GPU = shape.CPUs, shape.RAMMB, gpu.Spec{Model: g.Model, Count: shape.GPUs}.String()
		if Slots(nd, cl) >= 1 {
			break
		}
	}
	return nd
}

// PerGrownNode is how many of a claim's calls a node started for it runs at once.
func PerGrownNode(sb control.StandbySpec, cl control.JobClaim) int {
	return Slots(GrowNode(sb, cl, cl.Slots), cl)
}

// CanGrowFor reports whether a provider of the capabilities can start nodes that
// have what the claim needs: any provider starts plain nodes; GPUs, a region and
// a disk size take a provider that chooses them.
func CanGrowFor(caps provider.Capabilities, cl control.JobClaim) bool {
	switch {
	case cl.GPU != "" && !caps.GPUs, cl.Region != "" && !caps.Regions, cl.DiskGB != 0 && !caps.Disks:
		return false
	}
	return true
}
