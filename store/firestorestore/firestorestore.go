// Package firestorestore implements the store contract on Cloud Firestore, the
// Google Cloud deployment's data plane, with blobs in a separate blob.Store (GCS).
//
// Layout, under collections named with the store's prefix (default "burla"):
//
//	<p>_jobs/<job>                  spec, sealed, chunks, deleted, hb (the client's heartbeat), released
//	<p>_jobs/<job>/chunks/<seq>     data (an encoded store.Chunk), leased_until, attempts
//	<p>_jobs/<job>/results/<index>  data (one encoded store.Result), at; created once: the first write wins
//	<p>_jobs/<job>/logs/<auto>      data (encoded store.LogLines), at
//	<p>_jobs/<job>/client/upload    data (a JSON store.Upload), apart from the job's
//	                                document, which the client's heartbeat writes
//	<p>_nodes/<node>                node (JSON), updated
//	<p>_grants/<node>               data (the node's latest store.Grant, JSON), at
//
// A claim is a compare-and-swap: a query finds chunks whose lease has run out (a
// fresh chunk's leased_until is the Unix epoch), and an update preconditioned on the
// document's update time takes one, so two claimers never hold one chunk. Done
// deletes the chunk. Leases are written and compared on Firestore's clock, which
// each store estimates from the times the server returns (serverClock), so
// claimers whose own clocks disagree by minutes still agree on who holds a chunk.
//
// Results and logs are read with snapshot listeners ordered by commit time; a
// listener restarts from its last commit time every few thousand documents, so
// that the client library's copy of the query's documents stays bounded.
package firestorestore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"sync"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/burla-temporal/burla/blob"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/store"
)

var (
	_ store.Store   = (*Store)(nil)
	_ store.Grants  = (*Store)(nil)
	_ store.Uploads = (*Store)(nil)
	_ store.Records = (*Store)(nil)
	_ blob.Store    = (*Store)(nil)
)

// Document field names.
const (
	fSpec        = "spec"
	fSealed      = "sealed"
	fChunks      = "chunks"
	fDeleted     = "deleted"
	fHeartbeat   = "hb"
	fReleased    = "released"
	fCreated     = "created"
	fData        = "data"
	fLeasedUntil = "leased_until"
	fAttempts    = "attempts"
	fAt          = "at"
	fNode        = "node"
	fUpdated     = "updated"
)

const (
	// maxBatchBytes bounds a commit of chunk documents: Firestore takes 10 MiB
	// in one request, its emulator's gRPC server only 4 MiB.
	maxBatchBytes = 3 << 20
	// maxBatchWrites is Firestore's limit of writes in one commit.
	maxBatchWrites = 500
	// claimCandidates is how many claimable chunks a claim looks at, picking one
	// at random, so that concurrent claimers rarely race for the same chunk.
	claimCandidates = 8
)

// listenerWindow is how many documents a watch takes before restarting its
// listener from where it got to (a variable for tests).
var listenerWindow = 4000

// Config says where the store lives.
type Config struct {
	Project string
	// Database is the Firestore database ID; empty means "(default)".
	Database string
	// Prefix names the store's collections (<prefix>_jobs, <prefix>_nodes), so that
	// several clusters can share a database; empty means "burla".
	Prefix string
	// Blobs holds executables and large values (GCS in production).
	Blobs blob.Store
}

// Store is a store.Store on Firestore that keeps blobs in cfg.Blobs.
type Store struct {
	fs     *firestore.Client
	blobs  blob.Store
	jobs   *firestore.CollectionRef
	nodes  *firestore.CollectionRef
	grants *firestore.CollectionRef
	owned  bool // Close closes fs

	clock serverClock

	cacheMu sync.Mutex
	leases  map[string]time.Duration // jobs' leases: specs never change
	sealed  map[string]int           // chunk counts of sealed jobs: a seal never changes
}

// Dial connects to Firestore (Application Default Credentials, or the emulator
// named by FIRESTORE_EMULATOR_HOST) and returns a Store that owns the client.
func Dial(ctx context.Context, cfg Config, opts ...option.ClientOption) (*Store, error) {
	if cfg.Project == "" {
		return nil, errors.New("firestore store: no project given")
	}
	db := cfg.Database
	if db == "" {
		db = firestore.DefaultDatabaseID
	}
	fs, err := firestore.NewClientWithDatabase(ctx, cfg.Project, db, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to Firestore database %s of project %s: %w", db, cfg.Project, err)
	}
	s, err := New(fs, cfg)
	if err != nil {
		fs.Close()
		return nil, err
	}
	s.owned = true
	return s, nil
}

// New returns a Store on an existing client, which the caller keeps.
func New(fs *firestore.Client, cfg Config) (*Store, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = "burla"
	}
	if !store.ValidNodeID(cfg.Prefix) || len(cfg.Prefix) > 40 {
		return nil, fmt.Errorf("firestore store: invalid collection prefix %q (lower-case letters, digits, dashes)", cfg.Prefix)
	}
	if cfg.Blobs == nil {
		return nil, errors.New("firestore store: no blob store given")
	}
	return &Store{
		fs:     fs,
		blobs:  cfg.Blobs,
		jobs:   fs.Collection(cfg.Prefix + "_jobs"),
		nodes:  fs.Collection(cfg.Prefix + "_nodes"),
		grants: fs.Collection(cfg.Prefix + "_grants"),
		clock:  serverClock{local: time.Now},
		leases: map[string]time.Duration{},
		sealed: map[string]int{},
	}, nil
}

