package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"go.temporal.io/api/serviceerror"

	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/provider"
	burla "github.com/burla-temporal/burla/sdk"
)

const clusterUsage = `usage: burla cluster <command> [flags]

commands:
  up           start the cluster's ClusterWorkflow and wait until standby is ready
  down         delete every node and end the cluster
  status       the cluster's standby spec and nodes (-w, --watch: again on every change)
  watch        status --watch
  set-standby  change the standby spec (--nodes, --cpus, --ram-mb, --max-nodes, --env,
               --tenant-max-nodes, --tenant-nodes); flags not given take their defaults
  restart      replace every idle node

Each prints the cluster's state: a table on a terminal, and otherwise (or with
--json) one JSON object on one line:
  {"name":…,"standby":{"nodes":N,"cpus":N,"provider":…},"nodes":{ID:{"id":…,"state":…,"cpus":N,"job":…}},
   "jobs":{ID:{…}},"seq":N,"lost":N,"last_lost":[{"id":…,"reason":…,"at":…}],"shutting_down":bool}
A watch polls every second and prints the state, with "time" added, each time it
changes, one object per line, until interrupted (Ctrl-C exits 0) or --timeout.

Exit status: 0 success, 1 error, 2 usage, 4 no such cluster (never up, or down),
5 the API key is refused or may not run the cluster (a tenant's key), 6 nothing
answered at the Temporal address.

flags: --temporal host:port (BURLA_TEMPORAL_ADDRESS), --namespace (BURLA_NAMESPACE), --cluster name;
  up and set-standby: --nodes, --cpus, --ram-mb, --max-nodes, --env, --provider local|docker|gce,
  and for gce --project P --zone Z (a control plane started with --gce-project serves it);
  --tenant-max-nodes N: each tenant's jobs hold at most N nodes at once (0: no bound), and
  --tenant-nodes TENANT=N (repeatable): TENANT's own bound instead (0: none for it). A job
  of a tenant at its bound waits for a node of its share, and fails with TenantLimit after
  5 minutes; other tenants' jobs go on
`

// errNoCluster marks a cluster Temporal does not know, or one that is down; it
// exits with exitNotFound.
var errNoCluster = errors.New("no such cluster")

// watchInterval is how often a watch asks the cluster for its state.
const watchInterval = time.Second

