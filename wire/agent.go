package wire

import (
	"time"

	"github.com/burla-temporal/burla/job"
)

// The protocol between a node agent and its container workers, apart from the
// framed one between a worker and the user's program above: the agent drives a
// worker with JSON lines, Commands on the worker's stdin and Events on its
// stdout; the worker's own logs go to stderr.

// Command ops.
const (
	OpRun  = "run"  // work on Spec with the program at Binary until stopped
	OpStop = "stop" // stop working on the current job
	OpWarm = "warm" // start the program at Binary ahead of the next job, if Tenant's and Binary's
	// OpResize tells a worker on a job its new share of the node (Workers and
	// MemoryMB): the node runs fewer workers after a call ran out of memory.
	OpResize = "resize"
	// OpToken hands the worker the access token it reaches a cloud store with
	// (Token), and every later one before the last expires: on a cloud VM the
	// metadata server that hands them out is closed to the worker and to the
	// tenants' code it runs, and only the agent, as root, asks it.
	OpToken = "token"
)

// Command is one instruction from the agent.
type Command struct {
	Op     string    `json:"op"`
	Spec   *job.Spec `json:"spec,omitempty"`
	Binary string    `json:"binary,omitempty"` // local path of the job's program (for warm, of a program)
	// Tenant, for warm, is the tenant whose job last ran the program: only a job of
	// that tenant may take the program prewarmed (see job.TenantOf).
	Tenant string `json:"tenant,omitempty"`
	// Workers, for run and resize, is how many workers the node runs the job on
	// now, and MemoryMB this worker's memory for a call (0: no limit of the
	// worker's own). A call of a job with dynamic resources that runs out of
	// memory goes back to the queue while Workers is above 1, and fails at 1.
	Workers  int `json:"workers,omitempty"`
	MemoryMB int `json:"memory_mb,omitempty"`
	// Token is the access token, for token.
	Token *Token `json:"token,omitempty"`
}

// Token is an OAuth2 bearer token and when it expires.
type Token struct {
	Value  string    `json:"value"`
	Expiry time.Time `json:"expiry"`
}

// Event types.
const (
	EventReady  = "ready"  // the worker is warm and idle
	EventIdle   = "idle"   // the worker stopped its job and is idle again
	EventFailed = "failed" // the job failed on this worker; the worker is idle again
	EventStats  = "stats"  // what the worker did since its last report (Stats)
	// EventOOM: a call of a job with dynamic resources ran out of memory (or its
	// process was killed) while Workers workers ran the job; its chunk is back in
	// the queue, and the node should run fewer. The worker goes on with the job.
	EventOOM = "oom"
)

// Event is one report to the agent.
type Event struct {
	Type    string `json:"type"`
	Job     string `json:"job,omitempty"`
	ErrType string `json:"err_type,omitempty"`
	Message string `json:"message,omitempty"`
	Index   int64  `json:"index,omitempty"`
	Stats   *Stats `json:"stats,omitempty"`
	Workers int    `json:"workers,omitempty"` // for oom: the job's workers on the node, as the worker knew
}

// Stats is what a worker did since its last report. The worker sends it to its node
// agent (EventStats) about once a second while there is something to say, and the
// agent exports it as Prometheus metrics: a worker in a FROM-scratch container has
// no port of its own to be scraped on, and one endpoint per node is what operators
// want anyway.
type Stats struct {
	Done   int64     `json:"done,omitempty"`   // inputs whose results were stored
	Failed int64     `json:"failed,omitempty"` // of which the call failed
	Claims []float64 `json:"claims,omitempty"` // seconds each chunk claim took
	Chunks []float64 `json:"chunks,omitempty"` // seconds from each chunk's claim to its done
}
