//go:build linux

package cli

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/api/option"

	"github.com/burla-temporal/burla/activities"
	"github.com/burla-temporal/burla/activities/activitymetrics"
	"github.com/burla-temporal/burla/auth"
	"github.com/burla-temporal/burla/blob/gcsblob"
	"github.com/burla-temporal/burla/dashboard"
	"github.com/burla-temporal/burla/devcluster"
	"github.com/burla-temporal/burla/provider"
	"github.com/burla-temporal/burla/provider/gce"
	"github.com/burla-temporal/burla/provider/local"
	"github.com/burla-temporal/burla/provider/sweep"
	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/status/statusmetrics"
	"github.com/burla-temporal/burla/store"
	"github.com/burla-temporal/burla/store/storeurl"
	"github.com/burla-temporal/burla/temporalconn"
	"github.com/burla-temporal/burla/temporalmetrics"
	"github.com/burla-temporal/burla/temporalserver"
	"github.com/burla-temporal/burla/workers"
)

// controlPlaneCommand is burla control-plane: the control-plane Temporal worker
// against a Temporal and a store that run elsewhere, with the job, cluster, node
// and environment workflows and the activities that create nodes with the
// providers it is given.
func (m *Main) controlPlaneCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:    "control-plane",
		Short:  "run the control plane against a Temporal and a store elsewhere (e.g. on Google Cloud)",
		Args:   noArgs(""),
		PreRun: m.undumpable,
	}
	fs := cmd.Flags()
	env := burla.ConfigFromEnv()
	home, _ := os.UserHomeDir()
	temporalAddr := fs.String("temporal", env.TemporalAddress, "Temporal frontend host:port (BURLA_TEMPORAL_ADDRESS)")
	namespace := fs.String("namespace", env.Namespace, "Temporal namespace (BURLA_NAMESPACE)")
	storeURL := fs.String("store", env.StoreURL, "the data plane: nats://host:port or firestore://PROJECT?bucket=BUCKET (BURLA_STORE_URL)")
	dataDir := fs.String("data-dir", filepath.Join(home, ".burla", "control"), "where environment builds keep the programs they inspect")
	metricsAddr := fs.String("metrics-addr", "127.0.0.1:9464", "where to serve Prometheus metrics")
	dashAddr := fs.String("dashboard-addr", "127.0.0.1:8234", "where to serve the web dashboard (empty: no dashboard)")
	dashKeys := fs.String("dashboard-keys", "", "a keys file: the dashboard then asks for an API key and shows a tenant only its own jobs")
	dashCert := fs.String("dashboard-tls-cert", "", "serve the dashboard over HTTPS only, with this certificate (PEM, with its chain) and --dashboard-tls-key")
	dashKey := fs.String("dashboard-tls-key", "", "the private key (PEM) of --dashboard-tls-cert")
	temporalUI := fs.String("temporal-ui", "", "the Temporal Web UI's base URL, for the dashboard's links into it (e.g. http://temporal.example:8233)")
	verbose := verboseFlag(fs)

	var g gce.Config
	fs.StringVar(&g.Project, "gce-project", "", "serve the gce provider: the project its VMs are made in (a cluster's --project overrides it)")
	fs.StringVar(&g.Zone, "gce-zone", "", "the zone the gce provider's VMs are made in (a cluster's --zone overrides it)")
	fs.StringVar(&g.BinaryURL, "gce-binary-url", "", "where node VMs fetch the burla binary: gs://BUCKET/OBJECT (uploaded from this program at start) or https://…")
	fs.StringVar(&g.MachineType, "gce-machine-type", "", "node machine type (default: the smallest e2-standard-N that holds a node's CPUs)")
	fs.IntVar(&g.DiskGB, "gce-disk-gb", 0, "node boot disk size in GB (default 20)")
	fs.StringVar(&g.DiskImage, "gce-image", "", "node boot image (default Debian 12)")
	fs.BoolVar(&g.Spot, "gce-spot", false, "make Spot VMs")
	fs.StringVar(&g.Network, "gce-network", "", "node network (default global/networks/default)")
	fs.StringVar(&g.Subnetwork, "gce-subnetwork", "", "node subnetwork, e.g. regions/us-central1/subnetworks/burla")
	fs.BoolVar(&g.NoExternalIP, "gce-no-external-ip", false, "leave node VMs without an external address (they need Cloud NAT)")
	fs.StringVar(&g.ServiceAccount, "gce-service-account", "", "node VMs' service account email (default: the Compute Engine default)")
	fs.StringVar(&g.Runtime, "gce-runtime", "process", "node agents' worker runtime: process or docker")
	nodeTemporal := fs.String("gce-node-temporal", "", "the Temporal address node VMs connect to (default --temporal)")
	nodeStore := fs.String("gce-node-store", "", "the store URL node VMs connect to (default --store)")
	tags := fs.StringArray("gce-tag", nil, "a network tag for node VMs (repeatable)")
	fs.StringVar(&g.TemporalAPIKeySecret, "gce-temporal-api-key-secret", "", "a Secret Manager secret version (projects/P/secrets/S/versions/latest) with the Temporal API key node VMs use")
	gceEndpoint := fs.String("gce-endpoint", "", "the Compute Engine API endpoint (default Google's; an http:// one, for tests, is used without credentials)")
	sweepEvery := fs.Duration("orphan-sweep", 5*time.Minute, "how often to delete the nodes a provider has for a cluster that the cluster does not know (0: never)")
	collectEvery := fs.Duration("collect-every", 10*time.Minute, "how often to delete what no job needs: ended jobs' large inputs, (once read, or past --retention) outputs and (past --retention) records, results and logs, programs unused for --program-ttl (0: never)")
	retention := fs.Duration("retention", 7*24*time.Hour, "how long an ended job's results, logs and records are kept, counted from its end")
	programTTL := fs.Duration("program-ttl", 30*24*time.Hour, "how long a program no job has run is kept in the store")
	upload := fs.Bool("upload-binary", true, "upload this program to --gce-binary-url when it is a gs:// URL")
	localNodes := fs.String("local-nodes", "", "serve the local provider: node agents as processes on this machine, each with its cache under this directory; they outlive this process, and a restarted control plane finds them again")
	localRuntime := fs.String("local-runtime", "process", "local nodes' worker runtime: process or docker")
	localWrapper := fs.String("local-node-wrapper", "", "a command each local node agent runs under, the agent's command line appended (e.g. 'ip netns exec NAME'); it must exec the agent")
	dockerNodes := dockerNodeFlags(fs) // dockernodes.go
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx := cmd.Context()
		log := m.logger(*verbose, "component", "control-plane")
		reg, metricsURL, err := serveMetrics(*metricsAddr, log)
		if err != nil {
			return err
		}
		st, err := storeurl.Open(ctx, *storeURL, "burla-control")
		if err != nil {
			return fmt.Errorf("control plane: %w", err)
		}
		defer st.Close()
		// A control plane with a key is part of a cluster that admits tenants by key,
		// which a store that lets every tenant read every other's jobs would undo.
		if os.Getenv(auth.EnvKey) != "" || *dashKeys != "" {
			if err := storeurl.CheckIsolation(*storeURL); err != nil {
				return fmt.Errorf("control plane: the cluster admits tenants by API key, but %w", err)
			}
		}
		// Nodes, or their workers, may run where this machine's files are not (VMs,
		// containers): a CA file named in their store URL goes as the certificates
		// themselves. Local nodes with process workers have the files.
		localStore := *storeURL
		for _, n := range []struct {
			serves bool
			url    *string
		}{{g.Project != "", nodeStore}, {dockerNodes.enabled, &dockerNodes.store}, {*localNodes != "" && *localRuntime == "docker", &localStore}} {
			if !n.serves {
				continue
			}
			if *n.url, err = storeurl.Portable(cmp.Or(*n.url, *storeURL)); err != nil {
				return fmt.Errorf("control plane: the nodes' store: %w", err)
			}
		}
		tc, err := m.dialTemporal(ctx, *temporalAddr, *namespace, temporalmetrics.New(reg))
		if err != nil {
			return fmt.Errorf("control plane: connect to Temporal at %s: %w", *temporalAddr, err)
		}
		defer tc.Close()
		reg.MustRegister(statusmetrics.NewCollector(tc, st, log))
		// Jobs set Burla's search attributes when they start, and a namespace that
		// lacks one refuses them: register what is missing (a Temporal set up by an
		// older burla lacks BurlaTenant), or say what to register by hand.
		sactx, cancelSA := context.WithTimeout(ctx, 30*time.Second)
		if err := temporalserver.EnsureSearchAttributes(sactx, tc, *namespace, devcluster.SearchAttributes()); err != nil {
			log.Warn("could not register Burla's search attributes; jobs cannot start until they are (temporal operator search-attribute create, see deploy/gcp/README.md)",
				"attributes", slices.Sorted(maps.Keys(devcluster.SearchAttributes())), "error", err)
		}
		cancelSA()
		dashURL := ""
		if *dashAddr != "" {
			keys, err := openKeys(*dashKeys)
			if err != nil {
				return fmt.Errorf("control plane: %w", err)
			}
			if dashURL, err = serveDashboard(ctx, *dashAddr, *dashCert, *dashKey, dashboard.Config{Temporal: tc, Store: st, Namespace: *namespace, TemporalUI: *temporalUI, Keys: keys, Logger: log}, log); err != nil {
				return fmt.Errorf("control plane: %w", err)
			}
		}

		providers := provider.Set{}
		if g.Project != "" {
			g.Tags, g.Logger = *tags, log
			g.TemporalAddress = cmp.Or(*nodeTemporal, *temporalAddr)
			g.Namespace = *namespace
			g.StoreURL = cmp.Or(*nodeStore, *storeURL)
			// Nodes reach Temporal as securely as the control plane does.
			sec := temporalconn.FromEnv()
			switch {
			case sec.ClientCert != "" || sec.CACert != "":
				return fmt.Errorf("control plane: node VMs get no certificate files: reach Temporal with an API key (%s, and --gce-temporal-api-key-secret for the nodes)", temporalconn.EnvAPIKey)
			case sec.APIKey != "" && g.TemporalAPIKeySecret == "":
				return fmt.Errorf("control plane: Temporal takes an API key, and node VMs need one too: store it in Secret Manager and name it with --gce-temporal-api-key-secret")
			}
			g.TemporalTLS, g.TemporalServerName = sec.Enabled(), sec.ServerName
			if *upload && strings.HasPrefix(g.BinaryURL, "gs://") {
				if err := uploadSelf(ctx, g.BinaryURL); err != nil {
					return fmt.Errorf("control plane: %w", err)
				}
			}
			var opts []option.ClientOption
			if *gceEndpoint != "" {
				opts = append(opts, option.WithEndpoint(*gceEndpoint))
				if strings.HasPrefix(*gceEndpoint, "http://") {
					opts = append(opts, option.WithoutAuthentication())
				}
			}
			p, err := gce.New(ctx, g, opts...)
			if err != nil {
				return fmt.Errorf("control plane: %w", err)
			}
			defer p.Close()
			providers["gce"] = p
		}
		if *localNodes != "" {
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			providers["local"] = local.New(local.Config{
				Executable: exe, TemporalAddress: *temporalAddr, Namespace: *namespace, StoreURL: localStore,
				DataDir: *localNodes, Runtime: *localRuntime, Wrapper: strings.Fields(*localWrapper), Detached: true,
				NodeKey: os.Getenv(envNodeKey), Logger: log,
			})
		}
		if err := dockerNodes.add(ctx, m.Stdout, providers, *temporalAddr, *namespace, *storeURL, log); err != nil {
			return fmt.Errorf("control plane: %w", err)
		}
		if len(providers) == 0 {
			return fmt.Errorf("control plane: no node provider: give --local-nodes DIR, --docker-nodes, or --gce-project, --gce-zone and --gce-binary-url")
		}
		control := &activities.Control{Nodes: st, Queue: st, Jobs: st, Temporal: tc, Metrics: activitymetrics.Control(reg), Blobs: st}
		control.Grants, _ = st.(store.Grants)
		envs := &activities.Env{Blobs: st, Dir: filepath.Join(*dataDir, "envs"), Inspect: devcluster.Inspect}
		w := workers.Control(tc, control, &activities.Nodes{Providers: providers, Store: st}, envs)
		if *sweepEvery > 0 {
			go (&sweep.Sweeper{Clusters: sweep.Temporal{Client: tc}, Providers: providers, Log: log}).Run(ctx, *sweepEvery)
		}
		if *collectEvery > 0 {
			g := &activities.Collector{Control: control, Policy: activities.CollectPolicy{ProgramTTL: *programTTL, Retention: *retention}, Log: log}
			go g.Run(ctx, *collectEvery)
		}
		fmt.Fprintf(m.Stdout, "burla control plane: Temporal %s (namespace %q), store %s, providers %v, metrics %s, dashboard %s\n",
			*temporalAddr, *namespace, *storeURL, providers.Names(), metricsURL, cmp.Or(dashURL, "off"))
		return w.Run(stopOn(ctx))
	}
	return cmd
}

// uploadSelf copies this program to url (gs://BUCKET/OBJECT), where node VMs fetch it.
func uploadSelf(ctx context.Context, url string) error {
	bucket, object, ok := strings.Cut(strings.TrimPrefix(url, "gs://"), "/")
	if !ok || bucket == "" || object == "" {
		return fmt.Errorf("binary URL %q is not gs://BUCKET/OBJECT", url)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	f, err := os.Open(exe)
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := gcsblob.Dial(ctx, bucket, "")
	if err != nil {
		return err
	}
	defer b.Close()
	if err := b.Put(ctx, object, f); err != nil {
		return fmt.Errorf("upload the node binary to %s: %w", url, err)
	}
	return nil
}

// stopOn is a worker interrupt channel closed when ctx ends.
func stopOn(ctx context.Context) <-chan any {
	ch := make(chan any)
	go func() { <-ctx.Done(); close(ch) }()
	return ch
}

// envNodeKey names the API key the control plane gives the node agents it starts,
// on a cluster that asks for keys (BURLA_API_KEY is the control plane's own).
const envNodeKey = "BURLA_NODE_API_KEY"
