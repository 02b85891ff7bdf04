// Package process is the runtime whose workers are child processes of the node
// agent, in process groups of their own, killed if the agent dies.
package process

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"

	"github.com/burla-temporal/burla/runtime"
)

var _ runtime.Runtime = Runtime{}

// Runtime starts workers as processes.
type Runtime struct{}

// Name implements runtime.Runtime.
func (Runtime) Name() string { return "process" }

// Cleanup implements runtime.Runtime: processes die with their agent (Pdeathsig), so
// there is nothing to clean up.
func (Runtime) Cleanup(context.Context, string, string) error { return nil }

// Start implements runtime.Runtime.
func (Runtime) Start(ctx context.Context, spec runtime.WorkerSpec) (runtime.Worker, error) {
	cmd := exec.Command(spec.Argv[0], spec.Argv[1:]...)
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
	w := &worker{cmd: cmd, stdin: stdin, stdout: stdout, done: make(chan struct{})}
	go func() {
		w.err = cmd.Wait()
		close(w.done)
	}()
	return w, nil
}

type worker struct {
	cmd    *exec.Cmd
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
