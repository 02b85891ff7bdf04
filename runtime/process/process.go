// Package process is the runtime whose workers are child processes of the node
// agent, in process groups of their own, killed if the agent dies.
//
// Each worker has a directory of its own (runtime.WorkerDir), made when it starts
// and removed when it exits: its scratch space, which is the working directory and
// TMPDIR of the worker and so of the function it runs, and the one program it was
// given. The agent replaces a worker after every job, so a job starts in an empty
// scratch directory, and the files the last job wrote there are gone. Its shared
// directory, the tenant's shared files (job.EnvSharedDir), is in there too.
//
// That is as far as this runtime isolates jobs. Processes of one user are not
// isolated from each other's files, and a function runs as the agent's user: it can
// read whatever that user can, including the node's program cache (mode 0700, but
// owned by that same user), other workers' directories, and any file the last job
// wrote outside its scratch directory; a process that a function starts in a
// session of its own outlives its worker. Per-worker directories keep one job's
// files from the next job by accident, not from a function that looks for them. Run
// jobs of tenants who must not see each other's programs and files on the docker
// runtime, whose workers are containers that see only their own program.
package process

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/runtime"
)

var _ runtime.Runtime = Runtime{}

// Runtime starts workers as processes.
type Runtime struct{}

// Name implements runtime.Runtime.
func (Runtime) Name() string { return "process" }

// Cleanup implements runtime.Runtime: processes die with their agent (Pdeathsig), so
// there is nothing to clean up. (The agent clears the directory of its workers'
// directories when it starts.)
func (Runtime) Cleanup(context.Context, string, string) error { return nil }

// Start implements runtime.Runtime.
func (Runtime) Start(ctx context.Context, spec runtime.WorkerSpec) (runtime.Worker, error) {
	dir, err := runtime.NewWorkerDir(spec, 0o700)
	if err != nil {
		return nil, err
	}
	w, err := start(spec, dir)
	if err != nil {
		dir.Remove()
		return nil, err
	}
	return w, nil
}

func start(spec runtime.WorkerSpec, dir *runtime.WorkerDir) (*worker, error) {
	scratch := filepath.Join(dir.Path, "scratch")
	if err := os.Mkdir(scratch, 0o700); err != nil {
		return nil, fmt.Errorf("worker scratch directory: %w", err)
	}
	shared, err := dir.SharedDir(0o700)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(spec.Argv[0], spec.Argv[1:]...)
	cmd.Dir = scratch
	// The last of a variable's values is the one used.
	cmd.Env = append(append(os.Environ(), spec.Env...), "TMPDIR="+scratch, job.EnvSharedDir+"="+shared)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	// Our own pipe rather than StdoutPipe: Wait must not close it under a reader
	// that has not yet read the worker's last events. The reader sees EOF once the
	// worker has exited.
	stdout, stdoutW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = stdoutW
	err = cmd.Start()
	stdoutW.Close()
	if err != nil {
		stdout.Close()
		return nil, fmt.Errorf("start %v: %w", spec.Argv, err)
	}
	w := &worker{cmd: cmd, dir: dir, stdin: stdin, stdout: stdout, done: make(chan struct{})}
	go func() {
		w.err = cmd.Wait()
		// The worker's files go with it; Done waits for that, so that a worker
		// started after it never races its removal.
		if err := dir.Remove(); err != nil && w.err == nil {
			w.err = err
		}
		close(w.done)
	}()
	return w, nil
}

type worker struct {
	cmd    *exec.Cmd
	dir    *runtime.WorkerDir
	stdin  io.WriteCloser
	stdout io.ReadCloser
	done   chan struct{}
	err    error
}

func (w *worker) Stdin() io.WriteCloser { return w.stdin }
func (w *worker) Stdout() io.ReadCloser { return w.stdout }
func (w *worker) Done() <-chan struct{} { return w.done }
func (w *worker) Err() error            { return w.err }
func (w *worker) Kill()                 { _ = syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL) }

// Resize implements runtime.Worker: processes share the node and are not limited.
func (w *worker) Resize(context.Context, float64, int) error { return nil }

// Provide implements runtime.Worker: the program is linked into the worker's
// directory, and the worker runs it from there.
func (w *worker) Provide(path string) (string, error) {
	name, err := w.dir.Provide(path)
	if err != nil || name == "" {
		return "", err
	}
	return filepath.Join(w.dir.ProgramDir(), name), nil
}
