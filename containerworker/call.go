package containerworker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/burla-temporal/burla/blob"
	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/store"
	"github.com/burla-temporal/burla/wire"
)

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
	// The calls to run again (spec.Retries), and the failures of each input's
	// attempts so far.
	var again []store.Item
	var earlier map[int64][]store.CallError
	out.pace.start(len(cl.Chunk().Items))
	defer out.pace.end()
	record := func(oc callOutcome) bool {
		out.pace.answered()
		if workers := w.share.workers.Load(); oc.lost && spec.Dynamic && workers > 1 {
			requeue = &oc
			return false
		}
		if e := oc.res.Err; e != nil && retriable(e) && len(earlier[oc.res.Index]) < spec.Retries {
			if i := slices.IndexFunc(cl.Chunk().Items, func(it store.Item) bool { return it.Index == oc.res.Index }); i >= 0 {
				if earlier == nil {
					earlier = map[int64][]store.CallError{}
				}
				earlier[oc.res.Index] = append(earlier[oc.res.Index], store.CallError{Kind: e.Kind, Message: e.Message, Stack: e.Stack})
				again = append(again, cl.Chunk().Items[i])
				return true
			}
		}
		r := store.Result{Index: oc.res.Index, Output: oc.res.Output, Earlier: earlier[oc.res.Index]}
		if e := oc.res.Err; e != nil && oc.lost && spec.Dynamic {
			e.Message += "; it ran alone on its node, so it needs more memory than a node of this cluster has: use nodes with more (burla cluster standby --ram-mb) or make the call use less"
		}
		if e := oc.res.Err; e != nil {
			r.Output = nil
			r.Err = &store.CallError{Kind: e.Kind, Message: e.Message, Stack: e.Stack}
			if failed == nil {
				failed = &JobError{Type: control.ErrUserError, Index: oc.res.Index, Message: fmt.Sprintf("input %d failed (%s): %s", oc.res.Index, e.Kind, e.Message)}
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
	retryRound := 0
	rest := cl.Chunk().Items
	for i := 0; i < len(rest); i++ {
		if it := rest[i]; it.Blob != "" {
			if kerr := job.CheckInputKey(spec.ID, it.Index, it.Blob); kerr != nil {
				w.log.Warn("refused an input that names another blob", "job", spec.ID, "input", it.Index, "blob", it.Blob)
				if !record(callOutcome{res: wire.Result{Index: it.Index, Err: &wire.Error{Kind: store.KindError, Message: "burla refused the input: " + kerr.Error(), Permanent: true}}}) {
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
				if !record(callOutcome{res: wire.Result{Index: gone.index, Err: &wire.Error{Kind: store.KindError, Message: gone.Error(), Permanent: true}}}) {
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
			rest, again = nil, nil
		default:
			rest = rest[n:]
		}
		if len(rest) == 0 && len(again) > 0 && err == nil {
			// The failed calls run again once the others have, after a wait that
			// doubles each round.
			retryRound++
			wait := job.MaxRetryBackoff
			if retryRound <= 20 {
				wait = min(spec.RetryBackoff<<(retryRound-1), wait)
			}
			w.log.Info("calls failed; running them again", "job", spec.ID, "calls", len(again), "round", retryRound, "after", wait)
			select {
			case <-time.After(wait):
				rest, again = again, nil
			case <-ctx.Done():
				err = ctx.Err()
			}
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

// retriable reports whether a failed call may run again (spec.Retries): not if
// the function marked its error permanent, nor if its input or output could not
// be decoded or encoded, which another run would repeat.
func retriable(e *wire.Error) bool {
	switch e.Kind {
	case store.KindError, store.KindPanic, store.KindExit, store.KindOOM, store.KindTimeout:
		return !e.Permanent
	}
	return false
}
