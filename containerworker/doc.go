// Package containerworker is the process inside each prewarmed container (or, on the
// process runtime, each worker process): it takes a job from its node agent, starts
// the job's program in worker mode, claims chunks of inputs from the store, runs one
// call at a time, and writes results and the lines each call printed.
//
// Where each part lives:
//
//	serve.go     the agent's commands in, events out (the protocol is wire.Command
//	             and wire.Event), and the stats reports
//	worker.go    a job's run: the loop that takes each claimed chunk and runs it,
//	             starting the job's program or command with the job's variables,
//	             and the bound on deliveries (MaxDeliveries)
//	warm.go      a program started ahead of the job that will run it (Prewarm)
//	claim.go     claiming the next chunk while one runs (paced by pacer.go), and
//	             keeping the leases of the chunks claimed
//	call.go      running a chunk's calls: loading their inputs, and batching their
//	             results for the committer
//	commit.go    the committer, which stores results and marks chunks done while
//	             the next chunk runs, and the shipper of the lines calls print
//	proc.go      the user's program in worker mode: starting it, one call at a
//	             time over the wire protocol, its output cut per call; Inspect
//	command.go   a job of a command rather than a Go program: one process per input
//	memory.go    the worker's share of the node, and the watch that stops a call
//	             past its memory
//	shared.go    the tenant's shared directory, kept in sync around the calls
//	stats.go     what the worker did since its last report (wire.Stats)
//	tokens.go    the access tokens the agent hands the worker for a cloud store
//
// Running tenants' code apart from the node's key (its own user, a non-dumpable
// worker, one forker thread, reaping what it leaves, and the allow-listed
// environment it gets) is package tenantbox's: the worker starts every process
// of a tenant's code through it.
package containerworker
