// Command burla runs a Burla cluster and its parts:
//
//	burla dev               a whole local cluster: Temporal, NATS, control plane, nodes
//	burla cluster           start, watch, resize, restart and stop a cluster's standby nodes
//	burla jobs              list, show, follow and cancel jobs
//	burla keys              add, list and revoke API keys
//	burla control-plane     the control plane of a cluster whose Temporal and store run elsewhere
//	burla temporal-server   the embedded Temporal server alone (SQLite in a file)
//	burla nats-server       the embedded NATS JetStream server alone
//	burla certs             make the certificates Temporal and NATS serve TLS with
//	burla node-agent        one node's agent (started by a cluster, not by hand)
//	burla container-worker  one worker on a node (started by a node agent)
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/burla-temporal/burla/auth"
	"github.com/burla-temporal/burla/containerworker"
	"github.com/burla-temporal/burla/devcluster"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/nodeagent"
	dockerprovider "github.com/burla-temporal/burla/provider/docker"
	"github.com/burla-temporal/burla/runtime"
	dockerruntime "github.com/burla-temporal/burla/runtime/docker"
	"github.com/burla-temporal/burla/runtime/process"
	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/status"
	"github.com/burla-temporal/burla/store/firestorestore" // and with it, every component takes firestore:// store URLs
	"github.com/burla-temporal/burla/store/storeurl"
	"github.com/burla-temporal/burla/temporalconn"
	"github.com/burla-temporal/burla/tenantbox"
	"github.com/burla-temporal/burla/wire"
)

const usage = `usage: burla <command> [flags]

commands:
  dev               run a local cluster (embedded Temporal and NATS, node agents as processes)
  cluster           up, down, status, watch, set-standby, restart: manage a cluster's standby nodes
  jobs              ls, show, logs, attach, cancel: the cluster's jobs
  keys              add, ls, revoke: API keys of a cluster that asks for them
  control-plane     run the control plane against a Temporal and a store elsewhere (e.g. on Google Cloud)
  temporal-server   run the embedded Temporal server alone (its SQLite file under --data-dir)
  nats-server       run the embedded NATS JetStream server alone (its streams under --data-dir)
  certs             make: a CA and the servers' certificate for Temporal's and NATS's TLS
  node-agent        run one node's agent
  container-worker  run one container worker (its node agent starts it)
  version           print the version (--json: {"version":…,"protocol":N,"go":…})

Run 'burla <command> -h' for a command's flags.

The management commands (cluster, jobs, keys, version) print a table or text on
a terminal, and JSON when stdout is not a terminal or --json is given: one object
per line, a list as one object per line, a watch as one object per change.

exit status (every command):
  0  success
  1  error
  2  usage: an unknown command, flag or argument
  3  jobs attach: the job did not succeed
  4  no such thing: job, cluster, key or keys file
  5  refused: the cluster does not know the API key, or the key may not do this
     (another tenant's job; a tenant's key on the cluster's own commands)
  6  unreachable: nothing answered at the Temporal address
Errors go to stderr; with JSON output the last line there is {"error":"…","code":N}.
`

// Exit statuses, the same for every command, so that scripts can tell failures
// apart (usage and README.md list them); exitCode picks one for an error.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitJobFailed   = 3 // burla jobs attach: the job did not succeed
	exitNotFound    = 4 // no such job, cluster, key or keys file
	exitDenied      = 5 // the cluster refused the API key, or the key may not do this
	exitUnreachable = 6 // nothing answered at the Temporal address
)

// errUnreachable marks a failure to reach a cluster at all; it exits with
// exitUnreachable.
var errUnreachable = errors.New("no cluster answered")

// errJobFailed marks an attached job that did not succeed; it exits with
// exitJobFailed.
var errJobFailed = errors.New("the job did not succeed")

// errHelp is returned after a command printed its help on request; it exits 0.
var errHelp = errors.New("help requested")

// usageError is a command line burla cannot make sense of; it exits with
// exitUsage, after the command's usage text.
type usageError struct {
	err   error
	usage string
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usageErrorf is a usageError whose message is formatted, followed by usage.
func usageErrorf(usage, format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...), usage: usage}
}

