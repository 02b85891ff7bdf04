package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

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

ls and show print a table on a terminal and JSON otherwise (--json forces JSON,
one object per line). Exit status: 0 success, 1 error, 3 for attach to a job that
did not succeed, 4 no such job, 5 the API key may not see the job (another
tenant's).

flags: --temporal host:port (BURLA_TEMPORAL_ADDRESS), --namespace (BURLA_NAMESPACE),
       --store URL (BURLA_STORE_URL)
`

func runJobs(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usageErrorf(jobsUsage, "jobs: name a command")
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("burla jobs "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // a bad flag is a usage error, reported once by exit
	env := burla.ConfigFromEnv()
	temporalAddr := fs.String("temporal", env.TemporalAddress, "Temporal frontend host:port")
	namespace := fs.String("namespace", env.Namespace, "Temporal namespace")
	storeURL := fs.String("store", env.StoreURL, "the data plane: nats://host:port or firestore://PROJECT?bucket=BUCKET")
	asJSON := fs.Bool("json", false, "print JSON, one object per line, even on a terminal")
	timeout := fs.Duration("timeout", 30*time.Second, "how long a one-shot command (ls, show, cancel, logs without -f) may take")
	var f status.Filter
	var follow, results *bool
	switch cmd {
	case "ls", "list":
		fs.Func("state", "only jobs in this state: Placing, Running, Succeeded, Failed, Cancelled", func(s string) error {
			st, err := parseState(s)
			f.State = st
			return err
		})
		fs.StringVar(&f.Function, "function", "", "only jobs of this function")
		fs.StringVar(&f.Tenant, "tenant", "", "only jobs of this tenant")
		fs.IntVar(&f.Limit, "limit", 50, "at most this many jobs")
	case "logs":
		follow = fs.Bool("f", false, "follow: print lines as they come until the job ends")
	case "attach":
		results = fs.Bool("results", false, "print each result as a JSON line {\"index\":I,\"output\":…} on stdout; the calls' lines go to stderr")
	case "show", "cancel":
	case "-h", "-help", "--help", "help":
		fmt.Print(jobsUsage)
		return nil
	default:
		return usageErrorf(jobsUsage, "jobs: unknown command %q", cmd)
	}
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(os.Stdout)
		fs.PrintDefaults()
		return errHelp
	}
	if err != nil {
		return usageErrorf(jobsUsage, "jobs %s: %v", cmd, err)
	}
	if cmd != "ls" && cmd != "list" && len(pos) != 1 {
		return usageErrorf(jobsUsage, "jobs %s: want one job ID, got %d arguments", cmd, len(pos))
	}
	jobID := ""
	if len(pos) > 0 {
		jobID = pos[0]
	}
	following := (follow != nil && *follow) || cmd == "attach"
	if !following {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	var cmdErr error
	if cmd == "cancel" {
		// Cancelling needs Temporal alone, so that it works while the store is down.
		cmdErr = cancelJob(ctx, *temporalAddr, *namespace, jobID)
	} else {
		cmdErr = withCluster(ctx, burla.Config{TemporalAddress: *temporalAddr, Namespace: *namespace, StoreURL: *storeURL}, func(c *burla.Cluster) error {
			table := !*asJSON && isTerminal(os.Stdout)
			switch cmd {
			case "show":
				return showJob(ctx, c, jobID, table)
			case "logs":
				return jobLogs(ctx, c, jobID, *follow)
			case "attach":
				return attachJob(ctx, c, jobID, *results)
			}
			return listJobs(ctx, c, f, table)
		})
	}
	return cmdErr // exitCode gives no such job 4 and a refusal 5
}

// parseInterspersed parses flags before and after positional arguments, as in
// `burla jobs logs ID -f`, and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// cancelJob asks Temporal to cancel the job's workflow: its workers stop, and its
// client gets a Cancelled error.
func cancelJob(ctx context.Context, temporalAddr, namespace, id string) error {
	tc, err := dialTemporal(ctx, temporalAddr, namespace)
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
	return printJSON(map[string]any{"job": id, "cancel_requested": true})
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

func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

func listJobs(ctx context.Context, c *burla.Cluster, f status.Filter, table bool) error {
	jobs, err := status.List(ctx, c.Temporal(), f)
	if err != nil {
		return err
	}
	if !table {
		enc := json.NewEncoder(os.Stdout)
		for _, j := range jobs {
			if err := enc.Encode(j); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
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

func showJob(ctx context.Context, c *burla.Cluster, id string, table bool) error {
	j, err := status.GetFor(ctx, c.Temporal(), c.Store(), id, viewer())
	if err != nil {
		return err
	}
	if !table {
		return json.NewEncoder(os.Stdout).Encode(j)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
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
func jobLogs(ctx context.Context, c *burla.Cluster, id string, follow bool) error {
	if _, err := status.Describe(ctx, c.Temporal(), id); err != nil {
		return err
	}
	w, err := c.Store().WatchLogs(ctx, id, func(lines []store.LogLine) {
		for _, l := range lines {
			out := io.Writer(os.Stdout)
			if l.Stream == store.Stderr {
				out = os.Stderr
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
func attachJob(ctx context.Context, c *burla.Cluster, id string, results bool) error {
	if _, err := status.Describe(ctx, c.Temporal(), id); err != nil {
		return err
	}
	stdout := io.Writer(os.Stdout)
	if results {
		stdout = os.Stderr
	}
	j, err := burla.Attach[json.RawMessage](ctx, id, burla.OnCluster(c), burla.Output(stdout, os.Stderr))
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	n := 0
	for r, err := range j.Results(ctx) {
		if err != nil {
			if ctx.Err() != nil {
				fmt.Fprintf(os.Stderr, "burla: detached from job %s; it runs on\n", id)
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
	fmt.Fprintf(os.Stderr, "burla: job %s succeeded: %d results\n", id, n)
	return nil
}
