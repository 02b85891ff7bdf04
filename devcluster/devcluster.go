// Package devcluster is `burla dev`: a whole cluster on this machine. It runs an
// embedded Temporal server (SQLite under the data directory, so jobs' histories
// survive a restart), an embedded NATS JetStream server, and the control-plane
// Temporal worker, and starts (or takes over) the default ClusterWorkflow, whose
// nodes are node-agent child processes (local provider) or containers (docker
// provider), each with one container worker process per CPU.
package devcluster

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/burla-temporal/burla/activities"
	"github.com/burla-temporal/burla/activities/activitymetrics"
	"github.com/burla-temporal/burla/auth"
	"github.com/burla-temporal/burla/containerworker"
	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/dashboard"
	"github.com/burla-temporal/burla/provider"
	"github.com/burla-temporal/burla/provider/docker"
	"github.com/burla-temporal/burla/provider/local"
	"github.com/burla-temporal/burla/status/statusmetrics"
	"github.com/burla-temporal/burla/store"
	_ "github.com/burla-temporal/burla/store/firestorestore" // Config.StoreURL may be firestore://
	"github.com/burla-temporal/burla/store/natsstore/natsserver"
	"github.com/burla-temporal/burla/store/storeurl"
	"github.com/burla-temporal/burla/temporalconn"
	"github.com/burla-temporal/burla/temporalmetrics"
	"github.com/burla-temporal/burla/temporalserver"
	"github.com/burla-temporal/burla/tlsdir"
	"github.com/burla-temporal/burla/workers"
)

// Config configures a dev cluster. The zero value of each port picks the default
// below; -1 picks a free port.
type Config struct {
	DataDir string
	Nodes   int
	CPUs    int // per node
	// RAMMB is each node's memory, shared by its workers; zero means this
	// machine's memory divided among the nodes.
	RAMMB int
	// MaxNodes bounds the nodes running at once (replacements and grows included);
	// zero means Nodes, since on one machine more nodes than that only compete.
	MaxNodes     int
	Host         string
	TemporalPort int // default 7233
	UIPort       int // default 8233
	NATSPort     int // default 4222
	// Dashboard is the address the web dashboard listens on (host:port, port 0
	// for any); empty means no dashboard.
	Dashboard string
	// Executable is the burla binary that runs node agents and container workers;
	// empty means this program. The docker provider needs it static (CGO_ENABLED=0).
	Executable string
	// Provider is where nodes come from: "local" (processes, the default) or
	// "docker" (containers on the local Docker engine).
	Provider string
	// Runtime is where nodes run their workers: "process" (the default) or
	// "docker" (a container per worker; with the local provider only).
	Runtime string
	// Envs are local images every node keeps warm workers in (docker runtime).
	Envs []string
	// StoreURL, if set, is the data plane to use instead of an embedded NATS
	// server: another NATS, or firestore://PROJECT?bucket=BUCKET (package storeurl).
	StoreURL string
	// Keys, if set, is a keys file (package auth): the cluster's Temporal and NATS
	// then admit only callers with a key from it, and keep tenants apart. The
	// control plane and node agents get keys of their own, in memory. Only the
	// embedded NATS server can keep tenants apart for it, so Keys with a StoreURL
	// is refused, with an error matching storeurl.ErrNoIsolation.
	Keys string
	// TenantLimits bound each tenant's account in the embedded NATS server (with Keys).
	TenantLimits natsserver.TenantLimits
	// TLSDir, if set, makes the cluster's Temporal frontend and NATS server serve
	// TLS only, with the certificate in TLSDir/server.pem and its key in
	// TLSDir/server-key.pem, which the CA in TLSDir/ca.pem signed: the layout
	// MakeTLS writes. The cluster's own components trust that CA, and programs
	// must too (Addresses.CA). Node agents find it in the environment they
	// inherit, through which the providers pass Temporal's settings on, so Start
	// sets temporalconn.EnvCACert in this process's environment.
	TLSDir string
	Logger *slog.Logger
	// SuggestContinueAsNewAfter is passed to the embedded Temporal server
	// (temporalserver.Config): tests make the cluster's workflows cross many runs.
	SuggestContinueAsNewAfter int
	// CollectEvery is how often the blobs no job needs are deleted
	// (activities.Control.Collect); zero means every 10 minutes, negative never.
	CollectEvery time.Duration
	// Retention is how long an ended job's records, results and logs are kept
	// (activities.CollectPolicy); zero means 7 days.
	Retention time.Duration
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
	Store     string `json:"store"`          // the data plane every component connects to
	NATS      string `json:"nats,omitempty"` // the embedded NATS server, if the cluster runs one
	Metrics   string `json:"metrics,omitempty"`
	Dashboard string `json:"dashboard,omitempty"`
	Keys      bool   `json:"keys,omitempty"` // callers need an API key
	Nodes     int    `json:"nodes"`
	CPUs      int    `json:"cpus_per_node"`
	// CA is the file of the CA that signed the certificate Temporal and NATS
	// serve TLS with, when they do: programs trust it (BURLA_TEMPORAL_TLS_CA, and
	// the ca parameter of Store, which names it already).
	CA string `json:"ca,omitempty"`
}