// exitCode is the exit status for err (see the const block above).
func exitCode(err error) int {
	var ue *usageError
	var denied *serviceerror.PermissionDenied
	switch {
	case err == nil, errors.Is(err, errHelp):
		return exitOK
	case errors.As(err, &ue):
		return exitUsage
	case errors.Is(err, errJobFailed):
		return exitJobFailed
	case errors.Is(err, status.ErrDenied), burla.IsKind(err, burla.KindUnauthorized),
		errors.As(err, &denied), grpcstatus.Code(err) == codes.Unauthenticated:
		return exitDenied
	case errors.Is(err, errUnreachable), burla.IsKind(err, burla.KindNoCluster):
		return exitUnreachable
	case errors.Is(err, status.ErrNoJob), errors.Is(err, errNoCluster), errors.Is(err, errNoKey), errors.Is(err, errNoKeysFile):
		return exitNotFound
	}
	return exitError
}

// exit ends burla with err's exit status. The error goes to stderr as a line of
// text, then, for a command whose output is JSON, as {"error":…,"code":N}, so
// that a script reads the last line of stderr.
func exit(err error, asJSON bool) {
	code := exitCode(err)
	if code == exitOK {
		os.Exit(exitOK)
	}
	// The SDK's errors say "burla: " already.
	msg := strings.TrimPrefix(err.Error(), "burla: ")
	fmt.Fprintf(os.Stderr, "burla: %s\n", msg)
	if ue := (*usageError)(nil); errors.As(err, &ue) && ue.usage != "" {
		fmt.Fprint(os.Stderr, "\n"+ue.usage)
	}
	if asJSON {
		json.NewEncoder(os.Stderr).Encode(struct {
			Error string `json:"error"`
			Code  int    `json:"code"`
		}{msg, code})
	}
	os.Exit(code)
}

// jsonOutput reports whether a command run with args prints JSON: when stdout is
// not a terminal, or --json is among its flags.
func jsonOutput(args []string) bool {
	if !isTerminal(os.Stdout) {
		return true
	}
	for _, a := range args {
		if a == "--" {
			break
		}
		switch a {
		case "-json", "--json", "-json=true", "--json=true":
			return true
		}
	}
	return false
}

// parseFlags parses args, flags before and after positional arguments, and returns
// the positional ones. A flag it does not know is a usageError; -h prints usage
// and the flags on stdout and returns errHelp.
func parseFlags(fs *flag.FlagSet, usage string, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Print(usage)
				fmt.Printf("\nflags of %s:\n", fs.Name())
				fs.SetOutput(os.Stdout)
				fs.PrintDefaults()
				return nil, errHelp
			}
			return nil, &usageError{err: fmt.Errorf("%s: %w", strings.TrimPrefix(fs.Name(), "burla "), err), usage: usage}
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if len(os.Args) < 2 {
		exit(usageErrorf(usage, "give a command"), jsonOutput(nil))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch cmd := os.Args[1]; cmd {
	case "dev", "control-plane", "node-agent", "container-worker":
		// These hold the cluster's credentials, in their environment or memory,
		// and node agents and container workers run next to users' code: a
		// process that is not dumpable cannot have its /proc/PID/environ or memory
		// read by another of the same user without CAP_SYS_PTRACE.
		if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_DUMPABLE, 0, 0); errno != 0 {
			fmt.Fprintf(os.Stderr, "burla: prctl(PR_SET_DUMPABLE): %v\n", errno)
		}
	}
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "dev":
		err = runDev(ctx, args)
	case "cluster":
		err = runCluster(ctx, args)
	case "jobs":
		err = runJobs(ctx, args)
	case "keys":
		err = runKeys(args)
	case "control-plane":
		err = runControlPlane(ctx, args)
	case "temporal-server":
		err = runTemporalServer(ctx, args)
	case "certs":
		err = runCerts(args)
	case "nats-server":
		err = runNATSServer(ctx, args)
	case "node-agent":
		err = runNodeAgent(ctx, args)
	case "container-worker":
		err = runContainerWorker(ctx, args)
	case "version":
		err = runVersion(args)
	case "-h", "-help", "--help", "help":
		fmt.Print(usage)
	default:
		err = usageErrorf(usage, "unknown command %q", cmd)
	}
	if err != nil {
		exit(err, jsonOutput(os.Args[2:]))
	}
}

