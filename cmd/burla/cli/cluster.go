package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/api/serviceerror"

	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/provider"
	burla "github.com/burla-temporal/burla/sdk"
)

const clusterUsage = `usage: burla cluster <command> [flags]

commands:
  up           start the cluster's ClusterWorkflow and wait until standby is ready
               (a cluster up already is left as it is: set-standby changes it)
  down         delete every node and end the cluster
  status       the cluster's standby spec and nodes (-w, --watch: again on every change)
  watch        status --watch
  set-standby  change the standby spec (--nodes, --cpus, --ram-mb, --max-nodes, --env,
               --tenant-max-nodes, --tenant-nodes); flags not given take their defaults
  restart      replace every idle node

Each prints the cluster's state: a table on a terminal (or with -o table), and
otherwise (or with -o json, --json) one JSON object on one line:
  {"name":…,"standby":{"nodes":N,"cpus":N,"provider":…},"nodes":{ID:{"id":…,"state":…,"cpus":N,"job":…}},
   "jobs":{ID:{…}},"seq":N,"lost":N,"last_lost":[{"id":…,"reason":…,"at":…}],"shutting_down":bool}
A watch polls every second and prints the state, with "time" added, each time it
changes, one object per line, until interrupted (Ctrl-C exits 0) or --timeout.

Exit status: 0 success, 1 error, 2 usage, 4 no such cluster (never up, or down),
5 the API key is refused or may not run the cluster (a tenant's key), 6 nothing
answered at the Temporal address.

flags: --temporal host:port (BURLA_TEMPORAL_ADDRESS), --namespace (BURLA_NAMESPACE), --cluster name,
  -o json|table;
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

// clusterCommand is burla cluster.
func (m *Main) clusterCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "start, watch, resize, restart and stop a cluster's standby nodes", Long: clusterUsage}
	for _, sub := range []struct{ name, short string }{
		{"up", "start the cluster's ClusterWorkflow and wait until standby is ready"},
		{"down", "delete every node and end the cluster"},
		{"status", "the cluster's standby spec and nodes (-w, --watch: again on every change)"},
		{"watch", "status --watch"},
		{"set-standby", "change the standby spec; flags not given take their defaults"},
		{"restart", "replace every idle node"},
	} {
		cmd.AddCommand(m.clusterSubcommand(sub.name, sub.short))
	}
	return cmd
}

// clusterFlags are the flags of burla cluster's commands.
type clusterFlags struct {
	temporal, namespace, cluster string
	spec                         control.StandbySpec
	tenantNodes                  []string
	timeout                      time.Duration
	watch                        bool
}

// clusterSubcommand is burla cluster's command name.
func (m *Main) clusterSubcommand(name, short string) *cobra.Command {
	var c clusterFlags
	cmd := &cobra.Command{
		Use: name, Short: short, Long: clusterUsage,
		Args: noArgs("name a cluster with --cluster"),
		RunE: func(cmd *cobra.Command, _ []string) error { return m.runCluster(cmd, name, &c) },
	}
	fs := cmd.Flags()
	env := burla.ConfigFromEnv() // the addresses programs use, and their defaults
	fs.StringVar(&c.temporal, "temporal", env.TemporalAddress, "Temporal frontend host:port")
	fs.StringVar(&c.namespace, "namespace", env.Namespace, "Temporal namespace")
	fs.StringVar(&c.cluster, "cluster", control.DefaultCluster, "cluster name")
	fs.IntVar(&c.spec.Nodes, "nodes", 2, "standby nodes (up, set-standby)")
	fs.IntVar(&c.spec.CPUs, "cpus", 2, "CPUs per node (up, set-standby)")
	fs.IntVar(&c.spec.RAMMB, "ram-mb", 0, "memory per node in MB (up, set-standby)")
	fs.IntVar(&c.spec.MaxNodes, "max-nodes", 0, "most nodes at once (0: no bound)")
	fs.StringVar(&c.spec.Provider, "provider", "local", "node provider (up, set-standby): local, docker or gce")
	fs.StringVar(&c.spec.Project, "project", "", "the Google Cloud project gce nodes are made in (up, set-standby; default: the control plane's --gce-project)")
	fs.StringVar(&c.spec.Zone, "zone", "", "the zone gce nodes are made in, e.g. us-central1-a (up, set-standby; default: the control plane's --gce-zone)")
	fs.StringArrayVar(&c.spec.Envs, "env", nil, "a local image every node keeps warm workers in (up, set-standby; repeatable; docker runtime)")
	fs.IntVar(&c.spec.TenantMaxNodes, "tenant-max-nodes", 0, "most nodes each tenant's jobs hold at once (up, set-standby; 0: no bound)")
	fs.StringArrayVar(&c.tenantNodes, "tenant-nodes", nil, "TENANT=N: the most nodes TENANT's jobs hold at once, instead of --tenant-max-nodes (up, set-standby; repeatable; 0: no bound)")
	if name != "up" && name != "set-standby" {
		// The other commands take the standby spec's flags, as they always
		// have, and ignore them.
		for _, f := range []string{"nodes", "cpus", "ram-mb", "max-nodes", "provider", "project", "zone", "env", "tenant-max-nodes", "tenant-nodes"} {
			fs.MarkHidden(f)
		}
	}
	fs.DurationVar(&c.timeout, "timeout", 5*time.Minute, "how long to wait (a watch: how long to watch; none if not given)")
	if name == "status" {
		fs.BoolVarP(&c.watch, "watch", "w", false, "print the state again each time it changes, until interrupted")
	}
	addOutputFlags(fs)
	return cmd
}

// runCluster runs burla cluster's command name.
func (m *Main) runCluster(cmd *cobra.Command, name string, c *clusterFlags) error {
	spec := c.spec
	if name == "up" || name == "set-standby" {
		var err error
		if spec.TenantNodes, err = parseTenantNodes(c.tenantNodes); err != nil {
			return usageErrorf("cluster %s: %s: %w", c.cluster, name, err)
		}
		if err := spec.Validate(provider.Declared()[spec.Provider]); err != nil {
			return usageErrorf("cluster %s: %s: %w", c.cluster, name, err)
		}
	}
	asJSON, err := m.wantJSON(cmd)
	if err != nil {
		return err
	}
	out := clusterOutput{w: m.Stdout, json: asJSON}
	ctx := cmd.Context()
	watch := c.watch || name == "watch"
	if !watch || cmd.Flags().Changed("timeout") {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	tc, err := m.dialTemporal(ctx, c.temporal, c.namespace)
	if errors.Is(err, errUnreachable) {
		return fmt.Errorf("connect to Temporal at %s: %w (is a control plane running? `burla dev` starts one)", c.temporal, err)
	}
	if err != nil {
		return fmt.Errorf("connect to Temporal at %s: %w", c.temporal, err)
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
		st, err := cc.Status(ctx, c.cluster)
		if err != nil {
			return st, clusterError(err)
		}
		return st, nil
	}
	switch name {
	case "up":
		start := time.Now()
		if err := cc.Up(ctx, c.cluster, spec); errors.Is(err, control.ErrClusterUp) {
			// Up is idempotent, so that a deployment can run it at every start
			// (deploy/compose): the running cluster is left as it is.
			fmt.Fprintf(m.Stderr, "%v: left as it is (set-standby changes it)\n", err)
			return show(query(ctx))
		} else if err != nil {
			return err
		}
		if err := cc.WaitReady(ctx, c.cluster, spec.Nodes, c.timeout); err != nil {
			return err
		}
		st, err := query(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(m.Stderr, "cluster %s: %d standby nodes ready in %v\n", c.cluster, spec.Nodes, time.Since(start).Round(time.Millisecond))
		return out.state(st)
	case "down":
		return show(cc.Shutdown(ctx, c.cluster))
	case "set-standby":
		return show(cc.SetStandby(ctx, c.cluster, spec))
	case "restart":
		return show(cc.Restart(ctx, c.cluster))
	}
	if watch {
		return watchCluster(ctx, watchInterval, query, out.change)
	}
	st, err := query(ctx)
	if err != nil {
		return err
	}
	return out.state(st)
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

// printJSON prints v on w as one line of JSON.
func printJSON(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}