func runCluster(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usageErrorf(clusterUsage, "cluster: give a command")
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "up", "down", "status", "watch", "set-standby", "restart":
	case "-h", "-help", "--help", "help":
		fmt.Print(clusterUsage)
		return nil
	default:
		return usageErrorf(clusterUsage, "cluster: unknown command %q", cmd)
	}
	fs := flag.NewFlagSet("burla cluster "+cmd, flag.ContinueOnError)
	env := burla.ConfigFromEnv() // the addresses programs use, and their defaults
	temporalAddr := fs.String("temporal", env.TemporalAddress, "Temporal frontend host:port")
	namespace := fs.String("namespace", env.Namespace, "Temporal namespace")
	cluster := fs.String("cluster", control.DefaultCluster, "cluster name")
	nodes := fs.Int("nodes", 2, "standby nodes (up, set-standby)")
	cpus := fs.Int("cpus", 2, "CPUs per node (up, set-standby)")
	ramMB := fs.Int("ram-mb", 0, "memory per node in MB (up, set-standby)")
	maxNodes := fs.Int("max-nodes", 0, "most nodes at once (0: no bound)")
	providerName := fs.String("provider", "local", "node provider (up, set-standby): local, docker or gce")
	project := fs.String("project", "", "the Google Cloud project gce nodes are made in (up, set-standby; default: the control plane's --gce-project)")
	zone := fs.String("zone", "", "the zone gce nodes are made in, e.g. us-central1-a (up, set-standby; default: the control plane's --gce-zone)")
	var envs []string
	repeated(fs, "env", "a local image every node keeps warm workers in (up, set-standby; repeatable; docker runtime)", &envs)
	tenantMaxNodes := fs.Int("tenant-max-nodes", 0, "most nodes each tenant's jobs hold at once (up, set-standby; 0: no bound)")
	var tenantNodes []string
	repeated(fs, "tenant-nodes", "TENANT=N: the most nodes TENANT's jobs hold at once, instead of --tenant-max-nodes (up, set-standby; repeatable; 0: no bound)", &tenantNodes)
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait (a watch: how long to watch; none if not given)")
	asJSON := fs.Bool("json", false, "print JSON, one object per line, even on a terminal")
	watch := cmd == "watch"
	if cmd == "status" {
		fs.BoolVar(&watch, "watch", false, "print the state again each time it changes, until interrupted")
		fs.BoolVar(&watch, "w", false, "short for --watch")
	}
	pos, err := parseFlags(fs, clusterUsage, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf(clusterUsage, "cluster %s takes no arguments, got %q (name a cluster with --cluster)", cmd, pos)
	}
	spec := control.StandbySpec{Nodes: *nodes, CPUs: *cpus, RAMMB: *ramMB, MaxNodes: *maxNodes, Provider: *providerName, Envs: envs, Project: *project, Zone: *zone,
		TenantMaxNodes: *tenantMaxNodes}
	if cmd == "up" || cmd == "set-standby" {
		if spec.TenantNodes, err = parseTenantNodes(tenantNodes); err != nil {
			return usageErrorf(clusterUsage, "cluster %s: %s: %w", *cluster, cmd, err)
		}
		if err := spec.Validate(provider.Declared()[spec.Provider]); err != nil {
			return usageErrorf(clusterUsage, "cluster %s: %s: %w", *cluster, cmd, err)
		}
	}
	timed := !watch
	fs.Visit(func(f *flag.Flag) { timed = timed || f.Name == "timeout" })
	if timed {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	out := clusterOutput{w: os.Stdout, json: *asJSON || !isTerminal(os.Stdout)}
	tc, err := dialTemporal(ctx, *temporalAddr, *namespace)
	if errors.Is(err, errUnreachable) {
		return fmt.Errorf("connect to Temporal at %s: %w (is a control plane running? `burla dev` starts one)", *temporalAddr, err)
	}
	if err != nil {
		return fmt.Errorf("connect to Temporal at %s: %w", *temporalAddr, err)
	}
	defer tc.Close()
	cc := control.NewClient(tc)
	show := func(st control.ClusterState, err error) error {
		if err != nil {
			return clusterError(err)
		}
		return out.state(st)
	}
	query := func(ctx context.Context) (control.ClusterState, error) {
		st, err := cc.Status(ctx, *cluster)
		if err != nil {
			return st, clusterError(err)
		}
		return st, nil
	}
	switch cmd {
	case "up":
		start := time.Now()
		if err := cc.Up(ctx, *cluster, spec); errors.Is(err, control.ErrClusterUp) {
			return fmt.Errorf("%w; use set-standby to change it", err)
		} else if err != nil {
			return err
		}
		if err := cc.WaitReady(ctx, *cluster, spec.Nodes, *timeout); err != nil {
			return err
		}
		st, err := query(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "cluster %s: %d standby nodes ready in %v\n", *cluster, spec.Nodes, time.Since(start).Round(time.Millisecond))
		return out.state(st)
	case "down":
		st, err := cc.Shutdown(ctx, *cluster)
		if err != nil {
			return clusterError(err)
		}
		return out.state(st)
	case "status", "watch":
		if watch {
			return watchCluster(ctx, watchInterval, query, out.change)
		}
		st, err := query(ctx)
		if err != nil {
			return err
		}
		return out.state(st)
	case "set-standby":
		return show(cc.SetStandby(ctx, *cluster, spec))
	case "restart":
		return show(cc.Restart(ctx, *cluster))
	}
	return nil
}

// parseTenantNodes reads --tenant-nodes values, TENANT=N each, into a
// StandbySpec's TenantNodes; nil for none.
func parseTenantNodes(vals []string) (map[string]int, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	m := make(map[string]int, len(vals))
	for _, v := range vals {
		tenant, n, ok := strings.Cut(v, "=")
		count, err := strconv.Atoi(n)
		if !ok || err != nil {
			return nil, fmt.Errorf("--tenant-nodes %q: want TENANT=N, such as acme=4", v)
		}
		if _, dup := m[tenant]; dup {
			return nil, fmt.Errorf("--tenant-nodes names tenant %s twice", tenant)
		}
		m[tenant] = count
	}
	return m, nil
}

// clusterError says what failed on which cluster, and marks a cluster Temporal
// does not know, or whose workflow has ended, with errNoCluster.
func clusterError(err error) error {
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return fmt.Errorf("%w (never up, or down; `burla cluster up` starts it): %w", errNoCluster, err)
	}
	return err
}

