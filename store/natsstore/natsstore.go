// Package natsstore implements the store and blob contracts on NATS JetStream, the
// embedded default of `burla dev` and the self-hosted choice.
//
// Layout, all created on Open if missing:
//   - stream BURLA_INPUTS, subjects burla.in.<job>: work-queue retention; each job
//     has one durable pull consumer named after it whose ack wait is the job's
//     lease, so a chunk claimed by a worker that dies is redelivered.
//   - stream BURLA_RESULTS, subjects burla.out.<job>, and BURLA_LOGS, subjects
//     burla.log.<job>: batches of records, read back with ordered consumers.
//   - key-value bucket burla-jobs: <job>.spec, <job>.seal, <job>.hb, <job>.upload.
//
// A job's records, results and logs are kept until DeleteJob (the collector's,
// Retention after the job ended): nothing expires by age, so a job that runs for
// weeks keeps every result.
//   - key-value bucket burla-nodes: one key per live node, expiring after NodeTTL.
//   - object store burla-blobs: executables and large values.
//   - object store burla-shared: tenants' shared files (job.SharedKey), apart from
//     the other blobs so that listing them reads their records only.
//   - subjects burla.grant.<node>: grants, published on core NATS and not kept: a
//     grant is a hint, and one that finds no agent listening is not worth keeping.
package natsstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/burla-temporal/burla/blob"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/store"
)

const (
	streamInputs  = "BURLA_INPUTS"
	streamResults = "BURLA_RESULTS"
	streamLogs    = "BURLA_LOGS"
	bucketJobs    = "burla-jobs"
	bucketNodes   = "burla-nodes"
	bucketBlobs   = "burla-blobs"
	bucketShared  = "burla-shared"

	// NodeTTL is how long a node record lives without a refresh.
	NodeTTL = store.NodeTTL
	// Retention is how long the collector keeps an ended job's records, results
	// and logs, so that a detached job can be re-attached (activities.CollectPolicy).
	Retention = 7 * 24 * time.Hour
)

var (
	_ store.Store   = (*Store)(nil)
	_ store.Grants  = (*Store)(nil)
	_ store.Uploads = (*Store)(nil)
	_ store.Records = (*Store)(nil)
	_ blob.Store    = (*Store)(nil)
)

// Store is a store.Store and blob.Store on one NATS connection.
type Store struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	jobs  jetstream.KeyValue
	nodes jetstream.KeyValue
	blobs jetstream.ObjectStore
	// shared holds the keys job.IsSharedKey reports, and blobs every other.
	shared jetstream.ObjectStore

	mu        sync.Mutex
	consumers map[string]jetstream.Consumer // input consumers by job, cached for Claim
}

// Connect dials url and opens the store on the connection, which the Store owns.
// The connection reconnects for ever; after each reconnection the store makes again
// any stream or bucket the server lacks (a server restarted without its data).
// opts add to the connection's options: credentials (nats.Token, nats.UserInfo).
func Connect(ctx context.Context, url, name string, opts ...nats.Option) (*Store, error) {
	var s *Store
	var mu sync.Mutex
	nc, err := nats.Connect(url, append([]nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.Timeout(3 * time.Second),
		nats.ReconnectHandler(func(*nats.Conn) {
			mu.Lock()
			st := s
			mu.Unlock()
			if st != nil {
				go st.reensure()
			}
		}),
	}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	st, err := Open(ctx, nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	mu.Lock()
	s = st
	mu.Unlock()
	return st, nil
}

// Open makes the streams and buckets if they are missing and returns a Store on nc.
func Open(ctx context.Context, nc *nats.Conn) (*Store, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("open JetStream: %w", err)
	}
	s := &Store{nc: nc, js: js, consumers: map[string]jetstream.Consumer{}}
	if s.jobs, s.nodes, s.blobs, s.shared, err = s.ensure(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

var streamConfigs = []jetstream.StreamConfig{
	{Name: streamInputs, Subjects: []string{"burla.in.*"}, Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage},
	// No MaxAge: a result written in a job's first week is still there when the
	// job ends in its third. Clusters made before kept them 7 days; ensure
	// updates their streams.
	{Name: streamResults, Subjects: []string{"burla.out.*"}, Storage: jetstream.FileStorage},
	{Name: streamLogs, Subjects: []string{"burla.log.*"}, Storage: jetstream.FileStorage},
}

// ensure makes the streams and buckets if they are missing. Every bucket is on file
// storage: a bucket in memory would vanish when the server restarts, and every
// write to it would then fail until something made it again.
// The handles it returns name their streams, so the ones Open keeps stay good after
// a later ensure makes a stream again.
func (s *Store) ensure(ctx context.Context) (jobs, nodes jetstream.KeyValue, blobs, shared jetstream.ObjectStore, err error) {
	for _, cfg := range streamConfigs {
		if _, err := s.js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return nil, nil, nil, nil, fmt.Errorf("create stream %s: %w", cfg.Name, err)
		}
	}
	jobs, err = s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucketJobs, Storage: jetstream.FileStorage})
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("create bucket %s: %w", bucketJobs, err)
	}
	nodesCfg := jetstream.KeyValueConfig{Bucket: bucketNodes, TTL: NodeTTL, Storage: jetstream.FileStorage}
	nodes, err = s.js.CreateOrUpdateKeyValue(ctx, nodesCfg)
	if err != nil {
		// Clusters before this one kept node records in memory, and a stream's
		// storage cannot be changed. The records live for seconds: start afresh.
		if st, serr := s.js.Stream(ctx, "KV_"+bucketNodes); serr == nil && st.CachedInfo().Config.Storage == jetstream.MemoryStorage {
			if derr := s.js.DeleteKeyValue(ctx, bucketNodes); derr == nil {
				nodes, err = s.js.CreateOrUpdateKeyValue(ctx, nodesCfg)
			}
		}
		if err != nil {
			return nil, nil, nil, nil, fmt.Errorf("create bucket %s: %w", bucketNodes, err)
		}
	}
	blobs, err = s.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: bucketBlobs, Storage: jetstream.FileStorage})
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("create object store %s: %w", bucketBlobs, err)
	}
	shared, err = s.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: bucketShared, Storage: jetstream.FileStorage})
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("create object store %s: %w", bucketShared, err)
	}
	return jobs, nodes, blobs, shared, nil
}

