package burla

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/status"
	"github.com/burla-temporal/burla/store"
)

// RemoteParallelMap runs f on every input, each call in its own worker on the
// cluster, and returns the outputs in input order. The first call that fails ends
// the job and is returned as a *RemoteError; cancelling ctx cancels the job.
func RemoteParallelMap[In, Out any](ctx context.Context, f *Function[In, Out], inputs []In, opts ...Option) ([]Out, error) {
	j, err := Submit(ctx, f, inputs, opts...)
	if err != nil {
		return nil, err
	}
	return j.Outputs(ctx)
}

// Stream runs f on every input like RemoteParallelMap and yields each output as it
// arrives, with its input's index. A failed call or a failed job is yielded as the
// error, and iteration ends after it.
func Stream[In, Out any](ctx context.Context, f *Function[In, Out], inputs []In, opts ...Option) iter.Seq2[Result[Out], error] {
	return func(yield func(Result[Out], error) bool) {
		j, err := Submit(ctx, f, inputs, opts...)
		if err != nil {
			yield(Result[Out]{Index: -1}, err)
			return
		}
		for r, err := range j.Results(ctx) {
			if !yield(r, err) {
				return
			}
		}
	}
}

// Result is one input's output.
type Result[Out any] struct {
	Index  int
	Output Out
	// Earlier are the failures of the call's earlier attempts, oldest first, in a
	// job with Retries; nil if its first attempt ended it.
	Earlier []*RemoteError
}

// Job is a running map job.
type Job[Out any] struct {
	id      string
	inputs  int
	c       *Cluster
	o       options
	started time.Time

	uploadErr chan error // receives the upload's outcome once
	stopHB    context.CancelFunc
	hbDone    chan struct{} // closed when the heartbeat goroutine has returned

	results *inbox[store.Result]
	rw, lw  store.Watch
	logMu   sync.Mutex // serialises log output with the spinner
	done    atomic.Int64
	// uploaded counts the inputs written to the store so far.
	uploaded atomic.Int64
}

// ID is the job's ID, which is also its workflow ID on Temporal.
func (j *Job[Out]) ID() string { return j.id }

