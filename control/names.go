// The names by which the SDK, the control-plane worker and the node agents find
// each other on Temporal. A renamed constant is a wire-format change.

package control

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
	QueryProgress    = "progress"    // job's state and nodes (JobProgress)
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
