package docker_test

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/burla-temporal/burla/provider"
	"github.com/burla-temporal/burla/provider/docker"
)

// fakeEngine is a Docker engine in memory: containers by name, images by tag.
type fakeEngine struct {
	mu         sync.Mutex
	down       bool          // every call fails, as an unreachable engine's do
	createWait time.Duration // how long ContainerCreate takes
	containers map[string]*fakeContainer
	images     map[string]bool
	builds     int
	networks   map[string]client.NetworkCreateOptions
}

type fakeContainer struct {
	labels  map[string]string
	cmd     []string
	netMode container.NetworkMode
	running bool
}

var _ docker.API = (*fakeEngine)(nil)

func newFakeEngine() *fakeEngine {
	return &fakeEngine{containers: map[string]*fakeContainer{}, images: map[string]bool{}, networks: map[string]client.NetworkCreateOptions{}}
}

var errDown = errors.New("connection refused")

func (f *fakeEngine) NetworkCreate(ctx context.Context, name string, o client.NetworkCreateOptions) (client.NetworkCreateResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.networks[name]; ok {
		return client.NetworkCreateResult{}, cerrdefs.ErrConflict.WithMessage(fmt.Sprintf("network %s exists", name))
	}
	f.networks[name] = o
	return client.NetworkCreateResult{ID: name}, nil
}

func (f *fakeEngine) NetworkInspect(ctx context.Context, name string, _ client.NetworkInspectOptions) (client.NetworkInspectResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.networks[name]
	if !ok {
		return client.NetworkInspectResult{}, cerrdefs.ErrNotFound.WithMessage(fmt.Sprintf("no network %s", name))
	}
	return client.NetworkInspectResult{Network: network.Inspect{Network: network.Network{Name: name, Driver: o.Driver, Options: o.Options}}}, nil
}

func (f *fakeEngine) ContainerCreate(ctx context.Context, o client.ContainerCreateOptions) (client.ContainerCreateResult, error) {
	time.Sleep(f.createWait)
	f.mu.Lock()
	defer f.mu.Unlock()
	cfg, hc, name := o.Config, o.HostConfig, o.Name
	switch {
	case f.down:
		return client.ContainerCreateResult{}, errDown
	case !f.images[cfg.Image]:
		return client.ContainerCreateResult{}, cerrdefs.ErrNotFound.WithMessage(fmt.Sprintf("no image %s", cfg.Image))
	case f.containers[name] != nil:
		return client.ContainerCreateResult{}, cerrdefs.ErrConflict.WithMessage(fmt.Sprintf("name %s in use", name))
	case hc.NetworkMode != "host" && f.networks[string(hc.NetworkMode)].Driver == "":
		return client.ContainerCreateResult{}, cerrdefs.ErrNotFound.WithMessage(fmt.Sprintf("no network %s", hc.NetworkMode))
	}
	f.containers[name] = &fakeContainer{labels: cfg.Labels, cmd: cfg.Cmd, netMode: hc.NetworkMode}
	return client.ContainerCreateResult{ID: name}, nil
}

func (f *fakeEngine) ContainerStart(ctx context.Context, name string, _ client.ContainerStartOptions) (client.ContainerStartResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return client.ContainerStartResult{}, errDown
	}
	c := f.containers[name]
	if c == nil {
		return client.ContainerStartResult{}, cerrdefs.ErrNotFound.WithMessage(fmt.Sprintf("no container %s", name))
	}
	c.running = true
	return client.ContainerStartResult{}, nil
}

func (f *fakeEngine) ContainerRemove(ctx context.Context, name string, _ client.ContainerRemoveOptions) (client.ContainerRemoveResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return client.ContainerRemoveResult{}, errDown
	}
	if f.containers[name] == nil {
		return client.ContainerRemoveResult{}, cerrdefs.ErrNotFound.WithMessage(fmt.Sprintf("no container %s", name))
	}
	delete(f.containers, name)
	return client.ContainerRemoveResult{}, nil
}

func (f *fakeEngine) ContainerInspect(ctx context.Context, name string, _ client.ContainerInspectOptions) (client.ContainerInspectResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return client.ContainerInspectResult{}, errDown
	}
	c := f.containers[name]
	if c == nil {
		return client.ContainerInspectResult{}, cerrdefs.ErrNotFound.WithMessage(fmt.Sprintf("no container %s", name))
	}
	return client.ContainerInspectResult{Container: container.InspectResponse{Name: "/" + name, State: &container.State{Running: c.running}}}, nil
}

