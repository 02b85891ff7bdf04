// Package names holds the names by which the SDK, the control-plane worker and the
// node agents find each other on Temporal: task queues, workflow and activity types,
// search attributes and the application error types that cross process boundaries.
//
// They are constants in one place because Temporal calls everything by name: a
// workflow registered as "JobWorkflow" in the worker must be started as
// "JobWorkflow" by the SDK, and a renamed constant is a wire-format change.
package names

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/burla-temporal/burla/job"
)

// TaskQueueControl is the task queue served by the control-plane worker: the job,
// cluster and node workflows and the activities that only touch the store.
const TaskQueueControl = "burla-control"

// TaskQueueWatch is the control plane's queue for its long-running watches (a
// node's liveness, a client's heartbeat): one runs for every node and every
// attached job, and on a queue of their own they never take the slots that
// placement and clean-up need.
const TaskQueueWatch = "burla-watch"

// NodeTaskQueue is the task queue a node agent serves; activities that must run on
// that node (running a job's inputs there) are scheduled on it.
func NodeTaskQueue(nodeID string) string { return "node-" + nodeID }

// Workflow types.
const (
	WorkflowJob      = "JobWorkflow"
	WorkflowCluster  = "ClusterWorkflow"
	WorkflowNode     = "NodeWorkflow"
	WorkflowEnvBuild = "EnvBuildWorkflow"
)

// DefaultCluster is the cluster a job runs on when it names none.
const DefaultCluster = "default"

// ClusterWorkflowID is the workflow ID of a cluster's ClusterWorkflow.
func ClusterWorkflowID(cluster string) string { return "burla-cluster-" + cluster }

// NodeWorkflowID is the workflow ID of a node's NodeWorkflow.
func NodeWorkflowID(nodeID string) string { return "burla-node-" + nodeID }

// EnvBuildWorkflowID is the workflow ID of the build of a tenant's environment, so
// that its concurrent jobs with the same environment share one build. A tenant's
// builds are its own: it shipped the program they inspect.
func EnvBuildWorkflowID(tenant, digest string) string {
	if tenant == "" || tenant == job.DefaultTenant {
		return envBuildPrefix + digest
	}
	return envBuildPrefix + tenant + "." + digest
}

const envBuildPrefix = "burla-env-"

// EnvDigest names the environment of a program (its SHA-256, binary) run in
// image, or alone when image is empty: the digest part of its EnvBuildWorkflowID.
// An image's environment is named by a digest of both, so that a build's ID binds
// everything the build uses.
func EnvDigest(binary, image string) string {
	if image == "" {
		return binary
	}
	sum := sha256.Sum256([]byte(binary + "\x00" + image))
	return "image-" + hex.EncodeToString(sum[:])
}

// ParseEnvBuildWorkflowID returns the tenant and digest an EnvBuildWorkflowID
// names, and false for any other ID.
func ParseEnvBuildWorkflowID(id string) (tenant, digest string, ok bool) {
	rest, ok := strings.CutPrefix(id, envBuildPrefix)
	if !ok {
		return "", "", false
	}
	tenant, digest = job.DefaultTenant, rest
	if t, d, found := strings.Cut(rest, "."); found {
		tenant, digest = t, d
		if !job.ValidTenant(tenant) || tenant == job.DefaultTenant {
			return "", "", false
		}
	}
	if !job.ValidDigest(strings.TrimPrefix(digest, "image-")) {
		return "", "", false
	}
	return tenant, digest, true
}

// Updates, signals and queries.
const (
	UpdateReserve    = "reserve"     // job → cluster: nodes for a job
	UpdateSetStandby = "set-standby" // CLI → cluster: change the standby spec
	UpdateRestart    = "restart"     // CLI → cluster: replace every idle node
	UpdateShutdown   = "shutdown"    // CLI → cluster: delete every node and end
	SignalRelease    = "release"     // job → cluster: the job has ended
	SignalNodeEvent  = "node-event"  // node → cluster: ready, lost, deleted, failed
	SignalRegistered = "registered"  // node agent → node: the agent is up
	SignalDeleteNode = "delete"      // cluster → node
	SignalResetNode  = "reset"       // cluster → node: restart the node's workers
	SignalNodesAdded = "nodes-added" // cluster → job: more nodes for the job
	SignalNodeLost   = "node-lost"   // cluster → job: a node of the job is gone
	QueryStatus      = "status"      // cluster's state
)