// watchCluster asks for the cluster's state every interval and hands each state
// that differs from the one before to emit, the first one included, until ctx
// ends, which is not an error.
func watchCluster(ctx context.Context, interval time.Duration, poll func(context.Context) (control.ClusterState, error), emit func(control.ClusterState) error) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var last []byte
	for {
		st, err := poll(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		b, err := json.Marshal(st) // maps marshal in key order: equal states, equal bytes
		if err != nil {
			return err
		}
		if !bytes.Equal(b, last) {
			last = b
			if err := emit(st); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// clusterOutput prints cluster states as JSON lines or as tables.
type clusterOutput struct {
	w    io.Writer
	json bool
}

// state prints st.
func (o clusterOutput) state(st control.ClusterState) error {
	if o.json {
		return json.NewEncoder(o.w).Encode(st)
	}
	return printClusterTable(o.w, st)
}

// change prints st as a watch sees it: with the time it was seen.
func (o clusterOutput) change(st control.ClusterState) error {
	now := time.Now()
	if o.json {
		return json.NewEncoder(o.w).Encode(struct {
			Time time.Time `json:"time"`
			control.ClusterState
		}{now.UTC(), st})
	}
	fmt.Fprintf(o.w, "--- %s\n", now.Format(time.DateTime))
	if err := printClusterTable(o.w, st); err != nil {
		return err
	}
	_, err := fmt.Fprintln(o.w)
	return err
}

// printClusterTable prints a cluster's standby and its nodes for a person.
func printClusterTable(w io.Writer, st control.ClusterState) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	s := st.Standby
	state := "up"
	if st.ShuttingDown {
		state = "shutting down"
	}
	fmt.Fprintf(tw, "Cluster\t%s (%s)\n", st.Name, state)
	standby := fmt.Sprintf("%d nodes × %d CPUs", s.Nodes, s.CPUs)
	if s.RAMMB > 0 {
		standby += fmt.Sprintf(", %d MB", s.RAMMB)
	}
	standby += ", " + s.Provider + " provider"
	if s.MaxNodes > 0 {
		standby += fmt.Sprintf(", at most %d nodes", s.MaxNodes)
	}
	if s.Project != "" || s.Zone != "" {
		standby += fmt.Sprintf(", in %s %s", s.Project, s.Zone)
	}
	fmt.Fprintf(tw, "Standby\t%s\n", standby)
	if s.TenantMaxNodes > 0 || len(s.TenantNodes) > 0 {
		fmt.Fprintf(tw, "Tenants\t%s\n", describeShares(s))
	}
	if len(s.Envs) > 0 {
		fmt.Fprintf(tw, "Envs\t%s\n", strings.Join(s.Envs, ", "))
	}
	fmt.Fprintf(tw, "Jobs\t%d\n", len(st.Jobs))
	fmt.Fprintf(tw, "Lost\t%d nodes over its life\n", st.Lost)
	for _, l := range st.LastLost {
		fmt.Fprintf(tw, "\t%s %s: %s\n", l.At.Local().Format(time.DateTime), l.ID, l.Reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	ids := make([]string, 0, len(st.Nodes))
	for id := range st.Nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATE\tCPUS\tRAM MB\tJOB")
	for _, id := range ids {
		n := st.Nodes[id]
		ram, job := "-", "-"
		if n.RAMMB > 0 {
			ram = fmt.Sprint(n.RAMMB)
		}
		if n.Job != "" {
			job = n.Job
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", id, n.State, n.CPUs, ram, job)
	}
	return tw.Flush()
}

// describeShares says how many nodes tenants' jobs may hold at once.
func describeShares(s control.StandbySpec) string {
	bound := func(n int) string {
		if n == 0 {
			return "no bound"
		}
		return fmt.Sprintf("at most %d nodes", n)
	}
	d := bound(s.TenantMaxNodes) + " each"
	tenants := slices.Sorted(maps.Keys(s.TenantNodes))
	for i, t := range tenants {
		tenants[i] = t + ": " + bound(s.TenantNodes[t])
	}
	if len(tenants) > 0 {
		d += " (" + strings.Join(tenants, ", ") + ")"
	}
	return d
}

// printJSON prints v on stdout as one line of JSON.
func printJSON(v any) error {
	return json.NewEncoder(os.Stdout).Encode(v)
}
