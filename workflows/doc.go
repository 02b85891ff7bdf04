// Package workflows holds the control plane's workflows. Everything here is
// deterministic workflow code: no I/O, no wall clock, no goroutines or map-order
// dependence. Changes to a workflow's logic are guarded with workflow.GetVersion and
// proven against the recorded histories in testdata/ by the replay tests.
//
// Where each lives:
//
//	job.go       Job: one map job, from its reserve to its clean-up
//	cluster.go   Cluster: standby upkeep, grants of nodes to jobs, growth, and
//	             continue-as-new when quiet
//	node.go      Node: one node's life, from its creation to its deletion
//	envbuild.go  EnvBuild: one image made an environment, once per tenant and digest
//
// Their inputs, outputs, signals and the cluster's state are package control's
// (the contract every other program speaks), and the rules that fit a job to a
// node are package placement's pure functions; what is here is the order of
// things in time.
package workflows