// Submit starts a job running f on every input and returns once it has started; the
// inputs are still being uploaded when it returns, unless the job is detached, when
// it returns once they are all in the store. Read its results with Outputs or
// Results.
func Submit[In, Out any](ctx context.Context, f *Function[In, Out], inputs []In, opts ...Option) (*Job[Out], error) {
	if !mainCalled() && f.command == nil {
		return nil, errors.New("burla: burla.Main() must be the first call in main, so that the program can serve its functions on the cluster")
	}
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	vars, err := jobEnv(&o)
	if err != nil {
		return nil, err
	}
	c, err := clusterFor(ctx, &o)
	if err != nil {
		return nil, err
	}
	var digest, path string
	image := cmp.Or(f.image, o.image)
	prep := startPreparing(&o) // says what Submit waits for until the job exists
	defer prep.stop()
	if f.command == nil {
		if o.binary == "" && hostPlatform != nodePlatform {
			prep.buildingProgram(nodePlatform)
		}
		if path, digest, err = binaryFor(ctx, &o); err != nil {
			return nil, err
		}
		prep.uploadingProgram(path)
		if err := c.upload(ctx, path, digest); err != nil {
			return nil, err
		}
	}
	var env control.EnvInfo
	if f.command == nil || image != "" {
		prep.buildingEnv(image)
		if env, err = c.env(ctx, digest, image); err != nil {
			var be *Error
			if errors.As(err, &be) && be.Kind == KindBadBinary && path != "" {
				// The cluster knows the program by its digest; the caller, by its path.
				be.Msg = fmt.Sprintf("%s cannot run on the cluster: %s", path, be.Msg)
			}
			return nil, err
		}
	}
	prep.stop()
	if f.command == nil {
		if !slices.Contains(env.Functions, f.name) {
			return nil, &Error{Kind: KindUnknownFunction, Index: -1, Msg: fmt.Sprintf(
				"function %q is not registered in the program that would run it (%s registers %q); register it with burla.Func in a package-level var so that worker processes register it too",
				f.name, path, env.Functions)}
		}
	}
	now := time.Now()
	spec := job.Spec{
		ID:             job.NewID(now, c.tenant),
		Tenant:         c.tenant,
		Function:       f.name,
		Binary:         digest,
		Command:        f.command,
		Image:          env.Image,
		Inputs:         len(inputs),
		FuncCPU:        o.funcCPU,
		FuncRAMMB:      o.funcRAMMB,
		Dynamic:        !o.fixed,
		MaxParallelism: o.maxParallelism,
		Grow:           o.grow,
		GPU:            o.funcGPU,
		Region:         o.region,
		DiskGB:         o.diskGB,
		InputTimeout:   o.inputTimeout,
		Lease:          o.lease,
		Detached:       o.detach,
		UploadWatched:  o.detach,
		ClientTimeout:  o.clientTimeout,
		ReturnErrors:   o.returnErrors,
		Retries:        o.retries,
		RetryBackoff:   o.retryBackoff,
		Created:        now,
	}
	if spec.Retries == 0 {
		spec.RetryBackoff = 0
	}
	spec.Version = spec.Needs()
	if len(vars) > 0 {
		// The values go to the store alone; the spec, which Temporal keeps in the
		// job's history, names them.
		data, _ := json.Marshal(vars)
		if err := c.st.Put(ctx, job.EnvKey(spec.ID), bytes.NewReader(data)); err != nil {
			return nil, fmt.Errorf("burla: store the job's environment: %w", err)
		}
		spec.Env = slices.Sorted(maps.Keys(vars))
	}
	if err := c.st.CreateJob(ctx, spec); err != nil {
		return nil, fmt.Errorf("burla: create job: %w", err)
	}
	j := newJob[Out](c, o, spec.ID, spec.Inputs)
	// While the workflow starts, the inputs are uploaded (workers wait for chunks),
	// and the results and logs are watched (a watch reads from the first record).
	upCtx, cancelUpload := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		defer cancelUpload()
		stopRecord := recordUpload(upCtx, c.st, j.id, len(inputs), &j.uploaded)
		err := upload(upCtx, c, j.id, inputs, f.dynamicIn, &j.uploaded)
		stopRecord()
		j.uploadErr <- err
	}()
	prepared := make(chan error, 1)
	go func() { prepared <- j.prepare(ctx) }()
	_, err = control.NewClient(c.tc).StartJob(ctx, spec)
	perr := <-prepared
	if err != nil {
		cancelUpload()
		j.close()
		if e := unauthorized(err); e != nil {
			return nil, e
		}
		return nil, fmt.Errorf("burla: start job %s: %w", j.id, err)
	}
	if perr != nil {
		cancelUpload()
		j.cancelQuietly()
		j.close()
		return nil, perr
	}
	if o.onStart != nil {
		o.onStart(j.id)
	}
	if o.detach {
		if err := j.awaitUpload(ctx); err != nil {
			cancelUpload()
			j.cancelQuietly()
			j.close()
			return nil, err
		}
	}
	return j, nil
}

// awaitUpload waits until a detached job's inputs are all in the store, showing
// how many are, and then stops its heartbeat: the job no longer needs this client.
func (j *Job[Out]) awaitUpload(ctx context.Context) error {
	prep := startPreparing(&j.o)
	defer prep.stop()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		prep.set(status.WaitUploadingInputs, fmt.Sprintf("uploading the job's inputs: %d of %d", j.uploaded.Load(), j.inputs))
		select {
		case err := <-j.uploadErr:
			if err != nil {
				return err
			}
			j.uploadErr <- nil // for Results, which also waits for it
			j.stopHeartbeat()
			return nil
		case <-ctx.Done():
			return fmt.Errorf("burla: job %s: its inputs were not all uploaded (%d of %d) when the caller gave up; it is cancelled: %w",
				j.id, j.uploaded.Load(), j.inputs, ctx.Err())
		case <-t.C:
		}
	}
}

