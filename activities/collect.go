package activities

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"

	"github.com/burla-temporal/burla/blob"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/ship"
	"github.com/burla-temporal/burla/store"
)

// CollectPolicy says how long the collector keeps what no running job needs.
type CollectPolicy struct {
	// ProgramTTL is how long a program no job has run is kept (default 30 days).
	ProgramTTL time.Duration
	// Retention is how long an ended job's records (spec, results, logs) are
	// kept, and its large outputs when its client has not read them: counted from
	// the job's end, never from a write, so a job that runs for weeks keeps all
	// its results (default 7 days).
	Retention time.Duration
	// ReadGrace is how long a job's large outputs are kept once it has ended and
	// its client has read every result, for a second look (default 1 hour).
	ReadGrace time.Duration
}

func (p CollectPolicy) withDefaults() CollectPolicy {
	if p.ProgramTTL <= 0 {
		p.ProgramTTL = 30 * 24 * time.Hour
	}
	if p.Retention <= 0 {
		p.Retention = 7 * 24 * time.Hour
	}
	if p.ReadGrace <= 0 {
		p.ReadGrace = time.Hour
	}
	return p
}

// unstartedGrace is how long the blobs of a job Temporal does not know are kept:
// a client uploads its large inputs before it starts the job's workflow.
const unstartedGrace = time.Hour

// Collected is what one collection deleted.
type Collected struct {
	Blobs int   // blobs deleted
	Bytes int64 // their size
	Jobs  int   // jobs whose records were deleted
}

// Collector deletes what no job needs any more from the cluster's blob store,
// with its control plane's store and Temporal client. (It is not one of
// Control's methods, which are all activities.)
type Collector struct {
	Control *Control
	Policy  CollectPolicy
	Log     *slog.Logger
}

// Collect deletes what no job needs any more: from the blob store, the large
// inputs and environment of jobs that have ended (FinishJob deletes the
// environment too; this catches jobs whose end never ran, and inputs, which it
// leaves), the large outputs of ended jobs once their client has read every
// result and ReadGrace has passed, or once Retention has, and programs that no job
// has run for ProgramTTL (FinishJob marks a program's use, job.UsedKey), and the
// packs of chunks that no kept program names (package ship); from the
// store (when Control.Queue is a store.Records), the records of jobs that ended
// Retention ago. It runs on the control plane, which sees every tenant's.
func (g *Collector) Collect(ctx context.Context) (Collected, error) {
	c, p := g.Control, g.Policy.withDefaults()
	var out Collected
	if c.Blobs == nil || c.Temporal == nil {
		return out, errors.New("collect: this control plane has no blob store or Temporal client")
	}
	infos, err := c.Blobs.List(ctx, "")
	if err != nil {
		return out, fmt.Errorf("collect: %w", err)
	}
	now := c.now()
	used := map[string]blob.Info{} // program key → its marker: when a job last ran it
	programs := map[string]blob.Info{}
	packs := map[string]blob.Info{} // the chunks of programs shipped in parts (package ship)
	jobs := map[string][]jobBlob{}  // job → its blobs
	for _, info := range infos {
		switch {
		case job.IsSharedKey(info.Key):
			// A tenant's shared files are the tenant's to delete.
		case strings.HasPrefix(info.Key, "used-"):
			used[strings.TrimPrefix(info.Key, "used-")] = info
		case strings.HasPrefix(info.Key, "bin-"), strings.HasPrefix(info.Key, "man-"):
			programs[info.Key] = info
		case strings.HasPrefix(info.Key, "pack-"):
			packs[info.Key] = info
		default:
			if id, kind, ok := job.BlobJob(info.Key); ok {
				jobs[id] = append(jobs[id], jobBlob{info, kind})
			}
		}
	}
	var errs []error
	del := func(info blob.Info) {
		if err := c.Blobs.Delete(ctx, info.Key); err != nil {
			errs = append(errs, err)
			return
		}
		out.Blobs++
		out.Bytes += info.Size
	}
	for key, info := range programs {
		last := info.Modified
		if u := used[key].Modified; u.After(last) {
			last = u
		}
		if now.Sub(last) > p.ProgramTTL {
			del(info)
			delete(programs, key)
		}
	}
	if err := g.collectPacks(ctx, programs, packs, del); err != nil {
		errs = append(errs, err)
	}
	for key, marker := range used {
		if _, ok := programs[key]; !ok && now.Sub(marker.Modified) > p.ProgramTTL {
			del(marker)
		}
	}
	// The store's jobs: a job that has records and no blobs is looked up only
	// once its records are older than Retention, which its end is then too (its
	// records change until it ends, its client's last heartbeat).
	records, _ := c.Queue.(store.Records)
	updated := map[string]time.Time{} // job → when its records last changed
	if records != nil {
		rs, err := records.ListJobs(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("list jobs: %w", err))
		}
		for _, r := range rs {
			updated[r.ID] = r.Updated
			if _, ok := jobs[r.ID]; !ok && now.Sub(r.Updated) > p.Retention {
				jobs[r.ID] = nil
			}
		}
	}
	for id, blobs := range jobs {
		closed, _, closedAt, err := c.jobClosed(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !closed {
			continue
		}
		if closedAt.IsZero() { // Temporal does not know the job: not started yet, or forgotten
			newest := updated[id]
			for _, b := range blobs {
				if b.info.Modified.After(newest) {
					newest = b.info.Modified
				}
			}
			if now.Sub(newest) < unstartedGrace {
				continue
			}
			closedAt = newest
		}
		released := false // every result read: asked only of a job with large outputs
		if c.Jobs != nil && slices.ContainsFunc(blobs, func(b jobBlob) bool { return b.kind == "out" }) {
			_, err := c.Jobs.LastHeartbeat(ctx, id)
			released = errors.Is(err, store.ErrReleased)
		}
		for _, b := range blobs {
			if b.kind != "out" {
				del(b.info)
				continue
			}
			if released && now.Sub(closedAt) > p.ReadGrace || now.Sub(closedAt) > p.Retention {
				del(b.info)
			}
		}
		if _, ok := updated[id]; ok && now.Sub(closedAt) > p.Retention {
			if err := records.DeleteJob(ctx, id); err != nil {
				errs = append(errs, err)
			} else {
				out.Jobs++
			}
		}
	}
	if c.Metrics != nil && c.Metrics.BlobsCollected != nil {
		c.Metrics.BlobsCollected.Add(float64(out.Blobs))
		c.Metrics.BlobBytesCollected.Add(float64(out.Bytes))
		c.Metrics.JobsCollected.Add(float64(out.Jobs))
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("collect: %w", errors.Join(errs...))
	}
	return out, nil
}

