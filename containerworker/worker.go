// Package containerworker is the process inside each prewarmed container (or, on the
// process runtime, each worker process): it takes a job from its node agent, starts
// the job's program in worker mode, claims chunks of inputs from the store, runs one
// call at a time, and writes results and the lines each call printed.
package containerworker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/burla-temporal/burla/blob"
	"github.com/burla-temporal/burla/execfile"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/names"
	"github.com/burla-temporal/burla/store"
)

// Store is what a worker needs of the data plane.
type Store interface {
	store.Queue
	store.Results
	store.Logs
}

// Config configures a Worker.
type Config struct {
	Store  Store
	Blobs  blob.Store
	Logger *slog.Logger
	// LogLimit cuts each call's output on each stream after this many bytes (default 1 MiB).
	LogLimit int
	// ClaimWait is how long one claim waits for a chunk (default 1s).
	ClaimWait time.Duration
}

// JobError is a failure that ends the job, with the application error type the
// job workflow fails with (names.ErrUserError, ErrUnknownFunction, ErrBadBinary).
type JobError struct {
	Type    string
	Message string
	Index   int64 // for ErrUserError, the failed input
}

func (e *JobError) Error() string { return e.Message }

// Worker runs jobs, one at a time.
type Worker struct {
	cfg Config
	log *slog.Logger
}

// New returns a Worker.
func New(cfg Config) *Worker {
	if cfg.LogLimit <= 0 {
		cfg.LogLimit = 1 << 20
	}
	if cfg.ClaimWait <= 0 {
		cfg.ClaimWait = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Worker{cfg: cfg, log: cfg.Logger}
}

// Run works on spec with the program at binPath until ctx is cancelled or the job
// fails: it returns nil when cancelled, and a *JobError for a failure that ends the
// job. Chunks it claimed and did not finish return to the queue when their lease
// runs out.
func (w *Worker) Run(ctx context.Context, spec job.Spec, binPath string) error {
	log := w.log.With("job", spec.ID)
	logs := newShipper(w.cfg.Store, spec.ID, log)
	shipCtx, stopShipping := context.WithCancel(context.WithoutCancel(ctx))
	shipped := make(chan struct{})
	go func() { logs.run(shipCtx); close(shipped) }()
	defer func() {
		logs.flush(context.WithoutCancel(ctx))
		stopShipping()
		<-shipped
	}()

	p, err := w.start(spec, binPath, logs)
	if err != nil {
		return err
	}
	defer func() {
		if p != nil {
			p.close()
		}
	}()
	out := &outbox{st: w.cfg.Store, blobs: w.cfg.Blobs, job: spec.ID, logs: logs}
	for ctx.Err() == nil {
		cl, err := w.cfg.Store.Claim(ctx, spec.ID, w.cfg.ClaimWait)
		switch {
		case errors.Is(err, store.ErrNoChunk):
			continue
		case errors.Is(err, store.ErrNotFound):
			return nil // the job's queue is gone: it ended
		case err != nil:
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("claim failed", "error", err)
			sleep(ctx, 500*time.Millisecond)
			continue
		}
		failed, err := w.runChunk(ctx, spec, binPath, &p, cl, out, logs, log)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("chunk abandoned; its lease will return it to the queue", "chunk", cl.Chunk().Seq, "error", err)
			continue
		}
		if failed != nil && !spec.ReturnErrors {
			return failed
		}
	}
	return nil
}

// caller runs calls one at a time, in order: the job's program in worker mode, or
// its command. See proc.run for what run promises.
type caller interface {
	run(ctx context.Context, fn string, items []store.Item, timeout time.Duration, load loader, done func(callOutcome) bool) (int, error)
	// alive reports whether the caller can take more calls.
	alive() bool
	close()
}

