//go:build linux

package cli

import (
	"cmp"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/burla-temporal/burla/devcluster"
	"github.com/burla-temporal/burla/store/storeurl"
)

// devCommand is burla dev: a whole cluster in one process tree.
func (m *Main) devCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:    "dev",
		Short:  "run a local cluster (embedded Temporal and NATS, node agents as processes)",
		Args:   noArgs(""),
		PreRun: m.undumpable,
	}
	fs := cmd.Flags()
	home, _ := os.UserHomeDir()
	dataDir := fs.String("data-dir", filepath.Join(home, ".burla", "dev"), "where the cluster keeps its state (Temporal's SQLite database, NATS's streams, node caches)")
	nodes := fs.Int("nodes", 2, "number of nodes")
	cpus := fs.Int("cpus", 2, "CPUs per node: each node keeps one warm worker per CPU")
	ramMB := fs.Int("ram-mb", 0, "memory per node in MB, shared by its workers (0: this machine's memory divided among the nodes)")
	runtimeName := fs.String("runtime", "process", "where each node runs its workers: process, or docker (a container per worker; local provider only)")
	envs := fs.StringArray("env", nil, "a local image every node keeps warm workers in, one per CPU, besides the default environment (docker runtime; repeatable)")
	providerName := fs.String("provider", "local", "where nodes come from: local (processes) or docker (containers on the local Docker engine; burla must be built with CGO_ENABLED=0)")
	maxNodes := fs.Int("max-nodes", 0, "most nodes at once, counting replacements started while jobs run and grows (0: --nodes)")
	host := fs.String("host", "127.0.0.1", "address to listen on")
	temporalPort := fs.Int("temporal-port", 7233, "Temporal frontend port (0: any free port)")
	uiPort := fs.Int("ui-port", 8233, "Temporal Web UI port (0: any free port)")
	natsPort := fs.Int("nats-port", 4222, "NATS port (0: any free port)")
	storeURL := fs.String("store", "", "use this data plane instead of an embedded NATS server: nats://host:port, or firestore://PROJECT?bucket=BUCKET (Google credentials from ADC; FIRESTORE_EMULATOR_HOST and STORAGE_EMULATOR_HOST point at emulators)")
	metricsPort := fs.Int("metrics-port", 9464, "Prometheus metrics port of the control plane (0: any free port)")
	dashboardPort := fs.Int("dashboard-port", 8234, "web dashboard port (0: any free port, -1: no dashboard)")
	readyFile := fs.String("ready-file", "", "write the cluster's addresses as JSON to this file once it is ready")
	keys := fs.String("keys", "", "admit only callers with an API key from this keys file, each tenant seeing only its own jobs (make keys with 'burla keys add')")
	tlsFlags := devTLSFlags(fs)
	limits := tenantLimitFlags(fs)
	collectEvery := fs.Duration("collect-every", 10*time.Minute, "how often to delete what no job needs: ended jobs' large inputs, (once read, or past --retention) outputs and (past --retention) records, results and logs, programs unused for 30 days (0: never)")
	retention := fs.Duration("retention", 7*24*time.Hour, "how long an ended job's results, logs and records are kept, counted from its end")
	suggestCAN := fs.Int("suggest-continue-as-new", 0, "history events after which the embedded Temporal server suggests that a workflow continue as new (0: Temporal's default, 4096); tests set it low")
	verbose := verboseFlag(fs)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx := cmd.Context()
		tlsDir, err := tlsFlags.dirFor(*dataDir, *host)
		if err != nil {
			return fmt.Errorf("dev: %w", err)
		}
		anyPort := func(p int) int {
			if p == 0 {
				return -1
			}
			return p
		}
		log := m.logger(*verbose, "component", "dev")
		start := time.Now()
		reg, metricsAddr, err := serveMetrics(net.JoinHostPort(*host, strconv.Itoa(*metricsPort)), log)
		if err != nil {
			return err
		}
		c, err := devcluster.Start(ctx, devcluster.Config{
			DataDir: *dataDir, Nodes: *nodes, CPUs: *cpus, RAMMB: *ramMB, MaxNodes: *maxNodes, Provider: *providerName, Runtime: *runtimeName, Envs: *envs, Host: *host, StoreURL: *storeURL,
			TemporalPort: anyPort(*temporalPort), UIPort: anyPort(*uiPort), NATSPort: anyPort(*natsPort),
			Logger: log, Metrics: reg, MetricsURL: metricsAddr, Dashboard: dashboardAddr(*host, *dashboardPort), Keys: *keys,
			TLSDir: tlsDir, TenantLimits: limits.get(), SuggestContinueAsNewAfter: *suggestCAN,
			CollectEvery: cmp.Or(*collectEvery, -1), Retention: *retention,
		})
		if err != nil {
			return err
		}
		defer func() {
			fmt.Fprintln(m.Stderr, "burla dev: stopping")
			if err := c.Close(); err != nil {
				log.Error("stop", "error", err)
			}
			fmt.Fprintln(m.Stderr, "burla dev: stopped")
		}()
		a := c.Addresses()
		fmt.Fprintf(m.Stdout, "burla dev is ready (%v)\n", time.Since(start).Round(time.Millisecond))
		fmt.Fprintf(m.Stdout, "  Temporal  %s  (namespace %q)\n", a.Temporal, a.Namespace)
		if a.UI != "" {
			fmt.Fprintf(m.Stdout, "  Web UI    %s\n", a.UI)
		}
		fmt.Fprintf(m.Stdout, "  Store     %s\n", a.Store)
		fmt.Fprintf(m.Stdout, "  Nodes     %d × %d CPUs, %s provider, %s runtime\n", a.Nodes, a.CPUs, *providerName, *runtimeName)
		if a.Dashboard != "" {
			fmt.Fprintf(m.Stdout, "  Dashboard %s\n", a.Dashboard)
		}
		fmt.Fprintf(m.Stdout, "  Metrics   %s (each node's address is in its node record)\n", metricsAddr)
		fmt.Fprintf(m.Stdout, "  Data      %s\n", *dataDir)
		if a.Keys {
			fmt.Fprintf(m.Stdout, "  Keys      %s (programs and the CLI need BURLA_API_KEY)\n", *keys)
		}
		if a.CA != "" {
			fmt.Fprintf(m.Stdout, "  TLS       CA %s (programs: BURLA_TEMPORAL_TLS_CA=%s)\n", a.CA, a.CA)
		}
		switch {
		case a.CA != "":
			fmt.Fprintf(m.Stdout, "Programs connect with BURLA_TEMPORAL_ADDRESS=%s BURLA_TEMPORAL_TLS_CA=%s BURLA_STORE_URL=%s. Ctrl-C stops the cluster.\n", a.Temporal, a.CA, a.Store)
		case a.Temporal == "127.0.0.1:7233" && a.Store == storeurl.Default:
			fmt.Fprintln(m.Stdout, "Programs using burla connect here by default. Ctrl-C stops the cluster.")
		default:
			fmt.Fprintf(m.Stdout, "Programs connect with BURLA_TEMPORAL_ADDRESS=%s BURLA_STORE_URL=%s. Ctrl-C stops the cluster.\n", a.Temporal, a.Store)
		}
		if *readyFile != "" {
			if err := c.WriteReadyFile(*readyFile); err != nil {
				return fmt.Errorf("write ready file: %w", err)
			}
		}
		<-ctx.Done()
		return nil
	}
	return cmd
}

// dashboardAddr is where --dashboard-port says the dashboard listens, or "" for none.
func dashboardAddr(host string, port int) string {
	if port < 0 {
		return ""
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}
