// Package docker is the provider whose nodes are containers on a Docker engine: each
// runs the node agent (and its workers, as processes) from an image built locally
// FROM scratch with the static burla binary, so that no registry is needed.
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
	"os"
	"slices"
	"strconv"
	"sync"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/burla-temporal/burla/execfile"
	"github.com/burla-temporal/burla/provider"
	"github.com/burla-temporal/burla/temporalconn"
)

var _ provider.Provider = (*Provider)(nil)

// Labels on every node container, so that a control plane finds exactly its own.
const (
	LabelCluster = "burla.cluster"
	LabelNode    = "burla.node"
	LabelRole    = "burla.role" // "node" here; worker containers say "worker"
)

// API is the part of the Docker client the provider uses.
type API interface {
	ContainerCreate(ctx context.Context, config *container.Config, hostConfig *container.HostConfig, networkingConfig *network.NetworkingConfig, platform *ocispec.Platform, containerName string) (container.CreateResponse, error)
	ContainerStart(ctx context.Context, containerID string, options container.StartOptions) error
	ContainerRemove(ctx context.Context, containerID string, options container.RemoveOptions) error
	ContainerInspect(ctx context.Context, containerID string) (container.InspectResponse, error)
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
	ImageBuild(ctx context.Context, buildContext io.Reader, options build.ImageBuildOptions) (build.ImageBuildResponse, error)
	ImageInspect(ctx context.Context, imageID string, inspectOpts ...client.ImageInspectOption) (image.InspectResponse, error)
}

// Config says what the node containers run and where their control plane is.
type Config struct {
	// Executable is the static burla binary the node image is built from.
	Executable      string
	TemporalAddress string
	Namespace       string
	StoreURL        string
	Logger          *slog.Logger
}

// Provider runs nodes as containers.
type Provider struct {
	api API
	cfg Config

	mu    sync.Mutex
	image string // built node image, once known
}

// New connects to the Docker engine named by the environment (DOCKER_HOST, or the
// local socket).
func New(ctx context.Context, cfg Config) (*Provider, error) {
	api, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker provider: %w", err)
	}
	if _, err := api.Ping(ctx); err != nil {
		return nil, fmt.Errorf("docker provider: no Docker engine answers (%w); install docker.io and start dockerd", err)
	}
	return NewWithAPI(api, cfg), nil
}

// NewWithAPI returns a provider on api.
func NewWithAPI(api API, cfg Config) *Provider {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Provider{api: api, cfg: cfg}
}

// Name implements provider.Provider.
func (p *Provider) Name() string { return "docker" }

func containerName(id string) string { return "burla-node-" + id }

// Image builds the node image if it is missing and returns its tag: FROM scratch,
// the burla binary as its entry point and the host's CA bundle. The tag carries the
// binary's digest, so a new burla gets a new image.
func (p *Provider) Image(ctx context.Context) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.image != "" {
		return p.image, nil
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
	if err := p.build(ctx, tag, dockerfile+"ENTRYPOINT [\"/burla\"]\n", bin, extra); err != nil {
		return "", err
	}
	p.image = tag
	return tag, nil
}

// caBundle is where programs in the node image find the CA certificates.
const caBundle = "/etc/ssl/certs/ca-certificates.crt"

// EnvImage layers the burla binary (the container worker) onto a user's image,
// which must be on this engine already (no registry is pulled from), and returns
// the new image's tag. The tag carries both images' identities, so it is built once.
func (p *Provider) EnvImage(ctx context.Context, base string) (string, error) {
	info, err := p.api.ImageInspect(ctx, base)
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
	if err := p.build(ctx, tag, dockerfile, bin, nil); err != nil {
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

// build builds tag from dockerfile with the burla binary (and extra files) as its
// context, unless tag exists already.
func (p *Provider) build(ctx context.Context, tag, dockerfile string, bin []byte, extra map[string][]byte) error {
	if _, err := p.api.ImageInspect(ctx, tag); err == nil {
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
	resp, err := p.api.ImageBuild(ctx, &buf, build.ImageBuildOptions{Tags: []string{tag}, Remove: true, ForceRemove: true,
		Labels: map[string]string{"burla.image": "true"}})
	if err != nil {
		return fmt.Errorf("docker provider: build %s: %w", tag, err)
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
			return fmt.Errorf("docker provider: build %s: %s", tag, msg.Error)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("docker provider: build %s: %w", tag, err)
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

// Create implements provider.Provider: a running container for the node is success;
// a stopped one is started; otherwise one is created and started.
func (p *Provider) Create(ctx context.Context, n provider.NodeSpec) error {
	name := containerName(n.ID)
	info, err := p.api.ContainerInspect(ctx, name)
	switch {
	case err == nil && info.State != nil && info.State.Running:
		return nil
	case err == nil:
		return p.start(ctx, name)
	case !errdefs.IsNotFound(err):
		return fmt.Errorf("docker provider: inspect %s: %w", name, err)
	}
	img, err := p.Image(ctx)
	if err != nil {
		return err
	}
	res := container.Resources{NanoCPUs: int64(n.CPUs) * 1e9}
	if n.RAMMB > 0 {
		res.Memory = int64(n.RAMMB) << 20
	}
	_, err = p.api.ContainerCreate(ctx, &container.Config{
		Image: img,
		Cmd: []string{"node-agent",
			"--id", n.ID, "--cluster", n.Cluster,
			"--cpus", strconv.Itoa(n.CPUs), "--ram-mb", strconv.Itoa(n.RAMMB),
			"--temporal", p.cfg.TemporalAddress, "--namespace", p.cfg.Namespace, "--store", p.cfg.StoreURL,
			"--cache-dir", "/var/lib/burla",
		},
		Labels: map[string]string{LabelCluster: n.Cluster, LabelNode: n.ID, LabelRole: "node"},
		// Nodes reach Temporal as securely as the control plane does.
		Env: temporalconn.FromEnv().Env(),
	}, &container.HostConfig{
		// The control plane listens on the host's loopback.
		NetworkMode:    "host",
		ReadonlyRootfs: true,
		// Programs are fetched into the cache and run from it.
		Tmpfs:       map[string]string{"/var/lib/burla": "exec,mode=0755", "/tmp": "mode=1777"},
		SecurityOpt: []string{"no-new-privileges"},
		Resources:   res,
	}, nil, nil, name)
	if errdefs.IsConflict(err) {
		return p.start(ctx, name) // created by an earlier attempt of this call
	}
	if err != nil {
		return fmt.Errorf("docker provider: create %s: %w", name, err)
	}
	return p.start(ctx, name)
}

func (p *Provider) start(ctx context.Context, name string) error {
	if err := p.api.ContainerStart(ctx, name, container.StartOptions{}); err != nil {
		return fmt.Errorf("docker provider: start %s: %w", name, err)
	}
	return nil
}

// Delete implements provider.Provider.
func (p *Provider) Delete(ctx context.Context, n provider.NodeSpec) error {
	id := n.ID
	err := p.api.ContainerRemove(ctx, containerName(id), container.RemoveOptions{Force: true})
	if err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("docker provider: remove %s: %w", containerName(id), err)
	}
	return nil
}

// List implements provider.Provider, from the containers' labels.
func (p *Provider) List(ctx context.Context, cluster string) ([]string, error) {
	cs, err := p.api.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", LabelCluster+"="+cluster), filters.Arg("label", LabelRole+"=node"))})
	if err != nil {
		return nil, fmt.Errorf("docker provider: list nodes of %s: %w", cluster, err)
	}
	var ids []string
	for _, c := range cs {
		if id := c.Labels[LabelNode]; id != "" {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
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