// Close closes the Firestore client if the Store made it, and the blob store if it
// can be closed.
func (s *Store) Close() {
	if s.owned {
		s.fs.Close()
	}
	if c, ok := s.blobs.(interface{ Close() error }); ok {
		c.Close()
	}
}

func checkID(jobID string) error {
	if !job.ValidID(jobID) {
		return fmt.Errorf("invalid job ID %q", jobID)
	}
	return nil
}

func (s *Store) jobDoc(jobID string) *firestore.DocumentRef { return s.jobs.Doc(jobID) }
func (s *Store) chunks(jobID string) *firestore.CollectionRef {
	return s.jobs.Doc(jobID).Collection("chunks")
}
func (s *Store) results(jobID string) *firestore.CollectionRef {
	return s.jobs.Doc(jobID).Collection("results")
}
func (s *Store) logs(jobID string) *firestore.CollectionRef {
	return s.jobs.Doc(jobID).Collection("logs")
}

// Document IDs of chunks and results sort in sequence and index order.
func seqID(n int64) string { return fmt.Sprintf("%016d", n) }

var epoch = time.Unix(0, 0).UTC()

// CreateJob implements store.Queue.
func (s *Store) CreateJob(ctx context.Context, spec job.Spec) error {
	if err := spec.Validate(); err != nil {
		return err
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return fmt.Errorf("encode spec of job %s: %w", spec.ID, err)
	}
	_, err = s.jobDoc(spec.ID).Set(ctx, map[string]any{fSpec: string(b), fCreated: firestore.ServerTimestamp}, firestore.MergeAll)
	if err != nil {
		return fmt.Errorf("record spec of job %s: %w", spec.ID, err)
	}
	return nil
}

type jobRecord struct {
	exists   bool
	spec     string
	sealed   bool
	chunks   int
	deleted  bool
	hb       time.Time
	released bool // the client called Release
}

func (s *Store) readJob(ctx context.Context, jobID string) (jobRecord, error) {
	snap, err := s.jobDoc(jobID).Get(ctx)
	if status.Code(err) == codes.NotFound {
		return jobRecord{}, nil
	}
	if err != nil {
		return jobRecord{}, fmt.Errorf("read job %s: %w", jobID, err)
	}
	d := snap.Data()
	r := jobRecord{exists: true}
	r.spec, _ = d[fSpec].(string)
	r.sealed, _ = d[fSealed].(bool)
	if n, ok := d[fChunks].(int64); ok {
		r.chunks = int(n)
	}
	r.deleted, _ = d[fDeleted].(bool)
	r.hb, _ = d[fHeartbeat].(time.Time)
	r.released, _ = d[fReleased].(bool)
	return r, nil
}

// Job implements store.Queue.
func (s *Store) Job(ctx context.Context, jobID string) (job.Spec, error) {
	if err := checkID(jobID); err != nil {
		return job.Spec{}, err
	}
	r, err := s.readJob(ctx, jobID)
	if err != nil {
		return job.Spec{}, err
	}
	if r.spec == "" {
		return job.Spec{}, fmt.Errorf("job %s: %w", jobID, store.ErrNotFound)
	}
	var spec job.Spec
	if err := json.Unmarshal([]byte(r.spec), &spec); err != nil {
		return job.Spec{}, fmt.Errorf("decode spec of job %s: %w", jobID, err)
	}
	return spec, nil
}