// Cluster is a running dev cluster.
type Cluster struct {
	cfg    Config
	log    *slog.Logger
	nats   *natsserver.Server
	st     store.Backend
	ts     *temporalserver.Server
	tc     client.Client
	worker *workers.ControlPlane
	addrs  Addresses

	local     *local.Provider
	docker    *docker.Provider
	dashboard *http.Server
	// stopCollect stops the blob collector.
	stopCollect context.CancelFunc
	closeOnce   sync.Once
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
	if cfg.Keys != "" && cfg.StoreURL != "" {
		return nil, sharedStore(cfg.StoreURL)
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.RAMMB == 0 {
		cfg.RAMMB = machineMB() / cfg.Nodes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Executable == "" {
		if cfg.Executable, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	// The data directory holds every tenant's jobs (Temporal's database, NATS's
	// streams): no other user of the machine, tenants' code on a local node among
	// them, may enter it. (Workers' own directories are elsewhere when this one
	// is closed to them; see process.WorkersDir.)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("dev cluster: data dir: %w", err)
	}
	if err := os.Chmod(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("dev cluster: data dir: %w", err)
	}
	c := &Cluster{cfg: cfg, log: cfg.Logger}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()

	var keys *auth.Keys
	var controlKey, nodeKey string
	if cfg.Keys != "" {
		if keys, err = auth.Open(cfg.Keys); err != nil {
			return nil, fmt.Errorf("dev cluster: %w", err)
		}
		if controlKey, err = keys.AddEphemeral(auth.RoleControl, ""); err == nil {
			nodeKey, err = keys.AddEphemeral(auth.RoleNode, "")
		}
		if err != nil {
			return nil, fmt.Errorf("dev cluster: %w", err)
		}
	}
	var serverTLS *tls.Config
	var caFile string
	if cfg.TLSDir != "" {
		if serverTLS, caFile, err = tlsdir.Load(cfg.TLSDir); err != nil {
			return nil, fmt.Errorf("dev cluster: %w", err)
		}
		// Node agents, their workers and programs the cluster inspects inherit it.
		if err := os.Setenv(temporalconn.EnvCACert, caFile); err != nil {
			return nil, fmt.Errorf("dev cluster: %w", err)
		}
	}
	storeURL := cfg.StoreURL
	if storeURL == "" {
		c.nats, err = natsserver.Start(natsserver.Config{Host: cfg.Host, Port: port(cfg.NATSPort, 4222), StoreDir: filepath.Join(cfg.DataDir, "nats"),
			Keys: keys, TLS: serverTLS, TenantLimits: cfg.TenantLimits, Logger: cfg.Logger.With("component", "nats")})
		if err != nil {
			return nil, fmt.Errorf("dev cluster: %w", err)
		}
		storeURL = c.nats.URL()
		if serverTLS != nil {
			storeURL = storeurl.WithCA(dialable(storeURL), caFile)
		}
	}
	// Node containers, and the worker containers of the docker runtime, have none
	// of this machine's files: they get the CA in the URL itself.
	nodeStoreURL := storeURL
	if cfg.Provider == "docker" || cfg.Runtime == "docker" {
		if nodeStoreURL, err = storeurl.Portable(storeURL); err != nil {
			return nil, fmt.Errorf("dev cluster: %w", err)
		}
	}
	if c.st, err = storeurl.OpenKey(ctx, storeURL, "burla-control", controlKey); err != nil {
		return nil, fmt.Errorf("dev cluster: %w", err)
	}
	c.ts, err = temporalserver.Start(ctx, temporalserver.Config{
		DataDir:          filepath.Join(cfg.DataDir, "temporal"),
		Host:             cfg.Host,
		Port:             port(cfg.TemporalPort, 7233),
		UIPort:           port(cfg.UIPort, 8233),
		Logger:           cfg.Logger.With("component", "temporal-server"),
		SearchAttributes: SearchAttributes(),
		Keys:             keys,
		TLS:              serverTLS,

		SuggestContinueAsNewAfter: cfg.SuggestContinueAsNewAfter,
	})
	if err != nil {
		return nil, fmt.Errorf("dev cluster: temporal server: %w", err)
	}
	topts := client.Options{
		HostPort:  c.ts.FrontendHostPort(),
		Namespace: c.ts.Namespace(),
		Logger:    tlog.NewStructuredLogger(cfg.Logger.With("component", "control")),
		// The SDK's own metrics, when the caller serves metrics (nil discards them).
		MetricsHandler: temporalmetrics.New(cfg.Metrics),
	}
	c.tc, err = temporalconn.Security{Key: controlKey, CACert: caFile}.Dial(ctx, topts)
	if err != nil {
		return nil, fmt.Errorf("dev cluster: connect to temporal: %w", err)
	}
	ctl := &activities.Control{Nodes: c.st, Queue: c.st, Jobs: c.st, Temporal: c.tc, Blobs: c.st}
	ctl.Grants, _ = c.st.(store.Grants)
	if cfg.Metrics != nil {
		ctl.Metrics = activitymetrics.Control(cfg.Metrics)
		cfg.Metrics.MustRegister(statusmetrics.NewCollector(c.tc, c.st, cfg.Logger))
	}
	c.addrs = Addresses{Temporal: c.ts.FrontendHostPort(), Namespace: c.ts.Namespace(), UI: c.ts.UIAddress(),
		Store: storeURL, Metrics: cfg.MetricsURL, Nodes: cfg.Nodes, CPUs: cfg.CPUs, Keys: keys != nil, CA: caFile}
	if c.nats != nil {
		c.addrs.NATS = c.nats.URL()
	}
	if cfg.Dashboard != "" {
		ln, err := net.Listen("tcp", cfg.Dashboard)
		if err != nil {
			return nil, fmt.Errorf("dev cluster: dashboard: %w", err)
		}
		scheme := "http://"
		if serverTLS != nil { // with the servers' certificate: keys never cross in plaintext
			ln, scheme = tls.NewListener(ln, serverTLS.Clone()), "https://"
		}
		c.dashboard = &http.Server{Handler: dashboard.New(dashboard.Config{Temporal: c.tc, Store: c.st,
			Namespace: c.addrs.Namespace, TemporalUI: c.addrs.UI, Keys: keys, Logger: cfg.Logger}), ReadHeaderTimeout: 10 * time.Second}
		go c.dashboard.Serve(ln)
		c.addrs.Dashboard = scheme + ln.Addr().String()
	}
	c.local = local.New(local.Config{
		Executable:      cfg.Executable,
		TemporalAddress: c.addrs.Temporal,
		Namespace:       c.addrs.Namespace,
		StoreURL:        nodeStoreURL,
		DataDir:         filepath.Join(cfg.DataDir, "nodes"),
		Runtime:         cfg.Runtime,
		NodeKey:         nodeKey,
		Logger:          cfg.Logger,
	})
	providers := provider.Set{"local": c.local}
	if cfg.Provider == "" {
		cfg.Provider = "local"
	}
	if cfg.Provider == "docker" || cfg.Runtime == "docker" {
		// Docker nodes, or nodes with docker workers: either way the control plane
		// builds images (the node image, and jobs' environments) on the engine.
		c.docker, err = docker.New(ctx, docker.Config{Executable: cfg.Executable, TemporalAddress: c.addrs.Temporal,
			Namespace: c.addrs.Namespace, StoreURL: nodeStoreURL, NodeKey: nodeKey, Logger: cfg.Logger})
		if err != nil {
			return nil, fmt.Errorf("dev cluster: %w", err)
		}
		if _, err := c.docker.Image(ctx); err != nil {
			return nil, fmt.Errorf("dev cluster: %w", err)
		}
		// Containers left by an earlier run that died without cleaning up.
		if err := c.docker.RemoveAll(ctx, control.DefaultCluster); err != nil {
			return nil, fmt.Errorf("dev cluster: %w", err)
		}
		if cfg.Provider == "docker" {
			providers["docker"] = c.docker
		}
	}
	if len(cfg.Envs) > 0 && cfg.Runtime != "docker" {
		return nil, fmt.Errorf("dev cluster: environments to keep warm (%v) need --runtime docker", cfg.Envs)
	}
	if cfg.Runtime == "docker" && cfg.Provider != "local" {
		return nil, fmt.Errorf("dev cluster: the docker runtime needs the local provider (a node in a container cannot start containers)")
	}
	if _, ok := providers[cfg.Provider]; !ok {
		return nil, fmt.Errorf("dev cluster: unknown provider %q (local or docker)", cfg.Provider)
	}
	env := &activities.Env{Blobs: c.st, Dir: filepath.Join(cfg.DataDir, "envs"), Inspect: Inspect}
	if c.docker != nil {
		env.BuildImage = c.docker.EnvImage
	}
	c.worker = workers.Control(c.tc, ctl, &activities.Nodes{Providers: providers, Store: c.st}, env)
	if err := c.worker.Start(); err != nil {
		return nil, fmt.Errorf("dev cluster: control worker: %w", err)
	}
	if cfg.CollectEvery >= 0 {
		var collectCtx context.Context
		collectCtx, c.stopCollect = context.WithCancel(context.WithoutCancel(ctx))
		g := &activities.Collector{Control: ctl, Policy: activities.CollectPolicy{Retention: cfg.Retention}, Log: cfg.Logger}
		go g.Run(collectCtx, cmp.Or(cfg.CollectEvery, 10*time.Minute))
	}

	if cfg.MaxNodes == 0 {
		cfg.MaxNodes = cfg.Nodes
	}
	if err := c.upCluster(ctx, control.StandbySpec{Nodes: cfg.Nodes, CPUs: cfg.CPUs, RAMMB: cfg.RAMMB, Provider: cfg.Provider, MaxNodes: cfg.MaxNodes, Envs: cfg.Envs}); err != nil {
		return nil, err
	}
	return c, nil
}

// upCluster starts the default ClusterWorkflow, or, when it survived an earlier run
// of the dev cluster, gives it this run's standby spec and replaces its nodes (they
// died with that run). It returns once standby is ready.
func (c *Cluster) upCluster(ctx context.Context, spec control.StandbySpec) error {
	cc := control.NewClient(c.tc)
	if cc.Running(ctx, control.DefaultCluster) {
		if _, err := cc.SetStandby(ctx, control.DefaultCluster, spec); err != nil {
			return fmt.Errorf("dev cluster: %w", err)
		}
		if _, err := cc.Restart(ctx, control.DefaultCluster); err != nil {
			return fmt.Errorf("dev cluster: %w", err)
		}
	} else if err := cc.Up(ctx, control.DefaultCluster, spec); err != nil {
		return fmt.Errorf("dev cluster: %w", err)
	}
	return cc.WaitReady(ctx, control.DefaultCluster, spec.Nodes, 2*time.Minute)
}

// SearchAttributes are the custom search attributes Burla's workflows set, which a
// Temporal server must have registered.
func SearchAttributes() map[string]enumspb.IndexedValueType {
	return map[string]enumspb.IndexedValueType{
		control.SearchJobState: enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		control.SearchFunction: enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		control.SearchInputs:   enumspb.INDEXED_VALUE_TYPE_INT,
		control.SearchTenant:   enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	}
}

// Close stops everything the cluster started, node agents first.
func (c *Cluster) Close() error {
	var errs []error
	c.closeOnce.Do(func() {
		if c.stopCollect != nil {
			c.stopCollect()
		}
		if c.dashboard != nil {
			c.dashboard.Close()
		}
		if c.worker != nil {
			c.worker.Stop()
		}
		if c.local != nil {
			c.local.Close() // the nodes; their workflows find them lost or restart them next time
		}
		if c.docker != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if err := c.docker.RemoveAll(ctx, control.DefaultCluster); err != nil {
				errs = append(errs, err)
			}
			cancel()
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
func (c *Cluster) WriteReadyFile(path string) error { return WriteReady(path, c.addrs) }

// WriteReady writes v as indented JSON to path atomically (through a temporary file
// renamed into place), so that a reader polling for path never sees half of it.
func WriteReady(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Addresses returns where the cluster listens.
func (c *Cluster) Addresses() Addresses { return c.addrs }

// Client is the cluster's Temporal client.
func (c *Cluster) Client() client.Client { return c.tc }

// Inspect starts the program at path in worker mode to learn its functions and
// platform: what environment builds need of a program.
func Inspect(ctx context.Context, path string) (control.EnvInfo, error) {
	fns, goos, goarch, err := containerworker.Inspect(ctx, path)
	return control.EnvInfo{Functions: fns, GOOS: goos, GOARCH: goarch}, err
}

// machineMB is this machine's memory in MB (MemTotal in /proc/meminfo), or 0 if
// it cannot be read.
func machineMB() int {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return kb >> 10
		}
	}
	return 0
}

// sharedStore is the refusal of API keys with a store the dev cluster does not
// run: the cluster would admit tenants by key, then let each read and write every
// other's jobs in the store. A warning would be missed, and the cluster would be
// used as if tenants were kept apart.
func sharedStore(storeURL string) error {
	why := "burla dev keeps tenants apart only in the NATS server it runs itself, where it makes each tenant's account; " +
		"its own components' keys, made in memory, are known to no other server"
	if strings.HasPrefix(storeURL, "firestore:") {
		why = "Firestore keeps no tenant from another's jobs: every tenant's programs would reach it with the same Google credentials"
	}
	shown := storeURL
	if u, err := url.Parse(storeURL); err == nil {
		shown = u.Redacted()
	}
	return fmt.Errorf("dev cluster: API keys (--keys) with the store %s: %w: %s. Drop --store to use the embedded NATS server, "+
		"which puts each tenant in an account of its own, or drop --keys for a cluster of one tenant", shown, storeurl.ErrNoIsolation, why)
}

// dialable is a server's URL with an unspecified listening address (0.0.0.0,
// ::) replaced by loopback, which a client can dial and a certificate names.
func dialable(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return rawURL
	}
	if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsUnspecified() {
		u.Host = net.JoinHostPort("127.0.0.1", u.Port())
	}
	return u.String()
}
