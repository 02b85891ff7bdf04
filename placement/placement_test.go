package placement_test

import (
	"testing"

	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/placement"
	"github.com/burla-temporal/burla/provider"
)

func node(cpus, ramMB int, gpus, region string, diskGB int) control.ClusterNode {
	return control.ClusterNode{CPUs: cpus, RAMMB: ramMB, GPU: gpus, Region: region, DiskGB: diskGB}
}

func claim(funcCPU, funcRAMMB int, gpus, region string, diskGB int) control.JobClaim {
	return control.JobClaim{JobID: "j", Slots: 1, FuncCPU: funcCPU, FuncRAMMB: funcRAMMB, GPU: gpus, Region: region, DiskGB: diskGB}
}

func TestSlots(t *testing.T) {
	for _, tt := range []struct {
		name string
		nd   control.ClusterNode
		cl   control.JobClaim
		want int
	}{
		{"one call per CPU", node(4, 0, "", "", 0), claim(1, 0, "", "", 0), 4},
		{"calls of two CPUs", node(4, 0, "", "", 0), claim(2, 0, "", "", 0), 2},
		{"a call larger than the node", node(2, 0, "", "", 0), claim(4, 0, "", "", 0), 0},
		{"memory binds before CPUs", node(8, 4096, "", "", 0), claim(1, 1024, "", "", 0), 4},
		{"CPUs bind before memory", node(2, 8192, "", "", 0), claim(1, 1024, "", "", 0), 2},
		{"a node of unknown memory is bound by its CPUs", node(4, 0, "", "", 0), claim(1, 1024, "", "", 0), 4},
		{"no memory asked", node(4, 1024, "", "", 0), claim(1, 0, "", "", 0), 4},
		{"a GPU node runs plain calls by its CPUs", node(12, 87040, "A100", "", 0), claim(1, 0, "", "", 0), 12},
		{"GPUs bind the calls that need them", node(48, 0, "A100:4", "", 0), claim(1, 0, "A100:2", "", 0), 2},
		{"one GPU per call", node(48, 0, "A100:4", "", 0), claim(1, 0, "A100", "", 0), 4},
		{"CPUs bind before GPUs", node(2, 0, "A100:4", "", 0), claim(1, 0, "A100", "", 0), 2},
		{"too few GPUs", node(12, 0, "A100", "", 0), claim(1, 0, "A100:2", "", 0), 0},
		{"another model", node(12, 0, "A100", "", 0), claim(1, 0, "H100", "", 0), 0},
		{"no GPUs at all", node(12, 0, "", "", 0), claim(1, 0, "T4", "", 0), 0},
		{"the region asked", node(4, 0, "", "europe-west4", 0), claim(1, 0, "", "europe-west4", 0), 4},
		{"another region", node(4, 0, "", "us-central1", 0), claim(1, 0, "", "europe-west4", 0), 0},
		{"a node of unknown region", node(4, 0, "", "", 0), claim(1, 0, "", "europe-west4", 0), 0},
		{"a disk large enough", node(4, 0, "", "", 500), claim(1, 0, "", "", 200), 4},
		{"a disk too small", node(4, 0, "", "", 100), claim(1, 0, "", "", 200), 0},
		{"a disk of unknown size", node(4, 0, "", "", 0), claim(1, 0, "", "", 200), 0},
		{"every need met", node(48, 0, "A100:4", "us-central1", 500), claim(2, 0, "A100", "us-central1", 200), 4},
	} {
		if got := placement.Slots(tt.nd, tt.cl); got != tt.want {
			t.Errorf("%s: Slots(%+v, %+v) = %d; want %d", tt.name, tt.nd, tt.cl, got, tt.want)
		}
	}
}

func TestStandbyNode(t *testing.T) {
	for _, tt := range []struct {
		name string
		sb   control.StandbySpec
		want control.ClusterNode
	}{
		{"plain", control.StandbySpec{Nodes: 2, CPUs: 4, RAMMB: 8192}, node(4, 8192, "", "", 0)},
		{"the zone's region", control.StandbySpec{CPUs: 4, Zone: "us-central1-a"}, node(4, 0, "", "us-central1", 0)},
		{"the region named", control.StandbySpec{CPUs: 4, Region: "europe-west4"}, node(4, 0, "", "europe-west4", 0)},
		{"its disk", control.StandbySpec{CPUs: 4, DiskGB: 200}, node(4, 0, "", "", 200)},
		{"a GPU machine's CPUs and memory", control.StandbySpec{CPUs: 2, RAMMB: 1024, GPU: "A100:2"}, node(24, 170*1024, "A100:2", "", 0)},
	} {
		if got := placement.StandbyNode(tt.sb); got != tt.want {
			t.Errorf("%s: StandbyNode(%+v) = %+v; want %+v", tt.name, tt.sb, got, tt.want)
		}
	}
}

