package containerworker

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/burla-temporal/burla/job"
)

// The node agent drives a worker with JSON lines: Commands on the worker's stdin,
// Events on its stdout. The worker's own logs go to stderr.

// Command ops.
const (
	OpRun  = "run"  // work on Spec with the program at Binary until stopped
	OpStop = "stop" // stop working on the current job
	OpWarm = "warm" // start the program at Binary ahead of the next job, if Tenant's and Binary's
	// OpResize tells a worker on a job its new share of the node (Workers and
	// MemoryMB): the node runs fewer workers after a call ran out of memory.
	OpResize = "resize"
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

// Serve reads commands from in and reports on out until in closes or ctx ends.
func (w *Worker) Serve(ctx context.Context, in io.Reader, out io.Writer) error {
	var mu sync.Mutex
	enc := json.NewEncoder(out)
	emit := func(e Event) {
		mu.Lock()
		defer mu.Unlock()
		if err := enc.Encode(e); err != nil {
			w.log.Error("report to agent", "error", err)
		}
	}
	emit(Event{Type: EventReady})
	reportCtx, stopReports := context.WithCancel(ctx)
	reported := make(chan struct{})
	go func() { defer close(reported); w.report(reportCtx, emit) }()
	defer func() { stopReports(); <-reported }()

	var (
		cancelJob context.CancelFunc
		jobDone   chan struct{}
	)
	stop := func() {
		if cancelJob != nil {
			cancelJob()
			<-jobDone
			cancelJob = nil
		}
	}
	defer stop()
	defer w.dropWarm()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var c Command
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			return fmt.Errorf("bad command from agent: %w", err)
		}
		switch c.Op {
		case OpRun:
			stop()
			if c.Spec == nil {
				return errors.New("run command without a spec")
			}
			spec := *c.Spec
			w.share.set(c.Workers, c.MemoryMB)
			w.onOOM = func(index int64, workers int, msg string) {
				emit(Event{Type: EventOOM, Job: spec.ID, Index: index, Workers: workers, Message: msg})
			}
			jctx, cancel := context.WithCancel(ctx)
			cancelJob, jobDone = cancel, make(chan struct{})
			go func(done chan struct{}) {
				defer close(done)
				err := w.Run(jctx, spec, c.Binary)
				if s, ok := w.stats.take(); ok {
					emit(Event{Type: EventStats, Stats: &s}) // the job's last, before the agent hears it ended
				}
				var je *JobError
				switch {
				case errors.As(err, &je):
					emit(Event{Type: EventFailed, Job: spec.ID, ErrType: je.Type, Message: je.Message, Index: je.Index})
				case err != nil:
					emit(Event{Type: EventFailed, Job: spec.ID, Message: err.Error()})
				default:
					emit(Event{Type: EventIdle, Job: spec.ID})
				}
			}(jobDone)
		case OpStop:
			stop()
		case OpResize:
			w.share.set(c.Workers, c.MemoryMB)
		case OpWarm:
			if cancelJob == nil && c.Binary != "" {
				w.Prewarm(c.Binary, c.Tenant)
			}
		default:
			return fmt.Errorf("unknown command %q from agent", c.Op)
		}
	}
	return sc.Err()
}

// statsEvery is how often a worker reports its Stats to its agent.
const statsEvery = time.Second

// report sends the worker's Stats every statsEvery while there is something to say,
// and once more when ctx ends.
func (w *Worker) report(ctx context.Context, emit func(Event)) {
	t := time.NewTicker(statsEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		if s, ok := w.stats.take(); ok {
			emit(Event{Type: EventStats, Stats: &s})
		}
		if ctx.Err() != nil {
			return
		}
	}
}
