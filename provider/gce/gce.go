// Package gce is the provider whose nodes are Google Compute Engine VMs. Each VM
// runs a startup script that fetches the burla binary and keeps its node agent
// running under systemd; every VM carries labels naming its cluster and node, so
// that a control plane finds exactly its own.
//
// Create and Delete are idempotent, as the provider contract requires: instance
// names are derived from node IDs, so a second insert of a node is answered 409
// (which is success), and each insert or delete carries a request ID derived from
// the instance, so that Compute Engine answers a retried call with the operation
// of the first rather than starting another.
package gce

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"github.com/google/uuid"
	"github.com/googleapis/gax-go/v2/apierror"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
	"google.golang.org/protobuf/proto"

	"github.com/burla-temporal/burla/gpu"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/provider"
)

// Name is the provider's name in a standby spec.
const Name = "gce"

var _ provider.Provider = (*Provider)(nil)

// A gce node is a VM made to measure: its machine type (with GPUs), its region
// and zone, and its boot disk are chosen per node.
func init() {
	provider.Declare(Name, provider.Capabilities{GPUs: true, Regions: true, Disks: true, Zones: true})
}

// Labels on every node VM. Label values are sanitized (see labelValue), so a
// cluster's label is its name lowercased, with characters other than letters,
// digits, '-' and '_' replaced by '-'.
const (
	LabelCluster = "burla-cluster"
	LabelNode    = "burla-node"
	LabelRole    = "burla-role" // always "node"
)

// Defaults for the Config fields left empty.
const (
	DefaultDiskGB    = 20
	DefaultDiskType  = "pd-balanced"
	DefaultDiskImage = "projects/debian-cloud/global/images/family/debian-12"
	DefaultNetwork   = "global/networks/default"
	DefaultNamespace = "default"
	DefaultRuntime   = "process"
)

// MetadataBinarySHA256 is the instance metadata key whose value is the SHA-256 of
// the burla binary the VM runs (Config.BinarySHA256).
const MetadataBinarySHA256 = "burla-binary-sha256"

// DefaultGPUDiskGB is the least boot disk of a GPU node: images with NVIDIA's
// drivers and CUDA need more room than a plain one.
const DefaultGPUDiskGB = 50

// scopeCloudPlatform is the VM's OAuth scope; what the VM may do is then decided
// by its service account's IAM roles (it needs to read BinaryURL's bucket).
const scopeCloudPlatform = "https://www.googleapis.com/auth/cloud-platform"

// Config says where the node VMs are made, what they look like and where their
// control plane is.
type Config struct {
	Project string // required
	Zone    string // required, e.g. "us-central1-a"

	// MachineType is a machine type name ("n2-standard-8") or a URL. When empty
	// it is the smallest e2-standard-N (N in 2, 4, 8, 16, 32) with at least the
	// node's CPUs and, at 4 GB a vCPU, at least its RAM; a larger node needs
	// MachineType.
	MachineType string
	DiskGB      int    // boot disk size; DefaultDiskGB when 0
	DiskType    string // boot disk type; DefaultDiskType when empty
	DiskImage   string // boot image; DefaultDiskImage when empty. The startup script needs bash, curl, sed and systemd.
	// GPUDiskImage is the boot image of nodes with GPUs; DiskImage when empty.
	// Their calls need NVIDIA's driver (and, for the docker runtime, NVIDIA's
	// container toolkit): an image that has them, such as a Deep Learning VM
	// image, which installs the driver at first boot as the metadata
	// install-nvidia-driver=True that GPU nodes carry asks.
	GPUDiskImage string
	// Spot makes Spot VMs, which Compute Engine deletes when it preempts them.
	Spot       bool
	Network    string // DefaultNetwork when empty
	Subnetwork string // optional, e.g. "regions/us-central1/subnetworks/burla"
	// NoExternalIP leaves the VMs without an external address; they then need
	// Cloud NAT or Private Google Access to fetch the binary and reach Temporal.
	NoExternalIP bool
	// ServiceAccount is the VMs' service account email; the project's Compute
	// Engine default service account when empty, which usually holds the
	// project's Editor role and may then write BinaryURL's bucket: give nodes an
	// account of their own that only reads it (deploy/gcp/setup.sh makes one).
	ServiceAccount string
	Tags           []string          // network tags, e.g. for firewall rules
	Labels         map[string]string // extra labels; keys must be valid label keys; values are sanitized

	// BinaryURL is where the startup script fetches the linux/amd64 burla binary:
	// gs://bucket/object (read with the VM's service account) or an https URL.
	// Whoever could write it could run code as root on every node that boots
	// after: the nodes check it against BinarySHA256, and the VMs' service
	// account must only read it (see deploy/gcp).
	BinaryURL string
	// BinarySHA256 is the hex SHA-256 of the binary at BinaryURL: a VM refuses to
	// run a binary of another, and its node agent does not start. When empty, it
	// is that of the running program, which is the binary the nodes fetch: burla
	// control-plane uploads itself to BinaryURL, unless told not to, and deploy/gcp's
	// control-plane VM runs the binary it fetched from there, checked against the
	// digest it was given. A control plane that is another build than the binary
	// at BinaryURL needs BinarySHA256.
	BinarySHA256    string
	TemporalAddress string // required: host:port the VMs reach Temporal at
	Namespace       string // DefaultNamespace when empty
	StoreURL        string // required: the store the node agents connect to (--store)
	// Runtime is the node agents' worker runtime, "process" or "docker"; for
	// "docker" the startup script installs docker.io if the image lacks it.
	Runtime        string
	ExtraAgentArgs []string // appended to the node agent's flags
	// TemporalTLS makes node agents dial Temporal with TLS (the system's roots),
	// naming TemporalServerName if set.
	TemporalTLS        bool
	TemporalServerName string
	// TemporalAPIKeySecret is a Secret Manager secret version
	// ("projects/P/secrets/S/versions/latest") holding the API key node agents
	// send to Temporal; it implies TLS. The VMs' service account must be able to
	// access it. The key is fetched at boot into a root-only file, never put in
	// the VM's metadata.
	TemporalAPIKeySecret string
	Logger               *slog.Logger
}

