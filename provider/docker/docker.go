// Package docker is the provider whose nodes are containers on Docker engines: each
// runs the node agent (and its workers, as processes) from an image built on its
// engine FROM scratch with the static burla binary, so that no registry is needed.
// One provider can spread a cluster's nodes over several engines (on several
// machines): each node goes to the engine that holds the fewest of its cluster's
// nodes, and is found again on whichever engine holds it.
package docker

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/burla-temporal/burla/auth"
	"github.com/burla-temporal/burla/execfile"
	"github.com/burla-temporal/burla/provider"
	"github.com/burla-temporal/burla/temporalconn"
)

// Name is the provider's name in a standby spec.
const Name = "docker"

var _ provider.Provider = (*Provider)(nil)

// Docker nodes are containers on the engines given: they choose no GPUs,
// region or disk for a job.
func init() { provider.Declare(Name, provider.Capabilities{}) }

// Labels on every node container, so that a control plane finds exactly its own.
const (
	LabelCluster = "burla.cluster"
	LabelNode    = "burla.node"
	LabelRole    = "burla.role" // "node" here; worker containers say "worker"
	// LabelInstance is Config.Instance, on the node containers of a provider that
	// has one.
	LabelInstance = "burla.instance"
)

// API is the part of the Docker client the provider uses.
type API interface {
	ContainerCreate(ctx context.Context, options client.ContainerCreateOptions) (client.ContainerCreateResult, error)
	ContainerStart(ctx context.Context, containerID string, options client.ContainerStartOptions) (client.ContainerStartResult, error)
	ContainerRemove(ctx context.Context, containerID string, options client.ContainerRemoveOptions) (client.ContainerRemoveResult, error)
	ContainerInspect(ctx context.Context, containerID string, options client.ContainerInspectOptions) (client.ContainerInspectResult, error)
	ContainerList(ctx context.Context, options client.ContainerListOptions) (client.ContainerListResult, error)
	ImageBuild(ctx context.Context, buildContext io.Reader, options client.ImageBuildOptions) (client.ImageBuildResult, error)
	ImageInspect(ctx context.Context, imageID string, inspectOpts ...client.ImageInspectOption) (client.ImageInspectResult, error)
	Ping(ctx context.Context, options client.PingOptions) (client.PingResult, error)
	NetworkCreate(ctx context.Context, name string, options client.NetworkCreateOptions) (client.NetworkCreateResult, error)
	NetworkInspect(ctx context.Context, networkID string, options client.NetworkInspectOptions) (client.NetworkInspectResult, error)
}

// Config says what the node containers run and where their control plane is.
type Config struct {
	// Executable is the static burla binary the node image is built from.
	Executable      string
	TemporalAddress string
	Namespace       string
	StoreURL        string
	// Instance, if set, sets this provider's node containers apart from those of
	// other control planes on the same engines: it is in their names
	// (burla-INSTANCE-node-ID rather than burla-node-ID) and their burla.instance
	// label, and List and placement see only containers that carry it. A provider
	// without one sees only containers without one.
	Instance string
	// NodeKey is the API key node agents present, on a cluster that asks for
	// keys (package auth).
	NodeKey string
	Logger  *slog.Logger
}

// Provider runs nodes as containers.
type Provider struct {
	engines []*engine
	cfg     Config

	mu sync.Mutex
	// placing is the engine each create in flight has chosen, by node ID, until
	// its container exists: placement counts these, and a retried create of the
	// same node goes where the first attempt went.
	placing map[string]placement
}

type placement struct {
	engine  *engine
	cluster string
}

// engine is an Engine with the node image built on it, once known.
type engine struct {
	Engine
	mu      sync.Mutex // held while the image is built or the network made
	image   string
	network bool // the nodes' network is known to exist
}

// New connects to the Docker engine named by the environment (DOCKER_HOST, or the
// local socket).
func New(ctx context.Context, cfg Config) (*Provider, error) {
	api, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("docker provider: %w", err)
	}
	if _, err := api.Ping(ctx, client.PingOptions{}); err != nil {
		return nil, fmt.Errorf("docker provider: no Docker engine answers (%w); install docker.io and start dockerd", err)
	}
	return NewWithAPI(api, cfg), nil
}

// NewWithAPI returns a provider on api.
func NewWithAPI(api API, cfg Config) *Provider {
	p, _ := NewWithEngines([]Engine{{Host: "local", API: api}}, cfg)
	return p
}

