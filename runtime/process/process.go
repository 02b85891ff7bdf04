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
// What else keeps a job from the node's files and processes depends on the agent's
// user (see Isolates). An agent that is root runs each worker as a user of the
// worker's own (tenantbox.NewTenantUID: no other worker on the machine, on
// this node or another, has it, nor any later worker for 64 of this agent's
// worker starts; the worker changes user as it starts, see tenantbox.Isolate),
// and so the calls it runs: the worker's scratch and shared directories are that
// user's, the rest of its directory stays the agent's and may be searched but not
// listed, and its program, a link to the cache's file, may be run but not changed.
// A function then reads none of the node's own files that are not open to all, nor
// the program cache (mode 0700), nor the memory or environment of the agent, of
// its worker or of any other job's processes, and it cannot gain privileges by
// running a setuid program. When the worker ends, every process of its user is
// killed, a process a call started in a session of its own included, and what that
// user left in /tmp, /var/tmp and /dev/shm is removed (tenantbox.ReapTenant).
//
// An agent that is not root can do none of that: a function runs as the agent's
// user and can read whatever that user can, including the node's program cache
// (mode 0700, but owned by that same user), other workers' directories and
// processes, the cluster's data if it is this user's, and any file the last job
// wrote outside its scratch directory; only the agent's and the worker's memory and
// environment are closed to it (they are not dumpable). The agent warns when it
// starts so. Run jobs of tenants who must not see each other on a root agent or on
// the docker runtime, whose workers are containers that see only their own program.
package process

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/runtime"
	"github.com/burla-temporal/burla/tenantbox"
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

// Isolates reports whether the runtime keeps tenants' code from the node's files
// and from its agent's and workers' memory (see the package comment): it does when
// the agent runs as root, which can have its workers, and the calls they run, run
// as tenantbox.TenantUID. Otherwise a job runs as the agent's own user and can
// read whatever that user can.
func Isolates() bool { return os.Geteuid() == 0 }

// WorkersDir returns the directory an agent keeps this runtime's workers'
// directories in (runtime.WorkerSpec.Dir), given dir, the one it made for them.
// Where the runtime isolates, a worker runs as tenantbox.TenantUID, which must
// reach its directory by its path and nothing else of the node's: dir is made
// searchable but not readable by others (0711), if every directory above it is
// searchable by that user already. If one is not (a cache under root's home, or
// under a directory of mode 0700), the workers' directories go in a directory of
// the node's in the system's temporary directory instead, named after dir, so
// that a restarted agent finds, and clears, the one its last run left. Elsewhere dir
// is returned as it is.
func WorkersDir(dir string) (string, error) {
	if !Isolates() {
		return dir, nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("workers' directory: %w", err)
	}
	if tenantbox.CheckTenantReach(filepath.Dir(abs)) == nil {
		if err := ownDir(abs, false); err != nil {
			return "", err
		}
		return abs, nil
	}
	sum := sha256.Sum256([]byte(abs))
	alt := filepath.Join(os.TempDir(), "burla-workers-"+hex.EncodeToString(sum[:8]))
	if err := ownDir(alt, true); err != nil {
		return "", err
	}
	if err := tenantbox.CheckTenantReach(alt); err != nil {
		return "", fmt.Errorf("workers' directory: neither %s nor %s will do: %w", abs, alt, err)
	}
	return alt, nil
}

// ownDir makes dir, if it is not there, or checks that it is a directory of this
// process's user (in a directory all may write, someone else could have made it
// first: exclusive says so), and gives it mode 0711.
func ownDir(dir string, exclusive bool) error {
	if err := os.Mkdir(dir, 0o711); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("workers' directory: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("workers' directory: %w", err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !fi.IsDir() || exclusive && (!ok || int(st.Uid) != os.Geteuid()) {
		return fmt.Errorf("workers' directory %s is not a directory of the agent's own (%v)", dir, fi.Mode())
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return fmt.Errorf("workers' directory: %w", err)
	}
	return nil
}

// Start implements runtime.Runtime.
func (Runtime) Start(ctx context.Context, spec runtime.WorkerSpec) (runtime.Worker, error) {
	isolate := Isolates()
	programMode := fs.FileMode(0o700)
	if isolate {
		programMode = 0o711
	}
	dir, err := runtime.NewWorkerDir(spec, programMode)
	if err != nil {
		return nil, err
	}
	w, err := start(spec, dir, isolate)
	if err != nil {
		dir.Remove()
		return nil, err
	}
	return w, nil
}

func start(spec runtime.WorkerSpec, dir *runtime.WorkerDir, isolate bool) (*worker, error) {
	scratch := filepath.Join(dir.Path, "scratch")
	if err := os.Mkdir(scratch, 0o700); err != nil {
		return nil, fmt.Errorf("worker scratch directory: %w", err)
	}
	shared, err := dir.SharedDir(0o700)
	if err != nil {
		return nil, err
	}
	var uid uint32 // the worker's own user, when it isolates
	if isolate {
		uid = tenantbox.NewTenantUID()
		if err := forTenant(dir.Path, scratch, shared, uid); err != nil {
			return nil, err
		}
	}
	cmd := exec.Command(spec.Argv[0], spec.Argv[1:]...)
	cmd.Dir = scratch
	// The last of a variable's values is the one used.
	cmd.Env = append(append(os.Environ(), spec.Env...), "TMPDIR="+scratch, job.EnvSharedDir+"="+shared)
	if isolate {
		cmd.Env = append(cmd.Env, tenantbox.EnvTenantUID+"="+strconv.FormatUint(uint64(uid), 10))
	}
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
		// Whatever its calls left running or in the machine's temporary
		// directories goes with it, and its files; Done waits for that, so that a
		// worker started after it never races their removal.
		if err := tenantbox.ReapTenant(uid); err != nil {
			slog.Warn("process runtime: could not clear what a worker's user left", "uid", uid, "error", err)
		}
		if err := dir.Remove(); err != nil && w.err == nil {
			w.err = err
		}
		close(w.done)
	}()
	return w, nil
}

// forTenant readies the directory of a worker that will run as user uid (see
// tenantbox.NewTenantUID): that user may search it, to reach its program
// (provided later, see Provide) and its scratch and shared directories, which
// become its own.
func forTenant(path, scratch, shared string, uid uint32) error {
	if err := os.Chmod(path, 0o711); err != nil {
		return fmt.Errorf("worker directory: %w", err)
	}
	if err := tenantbox.CheckTenantReach(path); err != nil {
		return fmt.Errorf("worker directory: %w (the agent keeps its workers' directories where that user reaches them, see WorkersDir)", err)
	}
	for _, p := range []string{scratch, shared} {
		if err := os.Lchown(p, int(uid), int(uid)); err != nil {
			return fmt.Errorf("worker directory: %w", err)
		}
	}
	return nil
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
// directory, and the worker runs it from there. The link is the cache's file, of
// the agent's user and mode 0755 (blob.FetchExecutable): a worker that runs as
// another user may run it and not change it.
func (w *worker) Provide(path string) (string, error) {
	name, err := w.dir.Provide(path)
	if err != nil || name == "" {
		return "", err
	}
	return filepath.Join(w.dir.ProgramDir(), name), nil
}
