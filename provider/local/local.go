// Package local is the provider whose nodes are node-agent processes on this
// machine. By default they are children of the control plane's process and die
// with it (burla dev). Detached nodes outlive it, as VMs outlive a control plane
// that crashes, and a later control plane finds them by their pid files.
package local

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/burla-temporal/burla/auth"
	"github.com/burla-temporal/burla/provider"
	"github.com/burla-temporal/burla/store"
)

// Name is the provider's name in a standby spec.
const Name = "local"

var _ provider.Provider = (*Provider)(nil)

// Local nodes are processes of this machine: they have its region and disk, and
// no GPUs of a job's choosing.
func init() { provider.Declare(Name, provider.Capabilities{}) }

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
	// Wrapper, if set, is a command that each node agent runs under: the agent's
	// command line is appended to it (for instance "ip netns exec NAME", "nice -n
	// 10", "systemd-run --scope -p MemoryMax=8G"). The wrapper must exec the
	// agent, so that the agent keeps its pid.
	Wrapper []string
	// Detached nodes run in sessions of their own, outlive the control plane's
	// process and log to DataDir/<node ID>/agent.log. Delete and List find them by
	// DataDir/<node ID>/agent.pid, so a restarted control plane still manages them.
	Detached bool
	// NodeKey is the API key node agents present, on a cluster that asks for
	// keys (package auth); it replaces any key in this process's environment.
	NodeKey string
	Logger  *slog.Logger
}

// Provider runs node agents as processes.
type Provider struct {
	cfg Config

	mu    sync.Mutex
	nodes map[string]*node
}

