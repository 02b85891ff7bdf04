package gce

import (
	"cmp"
	"context"
	"fmt"
	"path"
	"slices"
	"strings"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"

	"github.com/burla-temporal/burla/gpu"
	"github.com/burla-temporal/burla/provider"
)

// GPU nodes. A node's GPUs (provider.NodeSpec.GPU, "A100:2") decide its machine
// type: for A100, H100 and L4 the accelerator-optimized machine (A2, A3, G2) that
// comes with that many of them; for T4 and V100 an N1 machine with them attached
// as guest accelerators. Compute Engine cannot live-migrate a VM with GPUs, so
// such VMs stop for host maintenance instead. Not every zone has every GPU: a
// GPU node without a zone of its own goes in a zone of its region that has them.

// addGPUs gives inst the GPUs of g: the machine type carries them already, or
// they are attached as accelerators of type acceleratorType (a zonal URL).
func addGPUs(inst *computepb.Instance, g gpu.Spec, acceleratorType string) {
	if g.Model.Attached {
		inst.GuestAccelerators = []*computepb.AcceleratorConfig{{
			AcceleratorType:  proto.String(acceleratorType),
			AcceleratorCount: proto.Int32(int32(g.Count)),
		}}
	}
	if inst.Scheduling == nil {
		inst.Scheduling = &computepb.Scheduling{AutomaticRestart: proto.Bool(true)}
	}
	inst.Scheduling.OnHostMaintenance = proto.String(computepb.Scheduling_TERMINATE.String())
	// Deep Learning VM images install NVIDIA's driver at first boot when asked.
	inst.Metadata.Items = append(inst.Metadata.Items, &computepb.Items{Key: proto.String("install-nvidia-driver"), Value: proto.String("True")})
}

// gpuMachineType is the machine type of a node with GPUs, as a zonal partial
// URL. Config.MachineType does not apply: the GPUs decide.
func (p *Provider) gpuMachineType(n provider.NodeSpec) (string, error) {
	g, err := gpu.Parse(n.GPU)
	if err != nil {
		return "", err
	}
	shape, ok := g.Model.ShapeOf(g.Count)
	if !ok {
		var counts []string
		for _, s := range g.Model.Shapes {
			counts = append(counts, fmt.Sprint(s.GPUs))
		}
		return "", fmt.Errorf("no machine has exactly %d %s GPUs (machines have %s)", g.Count, g.Model.Name, strings.Join(counts, ", "))
	}
	return p.zonal("machineTypes", shape.MachineType), nil
}

// choosesZone reports whether the provider picks node n's zone: n names none,
// and has GPUs (which not every zone has) or a region other than the
// provider's zone's.
func (p *Provider) choosesZone(n provider.NodeSpec) bool {
	return n.Zone == "" && (n.GPU != "" || n.Region != "" && n.Region != provider.RegionOf(p.cfg.Zone))
}

// chooseZone picks the zone of a node whose zone the provider chooses: one of
// its region (the provider's zone's if it names none) that offers its GPUs,
// the provider's own zone if it is one of them, else the first by name.
func (p *Provider) chooseZone(ctx context.Context, n provider.NodeSpec) (string, error) {
	region := cmp.Or(n.Region, provider.RegionOf(p.cfg.Zone))
	g, err := gpu.Parse(n.GPU)
	if err != nil {
		return "", err
	}
	var zones []string
	if g.IsZero() {
		r, err := p.regions.Get(ctx, &computepb.GetRegionRequest{Project: p.cfg.Project, Region: region})
		if err != nil {
			return "", fmt.Errorf("get region %s of project %s: %w", region, p.cfg.Project, err)
		}
		for _, z := range r.GetZones() {
			zones = append(zones, path.Base(z))
		}
		if len(zones) == 0 {
			return "", fmt.Errorf("region %s has no zones", region)
		}
	} else {
		offering, err := p.zonesOffering(ctx, g.Model.Accelerator)
		if err != nil {
			return "", err
		}
		var elsewhere []string
		for _, z := range offering {
			if provider.RegionOf(z) == region {
				zones = append(zones, z)
			} else {
				elsewhere = append(elsewhere, provider.RegionOf(z))
			}
		}
		if len(zones) == 0 {
			slices.Sort(elsewhere)
			return "", fmt.Errorf("no zone of region %s offers %s GPUs (%s) to project %s; regions that do: %s",
				region, g.Model.Name, g.Model.Accelerator, p.cfg.Project, strings.Join(slices.Compact(elsewhere), ", "))
		}
	}
	slices.Sort(zones)
	if slices.Contains(zones, p.cfg.Zone) {
		return p.cfg.Zone, nil
	}
	return zones[0], nil
}

// zonesOffering lists the zones where the project can have accelerator.
func (p *Provider) zonesOffering(ctx context.Context, accelerator string) ([]string, error) {
	var zones []string
	for pair, err := range p.accelerators.AggregatedList(ctx, &computepb.AggregatedListAcceleratorTypesRequest{
		Project: p.cfg.Project, Filter: proto.String(fmt.Sprintf("name = %q", accelerator)),
	}).All() {
		if err != nil {
			return nil, fmt.Errorf("list zones offering %s in project %s: %w", accelerator, p.cfg.Project, err)
		}
		for _, at := range pair.Value.GetAcceleratorTypes() {
			if at.GetName() == accelerator && at.GetDeprecated().GetState() == "" {
				zones = append(zones, path.Base(at.GetZone()))
			}
		}
	}
	return zones, nil
}

// findInstance returns the zone of the project's instance name, or "" if there
// is none.
func (p *Provider) findInstance(ctx context.Context, name string) (string, error) {
	for pair, err := range p.instances.AggregatedList(ctx, &computepb.AggregatedListInstancesRequest{
		Project: p.cfg.Project, Filter: proto.String(fmt.Sprintf("name = %q", name)),
	}).All() {
		if err != nil {
			return "", fmt.Errorf("gce provider: look for instance %s in project %s: %w", name, p.cfg.Project, err)
		}
		for _, inst := range pair.Value.GetInstances() {
			if inst.GetName() == name {
				return path.Base(inst.GetZone()), nil
			}
		}
	}
	return "", nil
}