func (w *Worker) start(spec job.Spec, binPath string, logs *shipper) (caller, error) {
	if len(spec.Command) > 0 {
		return &command{argv: spec.Command, limit: w.cfg.LogLimit, lines: logs.add}, nil
	}
	p, err := startProc(binPath, w.cfg.LogLimit, logs.add)
	if err != nil {
		msg := fmt.Sprintf("binary %s: %v", spec.Binary[:12], err)
		if _, statErr := os.Stat("/lib64/ld-linux-x86-64.so.2"); statErr != nil {
			if dyn, _ := execfile.Dynamic(binPath); dyn {
				// exec's "no such file" is about the missing dynamic loader, not the program.
				msg += "; the program is dynamically linked and this worker has no C library (a FROM-scratch container): build it with CGO_ENABLED=0"
			}
		}
		return nil, &JobError{Type: names.ErrBadBinary, Message: msg}
	}
	if !slices.Contains(p.hello.Functions, spec.Function) {
		p.close()
		return nil, &JobError{Type: names.ErrUnknownFunction, Message: fmt.Sprintf(
			"function %q is not registered in the shipped binary (it registers %q); register it with burla.Func in a package-level var so worker processes see it",
			spec.Function, p.hello.Functions)}
	}
	return p, nil
}

// runChunk runs every input of a claimed chunk and marks it done once its results
// are stored. It returns the first failed call as a *JobError, or an error when the
// chunk had to be abandoned.
func (w *Worker) runChunk(ctx context.Context, spec job.Spec, binPath string, pp *caller, cl store.Claim, out *outbox, logs *shipper, log *slog.Logger) (*JobError, error) {
	chunk := cl.Chunk()
	// Keep the lease while the chunk runs, however long its calls take.
	leaseCtx, stopLease := context.WithCancel(ctx)
	defer stopLease()
	go func() {
		t := time.NewTicker(max(spec.Lease/3, 100*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-leaseCtx.Done():
				return
			case <-t.C:
				if err := cl.Extend(leaseCtx); err != nil && leaseCtx.Err() == nil {
					log.Warn("could not extend lease", "chunk", chunk.Seq, "error", err)
				}
			}
		}
	}()
	var failed *JobError
	var addErr error
	record := func(oc callOutcome) bool {
		r := store.Result{Index: oc.res.Index, Output: oc.res.Output}
		if e := oc.res.Err; e != nil {
			r = store.Result{Index: oc.res.Index, Err: &store.CallError{Kind: e.Kind, Message: e.Message, Stack: e.Stack}}
			if failed == nil {
				failed = &JobError{Type: names.ErrUserError, Index: oc.res.Index, Message: fmt.Sprintf("input %d failed (%s): %s", oc.res.Index, e.Kind, e.Message)}
			}
		}
		if addErr = out.add(ctx, r); addErr != nil {
			return false
		}
		return failed == nil || spec.ReturnErrors
	}
	load := func(ctx context.Context, it store.Item) ([]byte, error) { return readBlob(ctx, w.cfg.Blobs, it.Blob) }
	for rest := chunk.Items; len(rest) > 0; {
		if *pp == nil {
			p, err := w.start(spec, binPath, logs)
			if err != nil {
				return nil, err
			}
			*pp = p
		}
		n, err := (*pp).run(ctx, spec.Function, rest, spec.InputTimeout, load, record)
		if !(*pp).alive() {
			(*pp).close()
			*pp = nil
		}
		switch {
		case addErr != nil:
			return nil, addErr
		case err != nil:
			return nil, err
		case failed != nil && !spec.ReturnErrors:
			rest = nil
		default:
			rest = rest[n:]
		}
	}
	if err := out.flush(ctx); err != nil {
		return nil, err
	}
	if failed != nil && !spec.ReturnErrors {
		return failed, nil // the job is ending; leave the chunk to the job's clean-up
	}
	stopLease()
	if err := cl.Done(ctx); err != nil {
		return nil, err
	}
	return failed, nil
}