// PutChunks implements store.Queue. It commits the chunks in batches under
// Firestore's request limits, several batches at a time.
func (s *Store) PutChunks(ctx context.Context, jobID string, cs []store.Chunk) error {
	if err := checkID(jobID); err != nil {
		return err
	}
	type batch struct {
		b     *firestore.WriteBatch
		first int64
	}
	var batches []batch
	var cur *firestore.WriteBatch
	n, size := 0, 0
	for _, c := range cs {
		data := store.AppendChunk(nil, c)
		if len(data) > store.MaxRecordBytes {
			return fmt.Errorf("write chunk %d of job %s: %d bytes encoded, over the %d a record may hold", c.Seq, jobID, len(data), store.MaxRecordBytes)
		}
		if cur == nil || n == maxBatchWrites || size+len(data) > maxBatchBytes {
			cur = s.fs.Batch()
			batches = append(batches, batch{b: cur, first: c.Seq})
			n, size = 0, 0
		}
		cur.Set(s.chunks(jobID).Doc(seqID(c.Seq)), map[string]any{fData: data, fLeasedUntil: epoch, fAttempts: 0})
		n++
		size += len(data) + 64
	}
	errs := make(chan error, len(batches))
	sem := make(chan struct{}, 4)
	for _, b := range batches {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			if _, err := b.b.Commit(ctx); err != nil {
				errs <- fmt.Errorf("write chunks of job %s from %d: %w", jobID, b.first, err)
				return
			}
			errs <- nil
		}()
	}
	var first error
	for range batches {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Seal implements store.Queue.
func (s *Store) Seal(ctx context.Context, jobID string, chunks int) error {
	if err := checkID(jobID); err != nil {
		return err
	}
	if _, err := s.jobDoc(jobID).Set(ctx, map[string]any{fSealed: true, fChunks: chunks}, firestore.MergeAll); err != nil {
		return fmt.Errorf("seal inputs of job %s: %w", jobID, err)
	}
	return nil
}

// Claim implements store.Queue. It polls for a chunk whose lease has run out,
// backing off from 20 ms to 500 ms while the queue is empty.
func (s *Store) Claim(ctx context.Context, jobID string, wait time.Duration) (store.Claim, error) {
	if err := checkID(jobID); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	pause := 20 * time.Millisecond
	checked := false
	for {
		c, err := s.tryClaim(ctx, jobID)
		if c != nil || err != nil {
			return c, err
		}
		if !checked {
			// An empty queue may be a job that never was or whose inputs are gone.
			r, err := s.readJob(ctx, jobID)
			if err != nil {
				return nil, err
			}
			if !r.exists || r.spec == "" || r.deleted {
				return nil, fmt.Errorf("input queue of job %s: %w", jobID, store.ErrNotFound)
			}
			checked = true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, store.ErrNoChunk
		}
		t := time.NewTimer(min(pause, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		pause = min(pause*2, 500*time.Millisecond)
	}
}

// tryClaim takes one claimable chunk, or returns nil, nil when there is none.
func (s *Store) tryClaim(ctx context.Context, jobID string) (store.Claim, error) {
	now, err := s.serverNow(ctx)
	if err != nil {
		return nil, fmt.Errorf("claim chunk of job %s: %w", jobID, err)
	}
	docs, err := s.chunks(jobID).Where(fLeasedUntil, "<=", now).OrderBy(fLeasedUntil, firestore.Asc).
		Limit(claimCandidates).Documents(ctx).GetAll()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("claim chunk of job %s: %w", jobID, err)
	}
	if len(docs) == 0 {
		return nil, nil
	}
	spec, err := s.leaseOf(ctx, jobID)
	if err != nil {
		return nil, err
	}
	start := mrand.IntN(len(docs))
	for i := range docs {
		d := docs[(start+i)%len(docs)]
		attempts, _ := d.Data()[fAttempts].(int64)
		now, _ := s.clock.now()
		sent := s.clock.local()
		wr, err := d.Ref.Update(ctx, []firestore.Update{
			{Path: fLeasedUntil, Value: now.Add(spec)},
			{Path: fAttempts, Value: attempts + 1},
		}, firestore.LastUpdateTime(d.UpdateTime))
		if err == nil {
			s.clock.observe(sent, s.clock.local(), wr.UpdateTime)
		}
		switch status.Code(err) {
		case codes.OK:
		case codes.FailedPrecondition, codes.NotFound, codes.Aborted:
			continue // another claimer was first
		default:
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("claim chunk %s of job %s: %w", d.Ref.ID, jobID, err)
		}
		data, _ := d.Data()[fData].([]byte)
		chunk, err := store.DecodeChunk(data)
		if err != nil {
			// A chunk nobody can read would be claimed for ever; drop it loudly.
			_, _ = d.Ref.Delete(ctx)
			return nil, fmt.Errorf("claim chunk %s of job %s: %w", d.Ref.ID, jobID, err)
		}
		return &claim{ref: d.Ref, chunk: chunk, attempt: int(attempts + 1), lease: spec, clock: &s.clock, updated: wr.UpdateTime}, nil
	}
	return nil, nil
}

// leaseOf returns the job's lease. Specs do not change, so it is read once per job
// and process.
func (s *Store) leaseOf(ctx context.Context, jobID string) (time.Duration, error) {
	s.cacheMu.Lock()
	d, ok := s.leases[jobID]
	s.cacheMu.Unlock()
	if ok {
		return d, nil
	}
	spec, err := s.Job(ctx, jobID)
	if err != nil {
		return 0, err
	}
	s.cacheMu.Lock()
	if len(s.leases) > 1024 {
		clear(s.leases)
	}
	s.leases[jobID] = spec.Lease
	s.cacheMu.Unlock()
	return spec.Lease, nil
}

type claim struct {
	ref     *firestore.DocumentRef
	chunk   store.Chunk
	attempt int
	lease   time.Duration
	clock   *serverClock

	mu      sync.Mutex
	updated time.Time // the chunk's update time as this claim last wrote it
}

func (c *claim) Chunk() store.Chunk { return c.chunk }
func (c *claim) Attempt() int       { return c.attempt }

// ErrLeaseLost is returned by Extend when the chunk's lease ran out and another
// claimer took it, or the chunk is done.
var ErrLeaseLost = errors.New("lease lost")

func (c *claim) Extend(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	now, _ := c.clock.now() // synced: this claim's own write told it
	sent := c.clock.local()
	wr, err := c.ref.Update(ctx, []firestore.Update{{Path: fLeasedUntil, Value: now.Add(c.lease)}},
		firestore.LastUpdateTime(c.updated))
	switch status.Code(err) {
	case codes.OK:
		c.clock.observe(sent, c.clock.local(), wr.UpdateTime)
		c.updated = wr.UpdateTime
		return nil
	case codes.FailedPrecondition, codes.NotFound:
		return fmt.Errorf("extend lease of chunk %d: %w", c.chunk.Seq, ErrLeaseLost)
	}
	return fmt.Errorf("extend lease of chunk %d: %w", c.chunk.Seq, err)
}

// Return ends the lease now, if this claim still holds it.
func (c *claim) Return(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	now, _ := c.clock.now()
	_, err := c.ref.Update(ctx, []firestore.Update{{Path: fLeasedUntil, Value: now}},
		firestore.LastUpdateTime(c.updated))
	switch status.Code(err) {
	case codes.OK, codes.FailedPrecondition, codes.NotFound:
		return nil // returned, or no longer this claim's to return
	}
	return fmt.Errorf("return chunk %d to the queue: %w", c.chunk.Seq, err)
}

// Done deletes the chunk whoever holds it now: its results are stored, so a
// claimer that took it after this one's lease ran out has nothing left to add.
func (c *claim) Done(ctx context.Context) error {
	if _, err := c.ref.Delete(ctx); err != nil && status.Code(err) != codes.NotFound {
		return fmt.Errorf("complete chunk %d: %w", c.chunk.Seq, err)
	}
	return nil
}

// Progress implements store.Queue.
func (s *Store) Progress(ctx context.Context, jobID string) (store.Progress, error) {
	if err := checkID(jobID); err != nil {
		return store.Progress{}, err
	}
	// Every running node asks this several times a second, so a sealed job's record
	// is read again only once its queue looks empty: drained, or deleted.
	s.cacheMu.Lock()
	chunks, sealed := s.sealed[jobID]
	s.cacheMu.Unlock()
	var (
		total, waiting int
		r              jobRecord
		terr, werr     error
		rerr           error
		wg             sync.WaitGroup
	)
	wg.Go(func() { total, terr = count(ctx, s.chunks(jobID).Query) })
	now, err := s.serverNow(ctx)
	if err != nil {
		return store.Progress{}, fmt.Errorf("progress of job %s: %w", jobID, err)
	}
	wg.Go(func() { waiting, werr = count(ctx, s.chunks(jobID).Where(fLeasedUntil, "<=", now)) })
	if !sealed {
		wg.Go(func() { r, rerr = s.readJob(ctx, jobID) })
	}
	wg.Wait()
	if sealed && terr == nil && total == 0 {
		r, rerr = s.readJob(ctx, jobID)
		sealed = false
	}
	if err := errors.Join(terr, werr, rerr); err != nil {
		return store.Progress{}, fmt.Errorf("progress of job %s: %w", jobID, err)
	}
	if !sealed {
		if !r.exists || r.spec == "" || r.deleted {
			return store.Progress{}, fmt.Errorf("input queue of job %s: %w", jobID, store.ErrNotFound)
		}
		if chunks = r.chunks; r.sealed {
			s.cacheMu.Lock()
			if len(s.sealed) > 1024 {
				clear(s.sealed)
			}
			s.sealed[jobID] = chunks
			s.cacheMu.Unlock()
		}
		sealed = r.sealed
	}
	return store.Progress{Sealed: sealed, Chunks: chunks, Waiting: waiting, InFlight: max(total-waiting, 0)}, nil
}

func count(ctx context.Context, q firestore.Query) (int, error) {
	res, err := q.NewAggregationQuery().WithCount("n").Get(ctx)
	if err != nil {
		return 0, err
	}
	switch v := res["n"].(type) {
	case *firestorepb.Value:
		return int(v.GetIntegerValue()), nil
	case int64:
		return int(v), nil
	}
	return 0, fmt.Errorf("count: unexpected result %T", res["n"])
}

// DeleteInputs implements store.Queue.
func (s *Store) DeleteInputs(ctx context.Context, jobID string) error {
	if err := checkID(jobID); err != nil {
		return err
	}
	if _, err := s.jobDoc(jobID).Set(ctx, map[string]any{fDeleted: true}, firestore.MergeAll); err != nil {
		return fmt.Errorf("delete inputs of job %s: %w", jobID, err)
	}
	if err := deleteAll(ctx, s.fs, s.chunks(jobID)); err != nil {
		return fmt.Errorf("delete inputs of job %s: %w", jobID, err)
	}
	return nil
}

// deleteAll deletes every document of a collection, a page at a time.
func deleteAll(ctx context.Context, fs *firestore.Client, coll *firestore.CollectionRef) error {
	for {
		refs, err := coll.Select().Limit(maxBatchWrites).Documents(ctx).GetAll()
		if err != nil {
			return err
		}
		if len(refs) == 0 {
			return nil
		}
		b := fs.Batch()
		for _, d := range refs {
			b.Delete(d.Ref)
		}
		if _, err := b.Commit(ctx); err != nil {
			return err
		}
	}
}

// ListJobs implements store.Records: it reads the job documents' names and
// update times (the client's heartbeat writes its job's), not their fields.
func (s *Store) ListJobs(ctx context.Context) ([]store.JobRecord, error) {
	docs, err := s.jobs.Select().Documents(ctx).GetAll()
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	out := make([]store.JobRecord, 0, len(docs))
	for _, d := range docs {
		if job.ValidID(d.Ref.ID) {
			out = append(out, store.JobRecord{ID: d.Ref.ID, Updated: d.UpdateTime})
		}
	}
	return out, nil
}

// DeleteJob implements store.Records: the job's document goes last, so that a
// deletion cut short is found and finished by the next.
func (s *Store) DeleteJob(ctx context.Context, jobID string) error {
	if err := s.DeleteInputs(ctx, jobID); err != nil {
		return err
	}
	doc := s.jobDoc(jobID)
	for _, coll := range []*firestore.CollectionRef{s.results(jobID), s.logs(jobID), doc.Collection("client")} {
		if err := deleteAll(ctx, s.fs, coll); err != nil {
			return fmt.Errorf("delete records of job %s: %w", jobID, err)
		}
	}
	if _, err := doc.Delete(ctx); err != nil && status.Code(err) != codes.NotFound {
		return fmt.Errorf("delete job %s: %w", jobID, err)
	}
	return nil
}

// PutResults implements store.Results: each result is a document keyed by its
// input's index, created only if none is there, so the first result stored wins.
func (s *Store) PutResults(ctx context.Context, jobID string, rs []store.Result) error {
	if err := checkID(jobID); err != nil {
		return err
	}
	// A result is created once: a retried write that finds it there has succeeded,
	// so writes that fail transiently (the emulator, under load, answers some with
	// a bare Unknown) are retried.
	for attempt := 1; ; attempt++ {
		failed, err := s.putResults(ctx, jobID, rs)
		if err == nil {
			return nil
		}
		if attempt == 4 || !transient(err) || ctx.Err() != nil {
			return err
		}
		rs = failed
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt) * 50 * time.Millisecond):
		}
	}
}