// reensure runs ensure after a reconnection, retrying for a while: the server may
// still be recovering its streams.
func (s *Store) reensure() {
	for attempt := range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _, _, _, err := s.ensure(ctx)
		cancel()
		if err == nil || s.nc.IsClosed() {
			return
		}
		slog.Warn("NATS store: could not check streams after reconnecting", "attempt", attempt+1, "error", err)
		time.Sleep(500 * time.Millisecond)
	}
}

// requestTimeout bounds one call to the server, all its attempts together, unless
// the caller's context ends sooner; an activity's deadline can be days away.
const requestTimeout = 10 * time.Second

// attemptTimeout bounds one attempt of a request. A request in flight when the
// server goes down (a restart, say) loses its reply: rather than wait for it to the
// caller's deadline, the request is made again after attemptTimeout. Replies take
// milliseconds; an attempt that times out on a slow server is merely repeated.
const attemptTimeout = 3 * time.Second

// bounded is ctx, ending requestTimeout from now if it would end later.
func bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= requestTimeout {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, requestTimeout)
}

// request runs op, a call to the server that is safe to repeat, each attempt
// bounded by attemptTimeout, again while attempts time out or find JetStream not
// yet serving (a server restarting), within requestTimeout or ctx. It returns the
// last attempt's error.
func request(ctx context.Context, op func(context.Context) error) error {
	ctx, cancel := bounded(ctx)
	defer cancel()
	return retry(ctx, attemptTimeout, op)
}

