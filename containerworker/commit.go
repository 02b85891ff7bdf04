package containerworker

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/burla-temporal/burla/store"
)

// Batching: results and log lines are written in batches of up to batchBytes, at
// least every flushEvery, and always before a chunk is marked done.
const (
	batchBytes = 256 << 10
	flushEvery = 50 * time.Millisecond
)

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