// Attach returns a handle on a job started earlier, typically with Detach, by its ID.
// Its results are read from the start.
func Attach[Out any](ctx context.Context, jobID string, opts ...Option) (*Job[Out], error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	o.detach = true // attaching never makes a job depend on this client
	c, err := clusterFor(ctx, &o)
	if err != nil {
		return nil, err
	}
	if t := job.TenantOf(jobID); t != c.tenant && !c.system {
		// The cluster would not show it anyway: this says why.
		return nil, &Error{Kind: KindUnauthorized, Job: jobID, Index: -1, Msg: fmt.Sprintf("job %s is not one of tenant %s's", jobID, c.tenant)}
	}
	spec, err := c.st.Job(ctx, jobID)
	if err != nil {
		return nil, fmt.Errorf("burla: attach to job %s: %w", jobID, err)
	}
	o.returnErrors = spec.ReturnErrors // the job's mode, whoever reads it
	j := newJob[Out](c, o, jobID, spec.Inputs)
	j.uploadErr <- nil
	j.uploaded.Store(int64(spec.Inputs))
	if err := j.watch(ctx); err != nil {
		return nil, err
	}
	return j, nil
}

// jobEnv is the environment o gives the job's calls: Env's variables and
// ForwardEnv's, checked.
func jobEnv(o *options) (map[string]string, error) {
	env := maps.Clone(o.env)
	for _, name := range o.forwardEnv {
		v, ok := os.LookupEnv(name)
		if !ok {
			return nil, fmt.Errorf("burla: ForwardEnv(%q): %s is not set in this program's environment", name, name)
		}
		if env == nil {
			env = map[string]string{}
		}
		env[name] = v
	}
	size := 0
	for k, v := range env {
		if !job.ValidEnvName(k) {
			return nil, fmt.Errorf("burla: Env: %q is not a variable name a job may set (letters, digits and underscores, not starting with a digit or BURLA_)", k)
		}
		if strings.ContainsRune(v, 0) {
			return nil, fmt.Errorf("burla: Env: the value of %s holds a NUL byte", k)
		}
		size += len(k) + len(v)
	}
	switch {
	case len(env) > job.MaxEnvVars:
		return nil, fmt.Errorf("burla: Env: %d variables, more than %d", len(env), job.MaxEnvVars)
	case size > job.MaxEnvBytes:
		return nil, fmt.Errorf("burla: Env: %d bytes of names and values, more than %d; pass large data as inputs", size, job.MaxEnvBytes)
	}
	return env, nil
}

func newJob[Out any](c *Cluster, o options, id string, inputs int) *Job[Out] {
	return &Job[Out]{id: id, inputs: inputs, c: c, o: o, started: time.Now(),
		uploadErr: make(chan error, 1), results: newInbox[store.Result]()}
}

// prepare watches the job's results and logs and starts its heartbeat, which a
// detached job needs only until its inputs are uploaded (stopHeartbeat).
func (j *Job[Out]) prepare(ctx context.Context) error {
	if err := j.watch(ctx); err != nil {
		return err
	}
	if err := j.c.st.Heartbeat(ctx, j.id); err != nil {
		return fmt.Errorf("burla: job %s: %w", j.id, err)
	}
	// Heartbeats stop when ctx ends or the results have been read, whichever is
	// first; a job whose results nobody reads is then cancelled by the cluster.
	hbCtx, stop := context.WithCancel(ctx)
	j.stopHB = stop
	j.hbDone = make(chan struct{})
	go func() {
		defer close(j.hbDone)
		j.heartbeat(hbCtx)
	}()
	return nil
}

// stopHeartbeat ends the heartbeat of a detached job once its inputs are uploaded.
func (j *Job[Out]) stopHeartbeat() {
	if j.stopHB == nil {
		return
	}
	j.stopHB()
	<-j.hbDone
	j.stopHB = nil
}

// release tells the cluster that the client has read every result, so that the
// job ends well without its heartbeat: a chunk whose result is stored but whose
// completion was lost (a store restart) may still be running again.
func (j *Job[Out]) release(ctx context.Context) {
	if j.stopHB == nil {
		return // detached: nobody watches the heartbeat
	}
	j.stopHB()
	<-j.hbDone // a beat in flight must not land after the release
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := j.c.st.Release(ctx, j.id); err != nil {
		// The job still ends once its queue is drained; only a lost chunk's re-run
		// could outlast the client timeout and fail it with ClientGone.
		slog.Debug("burla: could not release the job", "job", j.id, "error", err)
	}
}