// putResults writes rs and returns those whose write failed, with the first error.
func (s *Store) putResults(ctx context.Context, jobID string, rs []store.Result) ([]store.Result, error) {
	bw := s.fs.BulkWriter(ctx)
	jobs := make([]*firestore.BulkWriterJob, 0, len(rs))
	for _, r := range rs {
		j, err := bw.Create(s.results(jobID).Doc(seqID(r.Index)), map[string]any{
			fData: store.AppendResults(nil, []store.Result{r}), fAt: firestore.ServerTimestamp})
		if err != nil {
			bw.End()
			return nil, fmt.Errorf("write result of input %d of job %s: %w", r.Index, jobID, err)
		}
		jobs = append(jobs, j)
	}
	bw.End()
	var (
		failed   []store.Result
		firstErr error
	)
	for i, j := range jobs {
		if _, err := j.Results(); err != nil && status.Code(err) != codes.AlreadyExists {
			failed = append(failed, rs[i])
			if firstErr == nil {
				firstErr = fmt.Errorf("write result of input %d of job %s: %w", rs[i].Index, jobID, err)
			}
		}
	}
	return failed, firstErr
}

// transient reports whether a write that failed with err may succeed if tried again.
//
// Canceled is among them: the emulator, under load, fails a write now and then
// with "call already cancelled" although the caller's context is live (callers
// check their context before retrying).
func transient(err error) bool {
	switch status.Code(err) {
	case codes.Unknown, codes.Unavailable, codes.Aborted, codes.ResourceExhausted, codes.Internal, codes.DeadlineExceeded, codes.Canceled:
		return true
	}
	return false
}

