package control

import (
	"time"

	"github.com/burla-temporal/burla/provider"
)

// ClosedJobsInput names the jobs a cluster holds nodes for.
type ClosedJobsInput struct {
	JobIDs []string
}

// CreateNodeInput is a node to create.
type CreateNodeInput struct {
	Provider string
	Spec     provider.NodeSpec
}

// DeleteNodeInput is a node to delete.
type DeleteNodeInput struct {
	Provider string
	ID       string
	// Spec is the spec the node was created from; histories from before it was
	// recorded have only ID.
	Spec provider.NodeSpec
}

// WatchNodeInput names a node to watch.
type WatchNodeInput struct {
	ID string
}

// WatchNodeResult says why a watched node is lost.
type WatchNodeResult struct {
	// Fault is what the node's agent reported before asking to be replaced (its
	// disk is full); empty when the agent stopped answering.
	Fault string
}

// NodeInput starts or continues a NodeWorkflow.
type NodeInput struct {
	Spec              provider.NodeSpec
	Provider          string
	ClusterWorkflowID string
	// RegisterTimeout is how long the node's agent has to register; zero means 2 minutes.
	RegisterTimeout time.Duration
	// Registered is set when continuing as new after the agent registered.
	Registered bool
}
