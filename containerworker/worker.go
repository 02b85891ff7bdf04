package containerworker

import (
	"bytes"
	"context"
	"encoding/json"
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
	"github.com/burla-temporal/burla/wire"
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

	mu   sync.Mutex
	warm *warming // a program started ahead of the job that will run it

	stats stats // reported to the node agent by Serve

	// share is the worker's part of the node for its current job, and onOOM, if
	// set, tells the agent that a call of a job with dynamic resources ran out of
	// memory and went back to the queue (both set by Serve).
	share share
	onOOM func(index int64, workers int, msg string)
}

// warming is a program being started, or started, before its job: a node that
// has just run a program starts it again in each fresh worker, since the next job
// most often runs the same program (a user iterating on one). The process is a new
// one, so nothing of the last job's calls is in it; starting it ahead takes its
// start-up, the largest part of a small job's time on a node, off the job's path.
// Prewarming never crosses tenants: the program is the last job's tenant's, and
// only a job of that tenant takes it. (The node agent does not give a job of
// another tenant a worker that prewarmed at all, since the program's start-up ran
// in it; this check is the worker's own.)
type warming struct {
	path   string
	tenant string
	ready  chan struct{}
	p      *proc
	err    error
}

// Prewarm starts the program at path in worker mode, to be taken by the next job
// that runs it, if that job is tenant's. A program prewarmed earlier for another
// path or tenant is stopped.
func (w *Worker) Prewarm(path, tenant string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.warm != nil {
		if w.warm.path == path && w.warm.tenant == tenant {
			return
		}
		go w.warm.discard()
	}
	wm := &warming{path: path, tenant: tenant, ready: make(chan struct{})}
	w.warm = wm
	go func() {
		defer close(wm.ready)
		wm.p, wm.err = startProc(path, w.cfg.LogLimit, nil, w.share.memoryMB.Load)
		if wm.err != nil {
			w.log.Warn("could not prewarm program", "path", path, "error", wm.err)
		}
	}()
}

// takeWarm returns the program prewarmed for path and tenant, once it has started,
// or nil if there is none, or it failed to start (the caller starts it again, so
// that the error is the job's), or it has since died. A program prewarmed for
// another path or tenant is stopped.
func (w *Worker) takeWarm(path, tenant string) *proc {
	wm := w.unwarm()
	if wm == nil {
		return nil
	}
	if wm.path != path || wm.tenant != tenant {
		go wm.discard()
		return nil
	}
	<-wm.ready
	if wm.err != nil {
		return nil
	}
	if wm.p.exited() {
		wm.p.close()
		return nil
	}
	return wm.p
}

// dropWarm stops a prewarmed program, if any.
func (w *Worker) dropWarm() {
	if wm := w.unwarm(); wm != nil {
		wm.discard()
	}
}

// unwarm takes the prewarmed program, if any, from the worker.
func (w *Worker) unwarm() *warming {
	w.mu.Lock()
	defer w.mu.Unlock()
	wm := w.warm
	w.warm = nil
	return wm
}

func (wm *warming) discard() {
	<-wm.ready
	if wm.p != nil {
		wm.p.close()
	}
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
	go func() { defer close(claimed); w.claimAhead(claimCtx, spec, pace, claims, log) }()
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
	return &JobError{Type: names.ErrChunkFailed, Index: index, Message: fmt.Sprintf(
		"input %d: its chunk (%d inputs) failed on the cluster's side on each of its %d deliveries; the last time: %v",
		index, len(cl.Chunk().Items), cl.Attempt(), err)}
}

// leased is a claimed chunk whose lease is kept while it waits, runs and commits.
type leased struct {
	store.Claim
	release   context.CancelFunc // stops extending the lease
	claimedAt time.Time
}

