package control

import (
	"errors"

	"go.temporal.io/sdk/temporal"
)

// ErrorType is the Type of a temporal.ApplicationError that crosses a process
// boundary: a workflow or activity fails with one, and the workflow that called it,
// the SDK or the command switches on it. Its value is part of the wire format.
type ErrorType string

// New returns a non-retryable application error of type t: message, its cause
// (or nil) and the details the receiving side reads (an input's index).
func (t ErrorType) New(message string, cause error, details ...any) error {
	return temporal.NewNonRetryableApplicationError(message, string(t), cause, details...)
}

// Retryable returns an application error of type t that a retry policy may
// retry: a request the caller is to make again.
func (t ErrorType) Retryable(message string) error {
	return temporal.NewApplicationError(message, string(t))
}

// Is reports whether err is, or wraps, an application error of type t.
func (t ErrorType) Is(err error) bool { return TypeOf(err) == t }

// TypeOf returns the type of the application error err is or wraps, or "" when
// it wraps none.
func TypeOf(err error) ErrorType {
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		return ErrorType(app.Type())
	}
	return ""
}

// NonRetryable returns types as a RetryPolicy's NonRetryableErrorTypes.
func NonRetryable(types ...ErrorType) []string {
	out := make([]string, len(types))
	for i, t := range types {
		out[i] = string(t)
	}
	return out
}

// Application error types: the Type of a temporal.ApplicationError that ends a job.
// The SDK switches on them to build the error it returns to the caller.
const (
	ErrUserError       ErrorType = "UserError"       // an input's function failed; details carry the input index
	ErrNoNodes         ErrorType = "NoNodes"         // no live node could be found for the job
	ErrUnknownFunction ErrorType = "UnknownFunction" // the shipped binary does not register the job's function
	ErrBadBinary       ErrorType = "BadBinary"       // the shipped binary cannot be started on the node
	ErrClientGone      ErrorType = "ClientGone"      // the caller stopped heartbeating a job that was not detached
	ErrNodesLost       ErrorType = "NodesLost"       // every node working on the job was lost
	ErrShuttingDown    ErrorType = "ClusterShutdown" // the cluster is shutting down
	// ErrChunkFailed: a chunk of inputs failed on the cluster's side (its results
	// could not be stored, a shared file could not be saved) on each of its
	// deliveries, up to the bound; details carry the input index.
	ErrChunkFailed ErrorType = "ChunkFailed"
	// ErrNoCompatibleNodes: no node the cluster has or can start fits the job's
	// image, GPU, region or disk.
	ErrNoCompatibleNodes ErrorType = "NoCompatibleNodes"
	ErrAllNodesBusy      ErrorType = "AllNodesBusy"      // every node that fits is on other jobs, and the job may not grow
	ErrNodesFailedToBoot ErrorType = "NodesFailedToBoot" // the nodes started for the job failed to boot
	ErrJobStalled        ErrorType = "JobStalled"        // the job made no progress for longer than its stall timeout
	ErrVersionMismatch   ErrorType = "VersionMismatch"   // the client's protocol version is not the cluster's
	ErrBadSpec           ErrorType = "BadSpec"           // the job's spec is not valid
	// ErrNotYours: a workflow's input names a job, tenant or program that its own
	// workflow ID does not: a tenant tried to act as another.
	ErrNotYours ErrorType = "NotYours"
	// ErrTenantLimit: the job's tenant held all the nodes its share of the
	// cluster allows, with other jobs, for as long as the job waited for one.
	ErrTenantLimit ErrorType = "TenantLimit"
	// ErrClusterContinuing is a reserve the cluster asks to be made again, as
	// its run ends (continue-as-new); the job retries it.
	ErrClusterContinuing ErrorType = "ClusterContinuing"
	// ErrStillQueued is a reserve that waited its slice for a first node: the
	// job keeps its place and asks again, so that no update waits for long (a
	// workflow admits few updates in flight, and jobs that have their nodes must
	// still be able to learn so).
	ErrStillQueued ErrorType = "StillQueued"
)

// Error types that end an activity or a cluster's request rather than a job.
const (
	ErrBadImage        ErrorType = "BadImage"        // an image cannot be made an environment
	ErrBadStandby      ErrorType = "BadStandby"      // a cluster's standby spec is not valid
	ErrMisconfigured   ErrorType = "Misconfigured"   // the control plane lacks what the activity needs (its Temporal client)
	ErrUnknownProvider ErrorType = "UnknownProvider" // the control plane has no provider of the name a cluster uses
	ErrQueueGone       ErrorType = "QueueGone"       // a job's input queue was deleted while a node ran it
)
