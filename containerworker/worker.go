package containerworker

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/burla-temporal/burla/blob"
	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/execfile"
	"github.com/burla-temporal/burla/job"
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
	// SharedDir, if set, is the directory of the tenant's shared files, which the
	// worker keeps in sync with the store (see shared.go). The runtime names it
	// in the worker's environment (job.EnvSharedDir), which the calls inherit.
	SharedDir string
	// Tokens, if set, takes the access tokens the node agent hands the worker
	// (wire.OpToken), which the worker's store was opened with.
	Tokens *Tokens
}

// JobError is a failure that ends the job, with the application error type the
// job workflow fails with (control.ErrUserError, ErrUnknownFunction, ErrBadBinary).
type JobError struct {
	Type    control.ErrorType
	Message string
	Index   int64 // for ErrUserError, the failed input
}

func (e *JobError) Error() string { return e.Message }

// Worker runs jobs, one at a time.
type Worker struct {
	cfg Config
	log *slog.Logger

	mu   sync.Mutex
	warm *warming // a program started ahead of the job that will run it

	stats stats // reported to the node agent by Serve

	// share is the worker's part of the node for its current job, and onOOM, if
	// set, tells the agent that a call of a job with dynamic resources ran out of
	// memory and went back to the queue (both set by Serve).
	share share
	onOOM func(index int64, workers int, msg string)
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
//
// Three things overlap so that the program is never idle between chunks: the next
// chunk is claimed while one runs (see claimAhead), and a finished chunk's results
// are stored and the chunk marked done while the next one runs (see committer).
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

	// The job's variables are read once; a program restarted mid-job gets them too.
	env, err := w.jobEnv(ctx, spec)
	if err != nil {
		return err
	}
	// Calls see the tenant's shared files, synced around each run and call (shared.go).
	shared := w.newSharedDir(spec, log)
	start := func() (caller, error) { return shared.wrap(w.start(spec, binPath, env, logs)) }
	p, err := start()
	if err != nil {
		return err
	}
	defer func() {
		if p != nil {
			p.close()
		}
	}()
	com := newCommitter(w.cfg.Store, spec.ID, logs, log)
	com.stats = &w.stats
	// Results already computed are stored even when ctx ends: they are not lost work.
	go com.run(context.WithoutCancel(ctx))
	defer com.close()
	claims := make(chan *leased)
	pace := newPacer()
	claimCtx, stopClaiming := context.WithCancel(ctx)
	claimed := make(chan struct{})
	go func() { defer close(claimed); w.claimAhead(claimCtx, spec, pace, claims, shared, log) }()
	defer func() { stopClaiming(); <-claimed }()

	out := &outbox{blobs: w.cfg.Blobs, job: spec.ID, com: com, pace: pace}
	for {
		var cl *leased
		select {
		case <-ctx.Done():
			return nil
		case <-com.fail:
			return com.failure()
		case c, ok := <-claims:
			if !ok {
				return nil // the job's queue is gone: it ended
			}
			cl = c
		}
		shared.expect(cl.shared)
		failed, err := w.runChunk(ctx, spec, start, &p, cl, out)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if cl.Attempt() >= MaxDeliveries {
				return chunkFailed(cl, err)
			}
			log.Warn("chunk abandoned; its lease will return it to the queue", "chunk", cl.Chunk().Seq, "attempt", cl.Attempt(), "error", err)
			continue
		}
		if failed != nil && !spec.ReturnErrors {
			com.close() // the failed call's result is stored before the job hears of it
			return failed
		}
		if failed := com.failure(); failed != nil {
			return failed
		}
	}
}

// MaxDeliveries bounds how often a chunk is handled: one that fails on the
// cluster's side on its last delivery (its results cannot be stored, a shared
// file cannot be saved) fails its job, naming its first input and the reason,
// rather than going back to the queue for ever.
const MaxDeliveries = 5

// chunkFailed is the error that ends a job whose chunk cl failed on each of its
// deliveries, the last time with err.
func chunkFailed(cl store.Claim, err error) *JobError {
	index := int64(-1)
	if items := cl.Chunk().Items; len(items) > 0 {
		index = items[0].Index
	}
	return &JobError{Type: control.ErrChunkFailed, Index: index, Message: fmt.Sprintf(
		"input %d: its chunk (%d inputs) failed on the cluster's side on each of its %d deliveries; the last time: %v",
		index, len(cl.Chunk().Items), cl.Attempt(), err)}
}

// caller runs calls one at a time, in order: the job's program in worker mode, or
// its command. See proc.run for what run promises.
type caller interface {
	run(ctx context.Context, fn string, items []store.Item, timeout time.Duration, load loader, done func(callOutcome) bool) (int, error)
	// alive reports whether the caller can take more calls.
	alive() bool
	close()
}

// start starts what runs the job's calls, with env (the job's variables,
// "NAME=value") in its environment.
func (w *Worker) start(spec job.Spec, binPath string, env []string, logs *shipper) (caller, error) {
	if len(spec.Command) > 0 {
		return &command{argv: spec.Command, env: env, limit: w.cfg.LogLimit, lines: logs.add, memoryMB: w.share.memoryMB.Load}, nil
	}
	var p *proc
	if len(env) == 0 {
		// A program prewarmed for the tenant has the worker's environment only.
		p = w.takeWarm(binPath, job.TenantOf(spec.ID))
	}
	var err error
	if p == nil {
		p, err = startProc(binPath, w.cfg.LogLimit, env, w.share.memoryMB.Load)
	}
	if err != nil {
		msg := fmt.Sprintf("binary %s: %v", spec.Binary[:12], err)
		if _, statErr := os.Stat("/lib64/ld-linux-x86-64.so.2"); statErr != nil {
			if dyn, _ := execfile.Dynamic(binPath); dyn {
				// exec's "no such file" is about the missing dynamic loader, not the program.
				msg += "; the program is dynamically linked and this worker has no C library (a FROM-scratch container): build it with CGO_ENABLED=0"
			}
		}
		return nil, &JobError{Type: control.ErrBadBinary, Message: msg}
	}
	p.sink.to(logs.add)
	if !slices.Contains(p.hello.Functions, spec.Function) {
		p.close()
		return nil, &JobError{Type: control.ErrUnknownFunction, Message: fmt.Sprintf(
			"function %q is not registered in the shipped binary (it registers %q); register it with burla.Func in a package-level var so worker processes see it",
			spec.Function, p.hello.Functions)}
	}
	return p, nil
}

// jobEnv reads the job's environment variables from the store (job.EnvKey), as
// "NAME=value", checked against the names the spec gives; nil when it gives none.
func (w *Worker) jobEnv(ctx context.Context, spec job.Spec) ([]string, error) {
	if len(spec.Env) == 0 {
		return nil, nil
	}
	data, err := readBlob(ctx, w.cfg.Blobs, job.EnvKey(spec.ID))
	if err != nil {
		return nil, fmt.Errorf("read the job's environment: %w", err)
	}
	var vars map[string]string
	if err := json.Unmarshal(data, &vars); err != nil {
		return nil, fmt.Errorf("read the job's environment: %w", err)
	}
	env := make([]string, 0, len(spec.Env))
	for _, name := range spec.Env {
		v, ok := vars[name]
		if !ok || !job.ValidEnvName(name) {
			return nil, fmt.Errorf("the job's environment lacks %q, which its spec names", name)
		}
		env = append(env, name+"="+v)
	}
	return env, nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