// retry runs op as request does, each attempt bounded by attempt, until ctx ends.
func retry(ctx context.Context, attempt time.Duration, op func(context.Context) error) error {
	for {
		actx, acancel := context.WithTimeout(ctx, attempt)
		err := op(actx)
		timedOut := errors.Is(actx.Err(), context.DeadlineExceeded)
		acancel()
		if err == nil || ctx.Err() != nil || !(timedOut || unavailable(err)) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// unavailable reports whether err says that the request met no server: the
// connection dropped with it in flight, or no server answered for JetStream (one
// restarting, or still recovering its streams).
func unavailable(err error) bool {
	return errors.Is(err, nats.ErrDisconnected) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled)
}

// get reads key of kv, as request does.
func get(ctx context.Context, kv jetstream.KeyValue, key string) (e jetstream.KeyValueEntry, err error) {
	err = request(ctx, func(ctx context.Context) error {
		e, err = kv.Get(ctx, key)
		return err
	})
	return e, err
}

// put writes key of kv, as request does.
func put(ctx context.Context, kv jetstream.KeyValue, key string, value []byte) error {
	return request(ctx, func(ctx context.Context) error {
		_, err := kv.Put(ctx, key, value)
		return err
	})
}

// Conn is the store's connection.
func (s *Store) Conn() *nats.Conn { return s.nc }

// Close closes the connection.
func (s *Store) Close() { s.nc.Close() }

func inSubject(jobID string) string  { return "burla.in." + jobID }
func outSubject(jobID string) string { return "burla.out." + jobID }
func logSubject(jobID string) string { return "burla.log." + jobID }

func checkID(jobID string) error {
	if !job.ValidID(jobID) {
		return fmt.Errorf("invalid job ID %q", jobID)
	}
	return nil
}

// CreateJob implements store.Queue.
func (s *Store) CreateJob(ctx context.Context, spec job.Spec) error {
	if err := spec.Validate(); err != nil {
		return err
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return fmt.Errorf("encode spec of job %s: %w", spec.ID, err)
	}
	if err := request(ctx, func(ctx context.Context) error {
		_, err := s.jobs.Put(ctx, spec.ID+".spec", b)
		return err
	}); err != nil {
		return fmt.Errorf("record spec of job %s: %w", spec.ID, err)
	}
	cfg := jetstream.ConsumerConfig{
		Durable:       spec.ID,
		FilterSubject: inSubject(spec.ID),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       spec.Lease,
		MaxDeliver:    -1,
		MaxAckPending: -1,
		// A job abandoned without DeleteInputs loses its queue after a day of disuse.
		InactiveThreshold: 24 * time.Hour,
	}
	var c jetstream.Consumer
	if err := request(ctx, func(ctx context.Context) (err error) {
		c, err = s.js.CreateOrUpdateConsumer(ctx, streamInputs, cfg)
		return err
	}); err != nil {
		return fmt.Errorf("create input queue of job %s: %w", spec.ID, err)
	}
	s.mu.Lock()
	s.consumers[spec.ID] = c
	s.mu.Unlock()
	return nil
}

// Job implements store.Queue.
func (s *Store) Job(ctx context.Context, jobID string) (job.Spec, error) {
	if err := checkID(jobID); err != nil {
		return job.Spec{}, err
	}
	e, err := get(ctx, s.jobs, jobID+".spec")
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return job.Spec{}, fmt.Errorf("job %s: %w", jobID, store.ErrNotFound)
	}
	if err != nil {
		return job.Spec{}, fmt.Errorf("read spec of job %s: %w", jobID, err)
	}
	var spec job.Spec
	if err := json.Unmarshal(e.Value(), &spec); err != nil {
		return job.Spec{}, fmt.Errorf("decode spec of job %s: %w", jobID, err)
	}
	return spec, nil
}