// NewWithEngines returns a provider that spreads nodes over engines. Its images
// (Image, EnvImage) are built on the first.
func NewWithEngines(engines []Engine, cfg Config) (*Provider, error) {
	if len(engines) == 0 {
		return nil, errors.New("docker provider: no Docker engine")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Provider{cfg: cfg, placing: map[string]placement{}}
	for _, e := range engines {
		p.engines = append(p.engines, &engine{Engine: e})
	}
	return p, nil
}

// Ping checks every engine and returns how many answered, and an error naming
// each one that did not.
func (p *Provider) Ping(ctx context.Context) (answered int, err error) {
	errs := make([]error, len(p.engines))
	p.each(func(i int, e *engine) {
		if _, err := e.API.Ping(ctx, client.PingOptions{}); err != nil {
			errs[i] = fmt.Errorf("docker engine %s does not answer: %w", e.Host, err)
		}
	})
	for _, err := range errs {
		if err == nil {
			answered++
		}
	}
	return answered, errors.Join(errs...)
}

// NodeCapabilities are the capabilities a node's container keeps: its agent
// chowns each worker's directories to the worker's user (CHOWN), removes them
// after (DAC_OVERRIDE, FOWNER), has its workers become that user (SETUID,
// SETGID) and kills what that user left running (KILL).
var NodeCapabilities = []string{"CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "KILL"}

// Name implements provider.Provider.
func (p *Provider) Name() string { return Name }

func (p *Provider) containerName(id string) string {
	if p.cfg.Instance != "" {
		return "burla-" + p.cfg.Instance + "-node-" + id
	}
	return "burla-node-" + id
}

// Image builds the node image on the first engine if it is missing there and
// returns its tag: FROM scratch, the burla binary as its entry point and the host's
// CA bundle. The tag carries the binary's digest, so a new burla gets a new image.
func (p *Provider) Image(ctx context.Context) (string, error) {
	return p.imageOn(ctx, p.engines[0])
}

// imageOn builds the node image on e, once.
func (p *Provider) imageOn(ctx context.Context, e *engine) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.image != "" {
		return e.image, nil
	}
	bin, digest, err := p.burla()
	if err != nil {
		return "", err
	}
	tag := "burla-node:" + digest[:16]
	extra := map[string][]byte{}
	dockerfile := "FROM scratch\nCOPY burla /burla\n"
	if ca, err := os.ReadFile(caBundle); err == nil {
		extra["ca-certificates.crt"] = ca
		dockerfile += "COPY ca-certificates.crt " + caBundle + "\n"
	}
	if err := p.build(ctx, e, tag, dockerfile+"ENTRYPOINT [\"/burla\"]\n", bin, extra); err != nil {
		return "", err
	}
	e.image = tag
	return tag, nil
}

// NetworkName is the bridge network node containers join when they reach
// Temporal and the store at addresses other than loopback: NetworkName, or
// NetworkName-INSTANCE for a provider with an instance.
const NetworkName = "burla-nodes"

// networkName is this provider's nodes' network.
func (p *Provider) networkName() string {
	if p.cfg.Instance != "" {
		return NetworkName + "-" + p.cfg.Instance
	}
	return NetworkName
}

// OnHostNetwork reports whether the provider's nodes share their machine's
// network: only when Temporal or the store is at a loopback address, which only
// the host's network reaches. Otherwise each node is in a network namespace of
// its own, on a bridge network whose containers cannot reach each other, so a
// tenant's code on a node reaches neither the machine's loopback services nor
// other nodes.
func (p *Provider) OnHostNetwork() bool {
	return loopback(hostOf(p.cfg.TemporalAddress)) || loopback(storeHost(p.cfg.StoreURL))
}

func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

func storeHost(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return ""
	}
	return u.Hostname()
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// networkOn returns the network mode of the nodes on e, making their bridge
// network there if it is missing: inter-container traffic off, so that nodes
// do not reach one another.
func (p *Provider) networkOn(ctx context.Context, e *engine) (container.NetworkMode, error) {
	if p.OnHostNetwork() {
		return "host", nil
	}
	name := p.networkName()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.network {
		return container.NetworkMode(name), nil
	}
	_, err := e.API.NetworkInspect(ctx, name, client.NetworkInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		labels := map[string]string{LabelRole: "network"}
		if p.cfg.Instance != "" {
			labels[LabelInstance] = p.cfg.Instance
		}
		_, err = e.API.NetworkCreate(ctx, name, client.NetworkCreateOptions{Driver: "bridge", Labels: labels,
			Options: map[string]string{"com.docker.network.bridge.enable_icc": "false"}})
		if cerrdefs.IsConflict(err) { // made meanwhile by another control plane
			err = nil
		}
	}
	if err != nil {
		return "", fmt.Errorf("docker provider: the nodes' network %s on %s: %w", name, e.Host, err)
	}
	e.network = true
	return container.NetworkMode(name), nil
}

// caBundle is where programs in the node image find the CA certificates.
const caBundle = "/etc/ssl/certs/ca-certificates.crt"

// EnvImage layers the burla binary (the container worker) onto a user's image,
// which must be on the first engine already (no registry is pulled from), and
// returns the new image's tag. The tag carries both images' identities, so it is
// built once.
func (p *Provider) EnvImage(ctx context.Context, base string) (string, error) {
	e := p.engines[0]
	info, err := e.API.ImageInspect(ctx, base)
	if err != nil {
		return "", fmt.Errorf("docker provider: image %q is not on this Docker engine (no registry is pulled from; build or load it first): %w", base, err)
	}
	bin, digest, err := p.burla()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(info.ID + digest))
	tag := "burla-env:" + hex.EncodeToString(sum[:])[:16]
	dockerfile := "FROM " + info.ID + "\nCOPY burla /burla\nENTRYPOINT [\"/burla\"]\n"
	if err := p.build(ctx, e, tag, dockerfile, bin, nil); err != nil {
		return "", err
	}
	return tag, nil
}

