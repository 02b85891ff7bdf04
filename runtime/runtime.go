// Package runtime is the contract for where a node runs its container workers: as
// processes (runtime/process) or as Docker containers (runtime/docker), one per CPU,
// prewarmed. The node agent drives every worker the same way: commands on the
// worker's stdin, events from its stdout (see containerworker.Serve).
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
	// CacheDir is the node's program cache; workers read the programs they run from it.
	CacheDir string
	// Image, for runtimes that run images, is the image to run instead of the node's
	// default: a job's environment.
	Image string
}

// Worker is a running container worker.
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
}

// Runtime starts workers. Implementations are safe for concurrent use.
type Runtime interface {
	Name() string
	Start(ctx context.Context, spec WorkerSpec) (Worker, error)
	// Cleanup removes workers of the node that an earlier agent left behind.
	Cleanup(ctx context.Context, cluster, node string) error
}