// PutLogs implements store.Logs: one document per batch.
func (s *Store) PutLogs(ctx context.Context, jobID string, lines []store.LogLine) error {
	if err := checkID(jobID); err != nil {
		return err
	}
	data := store.AppendLogs(nil, lines)
	if len(data) > store.MaxRecordBytes {
		return fmt.Errorf("write %d log lines of job %s: %d bytes encoded, over the %d a record may hold", len(lines), jobID, len(data), store.MaxRecordBytes)
	}
	if _, err := s.logs(jobID).Doc(randomID()).Create(ctx, map[string]any{fData: data, fAt: firestore.ServerTimestamp}); err != nil {
		return fmt.Errorf("write %d log lines of job %s: %w", len(lines), jobID, err)
	}
	return nil
}

func randomID() string {
	var b [10]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// WatchResults implements store.Results.
func (s *Store) WatchResults(ctx context.Context, jobID string, fn func([]store.Result)) (store.Watch, error) {
	if err := checkID(jobID); err != nil {
		return nil, err
	}
	return watch(ctx, s.results(jobID), store.DecodeResults, fn), nil
}

// WatchLogs implements store.Logs.
func (s *Store) WatchLogs(ctx context.Context, jobID string, fn func([]store.LogLine)) (store.Watch, error) {
	if err := checkID(jobID); err != nil {
		return nil, err
	}
	return watch(ctx, s.logs(jobID), store.DecodeLogs, fn), nil
}

// watch passes the records of each document added to coll to fn, in commit order,
// one call per batch of documents. A snapshot listener brings documents as they
// are committed; a poll fills in whenever the listener has been quiet for a while
// (a listen stream can stall without failing) and whenever Sync is called.
//
// Both read only documents committed since the cursor (the newest commit time
// delivered) less a margin, because a document may become visible a little after
// one committed later (the emulator shows this), and drop the ones already
// delivered by ID; IDs older than the margin are forgotten, so memory stays bounded
// however many documents the collection holds.
func watch[T any](ctx context.Context, coll *firestore.CollectionRef, decode func([]byte) ([]T, error), fn func([]T)) store.Watch {
	ctx, cancel := context.WithCancel(ctx)
	w := &watcher{coll: coll, cancel: cancel, done: make(chan struct{}), delivered: map[string]time.Time{}}
	w.deliver = func(docs []*firestore.DocumentSnapshot) {
		var recs []T
		for _, d := range docs {
			data, _ := d.Data()[fData].([]byte)
			if rs, err := decode(data); err == nil {
				recs = append(recs, rs...)
			}
		}
		if len(recs) > 0 {
			fn(recs)
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { w.listen(ctx) })
	wg.Go(func() { w.pollWhileQuiet(ctx) })
	go func() { wg.Wait(); close(w.done) }()
	return w
}

type watcher struct {
	coll    *firestore.CollectionRef
	cancel  context.CancelFunc
	done    chan struct{}
	deliver func([]*firestore.DocumentSnapshot)

	mu        sync.Mutex           // held while delivering, so the callback never runs concurrently
	cursor    time.Time            // the newest commit time delivered
	delivered map[string]time.Time // IDs delivered within visibilityMargin of cursor
	pruned    time.Time            // cursor when delivered was last pruned
	seen      int                  // documents delivered
	last      time.Time            // when a document was last delivered or a poll ran
	err       error                // why the listener last failed, if it did
	closed    bool
}

// visibilityMargin is how much later than a document committed after it another
// document may become visible.
var visibilityMargin = 10 * time.Second

// accept delivers the documents of docs, sorted by commit time, that have not been
// delivered yet. It is called with w.mu held.
func (w *watcher) accept(docs []*firestore.DocumentSnapshot) {
	var fresh []*firestore.DocumentSnapshot
	for _, d := range docs {
		at, ok := d.Data()[fAt].(time.Time)
		if _, dup := w.delivered[d.Ref.ID]; !ok || dup || at.Before(w.cursor.Add(-visibilityMargin)) {
			continue
		}
		w.delivered[d.Ref.ID] = at
		if at.After(w.cursor) {
			w.cursor = at
		}
		fresh = append(fresh, d)
	}
	if w.cursor.Sub(w.pruned) > visibilityMargin {
		for id, at := range w.delivered {
			if at.Before(w.cursor.Add(-visibilityMargin)) {
				delete(w.delivered, id)
			}
		}
		w.pruned = w.cursor
	}
	w.last = time.Now()
	if len(fresh) == 0 {
		return
	}
	w.deliver(fresh)
	w.seen += len(fresh)
}

func (w *watcher) query() firestore.Query {
	w.mu.Lock()
	cursor := w.cursor
	w.mu.Unlock()
	q := w.coll.OrderBy(fAt, firestore.Asc)
	if !cursor.IsZero() {
		q = q.Where(fAt, ">=", cursor.Add(-visibilityMargin))
	}
	return q
}

// listen keeps a listener on the documents committed at or after the cursor,
// restarting it every listenerWindow documents so that the client library's copy
// of the query's documents stays bounded.
func (w *watcher) listen(ctx context.Context) {
	pause := 100 * time.Millisecond
	for ctx.Err() == nil {
		it := w.query().Snapshots(ctx)
		taken := 0
		for taken < listenerWindow {
			snap, err := it.Next()
			if err != nil {
				if ctx.Err() == nil {
					w.mu.Lock()
					w.err = err
					w.mu.Unlock()
					sleepCtx(ctx, pause)
					pause = min(pause*2, 5*time.Second)
				}
				break
			}
			pause = 100 * time.Millisecond
			var docs []*firestore.DocumentSnapshot
			for _, ch := range snap.Changes {
				if ch.Kind == firestore.DocumentAdded { // in query order: commit order
					docs = append(docs, ch.Doc)
				}
			}
			taken += len(docs)
			w.mu.Lock()
			w.err = nil
			w.accept(docs)
			w.mu.Unlock()
		}
		it.Stop()
	}
}

const quietPoll = time.Second

func (w *watcher) pollWhileQuiet(ctx context.Context) {
	t := time.NewTicker(quietPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.mu.Lock()
		quiet := time.Since(w.last) >= quietPoll
		w.mu.Unlock()
		if quiet {
			_ = w.poll(ctx)
		}
	}
}

// poll reads and delivers every document committed since the cursor, a page at
// a time.
func (w *watcher) poll(ctx context.Context) error {
	const page = 1000
	q := w.query()
	for {
		docs, err := q.Limit(page).Documents(ctx).GetAll()
		if err != nil {
			return err
		}
		w.mu.Lock()
		w.accept(docs)
		w.mu.Unlock()
		if len(docs) < page {
			return nil
		}
		q = q.StartAfter(docs[len(docs)-1])
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Sync counts the documents stored now and returns once that many have been
// delivered, reading them itself if the listener is behind. Nothing is removed
// from a watched collection while its job is kept, so the count only grows.
func (w *watcher) Sync(ctx context.Context) error {
	n, err := count(ctx, w.coll.Query)
	if err != nil {
		return fmt.Errorf("sync watch of %s: %w", w.coll.Path, err)
	}
	for {
		w.mu.Lock()
		seen, closed, lerr := w.seen, w.closed, w.err
		w.mu.Unlock()
		if seen >= n || closed {
			return nil
		}
		if err := w.poll(ctx); err != nil {
			return fmt.Errorf("sync watch of %s: %d of %d documents seen: %w (listener: %v)", w.coll.Path, seen, n, err, lerr)
		}
		w.mu.Lock()
		seen = w.seen
		w.mu.Unlock()
		if seen >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sync watch of %s: %d of %d documents seen: %w (listener: %v)", w.coll.Path, seen, n, ctx.Err(), lerr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (w *watcher) Close() {
	w.cancel()
	<-w.done
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}

// Heartbeat implements store.Jobs.
func (s *Store) Heartbeat(ctx context.Context, jobID string) error {
	if err := checkID(jobID); err != nil {
		return err
	}
	if _, err := s.jobDoc(jobID).Set(ctx, map[string]any{fHeartbeat: firestore.ServerTimestamp}, firestore.MergeAll); err != nil {
		return fmt.Errorf("heartbeat job %s: %w", jobID, err)
	}
	return nil
}

// Release implements store.Jobs.
func (s *Store) Release(ctx context.Context, jobID string) error {
	if err := checkID(jobID); err != nil {
		return err
	}
	if _, err := s.jobDoc(jobID).Set(ctx, map[string]any{fReleased: true}, firestore.MergeAll); err != nil {
		return fmt.Errorf("release job %s: %w", jobID, err)
	}
	return nil
}

// LastHeartbeat implements store.Jobs.
func (s *Store) LastHeartbeat(ctx context.Context, jobID string) (time.Time, error) {
	if err := checkID(jobID); err != nil {
		return time.Time{}, err
	}
	r, err := s.readJob(ctx, jobID)
	if err != nil {
		return time.Time{}, err
	}
	if r.released {
		return time.Time{}, fmt.Errorf("heartbeat of job %s: %w", jobID, store.ErrReleased)
	}
	if r.hb.IsZero() {
		return time.Time{}, fmt.Errorf("heartbeat of job %s: %w", jobID, store.ErrNotFound)
	}
	return r.hb, nil
}

func (s *Store) uploadDoc(jobID string) *firestore.DocumentRef {
	return s.jobs.Doc(jobID).Collection("client").Doc("upload")
}

// PutUpload implements store.Uploads.
func (s *Store) PutUpload(ctx context.Context, jobID string, u store.Upload) error {
	if err := checkID(jobID); err != nil {
		return err
	}
	b, err := json.Marshal(u)
	if err != nil {
		return fmt.Errorf("encode upload of job %s: %w", jobID, err)
	}
	if _, err := s.uploadDoc(jobID).Set(ctx, map[string]any{fData: string(b)}); err != nil {
		return fmt.Errorf("record upload of job %s: %w", jobID, err)
	}
	return nil
}

// Upload implements store.Uploads.
func (s *Store) Upload(ctx context.Context, jobID string) (store.Upload, error) {
	var u store.Upload
	if err := checkID(jobID); err != nil {
		return u, err
	}
	snap, err := s.uploadDoc(jobID).Get(ctx)
	if status.Code(err) == codes.NotFound {
		return u, fmt.Errorf("upload of job %s: %w", jobID, store.ErrNotFound)
	}
	if err != nil {
		return u, fmt.Errorf("read upload of job %s: %w", jobID, err)
	}
	data, _ := snap.Data()[fData].(string)
	if err := json.Unmarshal([]byte(data), &u); err != nil {
		return u, fmt.Errorf("decode upload of job %s: %w", jobID, err)
	}
	return u, nil
}

// PutNode implements store.Nodes.
func (s *Store) PutNode(ctx context.Context, n store.Node) error {
	if !store.ValidNodeID(n.ID) {
		return fmt.Errorf("invalid node ID %q", n.ID)
	}
	b, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("encode node %s: %w", n.ID, err)
	}
	if _, err := s.nodes.Doc(n.ID).Set(ctx, map[string]any{fNode: string(b), fUpdated: firestore.ServerTimestamp}); err != nil {
		return fmt.Errorf("record node %s: %w", n.ID, err)
	}
	return nil
}

// ListNodes implements store.Nodes: nodes whose record was refreshed within
// store.NodeTTL, judged by the database's clock.
func (s *Store) ListNodes(ctx context.Context) ([]store.Node, error) {
	docs, err := s.nodes.Documents(ctx).GetAll()
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	var nodes []store.Node
	for _, d := range docs {
		n, live, err := decodeNode(d)
		if err != nil {
			return nil, err
		}
		if live {
			nodes = append(nodes, n)
		}
	}
	return nodes, nil
}

// decodeNode decodes a node document and says whether it was refreshed within
// store.NodeTTL of when it was read.
func decodeNode(d *firestore.DocumentSnapshot) (store.Node, bool, error) {
	updated, _ := d.Data()[fUpdated].(time.Time)
	var n store.Node
	raw, _ := d.Data()[fNode].(string)
	if err := json.Unmarshal([]byte(raw), &n); err != nil {
		return n, false, fmt.Errorf("decode node %s: %w", d.Ref.ID, err)
	}
	return n, d.ReadTime.Sub(updated) <= store.NodeTTL, nil
}

// GetNode implements store.Nodes.
func (s *Store) GetNode(ctx context.Context, id string) (store.Node, error) {
	if !store.ValidNodeID(id) {
		return store.Node{}, fmt.Errorf("invalid node ID %q", id)
	}
	d, err := s.nodes.Doc(id).Get(ctx)
	if status.Code(err) == codes.NotFound {
		return store.Node{}, fmt.Errorf("node %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Node{}, fmt.Errorf("read node %s: %w", id, err)
	}
	n, live, err := decodeNode(d)
	if err != nil {
		return store.Node{}, err
	}
	if !live {
		return store.Node{}, fmt.Errorf("node %s: record expired: %w", id, store.ErrNotFound)
	}
	return n, nil
}

// DeleteNode implements store.Nodes.
func (s *Store) DeleteNode(ctx context.Context, id string) error {
	if !store.ValidNodeID(id) {
		return fmt.Errorf("invalid node ID %q", id)
	}
	if _, err := s.nodes.Doc(id).Delete(ctx); err != nil && status.Code(err) != codes.NotFound {
		return fmt.Errorf("delete node %s: %w", id, err)
	}
	return nil
}

// PutGrant implements store.Grants: the node's grant document holds its latest.
func (s *Store) PutGrant(ctx context.Context, nodeID string, g store.Grant) error {
	if !store.ValidNodeID(nodeID) {
		return fmt.Errorf("invalid node ID %q", nodeID)
	}
	b, err := json.Marshal(g)
	if err != nil {
		return fmt.Errorf("encode grant of node %s: %w", nodeID, err)
	}
	if _, err := s.grants.Doc(nodeID).Set(ctx, map[string]any{fData: string(b), fAt: firestore.ServerTimestamp}); err != nil {
		return fmt.Errorf("grant node %s: %w", nodeID, err)
	}
	return nil
}

// WatchGrants implements store.Grants with a listener on the node's grant
// document. It returns once the listener has its first snapshot, the grant
// there before it, which it skips. Grants put in quick succession may come as
// the last of them only.
func (s *Store) WatchGrants(ctx context.Context, nodeID string, fn func(store.Grant)) (func(), error) {
	if !store.ValidNodeID(nodeID) {
		return nil, fmt.Errorf("invalid node ID %q", nodeID)
	}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	it := s.grants.Doc(nodeID).Snapshots(lctx)
	if _, err := it.Next(); err != nil {
		it.Stop()
		cancel()
		return nil, fmt.Errorf("watch grants of node %s: %w", nodeID, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			err := deliverGrants(it, fn)
			it.Stop()
			if lctx.Err() != nil {
				return
			}
			// A listener that failed is made again; what was put meanwhile is lost.
			slog.Warn("Firestore store: the grant listener stopped; listening again", "node", nodeID, "error", err)
			sleepCtx(lctx, time.Second)
			it = s.grants.Doc(nodeID).Snapshots(lctx)
			if _, err := it.Next(); err != nil && lctx.Err() != nil {
				return
			}
		}
	}()
	return func() { cancel(); <-done }, nil
}

// deliverGrants passes each grant its listener sees to fn, until it fails.
func deliverGrants(it *firestore.DocumentSnapshotIterator, fn func(store.Grant)) error {
	for {
		d, err := it.Next()
		if err != nil {
			return err
		}
		if !d.Exists() {
			continue
		}
		var g store.Grant
		raw, _ := d.Data()[fData].(string)
		if err := json.Unmarshal([]byte(raw), &g); err != nil {
			slog.Warn("Firestore store: undecodable grant", "node", d.Ref.ID, "error", err)
			continue
		}
		fn(g)
	}
}

// Put implements blob.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) error {
	return s.blobs.Put(ctx, key, r)
}

// Open implements blob.Store.
func (s *Store) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	return s.blobs.Open(ctx, key)
}

// Has implements blob.Store.
func (s *Store) Has(ctx context.Context, key string) (bool, error) { return s.blobs.Has(ctx, key) }

// List implements blob.Store.
func (s *Store) List(ctx context.Context, prefix string) ([]blob.Info, error) {
	return s.blobs.List(ctx, prefix)
}

// Delete implements blob.Store.
func (s *Store) Delete(ctx context.Context, key string) error { return s.blobs.Delete(ctx, key) }