// burla reads the static burla binary and its digest.
func (p *Provider) burla() ([]byte, string, error) {
	bin, err := os.ReadFile(p.cfg.Executable)
	if err != nil {
		return nil, "", fmt.Errorf("docker provider: read burla binary: %w", err)
	}
	if err := checkStatic(p.cfg.Executable); err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(bin)
	return bin, hex.EncodeToString(sum[:]), nil
}

// build builds tag on e from dockerfile with the burla binary (and extra files) as
// its context, unless tag exists there already.
func (p *Provider) build(ctx context.Context, e *engine, tag, dockerfile string, bin []byte, extra map[string][]byte) error {
	if _, err := e.API.ImageInspect(ctx, tag); err == nil {
		return nil
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	files := []struct {
		name string
		mode int64
		data []byte
	}{{"Dockerfile", 0o644, []byte(dockerfile)}, {"burla", 0o755, bin}}
	for name, data := range extra {
		files = append(files, struct {
			name string
			mode int64
			data []byte
		}{name, 0o644, data})
	}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data))}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	resp, err := e.API.ImageBuild(ctx, &buf, client.ImageBuildOptions{Tags: []string{tag}, Remove: true, ForceRemove: true,
		Labels: map[string]string{"burla.image": "true"}})
	if err != nil {
		return fmt.Errorf("docker provider: build %s on %s: %w", tag, e.Host, err)
	}
	defer resp.Body.Close()
	// The build reports failures in its JSON stream, not in its status.
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var msg struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(sc.Bytes(), &msg) == nil && msg.Error != "" {
			return fmt.Errorf("docker provider: build %s on %s: %s", tag, e.Host, msg.Error)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("docker provider: build %s on %s: %w", tag, e.Host, err)
	}
	return nil
}

// checkStatic refuses a dynamically linked binary, which cannot run FROM scratch.
func checkStatic(path string) error {
	dyn, err := execfile.Dynamic(path)
	if err != nil {
		return fmt.Errorf("docker provider: %w", err)
	}
	if dyn {
		return fmt.Errorf("docker provider: %s is dynamically linked and cannot run in a FROM-scratch node image; build it with CGO_ENABLED=0", path)
	}
	return nil
}