// Activity types.
const (
	ActivityPlaceNodes    = "PlaceNodes"
	ActivityRunJobOnNode  = "RunJobOnNode"
	ActivityWatchClient   = "WatchClient"
	ActivityFinishJob     = "FinishJob"
	ActivityReserveNodes  = "ReserveNodes"
	ActivityCreateNode    = "CreateNode"
	ActivityDeleteNode    = "DeleteNode"
	ActivityWatchNode     = "WatchNode"
	ActivityClosedJobs    = "ClosedJobs"
	ActivityResetNode     = "ResetNode"
	ActivityInspectBin    = "InspectBinary"
	ActivityBuildEnvImage = "BuildEnvImage"
)

// Search attributes set on job workflows, so that jobs can be listed with the
// Temporal UI or CLI: temporal workflow list --query "BurlaJobState='Running'".
const (
	SearchJobState = "BurlaJobState" // Keyword: one of the job.State values
	SearchInputs   = "BurlaInputs"   // Int: number of inputs
	SearchFunction = "BurlaFunction" // Keyword: registered function name
	SearchTenant   = "BurlaTenant"   // Keyword: the tenant that started the job
)

// Application error types: the Type of a temporal.ApplicationError that ends a job.
// The SDK switches on them to build the error it returns to the caller.
const (
	ErrUserError       = "UserError"       // an input's function failed; details carry the input index
	ErrNoNodes         = "NoNodes"         // no live node could be found for the job
	ErrUnknownFunction = "UnknownFunction" // the shipped binary does not register the job's function
	ErrBadBinary       = "BadBinary"       // the shipped binary cannot be started on the node
	ErrClientGone      = "ClientGone"      // the caller stopped heartbeating a job that was not detached
	ErrNodesLost       = "NodesLost"       // every node working on the job was lost
	ErrShuttingDown    = "ClusterShutdown" // the cluster is shutting down
	// ErrChunkFailed: a chunk of inputs failed on the cluster's side (its results
	// could not be stored, a shared file could not be saved) on each of its
	// deliveries, up to the bound; details carry the input index.
	ErrChunkFailed = "ChunkFailed"
	// ErrNoCompatibleNodes: no node the cluster has or can start fits the job's
	// image, GPU, region or disk.
	ErrNoCompatibleNodes = "NoCompatibleNodes"
	ErrAllNodesBusy      = "AllNodesBusy"      // every node that fits is on other jobs, and the job may not grow
	ErrNodesFailedToBoot = "NodesFailedToBoot" // the nodes started for the job failed to boot
	ErrJobStalled        = "JobStalled"        // the job made no progress for longer than its stall timeout
	ErrVersionMismatch   = "VersionMismatch"   // the client's protocol version is not the cluster's
	ErrBadSpec           = "BadSpec"           // the job's spec is not valid
	// ErrNotYours: a workflow's input names a job, tenant or program that its own
	// workflow ID does not: a tenant tried to act as another.
	ErrNotYours = "NotYours"
	// ErrTenantLimit: the job's tenant held all the nodes its share of the
	// cluster allows, with other jobs, for as long as the job waited for one.
	ErrTenantLimit = "TenantLimit"
	// ErrClusterContinuing is a reserve the cluster asks to be made again, as
	// its run ends (continue-as-new); the job retries it.
	ErrClusterContinuing = "ClusterContinuing"
	// ErrStillQueued is a reserve that waited its slice for a first node: the
	// job keeps its place and asks again, so that no update waits for long (a
	// workflow admits few updates in flight, and jobs that have their nodes must
	// still be able to learn so).
	ErrStillQueued = "StillQueued"
)

// Error types that end an activity or a cluster's request rather than a job.
const (
	ErrBadImage        = "BadImage"        // an image cannot be made an environment
	ErrBadStandby      = "BadStandby"      // a cluster's standby spec is not valid
	ErrMisconfigured   = "Misconfigured"   // the control plane lacks what the activity needs (its Temporal client)
	ErrUnknownProvider = "UnknownProvider" // the control plane has no provider of the name a cluster uses
	ErrQueueGone       = "QueueGone"       // a job's input queue was deleted while a node ran it
)