// runVersion prints burla's version, the protocol version its workers and
// programs speak (package wire), and the Go it was built with.
func runVersion(args []string) error {
	fs := flag.NewFlagSet("burla version", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON even on a terminal")
	pos, err := parseFlags(fs, "usage: burla version [--json]\n", args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("usage: burla version [--json]\n", "version takes no arguments, got %q", pos)
	}
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version // go install …@vX.Y.Z
	}
	if *asJSON || !isTerminal(os.Stdout) {
		return printJSON(struct {
			Version  string `json:"version"`
			Protocol int    `json:"protocol"`
			Go       string `json:"go"`
		}{v, wire.Version, goruntime.Version()})
	}
	_, err = fmt.Printf("burla %s (protocol %d, %s)\n", v, wire.Version, goruntime.Version())
	return err
}

func logger(verbose bool, attrs ...any) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With(attrs...)
}

func runDev(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("burla dev", flag.ExitOnError)
	home, _ := os.UserHomeDir()
	dataDir := fs.String("data-dir", filepath.Join(home, ".burla", "dev"), "where the cluster keeps its state (Temporal's SQLite database, NATS's streams, node caches)")
	nodes := fs.Int("nodes", 2, "number of nodes")
	cpus := fs.Int("cpus", 2, "CPUs per node: each node keeps one warm worker per CPU")
	ramMB := fs.Int("ram-mb", 0, "memory per node in MB, shared by its workers (0: this machine's memory divided among the nodes)")
	runtimeName := fs.String("runtime", "process", "where each node runs its workers: process, or docker (a container per worker; local provider only)")
	var envs []string
	repeated(fs, "env", "a local image every node keeps warm workers in, one per CPU, besides the default environment (docker runtime; repeatable)", &envs)
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
	keys := fs.String("keys", "", "admit only callers with an API key from this keys file, each tenant seeing only its own jobs (make keys with `burla keys add`)")
	tlsFlags := devTLSFlags(fs)
	limits := tenantLimitFlags(fs)
	collectEvery := fs.Duration("collect-every", 10*time.Minute, "how often to delete what no job needs: ended jobs' large inputs, (once read, or past --retention) outputs and (past --retention) records, results and logs, programs unused for 30 days (0: never)")
	retention := fs.Duration("retention", 7*24*time.Hour, "how long an ended job's results, logs and records are kept, counted from its end")
	suggestCAN := fs.Int("suggest-continue-as-new", 0, "history events after which the embedded Temporal server suggests that a workflow continue as new (0: Temporal's default, 4096); tests set it low")
	verbose := fs.Bool("v", false, "log verbosely")
	fs.Parse(args)
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
	log := logger(*verbose, "component", "dev")
	start := time.Now()
	reg, metricsAddr, err := serveMetrics(net.JoinHostPort(*host, strconv.Itoa(*metricsPort)), log)
	if err != nil {
		return err
	}
	c, err := devcluster.Start(ctx, devcluster.Config{
		DataDir: *dataDir, Nodes: *nodes, CPUs: *cpus, RAMMB: *ramMB, MaxNodes: *maxNodes, Provider: *providerName, Runtime: *runtimeName, Envs: envs, Host: *host, StoreURL: *storeURL,
		TemporalPort: anyPort(*temporalPort), UIPort: anyPort(*uiPort), NATSPort: anyPort(*natsPort),
		Logger: log, Metrics: reg, MetricsURL: metricsAddr, Dashboard: dashboardAddr(*host, *dashboardPort), Keys: *keys,
		TLSDir: tlsDir, TenantLimits: limits.get(), SuggestContinueAsNewAfter: *suggestCAN,
		CollectEvery: cmp.Or(*collectEvery, -1), Retention: *retention,
	})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(os.Stderr, "burla dev: stopping")
		if err := c.Close(); err != nil {
			log.Error("stop", "error", err)
		}
		fmt.Fprintln(os.Stderr, "burla dev: stopped")
	}()
	a := c.Addresses()
	fmt.Printf("burla dev is ready (%v)\n", time.Since(start).Round(time.Millisecond))
	fmt.Printf("  Temporal  %s  (namespace %q)\n", a.Temporal, a.Namespace)
	if a.UI != "" {
		fmt.Printf("  Web UI    %s\n", a.UI)
	}
	fmt.Printf("  Store     %s\n", a.Store)
	fmt.Printf("  Nodes     %d × %d CPUs, %s provider, %s runtime\n", a.Nodes, a.CPUs, *providerName, *runtimeName)
	if a.Dashboard != "" {
		fmt.Printf("  Dashboard %s\n", a.Dashboard)
	}
	fmt.Printf("  Metrics   %s (each node's address is in its node record)\n", metricsAddr)
	fmt.Printf("  Data      %s\n", *dataDir)
	if a.Keys {
		fmt.Printf("  Keys      %s (programs and the CLI need BURLA_API_KEY)\n", *keys)
	}
	if a.CA != "" {
		fmt.Printf("  TLS       CA %s (programs: BURLA_TEMPORAL_TLS_CA=%s)\n", a.CA, a.CA)
	}
	switch {
	case a.CA != "":
		fmt.Printf("Programs connect with BURLA_TEMPORAL_ADDRESS=%s BURLA_TEMPORAL_TLS_CA=%s BURLA_STORE_URL=%s. Ctrl-C stops the cluster.\n", a.Temporal, a.CA, a.Store)
	case a.Temporal == "127.0.0.1:7233" && a.Store == storeurl.Default:
		fmt.Println("Programs using burla connect here by default. Ctrl-C stops the cluster.")
	default:
		fmt.Printf("Programs connect with BURLA_TEMPORAL_ADDRESS=%s BURLA_STORE_URL=%s. Ctrl-C stops the cluster.\n", a.Temporal, a.Store)
	}
	if *readyFile != "" {
		if err := c.WriteReadyFile(*readyFile); err != nil {
			return fmt.Errorf("write ready file: %w", err)
		}
	}
	<-ctx.Done()
	return nil
}