// Create implements provider.Provider: a running container for the node, on any
// engine, is success; a stopped one is started; otherwise one is created and
// started on the engine that holds the fewest of the cluster's nodes. Engines that
// do not answer are passed over, so that nodes can still be made while a machine
// is down.
func (p *Provider) Create(ctx context.Context, n provider.NodeSpec) error {
	name := p.containerName(n.ID)
	e, info, err := p.find(ctx, name)
	switch {
	case err != nil:
		return err
	case e != nil && info.State != nil && info.State.Running:
		return nil
	case e != nil:
		return p.start(ctx, e, name)
	}
	e, placed, err := p.place(ctx, n)
	if err != nil {
		return err
	}
	defer placed()
	img, err := p.imageOn(ctx, e)
	if err != nil {
		return err
	}
	netMode, err := p.networkOn(ctx, e)
	if err != nil {
		return err
	}
	res := container.Resources{NanoCPUs: int64(n.CPUs) * 1e9}
	if n.RAMMB > 0 {
		res.Memory = int64(n.RAMMB) << 20
	}
	labels := map[string]string{LabelCluster: n.Cluster, LabelNode: n.ID, LabelRole: "node"}
	if p.cfg.Instance != "" {
		labels[LabelInstance] = p.cfg.Instance
	}
	_, err = e.API.ContainerCreate(ctx, client.ContainerCreateOptions{Name: name, Config: &container.Config{
		Image: img,
		Cmd: []string{"node-agent",
			"--id", n.ID, "--cluster", n.Cluster,
			"--cpus", strconv.Itoa(n.CPUs), "--ram-mb", strconv.Itoa(n.RAMMB),
			"--temporal", p.cfg.TemporalAddress, "--namespace", p.cfg.Namespace, "--store", p.cfg.StoreURL,
			"--cache-dir", "/var/lib/burla",
		},
		Labels: labels,
		// Nodes reach Temporal as securely as the control plane does.
		Env: auth.ChildEnv(temporalconn.FromEnv().Env(), p.cfg.NodeKey),
	}, HostConfig: &container.HostConfig{
		// A network of the nodes' own (networkOn), or the host's when Temporal and
		// the store are on the engine machine's loopback (burla dev).
		NetworkMode:    netMode,
		ReadonlyRootfs: true,
		// Programs are fetched into the cache and run from it.
		Tmpfs:       map[string]string{"/var/lib/burla": "exec,mode=0755", "/tmp": "mode=1777"},
		SecurityOpt: []string{"no-new-privileges"},
		// The agent is root in its container, with only what it needs to run
		// tenants' code as users of their own and clear up after them
		// (runtime/process): not NET_RAW, say, which on the host's network would let
		// it read the loopback traffic of every process on the machine.
		CapDrop:   []string{"ALL"},
		CapAdd:    NodeCapabilities,
		Resources: res,
	}})
	if cerrdefs.IsConflict(err) {
		return p.start(ctx, e, name) // created by an earlier attempt of this call
	}
	if err != nil {
		return fmt.Errorf("docker provider: create %s on %s: %w", name, e.Host, err)
	}
	p.cfg.Logger.Info("node container created", "node", n.ID, "cluster", n.Cluster, "engine", e.Host)
	return p.start(ctx, e, name)
}

func (p *Provider) start(ctx context.Context, e *engine, name string) error {
	if _, err := e.API.ContainerStart(ctx, name, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("docker provider: start %s on %s: %w", name, e.Host, err)
	}
	return nil
}

// probeTimeout bounds the calls that look for a node or count an engine's nodes,
// so that an engine on a machine that is off (whose packets are dropped, not
// refused) does not hold up every create for the dialer's timeout.
const probeTimeout = 10 * time.Second

// find returns the engine that holds the container name and what it is, or a nil
// engine if no engine that answers holds it. It fails only when no engine answers.
func (p *Provider) find(ctx context.Context, name string) (*engine, container.InspectResponse, error) {
	type found struct {
		info container.InspectResponse
		err  error
	}
	res := make([]found, len(p.engines))
	p.each(func(i int, e *engine) {
		ctx, cancel := context.WithTimeout(ctx, probeTimeout)
		defer cancel()
		got, err := e.API.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
		res[i].info, res[i].err = got.Container, err
	})
	var errs []error
	for i, r := range res {
		switch {
		case r.err == nil:
			return p.engines[i], r.info, nil
		case !cerrdefs.IsNotFound(r.err):
			errs = append(errs, fmt.Errorf("inspect %s on %s: %w", name, p.engines[i].Host, r.err))
		}
	}
	if len(errs) == len(p.engines) {
		return nil, container.InspectResponse{}, fmt.Errorf("docker provider: %w", errors.Join(errs...))
	}
	for _, err := range errs {
		p.cfg.Logger.Warn("docker provider: an engine does not answer; passing it over", "error", err)
	}
	return nil, container.InspectResponse{}, nil
}