type node struct {
	cluster string
	pid     int
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
func (p *Provider) Name() string { return Name }

func (p *Provider) pidFile(id string) string { return filepath.Join(p.cfg.DataDir, id, "agent.pid") }

// Create implements provider.Provider.
func (p *Provider) Create(ctx context.Context, n provider.NodeSpec) error {
	if !store.ValidNodeID(n.ID) {
		return fmt.Errorf("start node agent: node ID %q is not lower-case letters, digits and dashes", n.ID)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if cur, ok := p.nodes[n.ID]; ok {
		select {
		case <-cur.exited:
		default:
			return nil // running already: a retried create
		}
	}
	if p.cfg.Detached {
		if _, ok := p.running(n.ID); ok {
			return nil // started by an earlier control plane, or a retried create
		}
	}
	cacheDir := filepath.Join(p.cfg.DataDir, n.ID)
	cmd := exec.Command(p.cfg.Executable, "node-agent",
		"--id", n.ID,
		"--cluster", n.Cluster,
		"--cpus", strconv.Itoa(n.CPUs),
		"--ram-mb", strconv.Itoa(n.RAMMB),
		"--temporal", p.cfg.TemporalAddress,
		"--namespace", p.cfg.Namespace,
		"--store", p.cfg.StoreURL,
		"--cache-dir", cacheDir,
		"--runtime", cmp.Or(p.cfg.Runtime, "process"),
	)
	for _, env := range n.Envs {
		cmd.Args = append(cmd.Args, "--env", env)
	}
	if len(p.cfg.Wrapper) > 0 {
		cmd = exec.Command(p.cfg.Wrapper[0], append(slices.Clone(p.cfg.Wrapper[1:]), cmd.Args...)...)
	}
	cmd.Env = auth.ChildEnv(os.Environ(), p.cfg.NodeKey)
	var logFile *os.File
	if p.cfg.Detached {
		// The agent must not write to a pipe or terminal this process owns: it
		// outlives this process, and a write to a closed pipe would kill it.
		if err := os.MkdirAll(cacheDir, 0o755); err != nil {
			return fmt.Errorf("start node agent %s: %w", n.ID, err)
		}
		f, err := os.OpenFile(filepath.Join(cacheDir, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("start node agent %s: %w", n.ID, err)
		}
		logFile = f
		cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, f, f
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	} else {
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		// The agent dies with the control plane, and its workers die with it.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	}
	err := cmd.Start()
	if logFile != nil {
		logFile.Close()
	}
	if err != nil {
		return fmt.Errorf("start node agent %s: %w", n.ID, err)
	}
	if p.cfg.Detached {
		if err := os.WriteFile(p.pidFile(n.ID), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			return fmt.Errorf("start node agent %s: %w", n.ID, err)
		}
	}
	nd := &node{cluster: n.Cluster, pid: cmd.Process.Pid, exited: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		close(nd.exited)
		p.cfg.Logger.Info("node agent exited", "node", n.ID, "status", err)
	}()
	p.nodes[n.ID] = nd
	return nil
}

// running reports the pid of node id's agent as its pid file names it, if that
// process is alive and is that node's agent (not another process that reused the pid).
func (p *Provider) running(id string) (pid int, ok bool) {
	b, err := os.ReadFile(p.pidFile(id))
	if err != nil {
		return 0, false
	}
	pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	args, err := cmdline(pid)
	if err != nil || len(args) < 2 || args[1] != "node-agent" || flagValue(args, "--id") != id {
		return 0, false
	}
	return pid, true
}

func cmdline(pid int) ([]string, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return nil, err
	}
	if st, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat")); err == nil {
		// A zombie (state Z, after the name in parentheses) has exited.
		if i := bytes.LastIndexByte(st, ')'); i >= 0 && i+2 < len(st) && st[i+2] == 'Z' {
			return nil, errors.New("exited")
		}
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"), nil
}

func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// Delete implements provider.Provider: SIGTERM, then SIGKILL to the agent's process
// group after a grace period.
func (p *Provider) Delete(ctx context.Context, n provider.NodeSpec) error {
	id := n.ID
	p.mu.Lock()
	nd, ok := p.nodes[id]
	delete(p.nodes, id)
	p.mu.Unlock()
	if !ok && p.cfg.Detached {
		// Started by an earlier control plane: not this process's child.
		if pid, alive := p.running(id); alive {
			return p.stopForeign(ctx, id, pid)
		}
		return nil
	}
	if !ok {
		return nil
	}
	defer p.removeCache(id)
	_ = syscall.Kill(nd.pid, syscall.SIGTERM)
	select {
	case <-nd.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-nd.pid, syscall.SIGKILL)
		<-nd.exited
	case <-ctx.Done():
		_ = syscall.Kill(-nd.pid, syscall.SIGKILL)
		return ctx.Err()
	}
	return nil
}

// removeCache deletes what a deleted node kept on this machine (its programs, its
// workers' directories, its pid file) but its agent's log, as a VM's disk goes
// with the VM.
func (p *Provider) removeCache(id string) {
	dir := filepath.Join(p.cfg.DataDir, id)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != "agent.log" {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

// stopForeign stops an agent this process did not start, polling for its exit.
func (p *Provider) stopForeign(ctx context.Context, id string, pid int) error {
	defer p.removeCache(id)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, alive := p.running(id); !alive {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			return ctx.Err()
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// List implements provider.Provider.
func (p *Provider) List(ctx context.Context, cluster string) ([]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ids []string
	for id, nd := range p.nodes {
		select {
		case <-nd.exited:
			continue
		default:
		}
		if nd.cluster == cluster {
			ids = append(ids, id)
		}
	}
	if p.cfg.Detached {
		entries, err := os.ReadDir(p.cfg.DataDir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("list local nodes: %w", err)
		}
		for _, e := range entries {
			id := e.Name()
			if _, mine := p.nodes[id]; mine || !e.IsDir() {
				continue
			}
			if pid, alive := p.running(id); alive {
				if args, err := cmdline(pid); err == nil && flagValue(args, "--cluster") == cluster {
					ids = append(ids, id)
				}
			}
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// Close stops every node this process started. Detached nodes are left running:
// they belong to the cluster, not to this process.
func (p *Provider) Close() {
	if p.cfg.Detached {
		return
	}
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