func readBlob(ctx context.Context, b blob.Store, key string) ([]byte, error) {
	r, err := b.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, fmt.Errorf("read blob %s: %w", key, err)
	}
	return buf.Bytes(), nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Batching: results and log lines are written in batches of up to batchBytes, at
// least every flushEvery, and always before a chunk is marked done.
const (
	batchBytes = 256 << 10
	flushEvery = 50 * time.Millisecond
)

// outbox batches results. Before results are written, the lines printed so far are,
// so that a caller that has every result has every line too.
type outbox struct {
	st    store.Results
	blobs blob.Store
	job   string
	logs  *shipper

	rs        []store.Result
	bytes     int
	lastFlush time.Time
}

func (o *outbox) add(ctx context.Context, r store.Result) error {
	if len(r.Output) > store.MaxInlineBytes {
		key := fmt.Sprintf("out-%s-%d", o.job, r.Index)
		if err := o.blobs.Put(ctx, key, bytes.NewReader(r.Output)); err != nil {
			return fmt.Errorf("store output of input %d: %w", r.Index, err)
		}
		r.Output, r.Blob = nil, key
	}
	size := len(r.Output) + len(r.Blob) + 16
	if r.Err != nil {
		size += len(r.Err.Message) + len(r.Err.Stack)
		// A stack can be long; keep the batch within the record limit.
		if size > store.MaxInlineBytes {
			r.Err.Stack = r.Err.Stack[:min(len(r.Err.Stack), store.MaxInlineBytes/2)]
			r.Err.Message = r.Err.Message[:min(len(r.Err.Message), store.MaxInlineBytes/4)]
		}
	}
	if o.bytes+size > batchBytes {
		if err := o.flush(ctx); err != nil {
			return err
		}
	}
	o.rs = append(o.rs, r)
	o.bytes += size
	if time.Since(o.lastFlush) >= flushEvery {
		return o.flush(ctx)
	}
	return nil
}

func (o *outbox) flush(ctx context.Context) error {
	o.lastFlush = time.Now()
	if len(o.rs) == 0 {
		return nil
	}
	if err := o.logs.flush(ctx); err != nil {
		return err
	}
	if err := o.st.PutResults(ctx, o.job, o.rs); err != nil {
		return err
	}
	o.rs, o.bytes = o.rs[:0], 0
	return nil
}

// shipper batches log lines and writes them every flushEvery, so that a long call's
// output streams to the caller while it runs.
type shipper struct {
	st  store.Logs
	job string
	log *slog.Logger

	mu    sync.Mutex
	lines []store.LogLine
	bytes int
	kick  chan struct{}

	flushMu sync.Mutex // keeps batches in order
}

func newShipper(st store.Logs, jobID string, log *slog.Logger) *shipper {
	return &shipper{st: st, job: jobID, log: log, kick: make(chan struct{}, 1)}
}

func (s *shipper) add(l store.LogLine) {
	s.mu.Lock()
	s.lines = append(s.lines, l)
	s.bytes += len(l.Text) + 12
	full := s.bytes >= batchBytes
	s.mu.Unlock()
	if full {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

func (s *shipper) run(ctx context.Context) {
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
		if err := s.flush(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("could not write log lines", "error", err)
		}
	}
}

// flush writes every line added so far.
func (s *shipper) flush(ctx context.Context) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	lines := s.lines
	s.lines, s.bytes = nil, 0
	s.mu.Unlock()
	for len(lines) > 0 {
		n, size := 0, 0
		for n < len(lines) && (n == 0 || size+len(lines[n].Text)+12 <= batchBytes) {
			size += len(lines[n].Text) + 12
			n++
		}
		if err := s.st.PutLogs(ctx, s.job, lines[:n]); err != nil {
			// Put them back so that a later flush retries them, in order.
			s.mu.Lock()
			s.lines = append(lines, s.lines...)
			s.mu.Unlock()
			return err
		}
		lines = lines[n:]
	}
	return nil
}