func (j *Job[Out]) watch(ctx context.Context) error {
	var err error
	if j.rw, err = j.c.st.WatchResults(ctx, j.id, j.results.put); err != nil {
		return fmt.Errorf("burla: job %s: %w", j.id, err)
	}
	if j.lw, err = j.c.st.WatchLogs(ctx, j.id, j.printLogs); err != nil {
		j.rw.Close()
		return fmt.Errorf("burla: job %s: %w", j.id, err)
	}
	return nil
}

func (j *Job[Out]) close() {
	if j.stopHB != nil {
		j.stopHB()
	}
	if j.rw != nil {
		j.rw.Close()
	}
	if j.lw != nil {
		j.lw.Close()
	}
}

func (j *Job[Out]) heartbeat(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_ = j.c.st.Heartbeat(hctx, j.id) // a missed beat is retried on the next tick
			cancel()
		}
	}
}

func (j *Job[Out]) printLogs(lines []store.LogLine) {
	j.logMu.Lock()
	defer j.logMu.Unlock()
	if j.o.onLog == nil {
		clearSpinner(j)
	}
	for _, l := range lines {
		if j.o.onLog != nil {
			j.o.onLog(LogLine{Index: int(l.Index), Stderr: l.Stream == store.Stderr, Text: l.Text})
			continue
		}
		w := j.o.stdout
		if l.Stream == store.Stderr {
			w = j.o.stderr
		}
		fmt.Fprintln(w, l.Text)
	}
}

// Cancel cancels the job.
func (j *Job[Out]) Cancel(ctx context.Context) error {
	if err := j.c.tc.CancelWorkflow(ctx, j.id, ""); err != nil {
		if e := unauthorized(err); e != nil {
			return e
		}
		return fmt.Errorf("burla: cancel job %s: %w", j.id, err)
	}
	return nil
}

func (j *Job[Out]) cancelQuietly() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = j.c.tc.CancelWorkflow(ctx, j.id, "")
}

// Outputs waits for every output and returns them in input order. With
// ReturnErrors, a failed call leaves its output the zero value and the error is an
// *InputErrors listing every failed input.
func (j *Job[Out]) Outputs(ctx context.Context) ([]Out, error) {
	outs := make([]Out, j.inputs)
	var failed []*RemoteError
	for r, err := range j.Results(ctx) {
		var re *RemoteError
		switch {
		case err != nil && j.o.returnErrors && errors.As(err, &re):
			failed = append(failed, re)
		case err != nil:
			return nil, err
		default:
			outs[r.Index] = r.Output
		}
	}
	if len(failed) > 0 {
		slices.SortFunc(failed, func(a, b *RemoteError) int { return a.Index - b.Index })
		return outs, &InputErrors{Job: j.id, Inputs: j.inputs, Errors: failed}
	}
	return outs, nil
}