// claimAhead claims a chunk each time pace asks for one and hands it to claims:
// pace asks as the current chunk is about to end, so that the next one is there
// when it does. It closes claims when the job's queue is gone and returns when ctx
// ends.
func (w *Worker) claimAhead(ctx context.Context, spec job.Spec, pace *pacer, claims chan<- *leased, log *slog.Logger) {
	select {
	case <-pace.want:
	case <-ctx.Done():
		return
	}
	for ctx.Err() == nil {
		start := time.Now()
		cl, err := w.cfg.Store.Claim(ctx, spec.ID, w.cfg.ClaimWait)
		switch {
		case errors.Is(err, store.ErrNoChunk):
			continue
		case errors.Is(err, store.ErrNotFound):
			close(claims)
			return
		case err != nil:
			if ctx.Err() == nil {
				log.Warn("claim failed", "error", err)
				sleep(ctx, 500*time.Millisecond)
			}
			continue
		}
		took := time.Since(start)
		pace.claimed(took)
		w.stats.claimed(took)
		l := &leased{Claim: cl, claimedAt: time.Now()}
		var leaseCtx context.Context
		leaseCtx, l.release = context.WithCancel(context.WithoutCancel(ctx))
		go keepLease(leaseCtx, cl, spec.Lease, log)
		select {
		case claims <- l:
		case <-ctx.Done():
			l.release() // unstarted: its lease returns it to the queue
			return
		}
		select {
		case <-pace.want:
		case <-ctx.Done():
			return
		}
	}
}

