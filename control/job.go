package control

import (
	"cmp"
	"fmt"
	"strings"
	"time"

	"github.com/burla-temporal/burla/job"
)

// PlaceInput asks where a job should run.
type PlaceInput struct {
	Spec job.Spec
}

// Assignment is one node's share of a job.
type Assignment struct {
	NodeID    string
	TaskQueue string
	Workers   int // calls the node runs at once
}

// PlaceOutput is where a job runs.
type PlaceOutput struct {
	Nodes []Assignment
}

// WatchInput names a job whose client must keep heartbeating.
type WatchInput struct {
	JobID   string
	Timeout time.Duration
	// Poll is how often the heartbeat is checked; zero means one second.
	Poll time.Duration
	// UntilSealed watches a detached job's client only while it uploads: the
	// watch ends once every input is in the queue.
	UntilSealed bool
}

// FinishInput names a job that has ended.
type FinishInput struct {
	JobID string
	// State is how the job ended; jobs recorded before it was added have none.
	State job.State
	// Binary is the digest of the job's program, whose use FinishJob marks (see
	// Collect); empty for a command job and for jobs recorded before it was added.
	Binary string
}

// RunInput is one node's share of a job.
type RunInput struct {
	Spec    job.Spec
	Workers int
}

// RunOutput reports what the node saw when the job ended.
type RunOutput struct {
	Drained bool // every chunk of the job is done
}

// JobInput is the JobWorkflow's argument.
type JobInput struct {
	Spec job.Spec
}

// JobOutput is what a JobWorkflow that succeeded reports.
type JobOutput struct {
	State job.State
	Nodes int
}

// JobProgress is what a JobWorkflow answers QueryProgress with: where it is and
// on how many nodes. How many inputs are done is the store's to say.
type JobProgress struct {
	State job.State `json:"state"`
	// Working is the nodes running the job now; Used, every node it ran on;
	// Lost, the nodes lost while running it.
	Working int `json:"working"`
	Used    int `json:"used"`
	Lost    int `json:"lost"`
}

// Details is p as a line of Temporal's UI (a workflow's current details).
func (p JobProgress) Details() string {
	switch {
	case p.State == job.StateRunning && p.Lost > 0:
		return fmt.Sprintf("Running on %d %s (%d lost)", p.Working, plural(p.Working, "node"), p.Lost)
	case p.State == job.StateRunning:
		return fmt.Sprintf("Running on %d %s", p.Working, plural(p.Working, "node"))
	case p.Used > 0:
		return fmt.Sprintf("%s after running on %d %s", p.State, p.Used, plural(p.Used, "node"))
	}
	return string(p.State)
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// JobSummary is the summary and details a JobWorkflow starts with, which
// Temporal's UI and CLI show beside it: what runs, over how many inputs, whose,
// and with what resources. Nothing in it is secret (the spec names its
// environment variables, not their values).
func JobSummary(spec job.Spec) (summary, details string) {
	what := spec.Function
	if len(spec.Command) > 0 {
		what = "command " + strings.Join(spec.Command, " ")
	}
	summary = fmt.Sprintf("%s over %d %s", what, spec.Inputs, plural(spec.Inputs, "input"))
	if spec.Tenant != "" && spec.Tenant != job.DefaultTenant {
		summary = spec.Tenant + ": " + summary
	}
	var b strings.Builder
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "**%s** %s  \n", k, v)
		}
	}
	line("tenant", cmp.Or(spec.Tenant, job.TenantOf(spec.ID)))
	if len(spec.Command) > 0 {
		line("command", "`"+strings.Join(spec.Command, " ")+"`")
	} else {
		line("function", spec.Function)
		line("program", "sha256 "+spec.Binary[:min(12, len(spec.Binary))])
	}
	line("image", spec.Image)
	line("inputs", fmt.Sprint(spec.Inputs))
	call := fmt.Sprintf("%d CPU", spec.FuncCPU)
	if spec.FuncRAMMB > 0 {
		call += fmt.Sprintf(", %d MB", spec.FuncRAMMB)
	}
	if spec.GPU != "" {
		call += ", GPU " + spec.GPU
	}
	if spec.Dynamic {
		call += " (resources grow as calls need)"
	}
	line("each call", call)
	line("region", spec.Region)
	if spec.DiskGB > 0 {
		line("disk", fmt.Sprintf("%d GB", spec.DiskGB))
	}
	if spec.MaxParallelism > 0 {
		line("parallelism", fmt.Sprintf("at most %d", spec.MaxParallelism))
	}
	if spec.InputTimeout > 0 {
		line("input timeout", spec.InputTimeout.String())
	}
	if spec.Retries > 0 {
		line("retries", fmt.Sprintf("%d, the first after %v", spec.Retries, spec.RetryBackoff))
	}
	var flags []string
	for _, f := range []struct {
		on   bool
		name string
	}{{spec.Grow, "grows"}, {spec.Detached, "detached"}, {spec.ReturnErrors, "returns errors"}} {
		if f.on {
			flags = append(flags, f.name)
		}
	}
	line("mode", strings.Join(flags, ", "))
	if len(spec.Env) > 0 {
		line("environment", strings.Join(spec.Env, ", "))
	}
	return summary, strings.TrimSuffix(b.String(), "  \n")
}