// Provider makes nodes as Compute Engine VMs in one project and zone. It is safe
// for concurrent use.
type Provider struct {
	cfg       Config
	instances *compute.InstancesClient
	// accelerators and regions say which zones a node with GPUs, or in a region
	// of its own, can go in.
	accelerators *compute.AcceleratorTypesClient
	regions      *compute.RegionsClient
	log          *slog.Logger
}

// New checks cfg and connects to the Compute Engine API with Application Default
// Credentials, unless opts say otherwise (tests pass option.WithEndpoint and
// option.WithHTTPClient).
func New(ctx context.Context, cfg Config, opts ...option.ClientOption) (*Provider, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("gce provider: %w", err)
	}
	// The instances client makes its own zone operations client, which its
	// operations' Wait polls; the provider needs no other.
	instances, err := compute.NewInstancesRESTClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("gce provider: compute client: %w", err)
	}
	accelerators, err := compute.NewAcceleratorTypesRESTClient(ctx, opts...)
	if err != nil {
		instances.Close()
		return nil, fmt.Errorf("gce provider: accelerator types client: %w", err)
	}
	regions, err := compute.NewRegionsRESTClient(ctx, opts...)
	if err != nil {
		instances.Close()
		accelerators.Close()
		return nil, fmt.Errorf("gce provider: regions client: %w", err)
	}
	p := &Provider{
		cfg:          cfg,
		instances:    instances,
		accelerators: accelerators,
		regions:      regions,
		log:          cfg.Logger.With("provider", "gce", "project", cfg.Project, "zone", cfg.Zone),
	}
	return p, nil
}