// keepLease extends cl's lease until ctx ends, however long its chunk waits and runs.
func keepLease(ctx context.Context, cl store.Claim, lease time.Duration, log *slog.Logger) {
	t := time.NewTicker(max(lease/3, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := cl.Extend(ctx); err != nil && ctx.Err() == nil {
				log.Warn("could not extend lease", "chunk", cl.Chunk().Seq, "error", err)
			}
		}
	}
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
		return nil, &JobError{Type: names.ErrBadBinary, Message: msg}
	}
	p.sink.to(logs.add)
	if !slices.Contains(p.hello.Functions, spec.Function) {
		p.close()
		return nil, &JobError{Type: names.ErrUnknownFunction, Message: fmt.Sprintf(
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

// runChunk runs every input of a claimed chunk and hands its results, and then the
// chunk, to the committer. It returns the first failed call as a *JobError, or an
// error when the chunk had to be abandoned.
//
// A call of a job with dynamic resources that runs out of memory (see
// callOutcome.lost) while the node runs the job on more than one worker is not a
// failure: the results before it are stored, the chunk goes back to the queue at
// once, and the agent hears of it (onOOM), to run fewer workers with more memory
// each. With the node to itself, the call fails.
func (w *Worker) runChunk(ctx context.Context, spec job.Spec, start func() (caller, error), pp *caller, cl *leased, out *outbox) (*JobError, error) {
	var failed *JobError
	var addErr error
	var requeue *callOutcome // the call that ran out of memory, for the chunk to run again
	out.pace.start(len(cl.Chunk().Items))
	defer out.pace.end()
	record := func(oc callOutcome) bool {
		out.pace.answered()
		if workers := w.share.workers.Load(); oc.lost && spec.Dynamic && workers > 1 {
			requeue = &oc
			return false
		}
		r := store.Result{Index: oc.res.Index, Output: oc.res.Output}
		if e := oc.res.Err; e != nil && oc.lost && spec.Dynamic {
			e.Message += "; it ran alone on its node, so it needs more memory than a node of this cluster has: use nodes with more (burla cluster standby --ram-mb) or make the call use less"
		}
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
	load := func(ctx context.Context, it store.Item) ([]byte, error) {
		if it.Blob == "" {
			return it.Data, nil
		}
		b, err := readBlob(ctx, w.cfg.Blobs, it.Blob)
		if errors.Is(err, blob.ErrNotFound) {
			return nil, &inputGone{index: it.Index, key: it.Blob}
		}
		return b, err
	}
	// The chunk is the client's word, and the blob store answers this worker for
	// every tenant: an input that names any blob but its own is not loaded, and
	// fails.
	var err error
	rest := cl.Chunk().Items
	for i := 0; i < len(rest); i++ {
		if it := rest[i]; it.Blob != "" {
			if kerr := job.CheckInputKey(spec.ID, it.Index, it.Blob); kerr != nil {
				w.log.Warn("refused an input that names another blob", "job", spec.ID, "input", it.Index, "blob", it.Blob)
				if !record(callOutcome{res: wire.Result{Index: it.Index, Err: &wire.Error{Kind: store.KindError, Message: "burla refused the input: " + kerr.Error()}}}) {
					rest, err = nil, addErr
					break
				}
				rest = slices.Delete(slices.Clone(rest), i, i+1)
				i--
			}
		}
	}
	for len(rest) > 0 && err == nil {
		if *pp == nil {
			p, serr := start()
			if serr != nil {
				err = serr
				break
			}
			*pp = p
		}
		var n int
		n, err = (*pp).run(ctx, spec.Function, rest, spec.InputTimeout, load, record)
		if !(*pp).alive() {
			(*pp).close()
			*pp = nil
		}
		var gone *inputGone
		if errors.As(err, &gone) && addErr == nil {
			// Another delivery would find it gone too: the input fails, saying
			// why, instead of its chunk coming back for ever.
			w.log.Warn("an input's blob is gone from the store", "job", spec.ID, "input", gone.index, "blob", gone.key)
			err = nil
			if i := slices.IndexFunc(rest, func(it store.Item) bool { return it.Index == gone.index }); i >= n {
				if !record(callOutcome{res: wire.Result{Index: gone.index, Err: &wire.Error{Kind: store.KindError, Message: gone.Error()}}}) {
					err, rest = addErr, nil
					continue
				}
				rest = slices.Delete(slices.Clone(rest), i, i+1)
			}
		}
		switch {
		case addErr != nil:
			err = addErr
		case requeue != nil, failed != nil && !spec.ReturnErrors:
			rest = nil
		default:
			rest = rest[n:]
		}
	}
	out.flush()
	if requeue != nil && err == nil {
		out.com.giveBack(cl)
		e := requeue.res.Err
		workers := int(w.share.workers.Load())
		w.log.Warn("a call ran out of memory; its chunk is back in the queue for the node to run with fewer workers",
			"job", spec.ID, "input", requeue.res.Index, "workers", workers, "error", e.Message)
		if w.onOOM != nil {
			w.onOOM(requeue.res.Index, workers, e.Message)
		}
		return failed, nil
	}
	if err != nil || (failed != nil && !spec.ReturnErrors) {
		// Abandoned, or the job is ending: leave the chunk to its lease and the
		// job's clean-up; a worker taken off the job (ctx ended) gives it back at
		// once, for the node's other workers.
		if ctx.Err() != nil && failed == nil {
			out.com.giveBack(cl)
		} else {
			out.com.release(cl)
		}
		return failed, err
	}
	out.com.done(cl)
	return failed, nil
}

// inputGone is an input whose blob is no longer in the store (deleted by hand,
// or by a retention that passed).
type inputGone struct {
	index int64
	key   string
}

func (e *inputGone) Error() string {
	return fmt.Sprintf("burla could not run input %d: its value (blob %s) is gone from the cluster's store", e.index, e.key)
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

// outbox batches a worker's results for its committer: a batch goes at
// batchBytes, after flushEvery, and at the end of each chunk. Outputs too large
// for a record are written as blobs first.
type outbox struct {
	blobs blob.Store
	job   string
	com   *committer
	pace  *pacer

	rs        []store.Result
	bytes     int
	lastFlush time.Time
}

func (o *outbox) add(ctx context.Context, r store.Result) error {
	if len(r.Output) > store.MaxInlineBytes {
		key := job.OutputKey(o.job, r.Index)
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
		o.flush()
	}
	o.rs = append(o.rs, r)
	o.bytes += size
	if time.Since(o.lastFlush) >= flushEvery {
		o.flush()
	}
	return nil
}

func (o *outbox) flush() {
	o.lastFlush = time.Now()
	if len(o.rs) == 0 {
		return
	}
	o.com.put(o.rs)
	o.rs, o.bytes = nil, 0
}

// committer stores a worker's results and marks its chunks done, in order, on a
// goroutine of its own, while the worker runs the next chunk. A chunk is marked
// done only once every result of it is stored, and the lines printed before them
// are; if a write fails, the chunk is left to its lease and runs again.
type committer struct {
	st   Store
	job  string
	logs *shipper
	log  *slog.Logger
	// stats, if set, counts the results stored and the chunks done.
	stats *stats

	ops       chan commitOp
	finished  chan struct{}
	closeOnce sync.Once

	mu     sync.Mutex
	failed *JobError     // a chunk on its last delivery whose results could not be stored
	fail   chan struct{} // closed once failed is set
}

// failure returns the error that ends the job, if a chunk's results could not be
// stored on its last delivery.
func (c *committer) failure() *JobError {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failed
}

// commitTimeout bounds each write of the committer, which goes on after its job's
// context ends (the results it holds are finished work) and must still end.
const commitTimeout = 30 * time.Second

type commitOp struct {
	results []store.Result
	chunk   *leased // mark done (or, if release, let go) once what came before is stored
	release bool
	// giveBack, with release, puts the chunk back in the queue at once rather
	// than when its lease runs out.
	giveBack bool
}

func newCommitter(st Store, jobID string, logs *shipper, log *slog.Logger) *committer {
	return &committer{st: st, job: jobID, logs: logs, log: log, ops: make(chan commitOp, 16), finished: make(chan struct{}), fail: make(chan struct{})}
}

func (c *committer) put(rs []store.Result) { c.ops <- commitOp{results: rs} }
func (c *committer) done(cl *leased)       { c.ops <- commitOp{chunk: cl} }
func (c *committer) release(cl *leased)    { c.ops <- commitOp{chunk: cl, release: true} }
func (c *committer) giveBack(cl *leased)   { c.ops <- commitOp{chunk: cl, release: true, giveBack: true} }

// close stores what was handed over and stops the committer.
func (c *committer) close() {
	c.closeOnce.Do(func() { close(c.ops) })
	<-c.finished
}

func (c *committer) run(ctx context.Context) {
	defer close(c.finished)
	var lost error // why a result of the current chunk could not be stored
	for op := range c.ops {
		if len(op.results) > 0 {
			octx, cancel := context.WithTimeout(ctx, commitTimeout)
			err := c.logs.flush(octx)
			if err == nil {
				err = c.st.PutResults(octx, c.job, op.results)
			}
			cancel()
			if err != nil {
				c.log.Warn("could not store results", "results", len(op.results), "error", err)
				lost = err
			} else {
				c.stats.stored(op.results)
			}
		}
		if op.chunk == nil {
			continue
		}
		op.chunk.release()
		switch {
		case op.giveBack:
			octx, cancel := context.WithTimeout(ctx, commitTimeout)
			if err := op.chunk.Return(octx); err != nil {
				c.log.Warn("could not return chunk to the queue; its lease will", "chunk", op.chunk.Chunk().Seq, "error", err)
			}
			cancel()
		case op.release:
		case lost != nil && op.chunk.Attempt() >= MaxDeliveries:
			c.log.Error("chunk failed on its last delivery: some of its results were not stored", "chunk", op.chunk.Chunk().Seq, "error", lost)
			c.mu.Lock()
			if c.failed == nil {
				c.failed = chunkFailed(op.chunk, fmt.Errorf("its results could not be stored: %w", lost))
				close(c.fail)
			}
			c.mu.Unlock()
		case lost != nil:
			c.log.Warn("chunk left to its lease, to run again: some of its results were not stored", "chunk", op.chunk.Chunk().Seq, "attempt", op.chunk.Attempt())
		default:
			octx, cancel := context.WithTimeout(ctx, commitTimeout)
			err := op.chunk.Done(octx)
			cancel()
			if err != nil {
				c.log.Warn("could not mark chunk done; it will run again", "chunk", op.chunk.Chunk().Seq, "error", err)
			} else if !op.chunk.claimedAt.IsZero() {
				c.stats.chunkDone(time.Since(op.chunk.claimedAt))
			}
		}
		lost = nil
	}
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
