// Package devcluster is `burla dev`: a whole cluster in one process tree on this
// machine. It runs an embedded Temporal server (SQLite under the data directory, so
// jobs' histories survive a restart), an embedded NATS JetStream server, the
// control-plane Temporal worker, and a pool of node agents as child processes, each
// with one container worker process per CPU.
package devcluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"

	"github.com/burla-temporal/burla/activities"
	"github.com/burla-temporal/burla/names"
	"github.com/burla-temporal/burla/store/natsstore"
	"github.com/burla-temporal/burla/store/natsstore/natsserver"
	"github.com/burla-temporal/burla/temporalserver"
	"github.com/burla-temporal/burla/workers"
)

// Config configures a dev cluster. The zero value of each port picks the default
// below; -1 picks a free port.
type Config struct {
	DataDir      string
	Nodes        int
	CPUs         int // per node
	Host         string
	TemporalPort int // default 7233
	UIPort       int // default 8233
	NATSPort     int // default 4222
	// Executable is the burla binary that runs node agents and container workers;
	// empty means this program.
	Executable string
	Logger     *slog.Logger
	// Metrics, if set, receives the control plane's Prometheus metrics, which the
	// caller serves at MetricsURL.
	Metrics    prometheus.Registerer
	MetricsURL string
}

// Addresses are what clients connect to.
type Addresses struct {
	Temporal  string `json:"temporal"`
	Namespace string `json:"namespace"`
	UI        string `json:"ui,omitempty"`
	NATS      string `json:"nats"`
	Metrics   string `json:"metrics,omitempty"`
	Nodes     int    `json:"nodes"`
	CPUs      int    `json:"cpus_per_node"`
}

// Cluster is a running dev cluster.
type Cluster struct {
	cfg    Config
	log    *slog.Logger
	nats   *natsserver.Server
	st     *natsstore.Store
	ts     *temporalserver.Server
	tc     client.Client
	worker worker.Worker
	addrs  Addresses

	stopAgents context.CancelFunc
	agents     sync.WaitGroup
	closeOnce  sync.Once
}

func port(p, def int) int {
	switch p {
	case 0:
		return def
	case -1:
		return 0
	}
	return p
}

// Start starts a dev cluster and returns once every node has registered.
func Start(ctx context.Context, cfg Config) (_ *Cluster, err error) {
	if cfg.Nodes < 1 || cfg.CPUs < 1 {
		return nil, fmt.Errorf("dev cluster: need at least 1 node of 1 CPU, got %d nodes of %d", cfg.Nodes, cfg.CPUs)
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Executable == "" {
		if cfg.Executable, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("dev cluster: data dir: %w", err)
	}
	c := &Cluster{cfg: cfg, log: cfg.Logger}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()

	c.nats, err = natsserver.Start(natsserver.Config{Host: cfg.Host, Port: port(cfg.NATSPort, 4222), StoreDir: filepath.Join(cfg.DataDir, "nats")})
	if err != nil {
		return nil, fmt.Errorf("dev cluster: %w", err)
	}
	if c.st, err = natsstore.Connect(ctx, c.nats.URL(), "burla-control"); err != nil {
		return nil, fmt.Errorf("dev cluster: %w", err)
	}
	c.ts, err = temporalserver.Start(ctx, temporalserver.Config{
		DataDir: filepath.Join(cfg.DataDir, "temporal"),
		Host:    cfg.Host,
		Port:    port(cfg.TemporalPort, 7233),
		UIPort:  port(cfg.UIPort, 8233),
		Logger:  cfg.Logger.With("component", "temporal-server"),
		SearchAttributes: map[string]enumspb.IndexedValueType{
			names.SearchJobState: enumspb.INDEXED_VALUE_TYPE_KEYWORD,
			names.SearchFunction: enumspb.INDEXED_VALUE_TYPE_KEYWORD,
			names.SearchInputs:   enumspb.INDEXED_VALUE_TYPE_INT,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("dev cluster: temporal server: %w", err)
	}
	c.tc, err = client.DialContext(ctx, client.Options{
		HostPort:  c.ts.FrontendHostPort(),
		Namespace: c.ts.Namespace(),
		Logger:    tlog.NewStructuredLogger(cfg.Logger.With("component", "control")),
	})
	if err != nil {
		return nil, fmt.Errorf("dev cluster: connect to temporal: %w", err)
	}
	control := &activities.Control{Nodes: c.st, Queue: c.st, Jobs: c.st}
	if cfg.Metrics != nil {
		control.Metrics = activities.NewControlMetrics(cfg.Metrics)
	}
	c.worker = workers.Control(c.tc, control)
	if err := c.worker.Start(); err != nil {
		return nil, fmt.Errorf("dev cluster: control worker: %w", err)
	}
	c.addrs = Addresses{Temporal: c.ts.FrontendHostPort(), Namespace: c.ts.Namespace(), UI: c.ts.UIAddress(),
		NATS: c.nats.URL(), Metrics: cfg.MetricsURL, Nodes: cfg.Nodes, CPUs: cfg.CPUs}

	actx, stop := context.WithCancel(context.Background())
	c.stopAgents = stop
	for i := 1; i <= cfg.Nodes; i++ {
		id := "node-" + strconv.Itoa(i)
		c.agents.Add(1)
		go func() {
			defer c.agents.Done()
			c.superviseAgent(actx, id)
		}()
	}
	if err := c.waitForNodes(ctx, cfg.Nodes); err != nil {
		return nil, err
	}
	return c, nil
}

// Addresses returns where the cluster listens.
func (c *Cluster) Addresses() Addresses { return c.addrs }

// Client is the cluster's Temporal client.
func (c *Cluster) Client() client.Client { return c.tc }

func (c *Cluster) waitForNodes(ctx context.Context, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		nodes, err := c.st.ListNodes(ctx)
		warm := 0
		for _, node := range nodes {
			if node.Warm == node.CPUs {
				warm++
			}
		}
		if err == nil && warm >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dev cluster: %d of %d nodes ready after waiting: %w", warm, n, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// superviseAgent runs one node agent process and restarts it when it dies.
func (c *Cluster) superviseAgent(ctx context.Context, id string) {
	for ctx.Err() == nil {
		cmd := exec.Command(c.cfg.Executable, "node-agent",
			"--id", id,
			"--cpus", strconv.Itoa(c.cfg.CPUs),
			"--temporal", c.addrs.Temporal,
			"--namespace", c.addrs.Namespace,
			"--nats", c.addrs.NATS,
			"--cache-dir", filepath.Join(c.cfg.DataDir, "nodes", id),
		)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		// Children die with us, however we die.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			c.log.Error("could not start node agent", "node", id, "error", err)
			return
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case err := <-exited:
			c.log.Warn("node agent exited; restarting it", "node", id, "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		case <-ctx.Done():
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
		}
	}
}

// Close stops everything the cluster started, node agents first.
func (c *Cluster) Close() error {
	var errs []error
	c.closeOnce.Do(func() {
		if c.stopAgents != nil {
			c.stopAgents()
			c.agents.Wait()
		}
		if c.worker != nil {
			c.worker.Stop()
		}
		if c.tc != nil {
			c.tc.Close()
		}
		if c.ts != nil {
			if err := c.ts.Stop(); err != nil {
				errs = append(errs, err)
			}
		}
		if c.st != nil {
			c.st.Close()
		}
		if c.nats != nil {
			c.nats.Stop()
		}
	})
	return errors.Join(errs...)
}

// WriteReadyFile writes the cluster's addresses as JSON to path, atomically.
func (c *Cluster) WriteReadyFile(path string) error {
	b, err := json.MarshalIndent(c.addrs, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
