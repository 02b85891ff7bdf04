package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/store"
)

// Runner runs a job's calls on a node's workers. It is the node agent's worker pool.
type Runner interface {
	// Start sets n workers on the job. They claim chunks until Stop; failures that end
	// the job arrive on the returned channel, which is closed by Stop.
	Start(ctx context.Context, spec job.Spec, n int) (<-chan error, error)
	// Stop takes the workers off the job and waits until they are idle.
	Stop(ctx context.Context, jobID string)
	// Reset replaces every worker that is not fresh (Stop already starts this when
	// it ends a job) and waits until every slot has a fresh worker.
	Reset(ctx context.Context) error
}

// Node holds the activity a node agent runs.
type Node struct {
	Runner Runner
	Queue  store.Queue
	// Poll is how often the job's queue is checked for completion; zero means
	// 100ms. Once every chunk is claimed, the end is near, and it is checked
	// four times as often.
	Poll time.Duration
	// Metrics, if set, count the job shares this node runs.
	Metrics *NodeMetrics
}

// RunJobOnNode runs a job on this node's workers until the job's queue is drained, a
// call fails (UserError) or the activity is cancelled. Any node finding the queue
// drained means the whole job is done, because every chunk is removed only after its
// results are stored.
func (a *Node) RunJobOnNode(ctx context.Context, in control.RunInput) (out control.RunOutput, err error) {
	if a.Metrics != nil {
		defer func() {
			outcome := "drained"
			switch {
			case ctx.Err() != nil:
				outcome = "stopped"
			case err != nil:
				outcome = "failed"
			}
			a.Metrics.Jobs(outcome).Inc()
		}()
	}
	poll := a.Poll
	if poll <= 0 {
		poll = 100 * time.Millisecond
	}
	errs, err := a.Runner.Start(ctx, in.Spec, in.Workers)
	if err != nil {
		return control.RunOutput{}, err
	}
	defer a.Runner.Stop(context.WithoutCancel(ctx), in.Spec.ID)
	t := time.NewTimer(poll)
	defer t.Stop()
	lastBeat, lastWarn := time.Time{}, time.Time{}
	for {
		select {
		case <-ctx.Done():
			return control.RunOutput{}, ctx.Err()
		case err, ok := <-errs:
			if !ok {
				return control.RunOutput{}, fmt.Errorf("job %s: workers stopped", in.Spec.ID)
			}
			return control.RunOutput{}, err
		case <-t.C:
		}
		// Each read is bounded: a store that loses the reply (restarting, say) must
		// not hold the activity past its heartbeats, whose deadline is days away.
		pctx, cancel := context.WithTimeout(ctx, storeTimeout)
		p, err := a.Queue.Progress(pctx, in.Spec.ID)
		cancel()
		if errors.Is(err, store.ErrNotFound) {
			// The queue is gone: the job was finished elsewhere.
			return control.RunOutput{}, control.ErrQueueGone.New("input queue deleted", err)
		}
		if err == nil && p.Drained() {
			return control.RunOutput{Drained: true}, nil
		}
		if err == nil && p.Sealed && p.Waiting == 0 {
			t.Reset(poll / 4) // the last chunks run: the next job waits on this one's end
		} else {
			t.Reset(poll)
		}
		if err != nil && time.Since(lastWarn) >= 5*time.Second {
			// The store may be restarting; say so now and then, and keep asking.
			activity.GetLogger(ctx).Warn("could not read the job's progress", "job", in.Spec.ID, "error", err)
			lastWarn = time.Now()
		}
		if time.Since(lastBeat) >= time.Second/2 {
			activity.RecordHeartbeat(ctx, p)
			lastBeat = time.Now()
		}
	}
}

// UserError is the error a node returns when a call fails; its details carry the
// failed input's index.
func UserError(message string, index int64) error {
	return control.ErrUserError.New(message, nil, index)
}

// ResetNode restarts the node's workers between jobs.
func (a *Node) ResetNode(ctx context.Context) error {
	return a.Runner.Reset(ctx)
}
