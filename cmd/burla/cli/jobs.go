package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/burla-temporal/burla/auth"
	"github.com/burla-temporal/burla/job"
	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/status"
	"github.com/burla-temporal/burla/store"
)

const jobsUsage = `usage: burla jobs <command> [flags] [JOB-ID]

commands:
  ls       list jobs, newest first (--state Running, --function NAME, --tenant T, --limit N)
  show     one job: its state, progress, nodes and error
  logs     the lines a job's calls printed (-f: follow until the job ends)
  attach   follow a running job: its lines, its progress, and how it ends
           (--results: print each result as a JSON line on stdout, lines go to stderr)
  cancel   cancel a job: its workers stop, and its client gets a Cancelled error

ls and show print a table on a terminal and JSON otherwise (-o json or --json
forces JSON, one object per line; -o table, a table). Exit status: 0 success,
1 error, 2 usage, 3 for attach to a job that did not succeed, 4 no such job,
5 the API key may not see the job (another tenant's).

flags: --temporal host:port (BURLA_TEMPORAL_ADDRESS), --namespace (BURLA_NAMESPACE),
       --store URL (BURLA_STORE_URL)
`

// jobsCommand is burla jobs.
func (m *Main) jobsCommand() *cobra.Command {
	jobs := &cobra.Command{Use: "jobs", Short: "list, show, follow and cancel jobs", Long: jobsUsage}

	var f status.Filter
	ls := m.jobsSubcommand("ls", "list jobs, newest first", nil, func(ctx context.Context, cmd *cobra.Command, cfg burla.Config, _ string) error {
		asJSON, err := m.wantJSON(cmd)
		if err != nil {
			return err
		}
		return withCluster(ctx, cfg, func(c *burla.Cluster) error { return m.listJobs(ctx, c, f, !asJSON) })
	})
	ls.Aliases, ls.Args = []string{"list"}, noArgs("")
	ls.Flags().Func("state", "only jobs in this state: Placing, Running, Succeeded, Failed, Cancelled", func(s string) error {
		st, err := parseState(s)
		f.State = st
		return err
	})
	ls.Flags().StringVar(&f.Function, "function", "", "only jobs of this function")
	ls.Flags().StringVar(&f.Tenant, "tenant", "", "only jobs of this tenant")
	ls.Flags().IntVar(&f.Limit, "limit", 50, "at most this many jobs")

	show := m.jobsSubcommand("show JOB-ID", "one job: its state, progress, nodes and error", nil, func(ctx context.Context, cmd *cobra.Command, cfg burla.Config, id string) error {
		asJSON, err := m.wantJSON(cmd)
		if err != nil {
			return err
		}
		return withCluster(ctx, cfg, func(c *burla.Cluster) error { return m.showJob(ctx, c, id, !asJSON) })
	})

	var follow bool
	logs := m.jobsSubcommand("logs JOB-ID", "the lines a job's calls printed (-f: follow until the job ends)", func() bool { return follow }, func(ctx context.Context, _ *cobra.Command, cfg burla.Config, id string) error {
		return withCluster(ctx, cfg, func(c *burla.Cluster) error { return m.jobLogs(ctx, c, id, follow) })
	})
	logs.Flags().BoolVarP(&follow, "f", "f", false, "follow: print lines as they come until the job ends")

	var results bool
	attach := m.jobsSubcommand("attach JOB-ID", "follow a running job: its lines, its progress, and how it ends", func() bool { return true }, func(ctx context.Context, _ *cobra.Command, cfg burla.Config, id string) error {
		return withCluster(ctx, cfg, func(c *burla.Cluster) error { return m.attachJob(ctx, c, id, results) })
	})
	attach.Flags().BoolVar(&results, "results", false, "print each result as a JSON line {\"index\":I,\"output\":…} on stdout; the calls' lines go to stderr")

	cancel := m.jobsSubcommand("cancel JOB-ID", "cancel a job: its workers stop, and its client gets a Cancelled error", nil, func(ctx context.Context, _ *cobra.Command, cfg burla.Config, id string) error {
		// Cancelling needs Temporal alone, so that it works while the store is down.
		return m.cancelJob(ctx, cfg.TemporalAddress, cfg.Namespace, id)
	})

	jobs.AddCommand(ls, show, logs, attach, cancel)
	return jobs
}