// place chooses the engine for a new node n: the one holding the fewest of n's
// cluster's nodes (counting creates in flight), the first given on a tie. placed
// must be called once n's container exists or its create has failed.
func (p *Provider) place(ctx context.Context, n provider.NodeSpec) (_ *engine, placed func(), err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	done := func() {
		p.mu.Lock()
		delete(p.placing, n.ID)
		p.mu.Unlock()
	}
	if pl, ok := p.placing[n.ID]; ok {
		return pl.engine, func() {}, nil // a retry while the first attempt is still creating it
	}
	if len(p.engines) == 1 {
		p.placing[n.ID] = placement{p.engines[0], n.Cluster}
		return p.engines[0], done, nil
	}
	// Each engine's nodes of the cluster, by ID: those it holds and those being
	// created on it (which it may hold already).
	held := make([]map[string]bool, len(p.engines))
	errs := make([]error, len(p.engines))
	p.each(func(i int, e *engine) {
		ctx, cancel := context.WithTimeout(ctx, probeTimeout)
		defer cancel()
		ids, err := p.listOn(ctx, e, n.Cluster)
		held[i], errs[i] = map[string]bool{}, err
		for _, id := range ids {
			held[i][id] = true
		}
	})
	var best *engine
	fewest := 0
	for i, e := range p.engines {
		if errs[i] != nil {
			p.cfg.Logger.Warn("docker provider: an engine does not answer; placing node elsewhere", "node", n.ID, "engine", e.Host, "error", errs[i])
			continue
		}
		for id, pl := range p.placing {
			if pl.engine == e && pl.cluster == n.Cluster {
				held[i][id] = true
			}
		}
		if best == nil || len(held[i]) < fewest {
			best, fewest = e, len(held[i])
		}
	}
	if best == nil {
		return nil, nil, fmt.Errorf("docker provider: no engine to place node %s on: %w", n.ID, errors.Join(errs...))
	}
	p.placing[n.ID] = placement{best, n.Cluster}
	return best, done, nil
}

// each calls f for every engine at once and waits for them all.
func (p *Provider) each(f func(i int, e *engine)) {
	var wg sync.WaitGroup
	for i, e := range p.engines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(i, e)
		}()
	}
	wg.Wait()
}

// Delete implements provider.Provider: it removes the node's container from
// whichever engine holds it. It fails if the container is on no engine that
// answered and some engine did not answer, since the node may be there.
func (p *Provider) Delete(ctx context.Context, n provider.NodeSpec) error {
	name := p.containerName(n.ID)
	errs := make([]error, len(p.engines))
	removed := make([]bool, len(p.engines))
	p.each(func(i int, e *engine) {
		_, err := e.API.ContainerRemove(ctx, name, client.ContainerRemoveOptions{Force: true})
		switch {
		case err == nil:
			removed[i] = true
		case !cerrdefs.IsNotFound(err):
			errs[i] = fmt.Errorf("docker provider: remove %s on %s: %w", name, e.Host, err)
		}
	})
	if slices.Contains(removed, true) {
		return nil // a node is on one engine only
	}
	return errors.Join(errs...)
}

// List implements provider.Provider, from the containers' labels on every engine.
func (p *Provider) List(ctx context.Context, cluster string) ([]string, error) {
	lists := make([][]string, len(p.engines))
	errs := make([]error, len(p.engines))
	p.each(func(i int, e *engine) {
		lists[i], errs[i] = p.listOn(ctx, e, cluster)
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	ids := slices.Concat(lists...)
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// listOn returns the IDs of the nodes of cluster on e.
func (p *Provider) listOn(ctx context.Context, e *engine, cluster string) ([]string, error) {
	f := make(client.Filters).Add("label", LabelCluster+"="+cluster, LabelRole+"=node")
	if p.cfg.Instance != "" {
		f.Add("label", LabelInstance+"="+p.cfg.Instance)
	}
	cs, err := e.API.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("docker provider: list nodes of %s on %s: %w", cluster, e.Host, err)
	}
	var ids []string
	for _, c := range cs.Items {
		if id := c.Labels[LabelNode]; id != "" && c.Labels[LabelInstance] == p.cfg.Instance {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// RemoveAll deletes every node container of cluster.
func (p *Provider) RemoveAll(ctx context.Context, cluster string) error {
	ids, err := p.List(ctx, cluster)
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range ids {
		errs = append(errs, p.Delete(ctx, provider.NodeSpec{ID: id}))
	}
	return errors.Join(errs...)
}
