// Package store is the data plane's contract: how input chunks, results, log lines,
// job records and node records move between the SDK, the node agents and the
// container workers. Nothing here goes through Temporal's history.
//
// The contract is a set of small interfaces, each implemented by every backend
// (natsstore for the embedded default, Firestore for Google Cloud) and checked by the
// suite in storetest. All methods are safe for concurrent use and honour ctx.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/burla-temporal/burla/blob"
	"github.com/burla-temporal/burla/job"
)

// MaxRecordBytes bounds one encoded chunk, result batch or log batch, so that every
// backend can store it as one record (Firestore's document limit is 1 MiB).
const MaxRecordBytes = 900 << 10

// MaxInlineBytes is the largest value kept inside a record; larger inputs and outputs
// are stored as blobs and the record holds the key.
const MaxInlineBytes = 256 << 10

// NodeTTL is how long a node record lives without a refresh.
const NodeTTL = 6 * time.Second

// ErrNoChunk is returned by Claim when no chunk became available within the wait.
var ErrNoChunk = errors.New("no chunk available")

// ErrNotFound is returned when a job, node or blob does not exist.
var ErrNotFound = errors.New("not found")

// ErrReleased is returned by LastHeartbeat once the job's client has called
// Release: it has every result it waited for, and the job no longer needs it.
var ErrReleased = errors.New("released by its client")

// Item is one input: its index in the caller's slice and its encoded value, or,
// for an input too large for a chunk, the blob key that holds the value.
type Item struct {
	Index int64
	Data  []byte
	Blob  string
}

// Chunk is the unit of work a container worker claims: consecutive inputs bounded
// in count and bytes.
type Chunk struct {
	Seq   int64
	Items []Item
}

// Result is the outcome of one input: an encoded output (or the blob key holding a
// large one), or the error the call ended with.
type Result struct {
	Index  int64
	Output []byte
	Blob   string
	Err    *CallError
	// Earlier are the failures of the call's earlier attempts, oldest first, when
	// the job retries failed calls (job.Spec.Retries).
	Earlier []CallError
}

// CallError describes a failed call: Kind says how it failed.
type CallError struct {
	Kind    string // one of the Kind* constants
	Message string
	Stack   string
}

// Kinds of call failure.
const (
	KindError   = "error"   // the function returned an error
	KindPanic   = "panic"   // the function panicked
	KindExit    = "exit"    // the function's process exited while running it
	KindOOM     = "oom"     // the function's process ran out of memory while running it
	KindTimeout = "timeout" // the call ran past the job's per-input timeout
	KindEncode  = "encode"  // the output could not be encoded
	KindDecode  = "decode"  // the input could not be decoded into the function's type
)

// Stream numbers of a LogLine.
const (
	Stdout = 1
	Stderr = 2
)

// LogLine is one line a call printed, attributed to its input.
type LogLine struct {
	Index  int64
	Stream uint8
	Text   string
}

// Progress is how far a job's input queue has got.
type Progress struct {
	Sealed   bool // every chunk has been written
	Chunks   int  // number of chunks written, known once sealed
	Waiting  int  // chunks not yet claimed (or whose lease ran out)
	InFlight int  // chunks claimed and not yet done
}

// Drained reports whether every chunk of a sealed job is done.
func (p Progress) Drained() bool { return p.Sealed && p.Waiting == 0 && p.InFlight == 0 }

// Queue holds a job's input chunks. A claimed chunk is invisible to other claimers
// until its lease runs out; Done removes it for good. A worker that dies therefore
// only delays its chunk by one lease.
type Queue interface {
	// CreateJob records spec and makes its input queue; it is idempotent.
	CreateJob(ctx context.Context, spec job.Spec) error
	// Job returns the spec recorded by CreateJob, or ErrNotFound.
	Job(ctx context.Context, jobID string) (job.Spec, error)
	// PutChunks stores chunks, each at most MaxRecordBytes encoded, in one batch.
	PutChunks(ctx context.Context, jobID string, cs []Chunk) error
	// Seal records that all chunks of the job have been written.
	Seal(ctx context.Context, jobID string, chunks int) error
	// Claim waits up to wait for a chunk and leases it for the job's lease.
	Claim(ctx context.Context, jobID string, wait time.Duration) (Claim, error)
	Progress(ctx context.Context, jobID string) (Progress, error)
	// DeleteInputs drops the job's remaining chunks and its queue; results and logs stay.
	DeleteInputs(ctx context.Context, jobID string) error
}

// Claim is a leased chunk.
type Claim interface {
	Chunk() Chunk
	// Attempt is 1 the first time a chunk is claimed and grows with each redelivery.
	Attempt() int
	// Extend restarts the lease.
	Extend(ctx context.Context) error
	// Done removes the chunk from the queue; call it after its results are stored.
	Done(ctx context.Context) error
	// Return puts the chunk back in the queue at once, for any worker to claim,
	// instead of when its lease runs out: its claimer cannot run it (a call ran
	// out of memory, and the node now runs fewer at a time).
	Return(ctx context.Context) error
}

// Results holds each input's result. Several results for one index may be stored
// (a chunk re-run after its worker died); readers keep the first and drop the rest.
type Results interface {
	PutResults(ctx context.Context, jobID string, rs []Result) error
	// WatchResults calls fn with every batch of results stored for the job, from the
	// first, in storage order, until the watch is closed or ctx ends.
	WatchResults(ctx context.Context, jobID string, fn func([]Result)) (Watch, error)
}