func (f *fakeEngine) ContainerList(ctx context.Context, o client.ContainerListOptions) (client.ContainerListResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return client.ContainerListResult{}, errDown
	}
	var out []container.Summary
	for name, c := range f.containers {
		match := o.All || c.running
		for kv := range o.Filters["label"] {
			k, v, _ := strings.Cut(kv, "=")
			match = match && c.labels[k] == v
		}
		if match {
			out = append(out, container.Summary{Names: []string{"/" + name}, Labels: c.labels})
		}
	}
	return client.ContainerListResult{Items: out}, nil
}

func (f *fakeEngine) Ping(ctx context.Context, _ client.PingOptions) (client.PingResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return client.PingResult{}, errDown
	}
	return client.PingResult{APIVersion: "1.41"}, nil
}

func (f *fakeEngine) ImageBuild(ctx context.Context, _ io.Reader, o client.ImageBuildOptions) (client.ImageBuildResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return client.ImageBuildResult{}, errDown
	}
	f.builds++
	for _, t := range o.Tags {
		f.images[t] = true
	}
	return client.ImageBuildResult{Body: io.NopCloser(strings.NewReader(`{"stream":"done"}` + "\n"))}, nil
}

func (f *fakeEngine) ImageInspect(ctx context.Context, tag string, _ ...client.ImageInspectOption) (client.ImageInspectResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return client.ImageInspectResult{}, errDown
	}
	if !f.images[tag] {
		return client.ImageInspectResult{}, cerrdefs.ErrNotFound.WithMessage(fmt.Sprintf("no image %s", tag))
	}
	return client.ImageInspectResult{InspectResponse: image.InspectResponse{ID: "sha256:" + tag}}, nil
}

// nodes returns the node IDs on f, sorted.
func (f *fakeEngine) nodes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for _, c := range f.containers {
		ids = append(ids, c.labels[docker.LabelNode])
	}
	slices.Sort(ids)
	return ids
}