// PutChunks implements store.Queue. It publishes without waiting for each
// acknowledgement in turn and returns once all are stored. Each chunk's message ID
// is its job and sequence number, so a chunk written again (its acknowledgement
// lost as the server restarted, or the whole call repeated) is stored once.
func (s *Store) PutChunks(ctx context.Context, jobID string, cs []store.Chunk) error {
	if err := checkID(jobID); err != nil {
		return err
	}
	msgs := make([][]byte, len(cs))
	futs := make([]jetstream.PubAckFuture, len(cs))
	for i, c := range cs {
		msgs[i] = store.AppendChunk(nil, c)
		f, err := s.js.PublishAsync(inSubject(jobID), msgs[i], jetstream.WithMsgID(chunkMsgID(jobID, c.Seq)))
		if err != nil {
			return fmt.Errorf("write chunk %d of job %s: %w", c.Seq, jobID, err)
		}
		futs[i] = f
	}
	// An acknowledgement that does not come within attemptTimeout of the last one
	// is taken as lost, with every one not yet in: those chunks are written again
	// one by one.
	stalled := time.NewTimer(attemptTimeout)
	defer stalled.Stop()
	lost := false
	for i, f := range futs {
		var err error
		if lost {
			select {
			case <-f.Ok():
				continue
			case err = <-f.Err():
			default:
				err = context.DeadlineExceeded
			}
		} else {
			select {
			case <-f.Ok():
				stalled.Reset(attemptTimeout)
				continue
			case err = <-f.Err():
			case <-stalled.C:
				err, lost = context.DeadlineExceeded, true
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if !unavailable(err) && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("write chunk %d of job %s: %w", cs[i].Seq, jobID, err)
		}
		id := chunkMsgID(jobID, cs[i].Seq)
		if err := request(ctx, func(ctx context.Context) error {
			_, err := s.js.Publish(ctx, inSubject(jobID), msgs[i], jetstream.WithMsgID(id))
			return err
		}); err != nil {
			return fmt.Errorf("write chunk %d of job %s: %w", cs[i].Seq, jobID, err)
		}
	}
	return nil
}

func chunkMsgID(jobID string, seq int64) string { return jobID + "." + strconv.FormatInt(seq, 10) }

// Seal implements store.Queue.
func (s *Store) Seal(ctx context.Context, jobID string, chunks int) error {
	if err := checkID(jobID); err != nil {
		return err
	}
	if err := put(ctx, s.jobs, jobID+".seal", []byte(strconv.Itoa(chunks))); err != nil {
		return fmt.Errorf("seal inputs of job %s: %w", jobID, err)
	}
	return nil
}

func (s *Store) consumer(ctx context.Context, jobID string) (jetstream.Consumer, error) {
	s.mu.Lock()
	c, ok := s.consumers[jobID]
	s.mu.Unlock()
	if ok {
		return c, nil
	}
	err := request(ctx, func(ctx context.Context) (err error) {
		c, err = s.js.Consumer(ctx, streamInputs, jobID)
		return err
	})
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("input queue of job %s: %w", jobID, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open input queue of job %s: %w", jobID, err)
	}
	s.mu.Lock()
	s.consumers[jobID] = c
	s.mu.Unlock()
	return c, nil
}

// Claim implements store.Queue.
func (s *Store) Claim(ctx context.Context, jobID string, wait time.Duration) (store.Claim, error) {
	if err := checkID(jobID); err != nil {
		return nil, err
	}
	c, err := s.consumer(ctx, jobID)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
		wait = time.Until(dl)
	}
	if wait < 10*time.Millisecond {
		wait = 10 * time.Millisecond
	}
	batch, err := c.Fetch(1, jetstream.FetchMaxWait(wait))
	if err != nil {
		return nil, fmt.Errorf("claim chunk of job %s: %w", jobID, err)
	}
	var m jetstream.Msg
	select {
	case m = <-batch.Messages():
	case <-ctx.Done():
		// Give up the wait at once; a chunk that arrives for it anyway goes straight
		// back to the queue rather than waiting out its lease.
		go func() {
			for m := range batch.Messages() {
				_ = m.Nak()
			}
		}()
		return nil, ctx.Err()
	}
	if m != nil {
		chunk, err := store.DecodeChunk(m.Data())
		if err != nil {
			// A chunk nobody can read would be redelivered for ever; drop it loudly.
			_ = m.Term()
			return nil, fmt.Errorf("claim chunk of job %s: %w", jobID, err)
		}
		attempt := 1
		if md, err := m.Metadata(); err == nil {
			attempt = int(md.NumDelivered)
		}
		return &claim{msg: m, chunk: chunk, attempt: attempt}, nil
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) {
			s.mu.Lock()
			delete(s.consumers, jobID)
			s.mu.Unlock()
			return nil, fmt.Errorf("input queue of job %s: %w", jobID, store.ErrNotFound)
		}
		return nil, fmt.Errorf("claim chunk of job %s: %w", jobID, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return nil, store.ErrNoChunk
}

type claim struct {
	msg     jetstream.Msg
	chunk   store.Chunk
	attempt int
}

func (c *claim) Chunk() store.Chunk { return c.chunk }
func (c *claim) Attempt() int       { return c.attempt }

func (c *claim) Extend(ctx context.Context) error {
	if err := c.msg.InProgress(); err != nil {
		return fmt.Errorf("extend lease of chunk %d: %w", c.chunk.Seq, err)
	}
	return nil
}

func (c *claim) Return(ctx context.Context) error {
	if err := c.msg.Nak(); err != nil {
		return fmt.Errorf("return chunk %d to the queue: %w", c.chunk.Seq, err)
	}
	return nil
}

func (c *claim) Done(ctx context.Context) error {
	// DoubleAck waits for the server, so a chunk reported done is gone for good.
	// It is not repeated: the server does not answer an ack of a chunk acked
	// already, as the first may have been when its reply was lost. A chunk whose
	// ack is lost runs again when its lease runs out.
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	if err := c.msg.DoubleAck(ctx); err != nil {
		return fmt.Errorf("complete chunk %d: %w", c.chunk.Seq, err)
	}
	return nil
}

// Progress implements store.Queue.
func (s *Store) Progress(ctx context.Context, jobID string) (store.Progress, error) {
	if err := checkID(jobID); err != nil {
		return store.Progress{}, err
	}
	var p store.Progress
	e, err := get(ctx, s.jobs, jobID+".seal")
	switch {
	case err == nil:
		p.Sealed = true
		if p.Chunks, err = strconv.Atoi(string(e.Value())); err != nil {
			return p, fmt.Errorf("progress of job %s: bad seal %q", jobID, e.Value())
		}
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		return p, fmt.Errorf("progress of job %s: %w", jobID, err)
	}
	c, err := s.consumer(ctx, jobID)
	if err != nil {
		return p, err
	}
	var info *jetstream.ConsumerInfo
	err = request(ctx, func(ctx context.Context) (err error) {
		info, err = c.Info(ctx)
		return err
	})
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		s.mu.Lock()
		delete(s.consumers, jobID)
		s.mu.Unlock()
		return p, fmt.Errorf("input queue of job %s: %w", jobID, store.ErrNotFound)
	}
	if err != nil {
		return p, fmt.Errorf("progress of job %s: %w", jobID, err)
	}
	p.Waiting = int(info.NumPending)
	p.InFlight = info.NumAckPending
	return p, nil
}

