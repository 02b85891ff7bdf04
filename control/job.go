package control

import (
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
