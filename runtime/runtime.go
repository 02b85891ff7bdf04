// Package runtime is the contract for where a node runs its container workers: as
// processes (runtime/process) or as Docker containers (runtime/docker), one per CPU,
// prewarmed. The node agent drives every worker the same way: commands on the
// worker's stdin, events from its stdout (see containerworker.Serve).
//
// Nodes serve one job at a time and the agent replaces every worker that served a
// job once it ends, so a worker's own files (see WorkerSpec.Dir) live for one job:
// the next job, perhaps another tenant's, finds neither the files the last one
// wrote nor its program.
package runtime

import (
	"context"
	"io"
)

// WorkerSpec is one worker to start.
type WorkerSpec struct {
	Cluster string
	Node    string
	Slot    int
	// CPUs and MemoryMB limit the worker where the runtime can; zero means no limit.
	CPUs     float64
	MemoryMB int
	// Argv is the container worker's command line (argv[0] is the burla binary).
	Argv []string
	// Dir is a directory of the node's, not readable by workers, under which the
	// runtime keeps each worker's own directory: the program it is given (see
	// Worker.Provide) and, where the runtime has no filesystem of its own for the
	// worker, its scratch space. The worker's directory is removed when it exits.
	Dir string
	// Image, for runtimes that run images, is the image to run instead of the node's
	// default: a job's environment.
	Image string
	// GPUs, for runtimes that can give a worker devices, is how many of the
	// node's GPUs the worker gets (a job's FuncGPU); zero means none. GPUDevices,
	// when set, names which (their indexes or UUIDs), so that the workers of one
	// node do not share them; otherwise the runtime gives the first GPUs.
	GPUs       int
	GPUDevices []string
	// Env is what the worker needs of the node's environment ("KEY=value"): the API
	// key it reaches a store that asks for one with. (The worker passes none of it
	// to the functions it runs.) A worker in a container gets nothing else.
	Env []string
}

// Worker is a running container worker. Its methods are safe for concurrent use.
type Worker interface {
	// Stdin takes commands; closing it asks the worker to exit.
	Stdin() io.WriteCloser
	// Stdout yields events until the worker exits; the reader closes it after EOF.
	Stdout() io.ReadCloser
	// Done is closed when the worker has exited; Err then says how.
	Done() <-chan struct{}
	Err() error
	// Kill ends the worker at once.
	Kill()
	// Resize gives the worker cpus CPUs and memoryMB of memory (zero: no limit)
	// while it runs, where the runtime can limit them.
	Resize(ctx context.Context, cpus float64, memoryMB int) error
	// Provide gives the worker the program at path (a file of the node's program
	// cache) in place of any it was given before, and returns the path the worker
	// runs it by; an empty path takes the last one away. The node's other programs
	// stay out of the worker's reach as far as the runtime can keep them out (see
	// each runtime's package comment).
	Provide(path string) (string, error)
}

// Runtime starts workers. Implementations are safe for concurrent use.
type Runtime interface {
	Name() string
	Start(ctx context.Context, spec WorkerSpec) (Worker, error)
	// Cleanup removes workers of the node that an earlier agent left behind.
	Cleanup(ctx context.Context, cluster, node string) error
}
