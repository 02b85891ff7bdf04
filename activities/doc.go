// Package activities holds the Temporal activities of the control plane and of the
// node agents. Each is a method on a struct whose dependencies (the store, the node's
// worker pool) are injected, so tests build them with fakes.
//
// Where each lives:
//
//	activities.go  Control: placing a job (Place, PlaceNodes), watching its
//	               client (WatchClient), finishing it (FinishJob)
//	nodes.go       Control's cluster side: ReserveNodes (a job's reserve, as an
//	               update of its cluster's workflow), ClosedJobs; Nodes: creating,
//	               deleting and watching a provider's nodes
//	node.go        Node, on each node agent: RunJobOnNode, ResetNode
//	env.go         Env: InspectBinary and BuildEnvImage, for environment builds
//	collect.go     Collector: what no job needs any more (not an activity)
//	metrics.go     the control plane's and the nodes' Prometheus metrics
//
// Each exported method of Control, Nodes, Node and Env is an activity, registered
// by name in package workers; the Collector is a type of its own for that reason.
// Their inputs and outputs are package control's.
package activities
