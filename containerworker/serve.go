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

	"github.com/burla-temporal/burla/wire"
)

// Serve reads commands from in and reports on out until in closes or ctx ends.
func (w *Worker) Serve(ctx context.Context, in io.Reader, out io.Writer) error {
	var mu sync.Mutex
	enc := json.NewEncoder(out)
	emit := func(e wire.Event) {
		mu.Lock()
		defer mu.Unlock()
		if err := enc.Encode(e); err != nil {
			w.log.Error("report to agent", "error", err)
		}
	}
	emit(wire.Event{Type: wire.EventReady})
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
		var c wire.Command
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			return fmt.Errorf("bad command from agent: %w", err)
		}
		switch c.Op {
		case wire.OpRun:
			stop()
			if c.Spec == nil {
				return errors.New("run command without a spec")
			}
			spec := *c.Spec
			w.share.set(c.Workers, c.MemoryMB)
			w.onOOM = func(index int64, workers int, msg string) {
				emit(wire.Event{Type: wire.EventOOM, Job: spec.ID, Index: index, Workers: workers, Message: msg})
			}
			jctx, cancel := context.WithCancel(ctx)
			cancelJob, jobDone = cancel, make(chan struct{})
			go func(done chan struct{}) {
				defer close(done)
				err := w.Run(jctx, spec, c.Binary)
				if s, ok := w.stats.take(); ok {
					emit(wire.Event{Type: wire.EventStats, Stats: &s}) // the job's last, before the agent hears it ended
				}
				var je *JobError
				switch {
				case errors.As(err, &je):
					emit(wire.Event{Type: wire.EventFailed, Job: spec.ID, ErrType: string(je.Type), Message: je.Message, Index: je.Index})
				case err != nil:
					emit(wire.Event{Type: wire.EventFailed, Job: spec.ID, Message: err.Error()})
				default:
					emit(wire.Event{Type: wire.EventIdle, Job: spec.ID})
				}
			}(jobDone)
		case wire.OpStop:
			stop()
		case wire.OpResize:
			w.share.set(c.Workers, c.MemoryMB)
		case wire.OpToken:
			if c.Token != nil && w.cfg.Tokens != nil {
				w.cfg.Tokens.Set(*c.Token)
			}
		case wire.OpWarm:
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
func (w *Worker) report(ctx context.Context, emit func(wire.Event)) {
	t := time.NewTicker(statsEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		if s, ok := w.stats.take(); ok {
			emit(wire.Event{Type: wire.EventStats, Stats: &s})
		}
		if ctx.Err() != nil {
			return
		}
	}
}