// DeleteInputs implements store.Queue.
func (s *Store) DeleteInputs(ctx context.Context, jobID string) error {
	if err := checkID(jobID); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.consumers, jobID)
	s.mu.Unlock()
	// Deleting again what a lost reply hid is no error.
	if err := request(ctx, func(ctx context.Context) error {
		err := s.js.DeleteConsumer(ctx, streamInputs, jobID)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil
		}
		return err
	}); err != nil {
		return fmt.Errorf("delete input queue of job %s: %w", jobID, err)
	}
	if err := request(ctx, func(ctx context.Context) error {
		st, err := s.js.Stream(ctx, streamInputs)
		if err != nil {
			return err
		}
		return st.Purge(ctx, jetstream.WithPurgeSubject(inSubject(jobID)))
	}); err != nil {
		return fmt.Errorf("delete inputs of job %s: %w", jobID, err)
	}
	return nil
}

// publish stores one message, as request does: each attempt carries the same
// message ID, so that the stream keeps one copy however many attempts reach it.
func (s *Store) publish(ctx context.Context, subject string, data []byte) error {
	id := nuid.Next()
	return request(ctx, func(ctx context.Context) error {
		_, err := s.js.Publish(ctx, subject, data, jetstream.WithMsgID(id))
		return err
	})
}

// PutResults implements store.Results.
func (s *Store) PutResults(ctx context.Context, jobID string, rs []store.Result) error {
	if err := checkID(jobID); err != nil {
		return err
	}
	if err := s.publish(ctx, outSubject(jobID), store.AppendResults(nil, rs)); err != nil {
		return fmt.Errorf("write %d results of job %s: %w", len(rs), jobID, err)
	}
	return nil
}

// PutLogs implements store.Logs.
func (s *Store) PutLogs(ctx context.Context, jobID string, lines []store.LogLine) error {
	if err := checkID(jobID); err != nil {
		return err
	}
	if err := s.publish(ctx, logSubject(jobID), store.AppendLogs(nil, lines)); err != nil {
		return fmt.Errorf("write %d log lines of job %s: %w", len(lines), jobID, err)
	}
	return nil
}

// WatchResults implements store.Results.
func (s *Store) WatchResults(ctx context.Context, jobID string, fn func([]store.Result)) (store.Watch, error) {
	return watch(ctx, s, streamResults, outSubject(jobID), store.DecodeResults, fn)
}

// WatchLogs implements store.Logs.
func (s *Store) WatchLogs(ctx context.Context, jobID string, fn func([]store.LogLine)) (store.Watch, error) {
	return watch(ctx, s, streamLogs, logSubject(jobID), store.DecodeLogs, fn)
}

// watchCheck is how often a watch that has delivered nothing looks whether its
// subject has messages it has not delivered. The ordered consumer it reads with
// recreates itself after a reconnect or a lost consumer, but not after every
// error (a pull that fails as the server comes back, say): a watch that has
// left a message undelivered for a whole watchCheck is restarted from the
// message after the last it delivered.
var watchCheck = 5 * time.Second // a variable for the tests

func watch[T any](ctx context.Context, s *Store, stream, subject string, decode func([]byte) ([]T, error), fn func([]T)) (store.Watch, error) {
	st, err := s.js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", subject, err)
	}
	w := &watcher{stream: st, subject: subject, check: watchCheck, stop: make(chan struct{}), stopped: make(chan struct{})}
	w.cond = sync.NewCond(&w.mu)
	w.handle = func(m jetstream.Msg) {
		w.deliver.Lock() // a restarted consumer's last callback may overlap its successor's first
		defer w.deliver.Unlock()
		md, err := m.Metadata()
		if err != nil {
			return
		}
		w.mu.Lock()
		if md.Sequence.Stream <= w.seen {
			w.mu.Unlock()
			return // a restarted consumer's overlap with the one it replaced
		}
		w.mu.Unlock()
		if recs, err := decode(m.Data()); err == nil {
			fn(recs)
		}
		w.mu.Lock()
		w.seen = md.Sequence.Stream
		w.cond.Broadcast()
		w.mu.Unlock()
	}
	if err := w.consume(ctx); err != nil {
		return nil, err
	}
	go w.watchdog()
	return w, nil
}

type watcher struct {
	stream  jetstream.Stream
	subject string
	handle  func(jetstream.Msg) // called by one consumer at a time
	check   time.Duration

	stop    chan struct{} // closed by Close
	stopped chan struct{} // closed when the watchdog has returned
	deliver sync.Mutex    // held while a message is passed to the callback

	mu       sync.Mutex
	cond     *sync.Cond
	cc       jetstream.ConsumeContext
	seen     uint64 // stream sequence of the last message passed to the callback
	closed   bool
	restarts int // times the watchdog set out to restart the consumer
}