// Results yields each output once, as it arrives. A failed call ends the job and is
// yielded as a *RemoteError (with ReturnErrors the job goes on, and so does the
// iteration); a job that fails for another reason yields an *Error.
// Stopping the iteration early cancels the job unless it is detached.
func (j *Job[Out]) Results(ctx context.Context) iter.Seq2[Result[Out], error] {
	return func(yield func(Result[Out], error) bool) {
		defer j.close()
		if j.inputs == 0 {
			return
		}
		spin := startProgress(j)
		defer spin()
		finished := false
		defer func() {
			if !finished && !j.o.detach {
				j.cancelQuietly()
			}
		}()
		wfDone := make(chan error, 1)
		go func() {
			wfDone <- j.c.tc.GetWorkflow(ctx, j.id, "").Get(ctx, nil)
		}()
		seen := make([]uint64, (j.inputs+63)/64)
		remaining := j.inputs
		var endErr error // set once the workflow has ended; only stored results remain
		// A job in which no input finishes for StallTimeout fails, saying why.
		var stall *time.Timer
		var stalled <-chan time.Time
		if j.o.stallTimeout > 0 {
			stall = time.NewTimer(j.o.stallTimeout)
			defer stall.Stop()
			stalled = stall.C
		}
		for remaining > 0 {
			var batch []store.Result
			select {
			case <-stalled:
				yield(Result[Out]{Index: -1}, j.stalledError(ctx))
				return
			case <-j.results.ready:
				batch = j.results.take()
			case err := <-j.uploadErr:
				if err != nil {
					yield(Result[Out]{Index: -1}, err)
					return
				}
				continue
			case err := <-wfDone:
				// Every result the job produced is stored before it ends: collect them,
				// then report the job's own error if results are still missing.
				if serr := j.rw.Sync(ctx); serr != nil {
					yield(Result[Out]{Index: -1}, fmt.Errorf("burla: job %s: %w", j.id, serr))
					return
				}
				endErr = err
				if endErr == nil {
					endErr = &Error{Kind: KindInternal, Job: j.id, Index: -1, Msg: "job ended without every result"}
				} else {
					endErr = jobError(j.id, err)
				}
				batch = j.results.take()
			case <-ctx.Done():
				yield(Result[Out]{Index: -1}, ctx.Err())
				return
			}
			for _, r := range batch {
				i := int(r.Index)
				if i < 0 || i >= j.inputs || seen[i/64]&(1<<(i%64)) != 0 {
					continue // a duplicate from a re-run chunk: the first result wins
				}
				seen[i/64] |= 1 << (i % 64)
				remaining--
				if stall != nil {
					stall.Reset(j.o.stallTimeout)
				}
				j.done.Add(1)
				if r.Err != nil {
					re := remoteError(j.id, i, *r.Err)
					re.Earlier = earlier(j.id, i, r.Earlier)
					if j.o.returnErrors {
						if !yield(Result[Out]{Index: i}, re) {
							return
						}
						continue
					}
					// The job fails by itself on its first failed call; cancelling it
					// here would hide that cause in its history.
					finished = true
					j.syncLogs(ctx)
					yield(Result[Out]{Index: i}, re)
					return
				}
				out, err := j.decode(ctx, r)
				if err != nil {
					yield(Result[Out]{Index: i}, err)
					return
				}
				if !yield(Result[Out]{Index: i, Output: out, Earlier: earlier(j.id, i, r.Earlier)}, nil) {
					return
				}
			}
			if remaining > 0 && endErr != nil {
				j.syncLogs(ctx)
				finished = true
				yield(Result[Out]{Index: -1}, endErr)
				return
			}
		}
		finished = true
		j.syncLogs(ctx)
		j.release(ctx)
	}
}

// syncLogs waits until every line printed so far has been shown, so that a job's
// output is complete when its results are.
func (j *Job[Out]) syncLogs(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_ = j.lw.Sync(ctx)
}

func (j *Job[Out]) decode(ctx context.Context, r store.Result) (Out, error) {
	var out Out
	data := r.Output
	if r.Blob != "" {
		if err := job.CheckOutputKey(j.id, r.Index, r.Blob); err != nil {
			return out, &Error{Kind: KindInternal, Job: j.id, Index: int(r.Index), Msg: "refused a result", Err: err}
		}
		rc, err := j.c.st.Open(ctx, r.Blob)
		if err != nil {
			return out, &Error{Kind: KindInternal, Job: j.id, Index: int(r.Index), Msg: fmt.Sprintf("read output of input %d", r.Index), Err: err}
		}
		var buf bytes.Buffer
		_, err = buf.ReadFrom(rc)
		rc.Close()
		if err != nil {
			return out, &Error{Kind: KindInternal, Job: j.id, Index: int(r.Index), Msg: fmt.Sprintf("read output of input %d", r.Index), Err: err}
		}
		data = buf.Bytes()
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return out, &Error{Kind: KindBadOutput, Job: j.id, Index: int(r.Index), Msg: fmt.Sprintf("output of input %d cannot be decoded as %T", r.Index, out), Err: err}
	}
	return out, nil
}

// inbox is an unbounded queue of batches filled by a store watch: the watch's
// callback must never block, or Sync could wait on a reader that waits on it.
type inbox[T any] struct {
	mu    sync.Mutex
	items []T
	ready chan struct{}
}

func newInbox[T any]() *inbox[T] { return &inbox[T]{ready: make(chan struct{}, 1)} }

func (b *inbox[T]) put(batch []T) {
	b.mu.Lock()
	b.items = append(b.items, batch...)
	b.mu.Unlock()
	select {
	case b.ready <- struct{}{}:
	default:
	}
}

func (b *inbox[T]) take() []T {
	b.mu.Lock()
	defer b.mu.Unlock()
	items := b.items
	b.items = nil
	return items
}

