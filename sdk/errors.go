package burla

import (
	"errors"
	"fmt"

	"go.temporal.io/sdk/temporal"

	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/store"
)

// RemoteError is a call that failed on the cluster: its function returned an error,
// panicked, exited its process or ran past its timeout.
type RemoteError struct {
	Job   string
	Index int // the input's index in the slice given to RemoteParallelMap
	// Kind is "error", "panic", "exit", "timeout", "encode", "decode", or "oom":
	// the call's process ran out of memory (with dynamic resources, only once it
	// had its node to itself).
	Kind string
	// Message is the remote error's text; Stack is the remote stack trace, if any.
	Message string
	Stack   string
	// Earlier are the failures of the call's earlier attempts, oldest first, in a
	// job with Retries.
	Earlier []*RemoteError
}

func remoteError(jobID string, index int, e store.CallError) *RemoteError {
	return &RemoteError{Job: jobID, Index: index, Kind: e.Kind, Message: e.Message, Stack: e.Stack}
}

// earlier is a call's earlier failures as RemoteErrors; nil if none.
func earlier(jobID string, index int, es []store.CallError) []*RemoteError {
	if len(es) == 0 {
		return nil
	}
	res := make([]*RemoteError, len(es))
	for i, e := range es {
		res[i] = remoteError(jobID, index, e)
	}
	return res
}

func (e *RemoteError) Error() string {
	if n := len(e.Earlier); n > 0 {
		return fmt.Sprintf("burla: input %d failed on the cluster on each of its %d attempts; the last (%s): %s", e.Index, n+1, e.Kind, e.Message)
	}
	return fmt.Sprintf("burla: input %d failed on the cluster (%s): %s", e.Index, e.Kind, e.Message)
}

// InputErrors is the calls that failed in a job run with ReturnErrors, in input
// order. errors.As finds each *RemoteError in it.
type InputErrors struct {
	Job    string
	Inputs int            // how many inputs the job had
	Errors []*RemoteError // sorted by Index
}

func (e *InputErrors) Error() string {
	first := e.Errors[0]
	return fmt.Sprintf("burla: %d of %d inputs failed on the cluster; the first, input %d (%s): %s",
		len(e.Errors), e.Inputs, first.Index, first.Kind, first.Message)
}

// Unwrap gives each failed call's *RemoteError.
func (e *InputErrors) Unwrap() []error {
	errs := make([]error, len(e.Errors))
	for i, re := range e.Errors {
		errs[i] = re
	}
	return errs
}

// ErrorKind says what went wrong outside the user's function.
type ErrorKind string

// Kinds of Error.
const (
	KindNoCluster       ErrorKind = "NoCluster"       // no cluster answered at the configured address
	KindNoNodes         ErrorKind = "NoNodes"         // the cluster has no node that can run the job
	KindUnknownFunction ErrorKind = "UnknownFunction" // the shipped binary does not register the function
	KindBadBinary       ErrorKind = "BadBinary"       // the program cannot run on the cluster's nodes
	KindBadImage        ErrorKind = "BadImage"        // the job's image cannot be made an environment
	KindBadInput        ErrorKind = "BadInput"        // an input cannot be encoded
	KindBadOutput       ErrorKind = "BadOutput"       // an output cannot be decoded into the function's type
	KindCancelled       ErrorKind = "Cancelled"       // the job was cancelled
	KindTerminated      ErrorKind = "Terminated"      // the job's workflow was terminated from outside (an operator)
	KindClientGone      ErrorKind = "ClientGone"      // the job was cancelled because its client stopped heartbeating
	KindNodesLost       ErrorKind = "NodesLost"       // every node working on the job disconnected (was lost) and none replaced them
	KindUnauthorized    ErrorKind = "Unauthorized"    // the cluster refused the API key, or the job is another tenant's
	// KindNoCompatibleNodes: no node the cluster has or can start has the job's
	// image, GPU, region or disk; the message says what the job asked and the
	// nodes have.
	KindNoCompatibleNodes ErrorKind = "NoCompatibleNodes"
	KindAllNodesBusy      ErrorKind = "AllNodesBusy"      // every node that fits stayed busy with other jobs, and the job may not grow
	KindNodesFailedToBoot ErrorKind = "NodesFailedToBoot" // the nodes started for the job failed to boot; the message has the provider's reason
	KindJobStalled        ErrorKind = "JobStalled"        // the job made no progress for longer than StallTimeout; the message says what it waited for
	KindClusterShutdown   ErrorKind = "ClusterShutdown"   // the cluster is shutting down and takes no more jobs
	KindVersionMismatch   ErrorKind = "VersionMismatch"   // the client and the cluster speak different job protocols
	KindChunkFailed       ErrorKind = "ChunkFailed"       // an input's chunk failed on the cluster's side (its results could not be stored) on each of its deliveries; Index names the input
	KindInternal          ErrorKind = "Internal"          // anything else: the message says what
	// KindTenantLimit: the job's tenant held all the nodes its share of the
	// cluster allows, with other jobs, for as long as the job waited for one;
	// the message names the share and what the tenant holds.
	KindTenantLimit ErrorKind = "TenantLimit"
)

