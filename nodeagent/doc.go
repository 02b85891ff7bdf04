// Package nodeagent is the per-node agent: it registers its node in the store, keeps
// one prewarmed container worker per CPU, serves its node's Temporal task queue, and
// runs a job's share on its workers when the job workflow asks.
//
// Where each part lives:
//
//	agent.go    Run: the node's record in the store, its Temporal worker, the
//	            program cache (binCache, bounded and least-recently-used)
//	pool.go     the pool of container workers: keeping one warm per CPU,
//	            prewarming the next job's program, running a job's share,
//	            lowering the count after a call ran out of memory, resets
//	disk.go     the free-space check that reports a full disk as the node's fault
//	metrics.go  the workers' stats (wire.Stats) as Prometheus metrics
package nodeagent