// staticELF writes the smallest file the provider takes for a static linux
// executable: an ELF header with no program headers, so no dynamic loader.
func staticELF(t *testing.T) string {
	t.Helper()
	var buf bytes.Buffer
	h := elf.Header64{Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Ehsize: 64, Phentsize: 56, Shentsize: 64}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS], h.Ident[elf.EI_DATA], h.Ident[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	if err := binary.Write(&buf, binary.LittleEndian, h); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "burla")
	if err := os.WriteFile(path, buf.Bytes(), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func newProvider(t *testing.T, instance string, fakes ...*fakeEngine) *docker.Provider {
	t.Helper()
	var engines []docker.Engine
	for i, f := range fakes {
		engines = append(engines, docker.Engine{Host: fmt.Sprintf("tcp://engine%d:2376", i), API: f})
	}
	p, err := docker.NewWithEngines(engines, docker.Config{Executable: staticELF(t), TemporalAddress: "10.0.0.1:7233",
		Namespace: "default", StoreURL: "nats://10.0.0.1:4222", Instance: instance})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func node(cluster string, i int) provider.NodeSpec {
	return provider.NodeSpec{ID: fmt.Sprintf("%s-%d", cluster, i), Cluster: cluster, CPUs: 2}
}

func TestPlacementSpreadsNodes(t *testing.T) {
	ctx := context.Background()
	a, b, c := newFakeEngine(), newFakeEngine(), newFakeEngine()
	p := newProvider(t, "", a, b, c)
	// Another cluster's nodes on a do not count against it.
	for i := range 3 {
		if err := p.Create(ctx, node("other", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 3; i < 9; i++ {
		if err := p.Create(ctx, node("c", i)); err != nil {
			t.Fatal(err)
		}
	}
	count := func(f *fakeEngine, cluster string) int {
		n := 0
		for _, id := range f.nodes() {
			if strings.HasPrefix(id, cluster+"-") {
				n++
			}
		}
		return n
	}
	for i, f := range []*fakeEngine{a, b, c} {
		if got := count(f, "c"); got != 2 {
			t.Errorf("engine %d holds %d nodes of cluster c; want 2 (the engine with the fewest gets the next)", i, got)
		}
		if got := count(f, "other"); got != 1 {
			t.Errorf("engine %d holds %d nodes of cluster other; want 1", i, got)
		}
		if f.builds != 1 {
			t.Errorf("engine %d built the node image %d times; want once, on first use", i, f.builds)
		}
	}
	ids, err := p.List(ctx, "c")
	if want := []string{"c-3", "c-4", "c-5", "c-6", "c-7", "c-8"}; err != nil || !slices.Equal(ids, want) {
		t.Errorf("List(c) = %v, %v; want %v", ids, err, want)
	}
}

func TestImageBuiltOnlyWhereNodesGo(t *testing.T) {
	a, b := newFakeEngine(), newFakeEngine()
	p := newProvider(t, "", a, b)
	if err := p.Create(context.Background(), node("c", 1)); err != nil {
		t.Fatal(err)
	}
	if a.builds != 1 || b.builds != 0 {
		t.Errorf("image builds: %d on the engine of the node, %d on the other; want 1 and 0", a.builds, b.builds)
	}
}

func TestCreateFindsNodeOnAnyEngine(t *testing.T) {
	ctx := context.Background()
	a, b := newFakeEngine(), newFakeEngine()
	p := newProvider(t, "", a, b)
	for i := 1; i <= 2; i++ {
		if err := p.Create(ctx, node("c", i)); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(b.nodes(), []string{"c-2"}) {
		t.Fatalf("engine b holds %v; want [c-2]", b.nodes())
	}
	// A retried create of a running node, and of a stopped one, makes no second
	// container: the stopped one is started where it is.
	b.containers["burla-node-c-2"].running = false
	for range 2 {
		if err := p.Create(ctx, node("c", 2)); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(a.nodes(), []string{"c-1"}) || !slices.Equal(b.nodes(), []string{"c-2"}) {
		t.Fatalf("after retries: a holds %v, b holds %v; want [c-1] and [c-2]", a.nodes(), b.nodes())
	}
	if !b.containers["burla-node-c-2"].running {
		t.Error("the stopped node was not started again")
	}
	c := b.containers["burla-node-c-2"]
	if cmd := strings.Join(c.cmd, " "); !strings.Contains(cmd, "--temporal 10.0.0.1:7233") || !strings.Contains(cmd, "--store nats://10.0.0.1:4222") {
		t.Errorf("node command %q; want the configured Temporal and store addresses", cmd)
	}
}

func TestPlacementPassesOverDeadEngine(t *testing.T) {
	ctx := context.Background()
	a, b, c := newFakeEngine(), newFakeEngine(), newFakeEngine()
	p := newProvider(t, "", a, b, c)
	b.down = true
	if n, err := p.Ping(ctx); n != 2 || err == nil || !strings.Contains(err.Error(), "tcp://engine1:2376") {
		t.Errorf("Ping = %d, %v; want 2 answered and an error naming the dead engine", n, err)
	}
	for i := range 4 {
		if err := p.Create(ctx, node("c", i)); err != nil {
			t.Fatalf("Create with one engine down: %v", err)
		}
	}
	if len(a.nodes()) != 2 || len(c.nodes()) != 2 {
		t.Errorf("a holds %v, c holds %v; want two each, none on the dead engine", a.nodes(), c.nodes())
	}
	if _, err := p.List(ctx, "c"); err == nil {
		t.Error("List with an engine down succeeded; want an error (its nodes are unknown)")
	}
	// A node on a live engine is deleted; one that may be on the dead engine is not
	// known to be gone.
	if err := p.Delete(ctx, node("c", 0)); err != nil {
		t.Errorf("Delete of a node on a live engine: %v", err)
	}
	if err := p.Delete(ctx, node("c", 99)); err == nil {
		t.Error("Delete of a node on no live engine, with an engine down, succeeded; want an error")
	}
	b.down = false
	if err := p.Delete(ctx, node("c", 99)); err != nil {
		t.Errorf("Delete of a missing node: %v; want success", err)
	}
	a.down, b.down, c.down = true, true, true
	if err := p.Create(ctx, node("c", 100)); err == nil {
		t.Error("Create with every engine down succeeded")
	}
}

func TestConcurrentCreatesSpread(t *testing.T) {
	a, b := newFakeEngine(), newFakeEngine()
	a.createWait, b.createWait = 20*time.Millisecond, 20*time.Millisecond
	p := newProvider(t, "", a, b)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.Create(context.Background(), node("c", i))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if len(a.nodes()) != 4 || len(b.nodes()) != 4 {
		t.Errorf("a holds %v, b holds %v; want four each: creates in flight count", a.nodes(), b.nodes())
	}
}

func TestInstanceSetsNodesApart(t *testing.T) {
	ctx := context.Background()
	f := newFakeEngine()
	mine, theirs := newProvider(t, "prod", f), newProvider(t, "", f)
	if err := mine.Create(ctx, node("c", 1)); err != nil {
		t.Fatal(err)
	}
	if err := theirs.Create(ctx, node("c", 1)); err != nil {
		t.Fatal(err)
	}
	c := f.containers["burla-prod-node-c-1"]
	if c == nil || c.labels[docker.LabelInstance] != "prod" {
		t.Fatalf("containers %v; want burla-prod-node-c-1 labelled %s=prod", slices.Sorted(maps.Keys(f.containers)), docker.LabelInstance)
	}
	for _, p := range []*docker.Provider{mine, theirs} {
		if ids, err := p.List(ctx, "c"); err != nil || !slices.Equal(ids, []string{"c-1"}) {
			t.Errorf("List = %v, %v; want only its own [c-1]", ids, err)
		}
	}
	if err := mine.RemoveAll(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if f.containers["burla-node-c-1"] == nil || f.containers["burla-prod-node-c-1"] != nil {
		t.Errorf("RemoveAll removed another instance's node, or not its own")
	}
	if err := theirs.RemoveAll(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if len(f.containers) != 0 {
		t.Errorf("containers left: %v", slices.Sorted(maps.Keys(f.containers)))
	}
}

func TestTLSFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(sub string) {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{docker.TLSCA, docker.TLSCert, docker.TLSKey} {
			if err := os.WriteFile(filepath.Join(dir, sub, f), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	write("")
	write("node2.example")
	for _, tc := range []struct{ host, wantDir string }{
		{"tcp://10.0.0.6:2376", dir},
		{"tcp://node2.example:2376", filepath.Join(dir, "node2.example")},
		{"tcp://node2.example", filepath.Join(dir, "node2.example")},
		{"tcp://../x:2376", dir},
	} {
		ca, cert, key, err := docker.TLSFiles(dir, tc.host)
		if err != nil {
			t.Errorf("TLSFiles(%s): %v", tc.host, err)
			continue
		}
		if ca != filepath.Join(tc.wantDir, "ca.pem") || cert != filepath.Join(tc.wantDir, "cert.pem") || key != filepath.Join(tc.wantDir, "key.pem") {
			t.Errorf("TLSFiles(%s) = %s %s %s; want them in %s", tc.host, ca, cert, key, tc.wantDir)
		}
	}
	if _, _, _, err := docker.TLSFiles(t.TempDir(), "tcp://10.0.0.6:2376"); err == nil {
		t.Error("TLSFiles in an empty directory succeeded")
	}
}

func TestConnectRefusesPlainTCP(t *testing.T) {
	_, err := docker.Connect("tcp://10.0.0.6:2375", "")
	if err == nil || !strings.Contains(err.Error(), "TLS") {
		t.Errorf("Connect to tcp:// without TLS: %v; want a refusal that asks for TLS", err)
	}
}

// Nodes that reach Temporal and the store at a routable address are each in a
// network namespace of their own, on a bridge network the provider makes once
// per engine with traffic between its containers off; nodes of a cluster whose
// servers are on the machine's loopback share the host's network, the only one
// that reaches them.
func TestNodesGetANetworkOfTheirOwn(t *testing.T) {
	ctx := context.Background()
	a := newFakeEngine()
	p := newProvider(t, "inst", a)
	if p.OnHostNetwork() {
		t.Fatal("a provider whose servers are at 10.0.0.1 puts its nodes on the host's network")
	}
	for i := range 2 {
		if err := p.Create(ctx, node("c", i)); err != nil {
			t.Fatal(err)
		}
	}
	const name = docker.NetworkName + "-inst"
	o, ok := a.networks[name]
	if !ok || len(a.networks) != 1 || o.Driver != "bridge" || o.Options["com.docker.network.bridge.enable_icc"] != "false" || o.Labels[docker.LabelInstance] != "inst" {
		t.Fatalf("networks %v; want one bridge network %s with inter-container traffic off", a.networks, name)
	}
	for cname, c := range a.containers {
		if c.netMode != name {
			t.Errorf("node container %s on network %q; want %s", cname, c.netMode, name)
		}
	}

	b := newFakeEngine()
	local, err := docker.NewWithEngines([]docker.Engine{{Host: "local", API: b}}, docker.Config{Executable: staticELF(t),
		TemporalAddress: "127.0.0.1:7233", Namespace: "default", StoreURL: "nats://10.0.0.1:4222"})
	if err != nil {
		t.Fatal(err)
	}
	if !local.OnHostNetwork() {
		t.Fatal("a provider whose Temporal is on loopback does not put its nodes on the host's network")
	}
	if err := local.Create(ctx, node("d", 0)); err != nil {
		t.Fatal(err)
	}
	for cname, c := range b.containers {
		if c.netMode != "host" {
			t.Errorf("node container %s on network %q; want host", cname, c.netMode)
		}
	}
	if len(b.networks) != 0 {
		t.Errorf("networks %v made for host-network nodes; want none", b.networks)
	}
}