// Error is a job that could not run or finish for a reason other than a failed call.
type Error struct {
	Kind  ErrorKind
	Job   string // empty when no job was started
	Index int    // for KindBadInput and KindBadOutput, the input's index; otherwise -1
	Msg   string
	Err   error // the underlying error, if any
}

func (e *Error) Error() string {
	s := "burla: "
	if e.Job != "" {
		s += "job " + e.Job + ": "
	}
	s += e.Msg
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// IsKind reports whether err is an *Error of kind k.
func IsKind(err error, k ErrorKind) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == k
}

// jobError turns the error a job workflow ended with into the SDK's error.
func jobError(jobID string, err error) error {
	var canceled *temporal.CanceledError
	if errors.As(err, &canceled) {
		return &Error{Kind: KindCancelled, Job: jobID, Index: -1, Msg: "job was cancelled"}
	}
	var terminated *temporal.TerminatedError
	if errors.As(err, &terminated) {
		return &Error{Kind: KindTerminated, Job: jobID, Index: -1, Msg: "job was terminated (its workflow was ended from outside, by an operator or `temporal workflow terminate`)"}
	}
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		kind := KindInternal
		switch control.ErrorType(app.Type()) {
		case control.ErrNoNodes:
			kind = KindNoNodes
		case control.ErrUnknownFunction:
			kind = KindUnknownFunction
		case control.ErrBadBinary:
			kind = KindBadBinary
		case control.ErrClientGone:
			kind = KindClientGone
		case control.ErrNodesLost:
			kind = KindNodesLost
		case control.ErrBadImage:
			kind = KindBadImage
		case control.ErrNoCompatibleNodes:
			kind = KindNoCompatibleNodes
		case control.ErrAllNodesBusy:
			kind = KindAllNodesBusy
		case control.ErrNodesFailedToBoot:
			kind = KindNodesFailedToBoot
		case control.ErrJobStalled:
			kind = KindJobStalled
		case control.ErrShuttingDown:
			kind = KindClusterShutdown
		case control.ErrVersionMismatch:
			kind = KindVersionMismatch
		case control.ErrNotYours:
			kind = KindUnauthorized
		case control.ErrTenantLimit:
			kind = KindTenantLimit
		case control.ErrChunkFailed:
			index := int64(-1)
			_ = app.Details(&index)
			return &Error{Kind: KindChunkFailed, Job: jobID, Index: int(index), Msg: app.Message()}
		}
		return &Error{Kind: kind, Job: jobID, Index: -1, Msg: app.Message()}
	}
	return &Error{Kind: KindInternal, Job: jobID, Index: -1, Msg: "job failed", Err: err}
}