// dashboardAddr is where --dashboard-port says the dashboard listens, or "" for none.
func dashboardAddr(host string, port int) string {
	if port < 0 {
		return ""
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

func runNodeAgent(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("burla node-agent", flag.ExitOnError)
	id := fs.String("id", "", "node ID (lower-case letters, digits, dashes)")
	cluster := fs.String("cluster", "default", "the cluster the node belongs to")
	cpus := fs.Int("cpus", 2, "CPUs: one warm worker per CPU")
	ramMB := fs.Int("ram-mb", 0, "memory in MB (0: not limited)")
	temporal := fs.String("temporal", "127.0.0.1:7233", "Temporal frontend host:port")
	namespace := fs.String("namespace", "default", "Temporal namespace")
	st := storeFlag(fs)
	cacheDir := fs.String("cache-dir", "", "the node's cache directory")
	cacheMaxMB := fs.Int64("cache-max-mb", nodeagent.DefaultCacheMaxBytes>>20, "most MB of programs the node keeps; past it, those used least recently are deleted")
	minFreeMB := fs.Int64("min-free-disk-mb", nodeagent.DefaultMinFreeDisk>>20, "free MB the node's disk must keep: below it the node reports its disk full and the cluster replaces it")
	metricsAddr := fs.String("metrics-addr", "127.0.0.1:0", "where to serve the node's Prometheus metrics")
	runtimeName := fs.String("runtime", "process", "where workers run: process, or docker (a container per worker on the local engine)")
	var envs []string
	repeated(fs, "env", "a user's image to keep warm workers in besides the default environment (docker runtime; repeatable)", &envs)
	verbose := fs.Bool("v", false, "log verbosely")
	fs.Parse(args)
	if *id == "" || *cacheDir == "" {
		return fmt.Errorf("node-agent: --id and --cache-dir are required")
	}
	log := logger(*verbose, "component", "node-agent")
	reg, metricsURL, err := serveMetrics(*metricsAddr, log)
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	var rt runtime.Runtime = process.Runtime{}
	var envImage func(context.Context, string) (string, error)
	switch *runtimeName {
	case "process":
	case "docker":
		images, err := dockerprovider.New(ctx, dockerprovider.Config{Executable: exe})
		if err != nil {
			return err
		}
		if rt, err = dockerruntime.New(ctx, images.Image); err != nil {
			return err
		}
		envImage = images.EnvImage
	default:
		return fmt.Errorf("node-agent: unknown runtime %q (process or docker)", *runtimeName)
	}
	// On a Firestore store the workers reach it with tokens the agent hands them,
	// as the VM's metadata server is closed to them (provider/gce).
	workerArgv := []string{exe, "container-worker", "--node", *id, "--store", *st, "--cache-dir", *cacheDir}
	tokens, err := firestorestore.WorkerTokens(*st)
	if err != nil {
		return fmt.Errorf("node-agent: %w", err)
	}
	if tokens != nil {
		workerArgv = append(workerArgv, "--agent-tokens")
	}
	return nodeagent.Run(ctx, nodeagent.Config{
		Runtime:  rt,
		Envs:     envs,
		EnvImage: envImage,
		ID:       *id, Cluster: *cluster, CPUs: *cpus, RAMMB: *ramMB,
		TemporalAddress: *temporal, Namespace: *namespace, StoreURL: *st, TemporalSecurity: temporalconn.FromEnv(),
		CacheDir:      *cacheDir,
		CacheMaxBytes: *cacheMaxMB << 20,
		MinFreeDisk:   *minFreeMB << 20,
		WorkerArgv:    workerArgv,
		WorkerTokens:  tokens,
		Logger:        log,
		Metrics:       reg,
		MetricsURL:    metricsURL,
	})
}

func runContainerWorker(ctx context.Context, args []string) error {
	// Before anything else: a worker started as root becomes the tenants' user, and
	// none of the calls it runs may read its memory or environment, which hold the
	// node's key.
	if err := tenantbox.Isolate(); err != nil {
		return fmt.Errorf("container-worker: %w", err)
	}
	fs := flag.NewFlagSet("burla container-worker", flag.ExitOnError)
	node := fs.String("node", "", "node ID")
	slot := fs.Int("slot", 0, "the worker's slot on its node")
	storeURL := storeFlag(fs)
	_ = fs.String("cache-dir", "", "the node's cache directory")
	agentTokens := fs.Bool("agent-tokens", false, "reach a cloud store with the access tokens the node agent hands over, not Application Default Credentials")
	verbose := fs.Bool("v", false, "log verbosely")
	fs.Parse(args)
	log := logger(*verbose, "component", "container-worker", "node", *node, "container", *slot)
	creds := storeurl.Credentials{Key: os.Getenv(auth.EnvKey)}
	var tokens *containerworker.Tokens
	if *agentTokens {
		tokens = containerworker.NewTokens()
		creds.Token = tokens.Token
	}
	st, err := storeurl.OpenWith(ctx, *storeURL, fmt.Sprintf("burla-worker-%s-%d", *node, *slot), creds)
	if err != nil {
		return err
	}
	defer st.Close()
	// The runtime names the worker's shared directory in its environment.
	w := containerworker.New(containerworker.Config{Store: st, Blobs: st, Logger: log, SharedDir: os.Getenv(job.EnvSharedDir), Tokens: tokens})
	return w.Serve(ctx, os.Stdin, os.Stdout)
}

// quietTemporalLogger keeps the Temporal client's own logging to warnings.
func quietTemporalLogger() tlog.Logger {
	return tlog.NewStructuredLogger(logger(false))
}

// repeated defines a flag that may be given several times, each value appended to vals.
func repeated(fs *flag.FlagSet, name, usage string, vals *[]string) {
	fs.Func(name, usage, func(v string) error {
		*vals = append(*vals, v)
		return nil
	})
}

// storeFlag defines --store, the data plane's URL, with --nats as its older name.
func storeFlag(fs *flag.FlagSet) *string {
	v := storeurl.Default
	fs.StringVar(&v, "store", v, "the data plane: nats://host:port or firestore://PROJECT?bucket=BUCKET")
	fs.StringVar(&v, "nats", v, "the older name of --store")
	return &v
}

// dialTemporal connects to Temporal, secured as the environment says (package
// temporalconn: BURLA_TEMPORAL_API_KEY and the TLS variables).
// A metrics handler, if given, receives the client's and its workers' metrics.
func dialTemporal(ctx context.Context, addr, namespace string, metrics ...client.MetricsHandler) (client.Client, error) {
	o := client.Options{HostPort: addr, Namespace: namespace, Logger: quietTemporalLogger()}
	if len(metrics) > 0 {
		o.MetricsHandler = metrics[0]
	}
	c, err := temporalconn.FromEnv().Dial(ctx, o)
	var denied *serviceerror.PermissionDenied
	if err != nil && grpcstatus.Code(err) != codes.Unauthenticated && !errors.As(err, &denied) {
		// Not a refusal: nothing (or nothing that speaks Temporal) answered.
		return nil, fmt.Errorf("%w: %w", errUnreachable, err)
	}
	return c, err
}