// collectPacks deletes the packs that no kept program's manifest names, once they
// are ProgramTTL old: a pack is written before its manifest, and a pack younger
// than that may be one whose manifest is on its way. It deletes none when a
// manifest cannot be read.
func (g *Collector) collectPacks(ctx context.Context, programs, packs map[string]blob.Info, del func(blob.Info)) error {
	if len(packs) == 0 {
		return nil
	}
	named := map[string]bool{}
	for key := range programs {
		if !strings.HasPrefix(key, "man-") {
			continue
		}
		m, err := readManifest(ctx, g.Control.Blobs, key)
		if errors.Is(err, blob.ErrNotFound) {
			continue // deleted since the listing: its packs go in a later round
		}
		if err != nil {
			return fmt.Errorf("read program manifest %s, so no pack is collected: %w", key, err)
		}
		tenant := job.BlobTenant(key)
		for _, d := range m.PackDigests() {
			named[job.PackKeyFor(tenant, d)] = true
		}
	}
	now, ttl := g.Control.now(), g.Policy.withDefaults().ProgramTTL
	for key, info := range packs {
		if !named[key] && now.Sub(info.Modified) > ttl {
			del(info)
		}
	}
	return nil
}

// readManifest reads and parses the manifest under key.
func readManifest(ctx context.Context, blobs blob.Store, key string) (*ship.Manifest, error) {
	r, err := blobs.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(r, 64<<20))
	if err != nil {
		return nil, err
	}
	return ship.ParseManifest(data)
}

// jobBlob is a blob of one job's, and which of its blobs it is (job.BlobJob).
type jobBlob struct {
	info blob.Info
	kind string
}

// jobClosed reports whether the job's workflow has closed, how and when; a job
// Temporal does not know is closed, with no state and a zero time.
func (c *Control) jobClosed(ctx context.Context, id string) (closed bool, state job.State, at time.Time, err error) {
	d, err := c.Temporal.DescribeWorkflowExecution(ctx, id, "")
	var nf *serviceerror.NotFound
	switch {
	case errors.As(err, &nf):
		return true, "", time.Time{}, nil
	case err != nil:
		return false, "", time.Time{}, fmt.Errorf("look up job %s: %w", id, err)
	}
	info := d.GetWorkflowExecutionInfo()
	switch info.GetStatus() {
	case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
		return false, "", time.Time{}, nil
	case enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
		state = job.StateSucceeded
	case enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED:
		state = job.StateCancelled
	default: // terminated, timed out, failed
		state = job.StateFailed
	}
	return true, state, info.GetCloseTime().AsTime(), nil
}

// markEvery is how often a process marks one program's use: markers are compared
// with a ProgramTTL of days, so one a day is plenty.
const markEvery = 24 * time.Hour

// markUsed records that a job of jobID's tenant ran the program with digest.
func (c *Control) markUsed(ctx context.Context, jobID, digest string) error {
	if digest == "" || c.Blobs == nil {
		return nil // a command job ships no program
	}
	key := job.ManifestKeyFor(job.TenantOf(jobID), digest)
	now := c.now()
	if last, ok := c.marked.Load(key); ok && now.Sub(last.(time.Time)) < markEvery {
		return nil
	}
	if err := c.Blobs.Put(ctx, job.UsedKey(key), strings.NewReader("")); err != nil {
		return fmt.Errorf("mark program %s used: %w", key, err)
	}
	c.marked.Store(key, now)
	return nil
}

// Run runs Collect every interval until ctx ends, logging what each collection
// deleted and what failed (the next one tries again).
func (g *Collector) Run(ctx context.Context, every time.Duration) {
	log := g.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		got, err := g.Collect(ctx)
		if err != nil && ctx.Err() == nil {
			log.Warn("collection", "error", err)
		}
		if got.Blobs > 0 || got.Jobs > 0 {
			log.Info("collection", "blobs", got.Blobs, "bytes", got.Bytes, "jobs", got.Jobs)
		}
	}
}