func (c Config) withDefaults() (Config, error) {
	if c.Project == "" || c.Zone == "" {
		return c, errors.New("Project and Zone are required")
	}
	if c.TemporalAddress == "" || c.StoreURL == "" {
		return c, errors.New("TemporalAddress and StoreURL are required: the VMs' node agents connect to them")
	}
	if _, err := fetchCommand(c.BinaryURL); err != nil {
		return c, err
	}
	if c.BinarySHA256 == "" {
		sum, err := executableSHA256()
		if err != nil {
			return c, fmt.Errorf("the digest of the node binary: %w", err)
		}
		c.BinarySHA256 = sum
	}
	if !validSHA256(c.BinarySHA256) {
		return c, fmt.Errorf("BinarySHA256 %q: want 64 lowercase hex digits", c.BinarySHA256)
	}
	c.DiskGB = cmp.Or(c.DiskGB, DefaultDiskGB)
	c.DiskType = cmp.Or(c.DiskType, DefaultDiskType)
	c.DiskImage = cmp.Or(c.DiskImage, DefaultDiskImage)
	c.GPUDiskImage = cmp.Or(c.GPUDiskImage, c.DiskImage)
	c.Network = cmp.Or(c.Network, DefaultNetwork)
	c.Namespace = cmp.Or(c.Namespace, DefaultNamespace)
	c.Runtime = cmp.Or(c.Runtime, DefaultRuntime)
	if c.Runtime != "process" && c.Runtime != "docker" {
		return c, fmt.Errorf("unknown runtime %q (process or docker)", c.Runtime)
	}
	for k := range c.Labels {
		if !validLabelKey(k) {
			return c, fmt.Errorf("label key %q: want a lowercase letter, then up to 62 lowercase letters, digits, '-' or '_'", k)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Close closes the connection to the Compute Engine API. It deletes no VM.
func (p *Provider) Close() error {
	return errors.Join(p.instances.Close(), p.accelerators.Close(), p.regions.Close())
}

// Name implements provider.Provider.
func (p *Provider) Name() string { return Name }

// InstanceName returns the VM name of node id, or an error if id cannot make one:
// Compute Engine names are a lowercase letter, then lowercase letters, digits
// and dashes, not ending in a dash, at most 63 characters in all.
func InstanceName(id string) (string, error) {
	name := "burla-" + id
	if id == "" || len(name) > 63 || strings.HasSuffix(id, "-") ||
		strings.ContainsFunc(id, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') }) {
		return "", fmt.Errorf("gce provider: node ID %q cannot name a VM: want lowercase letters, digits and dashes, not ending in a dash, at most %d characters", id, 63-len("burla-"))
	}
	return name, nil
}

// Create implements provider.Provider: it inserts the node's VM and waits until
// Compute Engine has made it (the agent starts later, when the VM has booted).
// A VM of that name existing already is success, whatever its state.
//
// A node with GPUs or a region of its own, and no zone, goes in a zone of its
// region (the provider's zone's region if it names none) that offers its GPUs:
// the provider's own zone if it does, else the first by name. A retried Create
// finds the VM wherever the first made it.
func (p *Provider) Create(ctx context.Context, n provider.NodeSpec) error {
	p = p.at(n)
	name, err := InstanceName(n.ID)
	if err != nil {
		return err
	}
	if _, err := p.instance(name, n); err != nil { // refuse a bad spec before any call
		return fmt.Errorf("gce provider: instance %s: %w", p.where(name), err)
	}
	if p.choosesZone(n) {
		zone, err := p.findInstance(ctx, name)
		if err != nil {
			return err
		}
		if zone != "" {
			p.log.Info("instance exists already", "node", n.ID, "instance", name, "zone", zone)
			return nil
		}
		if zone, err = p.chooseZone(ctx, n); err != nil {
			return fmt.Errorf("gce provider: place node %s: %w", n.ID, err)
		}
		p = p.at(provider.NodeSpec{Project: p.cfg.Project, Zone: zone})
	}
	inst, err := p.instance(name, n)
	if err != nil {
		return fmt.Errorf("gce provider: instance %s: %w", p.where(name), err)
	}
	log := p.log.With("node", n.ID, "instance", name)
	reqID := p.requestID("insert", name, "")
	for attempt := 1; ; attempt++ {
		op, err := p.instances.Insert(ctx, &computepb.InsertInstanceRequest{
			Project: p.cfg.Project, Zone: p.cfg.Zone, InstanceResource: inst, RequestId: proto.String(reqID),
		})
		if httpCode(err) == http.StatusConflict {
			log.Info("instance exists already")
			return nil
		}
		if err != nil {
			return fmt.Errorf("gce provider: insert instance %s: %w", p.where(name), err)
		}
		log.Info("inserting instance", "operation", op.Name(), "machine_type", inst.GetMachineType(), "spot", p.cfg.Spot, "gpu", n.GPU)
		if err := wait(ctx, op); err != nil {
			return fmt.Errorf("gce provider: insert instance %s: %w", p.where(name), err)
		}
		exists, err := p.exists(ctx, name)
		if err != nil {
			return err
		}
		if exists {
			log.Info("instance created", "operation", op.Name())
			return nil
		}
		// Compute Engine answers a request ID it has seen (for an hour at least)
		// with that request's operation. A node ID used again, by a cluster of the
		// same name made anew, gets the operation that made the earlier VM, which
		// has been deleted since; insert again under a request ID of its own.
		if attempt == 2 {
			return fmt.Errorf("gce provider: insert instance %s: operation %s succeeded, yet the instance does not exist", p.where(name), op.Name())
		}
		log.Warn("insert answered with an earlier operation whose instance is gone; inserting again", "operation", op.Name())
		reqID = p.requestID("insert", name, op.Name())
	}
}

// Delete implements provider.Provider and waits until the VM is gone.
// A node whose zone Create chose is looked for in every zone.
func (p *Provider) Delete(ctx context.Context, n provider.NodeSpec) error {
	p = p.at(n)
	id := n.ID
	name, err := InstanceName(id)
	if err != nil {
		return err
	}
	if p.choosesZone(n) {
		zone, err := p.findInstance(ctx, name)
		if err != nil {
			return err
		}
		if zone == "" {
			p.log.Info("instance does not exist", "node", id, "instance", name)
			return nil
		}
		p = p.at(provider.NodeSpec{Project: p.cfg.Project, Zone: zone})
	}
	log := p.log.With("node", id, "instance", name)
	reqID := p.requestID("delete", name, "")
	for attempt := 1; ; attempt++ {
		op, err := p.instances.Delete(ctx, &computepb.DeleteInstanceRequest{
			Project: p.cfg.Project, Zone: p.cfg.Zone, Instance: name, RequestId: proto.String(reqID),
		})
		if httpCode(err) == http.StatusNotFound {
			log.Info("instance does not exist")
			return nil
		}
		if err != nil {
			return fmt.Errorf("gce provider: delete instance %s: %w", p.where(name), err)
		}
		log.Info("deleting instance", "operation", op.Name())
		err = wait(ctx, op)
		if oe := (*OperationError)(nil); errors.As(err, &oe) && oe.Has("RESOURCE_NOT_FOUND") {
			return nil // deleted by someone else meanwhile, e.g. a Spot preemption
		}
		if err != nil {
			return fmt.Errorf("gce provider: delete instance %s: %w", p.where(name), err)
		}
		exists, err := p.exists(ctx, name)
		if err != nil {
			return err
		}
		if !exists {
			log.Info("instance deleted", "operation", op.Name())
			return nil
		}
		// As in Create: an earlier delete of a VM of the same name answered.
		if attempt == 2 {
			return fmt.Errorf("gce provider: delete instance %s: operation %s succeeded, yet the instance exists", p.where(name), op.Name())
		}
		log.Warn("delete answered with an earlier operation; the instance remains, so deleting again", "operation", op.Name())
		reqID = p.requestID("delete", name, op.Name())
	}
}

// List implements provider.Provider: the node IDs of every VM labelled with
// cluster in the zone, whatever its state (a stopping or terminated VM is an
// orphan to delete as much as a running one), sorted.
func (p *Provider) List(ctx context.Context, cluster string) ([]string, error) {
	filter := fmt.Sprintf("labels.%s = %q", LabelCluster, labelValue(cluster))
	var ids []string
	for inst, err := range p.instances.List(ctx, &computepb.ListInstancesRequest{
		Project: p.cfg.Project, Zone: p.cfg.Zone, Filter: proto.String(filter),
	}).All() {
		if err != nil {
			return nil, fmt.Errorf("gce provider: list instances of cluster %s in project %s zone %s: %w", cluster, p.cfg.Project, p.cfg.Zone, err)
		}
		id := inst.GetLabels()[LabelNode]
		if id == "" || inst.GetLabels()[LabelRole] != "node" {
			continue
		}
		p.log.Debug("found node", "node", id, "instance", inst.GetName(), "status", inst.GetStatus())
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// instance is the VM that runs node n.
func (p *Provider) instance(name string, n provider.NodeSpec) (*computepb.Instance, error) {
	machineType, err := p.machineType(n)
	if err != nil {
		return nil, err
	}
	script, err := startupScript(p.cfg, n)
	if err != nil {
		return nil, err
	}
	labels := map[string]string{}
	for k, v := range p.cfg.Labels {
		labels[k] = labelValue(v)
	}
	labels[LabelCluster] = labelValue(n.Cluster)
	labels[LabelNode] = n.ID // valid already: InstanceName checked it
	labels[LabelRole] = "node"

	nic := &computepb.NetworkInterface{Network: proto.String(p.cfg.Network)}
	if p.cfg.Subnetwork != "" {
		nic.Subnetwork = proto.String(p.cfg.Subnetwork)
	}
	if !p.cfg.NoExternalIP {
		nic.AccessConfigs = []*computepb.AccessConfig{{
			Name: proto.String("External NAT"),
			Type: proto.String(computepb.AccessConfig_ONE_TO_ONE_NAT.String()),
		}}
	}
	g, err := gpu.Parse(n.GPU)
	if err != nil {
		return nil, err
	}
	image, diskGB := p.cfg.DiskImage, p.cfg.DiskGB
	if !g.IsZero() {
		image, diskGB = p.cfg.GPUDiskImage, max(diskGB, DefaultGPUDiskGB)
	}
	switch {
	case n.DiskGB != 0 && n.DiskGB < job.MinDiskGB:
		return nil, fmt.Errorf("a boot disk of %d GB is too small: the node's image needs %d GB or more", n.DiskGB, job.MinDiskGB)
	case n.DiskGB != 0:
		diskGB = n.DiskGB
	}
	inst := &computepb.Instance{
		Name:        proto.String(name),
		MachineType: proto.String(machineType),
		Disks: []*computepb.AttachedDisk{{
			Boot:       proto.Bool(true),
			AutoDelete: proto.Bool(true),
			InitializeParams: &computepb.AttachedDiskInitializeParams{
				SourceImage: proto.String(image),
				DiskSizeGb:  proto.Int64(int64(diskGB)),
				DiskType:    proto.String(p.zonal("diskTypes", p.cfg.DiskType)),
			},
		}},
		NetworkInterfaces: []*computepb.NetworkInterface{nic},
		Labels:            labels,
		ServiceAccounts: []*computepb.ServiceAccount{{
			Email:  proto.String(cmp.Or(p.cfg.ServiceAccount, "default")),
			Scopes: []string{scopeCloudPlatform},
		}},
		Metadata: &computepb.Metadata{Items: []*computepb.Items{
			{Key: proto.String("startup-script"), Value: proto.String(script)},
			// For people and tools on the VM: which node it is, and which binary it
			// runs (the startup script holds the same digest, and checks it).
			{Key: proto.String("burla-node-id"), Value: proto.String(n.ID)},
			{Key: proto.String("burla-cluster"), Value: proto.String(n.Cluster)},
			{Key: proto.String(MetadataBinarySHA256), Value: proto.String(p.cfg.BinarySHA256)},
		}},
	}
	if len(p.cfg.Tags) > 0 {
		inst.Tags = &computepb.Tags{Items: p.cfg.Tags}
	}
	if p.cfg.Spot {
		inst.Scheduling = &computepb.Scheduling{
			ProvisioningModel:         proto.String(computepb.Scheduling_SPOT.String()),
			InstanceTerminationAction: proto.String(computepb.Scheduling_DELETE.String()),
			AutomaticRestart:          proto.Bool(false),
			OnHostMaintenance:         proto.String(computepb.Scheduling_TERMINATE.String()),
		}
	}
	if !g.IsZero() {
		addGPUs(inst, g, p.zonal("acceleratorTypes", g.Model.Accelerator))
	}
	return inst, nil
}

// e2Sizes are the vCPU counts of the e2-standard machine types, which have 4 GB
// of memory per vCPU.
var e2Sizes = []int{2, 4, 8, 16, 32}

// machineType is the machine of a node with GPUs (see gpuMachineType), else
// Config.MachineType, or the smallest e2-standard type that holds node n, as a
// zonal partial URL.
func (p *Provider) machineType(n provider.NodeSpec) (string, error) {
	if n.GPU != "" {
		return p.gpuMachineType(n)
	}
	if p.cfg.MachineType != "" {
		return p.zonal("machineTypes", p.cfg.MachineType), nil
	}
	for _, cpus := range e2Sizes {
		if cpus >= n.CPUs && cpus*4096 >= n.RAMMB {
			return p.zonal("machineTypes", "e2-standard-"+strconv.Itoa(cpus)), nil
		}
	}
	return "", fmt.Errorf("no e2-standard machine type has %d CPUs and %d MB; set Config.MachineType", n.CPUs, n.RAMMB)
}

// zonal makes a name of a zonal resource a partial URL; a URL stays as it is.
func (p *Provider) zonal(collection, name string) string {
	if strings.Contains(name, "/") {
		return name
	}
	return "zones/" + p.cfg.Zone + "/" + collection + "/" + name
}

// requestID is the request ID of verb on instance name: a name-based UUID, the
// same on every retry of a call. after, when set, is the earlier operation that
// was answered instead of a new one (see Create).
func (p *Provider) requestID(verb, name, after string) string {
	key := fmt.Sprintf("https://compute.googleapis.com/compute/v1/projects/%s/zones/%s/instances/%s#%s", p.cfg.Project, p.cfg.Zone, name, verb)
	if after != "" {
		key += "-after-" + after
	}
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte(key)).String()
}

// exists reports whether instance name exists.
func (p *Provider) exists(ctx context.Context, name string) (bool, error) {
	_, err := p.instances.Get(ctx, &computepb.GetInstanceRequest{Project: p.cfg.Project, Zone: p.cfg.Zone, Instance: name})
	switch {
	case err == nil:
		return true, nil
	case httpCode(err) == http.StatusNotFound:
		return false, nil
	default:
		return false, fmt.Errorf("gce provider: get instance %s: %w", p.where(name), err)
	}
}

// In is p working in project and zone (empty: its own), for callers that list a
// cluster placed elsewhere.
func (p *Provider) In(project, zone string) provider.Provider {
	return p.at(provider.NodeSpec{Project: project, Zone: zone})
}

// at is p working in n's project and zone, where n names them.
func (p *Provider) at(n provider.NodeSpec) *Provider {
	if (n.Project == "" || n.Project == p.cfg.Project) && (n.Zone == "" || n.Zone == p.cfg.Zone) {
		return p
	}
	q := *p
	q.cfg.Project = cmp.Or(n.Project, p.cfg.Project)
	q.cfg.Zone = cmp.Or(n.Zone, p.cfg.Zone)
	q.log = p.cfg.Logger.With("provider", "gce", "project", q.cfg.Project, "zone", q.cfg.Zone)
	return &q
}

func (p *Provider) where(name string) string {
	return fmt.Sprintf("%s (project %s, zone %s)", name, p.cfg.Project, p.cfg.Zone)
}

// wait waits for op to be done. Operation.Wait reports failure only when the
// operation carries an HTTP error status, and then as text; wait returns an
// *OperationError for every operation that finished with errors.
func wait(ctx context.Context, op *compute.Operation) error {
	err := op.Wait(ctx)
	if op.Done() {
		if oe := operationError(op.Proto()); oe != nil {
			return oe
		}
	}
	return err
}

// OperationError is a Compute Engine operation that finished with errors, such
// as ZONE_RESOURCE_POOL_EXHAUSTED (the zone has no capacity for the machine
// type, common for Spot VMs) or QUOTA_EXCEEDED.
type OperationError struct {
	Operation  string // the operation's name
	HTTPStatus int    // the status the operation reports, 0 if none
	Errors     []ErrorDetail
}

// ErrorDetail is one error of an operation.
type ErrorDetail struct {
	Code    string // e.g. "QUOTA_EXCEEDED"
	Message string
}

func operationError(op *computepb.Operation) *OperationError {
	if len(op.GetError().GetErrors()) == 0 {
		return nil
	}
	oe := &OperationError{Operation: op.GetName(), HTTPStatus: int(op.GetHttpErrorStatusCode())}
	for _, e := range op.GetError().GetErrors() {
		oe.Errors = append(oe.Errors, ErrorDetail{Code: e.GetCode(), Message: e.GetMessage()})
	}
	return oe
}

func (e *OperationError) Error() string {
	msgs := make([]string, len(e.Errors))
	for i, d := range e.Errors {
		msgs[i] = d.Code + ": " + d.Message
	}
	return fmt.Sprintf("operation %s failed: %s", e.Operation, strings.Join(msgs, "; "))
}

// Has reports whether one of the operation's errors has code.
func (e *OperationError) Has(code string) bool {
	return slices.ContainsFunc(e.Errors, func(d ErrorDetail) bool { return d.Code == code })
}

// httpCode is the HTTP status of a failed API call, 0 if err is not one. The
// REST client returns an *apierror.APIError wrapping a *googleapi.Error.
func httpCode(err error) int {
	if ae := (*apierror.APIError)(nil); errors.As(err, &ae) && ae.HTTPCode() > 0 {
		return ae.HTTPCode()
	}
	if ge := (*googleapi.Error)(nil); errors.As(err, &ge) {
		return ge.Code
	}
	return 0
}

// labelValue makes s a valid label value: lowercase letters, digits, '-' and
// '_', at most 63 characters.
func labelValue(s string) string {
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '-'
		}
	}
	return string(b[:min(len(b), 63)])
}

func validLabelKey(k string) bool {
	return k != "" && len(k) <= 63 && k[0] >= 'a' && k[0] <= 'z' && labelValue(k) == k
}