// jobsSubcommand is a burla jobs command, with the flags they all have: use is
// its name and argument, if any (JOB-ID). run runs it on the cluster the flags
// name, the job ID its argument, with ctx bounded by --timeout unless follows
// (nil for never) says it follows a job until the job ends. exitCode gives no
// such job 4 and a refusal 5.
func (m *Main) jobsSubcommand(use, short string, follows func() bool, run func(ctx context.Context, cmd *cobra.Command, cfg burla.Config, id string) error) *cobra.Command {
	var cfg burla.Config
	var timeout time.Duration
	cmd := &cobra.Command{
		Use: use, Short: short, Long: jobsUsage,
		Args: oneArg("job ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if follows == nil || !follows() {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			id := ""
			if len(args) > 0 {
				id = args[0]
			}
			return run(ctx, cmd, cfg, id)
		},
	}
	fs := cmd.Flags()
	env := burla.ConfigFromEnv()
	fs.StringVar(&cfg.TemporalAddress, "temporal", env.TemporalAddress, "Temporal frontend host:port")
	fs.StringVar(&cfg.Namespace, "namespace", env.Namespace, "Temporal namespace")
	fs.StringVar(&cfg.StoreURL, "store", env.StoreURL, "the data plane: nats://host:port or firestore://PROJECT?bucket=BUCKET")
	fs.DurationVar(&timeout, "timeout", 30*time.Second, "how long a one-shot command (ls, show, cancel, logs without -f) may take")
	addOutputFlags(fs)
	return cmd
}

// cancelJob asks Temporal to cancel the job's workflow: its workers stop, and its
// client gets a Cancelled error.
func (m *Main) cancelJob(ctx context.Context, temporalAddr, namespace, id string) error {
	tc, err := m.dialTemporal(ctx, temporalAddr, namespace)
	if err != nil {
		return fmt.Errorf("connect to Temporal at %s: %w", temporalAddr, err)
	}
	defer tc.Close()
	if _, err := status.Describe(ctx, tc, id); err != nil {
		return err
	}
	if err := tc.CancelWorkflow(ctx, id, ""); err != nil {
		return fmt.Errorf("cancel job %s: %w", id, err)
	}
	return printJSON(m.Stdout, map[string]any{"job": id, "cancel_requested": true})
}