func TestStandbyShaped(t *testing.T) {
	sb := control.StandbySpec{Nodes: 2, CPUs: 4, Zone: "us-central1-a"}
	for _, tt := range []struct {
		name string
		nd   control.ClusterNode
		want bool
	}{
		{"a standby node", node(4, 0, "", "us-central1", 0), true},
		{"of unknown region", node(4, 0, "", "", 0), true},
		{"started for a GPU", node(12, 0, "A100", "us-central1", 0), false},
		{"started in another region", node(4, 0, "", "europe-west4", 0), false},
		{"started for a disk", node(4, 0, "", "us-central1", 500), false},
	} {
		if got := placement.StandbyShaped(sb, tt.nd); got != tt.want {
			t.Errorf("%s: StandbyShaped(%+v) = %v; want %v", tt.name, tt.nd, got, tt.want)
		}
	}
}

func TestGrowNode(t *testing.T) {
	sb := control.StandbySpec{Nodes: 1, CPUs: 4, RAMMB: 8192, Zone: "us-central1-a", DiskGB: 100}
	for _, tt := range []struct {
		name      string
		cl        control.JobClaim
		want      int
		node      control.ClusterNode
		perGrown  int
		canGrowOn provider.Capabilities // a provider that can start it; the zero one cannot, unless the claim needs nothing
	}{
		{"a plain claim gets a standby-sized node", claim(1, 0, "", "", 0), 8, node(4, 8192, "", "", 0), 4, provider.Capabilities{}},
		{"in the region asked", claim(1, 0, "", "europe-west4", 0), 8, node(4, 8192, "", "europe-west4", 100), 4, provider.Capabilities{Regions: true}},
		{"in the standby region when none is asked", claim(1, 0, "", "", 500), 8, node(4, 8192, "", "us-central1", 500), 4, provider.Capabilities{Disks: true}},
		{"the standby disk when larger", claim(1, 0, "", "us-central1", 50), 8, node(4, 8192, "", "us-central1", 100), 4, provider.Capabilities{Regions: true, Disks: true}},
		{"the fewest GPUs that run every call wanted", claim(1, 0, "A100", "", 0), 3, node(48, 340*1024, "A100:4", "us-central1", 100), 1, provider.Capabilities{GPUs: true, Disks: true}},
		{"one GPU for one call", claim(1, 0, "A100", "", 0), 1, node(12, 85*1024, "A100", "us-central1", 100), 1, provider.Capabilities{GPUs: true, Disks: true}},
		{"the largest machine when none runs them all", claim(1, 0, "A100:4", "", 0), 10, node(96, 1360*1024, "A100:16", "us-central1", 100), 1, provider.Capabilities{GPUs: true, Disks: true}},
		{"at least one call even when none is wanted", claim(1, 0, "L4", "", 0), 0, node(4, 16*1024, "L4", "us-central1", 100), 1, provider.Capabilities{GPUs: true, Disks: true}},
		{"a machine with CPUs enough for one call", claim(8, 0, "L4", "", 0), 1, node(24, 96*1024, "L4:2", "us-central1", 100), 2, provider.Capabilities{GPUs: true, Disks: true}},
	} {
		if got := placement.GrowNode(sb, tt.cl, tt.want); got != tt.node {
			t.Errorf("%s: GrowNode(want %d) = %+v; want %+v", tt.name, tt.want, got, tt.node)
		}
		if got := placement.PerGrownNode(sb, tt.cl); got != tt.perGrown {
			t.Errorf("%s: PerGrownNode = %d; want %d", tt.name, got, tt.perGrown)
		}
		if !placement.CanGrowFor(tt.canGrowOn, tt.cl) {
			t.Errorf("%s: CanGrowFor(%+v) = false; want true", tt.name, tt.canGrowOn)
		}
		if needs := tt.cl.HasNeeds(); placement.CanGrowFor(provider.Capabilities{}, tt.cl) == needs {
			t.Errorf("%s: a provider that chooses nothing can grow for it: %v; want %v", tt.name, !needs, !needs)
		}
	}
}

// A provider grows only for what it chooses: a claim with needs it lacks one of
// cannot grow on it, whatever else it chooses.
func TestCanGrowFor(t *testing.T) {
	all := provider.Capabilities{GPUs: true, Regions: true, Disks: true, Zones: true}
	for _, tt := range []struct {
		name string
		caps provider.Capabilities
		cl   control.JobClaim
		want bool
	}{
		{"plain on nothing", provider.Capabilities{}, claim(1, 0, "", "", 0), true},
		{"GPU on everything", all, claim(1, 0, "A100", "", 0), true},
		{"GPU on regions only", provider.Capabilities{Regions: true}, claim(1, 0, "A100", "", 0), false},
		{"region on GPUs only", provider.Capabilities{GPUs: true}, claim(1, 0, "", "europe-west4", 0), false},
		{"disk on regions and GPUs", provider.Capabilities{GPUs: true, Regions: true}, claim(1, 0, "", "", 200), false},
		{"all three on everything", all, claim(1, 0, "T4", "europe-west4", 200), true},
	} {
		if got := placement.CanGrowFor(tt.caps, tt.cl); got != tt.want {
			t.Errorf("%s: CanGrowFor = %v; want %v", tt.name, got, tt.want)
		}
	}
}