// consume (re)starts the ordered consumer after the last message delivered.
func (w *watcher) consume(ctx context.Context) error {
	w.mu.Lock()
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{w.subject}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if w.seen > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, w.seen+1
	}
	w.mu.Unlock()
	c, err := w.stream.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("watch %s: %w", w.subject, err)
	}
	cc, err := c.Consume(w.handle, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		slog.Debug("NATS store: watch", "subject", w.subject, "error", err)
	}))
	if err != nil {
		return fmt.Errorf("watch %s: %w", w.subject, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		cc.Stop()
		return nil
	}
	if w.cc != nil {
		w.cc.Stop()
	}
	w.cc = cc
	return nil
}

// watchdog restarts the consumer when it has left a message undelivered for a
// whole check period; it looks at the stream only while nothing is delivered.
func (w *watcher) watchdog() {
	defer close(w.stopped)
	t := time.NewTicker(w.check)
	defer t.Stop()
	var seenBefore, lastBefore uint64 // at the previous tick
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		w.mu.Lock()
		seen := w.seen
		w.mu.Unlock()
		if seen != seenBefore {
			seenBefore, lastBefore = seen, 0 // delivering: nothing to check
			continue
		}
		if lastBefore > seen {
			// A message stored a whole period ago is still not delivered.
			slog.Warn("NATS store: a watch stalled; restarting it", "subject", w.subject, "delivered", seen, "stored", lastBefore)
			// Counted before the new consumer exists: it may deliver (and wake a
			// Sync) before consume returns.
			w.mu.Lock()
			w.restarts++
			w.mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), attemptTimeout)
			if err := w.consume(ctx); err != nil {
				slog.Warn("NATS store: could not restart a watch", "subject", w.subject, "error", err)
			}
			cancel()
			lastBefore = 0
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), attemptTimeout)
		last, err := w.stream.GetLastMsgForSubject(ctx, w.subject)
		cancel()
		if err == nil {
			lastBefore = last.Sequence
		}
	}
}

func (w *watcher) Sync(ctx context.Context) error {
	var last *jetstream.RawStreamMsg
	err := request(ctx, func(ctx context.Context) (err error) {
		last, err = w.stream.GetLastMsgForSubject(ctx, w.subject)
		return err
	})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sync watch of %s: %w", w.subject, err)
	}
	stop := context.AfterFunc(ctx, func() {
		w.mu.Lock()
		w.cond.Broadcast()
		w.mu.Unlock()
	})
	defer stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.seen < last.Sequence && !w.closed {
		if err := ctx.Err(); err != nil {
			return err
		}
		w.cond.Wait()
	}
	return nil
}

func (w *watcher) Close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	cc := w.cc
	w.cond.Broadcast()
	w.mu.Unlock()
	close(w.stop)
	<-w.stopped
	cc.Stop()
}

// Heartbeat implements store.Jobs.
func (s *Store) Heartbeat(ctx context.Context, jobID string) error {
	if err := checkID(jobID); err != nil {
		return err
	}
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	if err := put(ctx, s.jobs, jobID+".hb", []byte(now)); err != nil {
		return fmt.Errorf("heartbeat job %s: %w", jobID, err)
	}
	return nil
}

// released is the heartbeat's value once the client has called Release.
const released = "released"

// Release implements store.Jobs.
func (s *Store) Release(ctx context.Context, jobID string) error {
	if err := checkID(jobID); err != nil {
		return err
	}
	if err := put(ctx, s.jobs, jobID+".hb", []byte(released)); err != nil {
		return fmt.Errorf("release job %s: %w", jobID, err)
	}
	return nil
}

// LastHeartbeat implements store.Jobs.
func (s *Store) LastHeartbeat(ctx context.Context, jobID string) (time.Time, error) {
	if err := checkID(jobID); err != nil {
		return time.Time{}, err
	}
	e, err := get(ctx, s.jobs, jobID+".hb")
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return time.Time{}, fmt.Errorf("heartbeat of job %s: %w", jobID, store.ErrNotFound)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("heartbeat of job %s: %w", jobID, err)
	}
	if string(e.Value()) == released {
		return time.Time{}, fmt.Errorf("heartbeat of job %s: %w", jobID, store.ErrReleased)
	}
	ms, err := strconv.ParseInt(string(e.Value()), 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("heartbeat of job %s: bad value %q", jobID, e.Value())
	}
	return time.UnixMilli(ms), nil
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
	if err := put(ctx, s.jobs, jobID+".upload", b); err != nil {
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
	e, err := get(ctx, s.jobs, jobID+".upload")
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return u, fmt.Errorf("upload of job %s: %w", jobID, store.ErrNotFound)
	}
	if err != nil {
		return u, fmt.Errorf("read upload of job %s: %w", jobID, err)
	}
	if err := json.Unmarshal(e.Value(), &u); err != nil {
		return u, fmt.Errorf("decode upload of job %s: %w", jobID, err)
	}
	return u, nil
}