// withCluster runs fn on a connection to the cluster cfg names.
func withCluster(ctx context.Context, cfg burla.Config, fn func(*burla.Cluster) error) error {
	c, err := burla.Dial(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(c)
}

func parseState(s string) (job.State, error) {
	for _, st := range []job.State{job.StatePlacing, job.StateRunning, job.StateSucceeded, job.StateFailed, job.StateCancelled} {
		if strings.EqualFold(s, string(st)) {
			return st, nil
		}
	}
	return "", fmt.Errorf("unknown state %q: one of Placing, Running, Succeeded, Failed, Cancelled", s)
}

func (m *Main) listJobs(ctx context.Context, c *burla.Cluster, f status.Filter, table bool) error {
	jobs, err := status.List(ctx, c.Temporal(), f)
	if err != nil {
		return err
	}
	if !table {
		enc := json.NewEncoder(m.Stdout)
		for _, j := range jobs {
			if err := enc.Encode(j); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(m.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tSTATE\tFUNCTION\tINPUTS\tSTARTED\tTOOK")
	now := time.Now()
	for _, j := range jobs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", j.ID, j.State, j.Function, j.Inputs, ago(now, j.Started), took(now, j))
	}
	return tw.Flush()
}

// viewer is whose job IDs this command may name when it says what a job waits
// for: every tenant's without a key (a cluster without keys) or with an operator's,
// the tenant's own with a tenant's.
func viewer() string {
	key := os.Getenv(auth.EnvKey)
	if key == "" {
		return status.AllTenants
	}
	p, err := auth.ParseKey(key)
	switch {
	case err != nil:
		return "" // Dial refuses such a key before this is asked
	case p.Role.System():
		return status.AllTenants
	}
	return p.Tenant
}

func (m *Main) showJob(ctx context.Context, c *burla.Cluster, id string, table bool) error {
	j, err := status.GetFor(ctx, c.Temporal(), c.Store(), id, viewer())
	if err != nil {
		return err
	}
	if !table {
		return json.NewEncoder(m.Stdout).Encode(j)
	}
	tw := tabwriter.NewWriter(m.Stdout, 0, 4, 2, ' ', 0)
	now := time.Now()
	fmt.Fprintf(tw, "Job\t%s\n", j.ID)
	fmt.Fprintf(tw, "State\t%s\n", j.State)
	fmt.Fprintf(tw, "Function\t%s\n", j.Function)
	if j.Tenant != "" {
		fmt.Fprintf(tw, "Tenant\t%s\n", j.Tenant)
	}
	fmt.Fprintf(tw, "Inputs\t%d\n", j.Inputs)
	fmt.Fprintf(tw, "Started\t%s (%s)\n", j.Started.Local().Format(time.DateTime), ago(now, j.Started))
	fmt.Fprintf(tw, "Took\t%s\n", took(now, j))
	if p := j.Progress; p != nil {
		if p.Sealed {
			fmt.Fprintf(tw, "Progress\t%.0f%% (%d of %d chunks done, %d running, %d waiting)\n", 100*p.Fraction(), p.Done, p.Chunks, p.InFlight, p.Waiting)
		} else {
			fmt.Fprintf(tw, "Progress\tinputs uploading (%d chunks so far: %d running, %d waiting)\n", p.Waiting+p.InFlight, p.InFlight, p.Waiting)
		}
	}
	if w := j.Waiting; w != nil {
		fmt.Fprintf(tw, "Waiting\t%s, for %s (%s, since %s)\n", w.Detail, status.ShortDuration(max(now.Sub(w.Since), 0)),
			w.Reason, w.Since.Local().Format(time.TimeOnly))
	}
	if len(j.Nodes) > 0 {
		var ns []string
		busy := 0
		for _, n := range j.Nodes {
			ns = append(ns, n.ID)
			busy += n.Busy
		}
		fmt.Fprintf(tw, "Nodes\t%d (%s), %d containers busy\n", len(ns), strings.Join(ns, ", "), busy)
	}
	if s := j.Spec; s != nil {
		fmt.Fprintf(tw, "Resources\t%d CPU per call", s.FuncCPU)
		if s.FuncRAMMB > 0 {
			fmt.Fprintf(tw, ", %d MB", s.FuncRAMMB)
		}
		if s.MaxParallelism > 0 {
			fmt.Fprintf(tw, ", at most %d at once", s.MaxParallelism)
		}
		fmt.Fprintln(tw)
		if s.Image != "" {
			fmt.Fprintf(tw, "Image\t%s\n", s.Image)
		}
		if s.Detached {
			fmt.Fprintf(tw, "Detached\tyes\n")
		}
	}
	if j.Error != "" {
		fmt.Fprintf(tw, "Error\t%s\n", j.Error)
	}
	return tw.Flush()
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return now.Sub(t).Round(time.Second).String() + " ago"
}

func took(now time.Time, j status.Job) string {
	end := j.Ended
	if end.IsZero() {
		end = now
	}
	d := end.Sub(j.Started)
	if d < 10*time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// jobLogs prints the lines a job's calls have printed, in the order they were
// stored; with follow it goes on until the job ends.
func (m *Main) jobLogs(ctx context.Context, c *burla.Cluster, id string, follow bool) error {
	if _, err := status.Describe(ctx, c.Temporal(), id); err != nil {
		return err
	}
	w, err := c.Store().WatchLogs(ctx, id, func(lines []store.LogLine) {
		for _, l := range lines {
			out := m.Stdout
			if l.Stream == store.Stderr {
				out = m.Stderr
			}
			fmt.Fprintln(out, l.Text)
		}
	})
	if err != nil {
		return fmt.Errorf("logs of job %s: %w", id, err)
	}
	defer w.Close()
	if follow {
		// The job's end comes after its last line is stored.
		_ = c.Temporal().GetWorkflow(ctx, id, "").Get(ctx, nil)
		if ctx.Err() != nil {
			return nil
		}
	}
	if err := w.Sync(ctx); err != nil {
		return fmt.Errorf("logs of job %s: %w", id, err)
	}
	return nil
}

// attachJob follows a job as its own client would: its lines, its progress line on
// a terminal, and its outcome. Attaching does not make the job depend on this
// command: interrupting it leaves the job running.
func (m *Main) attachJob(ctx context.Context, c *burla.Cluster, id string, results bool) error {
	if _, err := status.Describe(ctx, c.Temporal(), id); err != nil {
		return err
	}
	stdout := m.Stdout
	if results {
		stdout = m.Stderr
	}
	j, err := burla.Attach[json.RawMessage](ctx, id, burla.OnCluster(c), burla.Output(stdout, m.Stderr))
	if err != nil {
		return err
	}
	enc := json.NewEncoder(m.Stdout)
	n := 0
	for r, err := range j.Results(ctx) {
		if err != nil {
			if ctx.Err() != nil {
				fmt.Fprintf(m.Stderr, "burla: detached from job %s; it runs on\n", id)
				return nil
			}
			return fmt.Errorf("%w (%w)", err, errJobFailed)
		}
		n++
		if results {
			if err := enc.Encode(struct {
				Index  int             `json:"index"`
				Output json.RawMessage `json:"output"`
			}{r.Index, r.Output}); err != nil {
				return err
			}
		}
	}
	fmt.Fprintf(m.Stderr, "burla: job %s succeeded: %d results\n", id, n)
	return nil
}
