// Package local is the provider whose nodes are node-agent processes on this
// machine, children of the control plane's process.
package local

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/burla-temporal/burla/provider"
)

var _ provider.Provider = (*Provider)(nil)

// Config says how to start a node agent.
type Config struct {
	// Executable is the burla binary; its "node-agent" command is the agent.
	Executable      string
	TemporalAddress string
	Namespace       string
	StoreURL        string
	// DataDir holds each node's cache, in DataDir/<node ID>.
	DataDir string
	// Runtime is the node agents' worker runtime ("process" when empty).
	Runtime string
	Logger  *slog.Logger
}

// Provider runs node agents as child processes.
type Provider struct {
	cfg Config

	mu    sync.Mutex
	nodes map[string]*node
}

type node struct {
	cluster string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// New returns a local provider.
func New(cfg Config) *Provider {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Provider{cfg: cfg, nodes: map[string]*node{}}
}

// Name implements provider.Provider.
func (p *Provider) Name() string { return "local" }

// Create implements provider.Provider.
func (p *Provider) Create(ctx context.Context, n provider.NodeSpec) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cur, ok := p.nodes[n.ID]; ok {
		select {
		case <-cur.exited:
		default:
			return nil // running already: a retried create
		}
	}
	cmd := exec.Command(p.cfg.Executable, "node-agent",
		"--id", n.ID,
		"--cluster", n.Cluster,
		"--cpus", strconv.Itoa(n.CPUs),
		"--ram-mb", strconv.Itoa(n.RAMMB),
		"--temporal", p.cfg.TemporalAddress,
		"--namespace", p.cfg.Namespace,
		"--store", p.cfg.StoreURL,
		"--cache-dir", filepath.Join(p.cfg.DataDir, n.ID),
		"--runtime", cmp.Or(p.cfg.Runtime, "process"),
	)
	for _, env := range n.Envs {
		cmd.Args = append(cmd.Args, "--env", env)
	}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	// The agent dies with the control plane, and its workers die with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start node agent %s: %w", n.ID, err)
	}
	nd := &node{cluster: n.Cluster, cmd: cmd, exited: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		close(nd.exited)
		p.cfg.Logger.Info("node agent exited", "node", n.ID, "status", err)
	}()
	p.nodes[n.ID] = nd
	return nil
}

// Delete implements provider.Provider: SIGTERM, then SIGKILL to the agent's process
// group after a grace period.
func (p *Provider) Delete(ctx context.Context, n provider.NodeSpec) error {
	id := n.ID
	p.mu.Lock()
	nd, ok := p.nodes[id]
	delete(p.nodes, id)
	p.mu.Unlock()
	if !ok {
		return nil
	}
	_ = nd.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-nd.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-nd.cmd.Process.Pid, syscall.SIGKILL)
		<-nd.exited
	case <-ctx.Done():
		_ = syscall.Kill(-nd.cmd.Process.Pid, syscall.SIGKILL)
		return ctx.Err()
	}
	return nil
}

// List implements provider.Provider.
func (p *Provider) List(ctx context.Context, cluster string) ([]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ids []string
	for id, nd := range p.nodes {
		if nd.cluster == cluster {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// Close kills every node.
func (p *Provider) Close() {
	p.mu.Lock()
	ids := make([]string, 0, len(p.nodes))
	for id := range p.nodes {
		ids = append(ids, id)
	}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() { defer wg.Done(); _ = p.Delete(context.Background(), provider.NodeSpec{ID: id}) }()
	}
	wg.Wait()
}