// ListJobs implements store.Records: it reads the jobs bucket's keys and their
// times, not their values.
func (s *Store) ListJobs(ctx context.Context) ([]store.JobRecord, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	w, err := s.jobs.WatchAll(ctx, jetstream.MetaOnly(), jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	defer w.Stop()
	latest := map[string]time.Time{}
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("list jobs: %w", ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("list jobs: the watch ended early")
			}
			if e == nil { // every key present when the watch began has come
				out := make([]store.JobRecord, 0, len(latest))
				for id, at := range latest {
					out = append(out, store.JobRecord{ID: id, Updated: at})
				}
				return out, nil
			}
			id, _, _ := strings.Cut(e.Key(), ".")
			if !job.ValidID(id) {
				continue
			}
			if at := e.Created(); at.After(latest[id]) {
				latest[id] = at
			}
		}
	}
}

// DeleteJob implements store.Records. It purges by subject, so the bucket keeps
// no delete markers of the job's keys.
func (s *Store) DeleteJob(ctx context.Context, jobID string) error {
	if err := s.DeleteInputs(ctx, jobID); err != nil {
		return err
	}
	for stream, subject := range map[string]string{
		streamResults:      outSubject(jobID),
		streamLogs:         logSubject(jobID),
		"KV_" + bucketJobs: "$KV." + bucketJobs + "." + jobID + ".>",
	} {
		if err := request(ctx, func(ctx context.Context) error {
			st, err := s.js.Stream(ctx, stream)
			if err != nil {
				return err
			}
			return st.Purge(ctx, jetstream.WithPurgeSubject(subject))
		}); err != nil {
			return fmt.Errorf("delete records of job %s: %w", jobID, err)
		}
	}
	return nil
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
	if err := put(ctx, s.nodes, n.ID, b); err != nil {
		return fmt.Errorf("record node %s: %w", n.ID, err)
	}
	return nil
}