// Chunks hold at most this many inputs, and a job is cut into about targetChunks
// chunks, so that small jobs spread over every worker and large ones pay the per-chunk
// cost rarely.
const (
	maxChunkInputs = 1000
	targetChunks   = 512
	// uploadBatch chunks are written to the store at a time.
	uploadBatch = 64
)

// upload encodes the inputs, writes them as chunks and seals the job's queue.
// dynamic says In holds interface values, whose integers checkExact checks
// (Function.dynamicIn).
func upload[In any](ctx context.Context, c *Cluster, jobID string, inputs []In, dynamic bool, uploaded *atomic.Int64) error {
	perChunk := min(max((len(inputs)+targetChunks-1)/targetChunks, 1), maxChunkInputs)
	var (
		batch    []store.Chunk
		cur      store.Chunk
		curBytes int
		nchunks  int64
		buf      bytes.Buffer
		enc      = json.NewEncoder(&buf)
	)
	flushBatch := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := c.st.PutChunks(ctx, jobID, batch); err != nil {
			return fmt.Errorf("burla: job %s: upload inputs: %w", jobID, err)
		}
		for _, ch := range batch {
			uploaded.Add(int64(len(ch.Items)))
		}
		batch = batch[:0]
		return nil
	}
	endChunk := func() error {
		if len(cur.Items) == 0 {
			return nil
		}
		batch = append(batch, cur)
		nchunks++
		cur = store.Chunk{Seq: nchunks}
		curBytes = 0
		if len(batch) == uploadBatch {
			return flushBatch()
		}
		return nil
	}
	enc.SetEscapeHTML(false)
	for i, in := range inputs {
		buf.Reset()
		if err := enc.Encode(in); err != nil {
			return &Error{Kind: KindBadInput, Job: jobID, Index: i, Msg: fmt.Sprintf("input %d (%T) cannot be encoded as JSON", i, in), Err: err}
		}
		if dynamic {
			if err := checkExact(reflect.ValueOf(&inputs[i]).Elem(), fmt.Sprintf("input %d", i)); err != nil {
				return &Error{Kind: KindBadInput, Job: jobID, Index: i, Msg: "cannot send it faithfully", Err: err}
			}
		}
		data := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
		item := store.Item{Index: int64(i)}
		if len(data) > store.MaxInlineBytes {
			// A blob is written from the encoder's buffer rather than from one more
			// copy: a large input is in memory three times already (itself, the
			// encoder's JSON and this buffer's).
			key := job.InputKey(jobID, int64(i))
			if err := c.st.Put(ctx, key, bytes.NewReader(data)); err != nil {
				return fmt.Errorf("burla: job %s: upload input %d: %w", jobID, i, err)
			}
			item.Blob = key
			if buf.Cap() > 4*store.MaxRecordBytes {
				buf = bytes.Buffer{} // let the large buffer go while the rest upload
			}
		} else {
			item.Data = bytes.Clone(data)
		}
		size := len(item.Data) + len(item.Blob) + 16
		if len(cur.Items) == perChunk || (len(cur.Items) > 0 && curBytes+size > store.MaxRecordBytes) {
			if err := endChunk(); err != nil {
				return err
			}
		}
		cur.Items = append(cur.Items, item)
		curBytes += size
	}
	if err := endChunk(); err != nil {
		return err
	}
	if err := flushBatch(); err != nil {
		return err
	}
	if err := c.st.Seal(ctx, jobID, int(nchunks)); err != nil {
		return fmt.Errorf("burla: job %s: %w", jobID, err)
	}
	return nil
}

// stalledError is the error of a job in which no input finished for StallTimeout:
// it says what the job waits for, as the progress line does.
func (j *Job[Out]) stalledError(ctx context.Context) error {
	msg := fmt.Sprintf("no input finished for %v (%d of %d done)", j.o.stallTimeout, j.done.Load(), j.inputs)
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, _, _, w := j.look(qctx, &uploadGrowth{changed: j.started}); w != nil {
		msg += fmt.Sprintf("; it has been waiting %v: %s", time.Since(w.Since).Round(time.Second), w.Detail)
	} else {
		msg += "; its calls are running but none has ended: raise StallTimeout if they are long, or set InputTimeout"
	}
	return &Error{Kind: KindJobStalled, Job: j.id, Index: -1, Msg: msg}
}
