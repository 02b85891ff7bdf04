package containerworker

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/store"
)

// leased is a claimed chunk whose lease is kept while it waits, runs and commits.
type leased struct {
	store.Claim
	release   context.CancelFunc // stops extending the lease
	claimedAt time.Time
	// shared is the shared files' count of changes read as the chunk was
	// claimed (sharedDir.count), for the pull before its calls.
	shared sharedCount
}

// claimAhead claims a chunk each time pace asks for one and hands it to claims:
// pace asks as the current chunk is about to end, so that the next one is there
// when it does. It closes claims when the job's queue is gone and returns when ctx
// ends.
//
// With a shared directory, it also reads the store's count of the shared files'
// changes once a chunk is claimed, while the chunk before it still runs: the pull
// before the chunk's calls then needs no round trip of its own unless the files
// changed.
func (w *Worker) claimAhead(ctx context.Context, spec job.Spec, pace *pacer, claims chan<- *leased, shared *sharedDir, log *slog.Logger) {
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
		l := &leased{Claim: cl, claimedAt: time.Now(), shared: shared.count(ctx)}
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