// Logs holds the lines calls printed.
type Logs interface {
	PutLogs(ctx context.Context, jobID string, lines []LogLine) error
	WatchLogs(ctx context.Context, jobID string, fn func([]LogLine)) (Watch, error)
}

// Watch is a running subscription. Its callback is never called concurrently with
// itself.
type Watch interface {
	// Sync returns once every record stored before Sync was called has been passed
	// to the callback.
	Sync(ctx context.Context) error
	Close()
}

// Jobs holds per-job liveness: the client's heartbeat.
type Jobs interface {
	Heartbeat(ctx context.Context, jobID string) error
	// Release records that the client has read every result: the job may finish
	// without its heartbeat (a chunk whose result is stored but whose Done was
	// lost still runs again, and nobody waits for it).
	Release(ctx context.Context, jobID string) error
	// LastHeartbeat returns when the client last called Heartbeat, ErrReleased
	// once it has called Release, or ErrNotFound.
	LastHeartbeat(ctx context.Context, jobID string) (time.Time, error)
}

// Upload is a client's account of writing a job's inputs, recorded as it goes so
// that other processes (`burla jobs show`, the dashboard) can tell a job whose
// workers wait for its client from one that waits for nodes. The client records it
// about once a second at most, never per input; the queue's seal (Progress.Sealed)
// says the upload is over.
type Upload struct {
	Inputs   int       `json:"inputs"`
	Uploaded int       `json:"uploaded"` // inputs written so far
	Started  time.Time `json:"started"`
	// Updated is when Uploaded last grew: an upload that stops growing has a
	// client that stalled or went away.
	Updated time.Time `json:"updated"`
}

// Uploads keeps each job's Upload record. It is apart from Store so that stores
// written before it still satisfy Store; every backend here implements it, and a
// reader that finds a store without it does without the record.
type Uploads interface {
	PutUpload(ctx context.Context, jobID string, u Upload) error
	// Upload returns the job's last recorded Upload, or ErrNotFound.
	Upload(ctx context.Context, jobID string) (Upload, error)
}

// JobRecord names a job whose records a store holds, and when they last changed.
type JobRecord struct {
	ID      string
	Updated time.Time // the latest write of its spec, heartbeat or upload record
}

// Records lets the collector find the jobs a store holds records of and delete
// those of jobs that ended long ago. A store keeps a job's records until they are
// deleted, however long the job runs: none expires by age on its own. Every
// backend here implements it; like Uploads, it is apart from Store.
type Records interface {
	// ListJobs returns every job whose spec, heartbeat or upload the store holds.
	ListJobs(ctx context.Context) ([]JobRecord, error)
	// DeleteJob deletes everything the store holds of the job: its spec, queue,
	// results, logs, heartbeat and upload record. Deleting a job again is no error.
	DeleteJob(ctx context.Context, jobID string) error
}

// Node is a node agent's record of itself, refreshed while it lives.
type Node struct {
	ID        string `json:"id"`
	CPUs      int    `json:"cpus"`
	RAMMB     int    `json:"ram_mb"`
	TaskQueue string `json:"task_queue"`
	Job       string `json:"job,omitempty"`     // the job it is working on, if any
	Warm      int    `json:"warm"`              // prewarmed workers ready to take a job
	Busy      int    `json:"busy,omitempty"`    // workers running the job's calls
	Metrics   string `json:"metrics,omitempty"` // the agent's Prometheus endpoint
	// Fault, if set, says why the node cannot go on working (its disk is full):
	// the cluster replaces it.
	Fault   string    `json:"fault,omitempty"`
	Updated time.Time `json:"updated"`
}

// ValidNodeID reports whether id can name a node in every backend: 1 to 64
// lower-case letters, digits and dashes.
func ValidNodeID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// Nodes is the registry of live nodes. A node whose record is not refreshed within
// the implementation's time-to-live disappears from List.
type Nodes interface {
	PutNode(ctx context.Context, n Node) error
	ListNodes(ctx context.Context) ([]Node, error)
	// GetNode returns the live node id, or ErrNotFound once its record has expired
	// or been deleted. Watching one node reads one record, not the registry.
	GetNode(ctx context.Context, id string) (Node, error)
	DeleteNode(ctx context.Context, id string) error
}

// Grant is the cluster's word that some of a node's workers are a job's,
// relayed to the node the moment the cluster gives it, so that the node starts
// them on the job without waiting for the job's activity on it to come through
// Temporal. The activity still comes, and it is what holds the node to the job:
// a grant that no activity follows lapses, and a lost grant costs only time.
type Grant struct {
	Spec    job.Spec `json:"spec"`
	Workers int      `json:"workers"`
}

// Grants carries grants from the control plane to node agents. Only the
// cluster's own components reach it: a tenant's store cannot put a grant that
// a node sees. Like Uploads, it is apart from Store; every backend here
// implements it.
type Grants interface {
	PutGrant(ctx context.Context, nodeID string, g Grant) error
	// WatchGrants calls fn with each grant put for the node after WatchGrants
	// has returned, one at a time, until stop is called; a grant put before it
	// is not delivered.
	WatchGrants(ctx context.Context, nodeID string, fn func(Grant)) (stop func(), err error)
}

// Store is everything a full backend provides.
type Store interface {
	Queue
	Results
	Logs
	Jobs
	Nodes
}

// Backend is a whole data plane on one set of connections: the store and the blobs
// its records point at.
type Backend interface {
	Store
	blob.Store
	Close()
}
