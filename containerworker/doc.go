// Package containerworker is the process inside each prewarmed container (or, on the
// process runtime, each worker process): it takes a job from its node agent, starts
// the job's program in worker mode, claims chunks of inputs from the store, runs one
// call at a time, and writes results and the lines each call printed.
//
// Where each part lives:
//
//	serve.go     the agent's commands in, events out (the protocol is wire.Command
//	             and wire.Event), and the stats reports
//	worker.go    a job's run: claiming chunks (paced by pacer.go), running their
//	             calls, the committer that stores results while the next chunk
//	             runs, and the bound on deliveries (MaxDeliveries)
//	proc.go      the user's program in worker mode: starting it, one call at a
//	             time over the wire protocol, its output cut per call; Inspect
//	command.go   a job of a command rather than a Go program: one process per input
//	memory.go    the worker's share of the node, and the watch that stops a call
//	             past its memory
//	shared.go    the tenant's shared directory, kept in sync around the calls
//	isolate.go   running tenants' code apart from the node's key: its own user,
//	             a non-dumpable worker, one forker thread, reaping what it leaves
//	childenv.go  the allow-listed environment tenants' code gets
//	stats.go     what the worker did since its last report (wire.Stats)
package containerworker