// ListNodes implements store.Nodes.
func (s *Store) ListNodes(ctx context.Context) ([]store.Node, error) {
	var keys []string
	err := request(ctx, func(ctx context.Context) (err error) {
		keys, err = s.nodes.Keys(ctx)
		return err
	})
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	nodes := make([]store.Node, 0, len(keys))
	for _, k := range keys {
		e, err := get(ctx, s.nodes, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // expired between Keys and Get
		}
		if err != nil {
			return nil, fmt.Errorf("read node %s: %w", k, err)
		}
		var n store.Node
		if err := json.Unmarshal(e.Value(), &n); err != nil {
			return nil, fmt.Errorf("decode node %s: %w", k, err)
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// GetNode implements store.Nodes.
func (s *Store) GetNode(ctx context.Context, id string) (store.Node, error) {
	if !store.ValidNodeID(id) {
		return store.Node{}, fmt.Errorf("invalid node ID %q", id)
	}
	e, err := get(ctx, s.nodes, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return store.Node{}, fmt.Errorf("node %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Node{}, fmt.Errorf("read node %s: %w", id, err)
	}
	var n store.Node
	if err := json.Unmarshal(e.Value(), &n); err != nil {
		return store.Node{}, fmt.Errorf("decode node %s: %w", id, err)
	}
	return n, nil
}

// DeleteNode implements store.Nodes.
func (s *Store) DeleteNode(ctx context.Context, id string) error {
	if err := request(ctx, func(ctx context.Context) error {
		err := s.nodes.Purge(ctx, id)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		return err
	}); err != nil {
		return fmt.Errorf("delete node %s: %w", id, err)
	}
	return nil
}

func grantSubject(nodeID string) string { return "burla.grant." + nodeID }

// PutGrant implements store.Grants. The grant is published, not stored: it
// reaches the node if its agent listens now.
func (s *Store) PutGrant(ctx context.Context, nodeID string, g store.Grant) error {
	if !store.ValidNodeID(nodeID) {
		return fmt.Errorf("invalid node ID %q", nodeID)
	}
	b, err := json.Marshal(g)
	if err != nil {
		return fmt.Errorf("encode grant of node %s: %w", nodeID, err)
	}
	if err := s.nc.Publish(grantSubject(nodeID), b); err != nil {
		return fmt.Errorf("grant node %s: %w", nodeID, err)
	}
	return nil
}

// WatchGrants implements store.Grants. It returns once the server has the
// subscription, so that a grant put after it is delivered.
func (s *Store) WatchGrants(ctx context.Context, nodeID string, fn func(store.Grant)) (func(), error) {
	if !store.ValidNodeID(nodeID) {
		return nil, fmt.Errorf("invalid node ID %q", nodeID)
	}
	sub, err := s.nc.Subscribe(grantSubject(nodeID), func(m *nats.Msg) {
		var g store.Grant
		if err := json.Unmarshal(m.Data, &g); err != nil {
			slog.Warn("NATS store: undecodable grant", "node", nodeID, "error", err)
			return
		}
		fn(g)
	})
	if err != nil {
		return nil, fmt.Errorf("watch grants of node %s: %w", nodeID, err)
	}
	fctx, cancel := bounded(ctx)
	defer cancel()
	if err := s.nc.FlushWithContext(fctx); err != nil {
		sub.Unsubscribe()
		return nil, fmt.Errorf("watch grants of node %s: %w", nodeID, err)
	}
	return func() { sub.Unsubscribe() }, nil
}

// Put implements blob.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) error {
	if _, err := s.objects(key).Put(ctx, jetstream.ObjectMeta{Name: key}, r); err != nil {
		return fmt.Errorf("put blob %s: %w", key, err)
	}
	return nil
}

// Open implements blob.Store.
func (s *Store) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	r, err := s.objects(key).Get(ctx, key)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, fmt.Errorf("blob %s: %w", key, blob.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", key, err)
	}
	return r, nil
}

// Has implements blob.Store.
func (s *Store) Has(ctx context.Context, key string) (bool, error) {
	err := request(ctx, func(ctx context.Context) error {
		_, err := s.objects(key).GetInfo(ctx, key)
		return err
	})
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up blob %s: %w", key, err)
	}
	return true, nil
}

// listTimeout bounds one attempt at listing an object store (a variable for the
// tests).
var listTimeout = 10 * time.Second

// objects is the object store that holds key.
func (s *Store) objects(key string) jetstream.ObjectStore {
	if job.IsSharedKey(key) {
		return s.shared
	}
	return s.blobs
}

// Changes implements blob.Changes: the last sequence of the stream behind the
// object store that holds keys under prefix, which every Put and Delete of it
// advances. It is one request to the server, where a List opens a consumer and
// reads every record.
func (s *Store) Changes(ctx context.Context, prefix string) (uint64, error) {
	name := "OBJ_" + bucketBlobs
	if job.IsSharedKey(prefix) {
		name = "OBJ_" + bucketShared
	}
	st, err := s.js.Stream(ctx, name)
	if err != nil {
		return 0, fmt.Errorf("changes under %s: %w", prefix, err)
	}
	return st.CachedInfo().State.LastSeq, nil
}

// List implements blob.Store. An object store has no index by name, so a listing
// reads the record of every blob in the object stores that can hold keys under
// prefix (only burla-shared's, for a shared file's prefix) and keeps those under
// prefix.
func (s *Store) List(ctx context.Context, prefix string) ([]blob.Info, error) {
	var stores []jetstream.ObjectStore
	switch {
	case job.IsSharedKey(prefix):
		stores = []jetstream.ObjectStore{s.shared}
	case strings.HasPrefix(job.SharedKeyPrefix, prefix): // shared keys are under prefix too
		stores = []jetstream.ObjectStore{s.blobs, s.shared}
	default:
		stores = []jetstream.ObjectStore{s.blobs}
	}
	var objs []*jetstream.ObjectInfo
	for _, st := range stores {
		// A listing reads every object's record through a watch, which waits for
		// ever if the server goes away mid-way (and ctx may have no deadline): each
		// attempt has listTimeout, and they stop after three.
		lctx, cancel := ctx, context.CancelFunc(func() {})
		if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > 3*listTimeout {
			lctx, cancel = context.WithTimeout(ctx, 3*listTimeout)
		}
		var o []*jetstream.ObjectInfo
		err := retry(lctx, listTimeout, func(ctx context.Context) (err error) {
			o, err = st.List(ctx)
			if errors.Is(err, jetstream.ErrNoObjectsFound) {
				return nil
			}
			return err
		})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("list blobs %s*: %w", prefix, err)
		}
		objs = append(objs, o...)
	}
	var infos []blob.Info
	for _, o := range objs {
		if o.Deleted || !strings.HasPrefix(o.Name, prefix) {
			continue
		}
		info := blob.Info{Key: o.Name, Size: int64(o.Size), Modified: o.ModTime}
		if sum, err := jetstream.DecodeObjectDigest(o.Digest); err == nil && len(sum) == sha256.Size {
			info.Digest = blob.SHA256Digest(sum)
		}
		infos = append(infos, info)
	}
	return infos, nil
}

// Delete implements blob.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	// A deleted object keeps its record, marked deleted, which the object store's
	// Delete would write again: only a live object is deleted.
	objs := s.objects(key)
	err := request(ctx, func(ctx context.Context) error {
		info, err := objs.GetInfo(ctx, key)
		if err == nil {
			err = objs.Delete(ctx, info.Name)
		}
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("delete blob %s: %w", key, err)
	}
	return nil
}

// GetBytes reads a whole small blob.
func GetBytes(ctx context.Context, b blob.Store, key string) ([]byte, error) {
	r, err := b.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, r); err != nil {
		return nil, fmt.Errorf("read blob %s: %w", key, err)
	}
	return buf.Bytes(), nil
}
