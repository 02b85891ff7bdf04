// Package docker is the runtime whose workers are Docker containers: one per slot,
// from the node image (FROM scratch, the static burla binary), limited to their share
// of the node's CPUs and memory, labelled so that an agent finds exactly its own
// after a crash, and hardened: not privileged, no new privileges, a non-root user, a
// read-only root with a writable /tmp, no Docker socket. Host networking reaches the
// store on the host's loopback.
//
// A container serves one job: the agent replaces it once the job ends, so the next
// job starts on a fresh filesystem (whatever the last wrote in /tmp is gone). Nor
// does it see the node's program cache: it sees one read-only directory,
// ProgramDir, which holds only the program its agent provided for its job (a hard
// link into the worker's directory on the node, see runtime.WorkerDir). A job's
// function can read its own program there and no other tenant's. It writes its
// tenant's shared files at SharedDir, another directory of the worker's own.
package docker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/runtime"
	"github.com/burla-temporal/burla/tenantbox"
)

var _ runtime.Runtime = (*Runtime)(nil)

// Labels on every worker container.
const (
	LabelCluster = "burla.cluster"
	LabelNode    = "burla.node"
	LabelSlot    = "burla.slot"
	LabelEnv     = "burla.env"  // the image the worker runs, or "default"
	LabelRole    = "burla.role" // "worker"
)

// User is the unprivileged user workers run as.
const User = "65534:65534"

// ProgramDir is where a worker container finds the program it was provided. (Not
// under /burla, which is the burla binary in the node image.)
const ProgramDir = "/burla-program"

// SharedDir is where a worker container finds its tenant's shared files, as in
// Burla (job.EnvSharedDir names it to the worker and its calls): a directory of the
// worker's own on the node, which the worker keeps in sync with the store.
const SharedDir = "/workspace/shared"

// Runtime starts workers as containers.
type Runtime struct {
	api   *client.Client
	image func(context.Context) (string, error)

	mu       sync.Mutex
	imageEnv map[string]string // image → the names of its own variables (imageEnvNames)
}

// New returns a runtime on the local Docker engine whose containers run the image
// that image returns (built once, on first use).
func New(ctx context.Context, image func(context.Context) (string, error)) (*Runtime, error) {
	api, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("docker runtime: %w", err)
	}
	if _, err := api.Ping(ctx, client.PingOptions{}); err != nil {
		return nil, fmt.Errorf("docker runtime: no Docker engine answers (%w); install docker.io and start dockerd", err)
	}
	return &Runtime{api: api, image: image}, nil
}

// Name implements runtime.Runtime.
func (r *Runtime) Name() string { return "docker" }

// ContainerName is the name of a node's worker container for a slot.
func ContainerName(node string, slot int) string {
	return "burla-worker-" + node + "-" + strconv.Itoa(slot)
}

// Start implements runtime.Runtime: it replaces any container left in the slot,
// creates one attached to stdin and stdout, and starts it.
func (r *Runtime) Start(ctx context.Context, spec runtime.WorkerSpec) (runtime.Worker, error) {
	img := spec.Image
	if img == "" {
		var err error
		if img, err = r.image(ctx); err != nil {
			return nil, err
		}
	}
	name := ContainerName(spec.Node, spec.Slot)
	if _, err := r.api.ContainerRemove(ctx, name, client.ContainerRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return nil, fmt.Errorf("docker runtime: clear slot %s: %w", name, err)
	}
	// The program directory is the container's only window on the node's files;
	// the worker's user, not the agent's, reads it.
	dir, err := runtime.NewWorkerDir(spec, 0o755)
	if err != nil {
		return nil, fmt.Errorf("docker runtime: %s: %w", name, err)
	}
	w, err := r.start(ctx, spec, img, name, dir)
	if err != nil {
		dir.Remove()
		return nil, err
	}
	return w, nil
}

func (r *Runtime) start(ctx context.Context, spec runtime.WorkerSpec, img, name string, dir *runtime.WorkerDir) (*worker, error) {
	res := resources(spec)
	// The shared directory is on the node's disk, not in the container's memory:
	// shared files are the large ones. The worker's user writes it.
	shared, err := dir.SharedDir(0o777)
	if err != nil {
		return nil, fmt.Errorf("docker runtime: %s: %w", name, err)
	}
	// The image's own variables (PYTHONPATH, JAVA_HOME…) are its programs' to see;
	// the worker passes them on, and nothing else of its environment but what
	// tenantbox.UserEnv allows.
	names, err := r.imageEnvNames(ctx, img)
	if err != nil {
		return nil, err
	}
	mounts := []mount.Mount{
		{Type: mount.TypeBind, Source: dir.ProgramDir(), Target: ProgramDir, ReadOnly: true},
		{Type: mount.TypeBind, Source: shared, Target: SharedDir},
	}
	_, err = r.api.ContainerCreate(ctx, client.ContainerCreateOptions{Name: name, Config: &container.Config{
		Image:       img,
		Cmd:         spec.Argv[1:], // the image's entry point is the burla binary
		Env:         append(slices.Clip(spec.Env), job.EnvSharedDir+"="+SharedDir, tenantbox.EnvImageEnv+"="+names),
		User:        User,
		OpenStdin:   true,
		StdinOnce:   true,
		AttachStdin: true, AttachStdout: true, AttachStderr: true,
		Labels: map[string]string{LabelCluster: spec.Cluster, LabelNode: spec.Node, LabelSlot: strconv.Itoa(spec.Slot),
			LabelEnv: cmp.Or(spec.Image, "default"), LabelRole: "worker"},
	}, HostConfig: &container.HostConfig{
		NetworkMode:    "host",
		ReadonlyRootfs: true,
		Tmpfs:          map[string]string{"/tmp": "mode=1777"},
		SecurityOpt:    []string{"no-new-privileges"},
		CapDrop:        []string{"ALL"},
		Mounts:         mounts,
		Resources:      res,
	}})
	if err != nil {
		return nil, fmt.Errorf("docker runtime: create %s: %w", name, err)
	}
	att, err := r.api.ContainerAttach(ctx, name, client.ContainerAttachOptions{Stream: true, Stdin: true, Stdout: true, Stderr: true})
	if err != nil {
		_, _ = r.api.ContainerRemove(context.WithoutCancel(ctx), name, client.ContainerRemoveOptions{Force: true})
		return nil, fmt.Errorf("docker runtime: attach %s: %w", name, err)
	}
	wait := r.api.ContainerWait(context.WithoutCancel(ctx), name, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if _, err := r.api.ContainerStart(ctx, name, client.ContainerStartOptions{}); err != nil {
		att.Close()
		_, _ = r.api.ContainerRemove(context.WithoutCancel(ctx), name, client.ContainerRemoveOptions{Force: true})
		return nil, fmt.Errorf("docker runtime: start %s: %w", name, err)
	}
	// The attached stream multiplexes stdout and stderr; split them.
	outR, outW := io.Pipe()
	w := &worker{api: r.api, name: name, dir: dir, att: att.HijackedResponse, stdout: outR, done: make(chan struct{})}
	go func() {
		// The worker's stderr is its own log: it goes to the agent's.
		_, err := stdcopy.StdCopy(outW, os.Stderr, att.Reader)
		outW.CloseWithError(err)
	}()
	go func() {
		select {
		case res := <-wait.Result:
			if res.StatusCode != 0 {
				w.err = fmt.Errorf("container %s exited with status %d", name, res.StatusCode)
			}
		case err := <-wait.Error:
			w.err = err
		}
		att.Close()
		// The container is gone for good, with its files: its slot gets a fresh one.
		_, _ = r.api.ContainerRemove(context.Background(), name, client.ContainerRemoveOptions{Force: true})
		if err := dir.Remove(); err != nil && w.err == nil {
			w.err = err
		}
		close(w.done)
	}()
	return w, nil
}

// Cleanup implements runtime.Runtime: it removes every worker container labelled
// with the node, which an agent that crashed left behind.
func (r *Runtime) Cleanup(ctx context.Context, cluster, node string) error {
	cs, err := r.api.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add(
		"label", LabelCluster+"="+cluster, LabelNode+"="+node, LabelRole+"=worker")})
	if err != nil {
		return fmt.Errorf("docker runtime: list old workers of %s: %w", node, err)
	}
	var errs []error
	for _, c := range cs.Items {
		if _, err := r.api.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

type worker struct {
	api    *client.Client
	name   string
	dir    *runtime.WorkerDir
	att    client.HijackedResponse
	stdout *io.PipeReader
	done   chan struct{}
	err    error

	stdinOnce sync.Once
}

func (w *worker) Stdin() io.WriteCloser { return stdinCloser{w} }
func (w *worker) Stdout() io.ReadCloser { return w.stdout }
func (w *worker) Done() <-chan struct{} { return w.done }
func (w *worker) Err() error            { return w.err }
func (w *worker) Kill() {
	_, _ = w.api.ContainerKill(context.Background(), w.name, client.ContainerKillOptions{Signal: "KILL"})
}

// stdinCloser writes to the attached stream; Close half-closes it, which ends the
// worker's stdin.
type stdinCloser struct{ w *worker }

func (s stdinCloser) Write(p []byte) (int, error) { return s.w.att.Conn.Write(p) }

func (s stdinCloser) Close() error {
	var err error
	s.w.stdinOnce.Do(func() { err = s.w.att.CloseWrite() })
	return err
}

// Resize implements runtime.Worker with a live update of the container's limits.
func (w *worker) Resize(ctx context.Context, cpus float64, memoryMB int) error {
	res := container.Resources{NanoCPUs: int64(cpus * 1e9)}
	if memoryMB > 0 {
		res.Memory = int64(memoryMB) << 20
		res.MemorySwap = res.Memory
	}
	if _, err := w.api.ContainerUpdate(ctx, w.name, client.ContainerUpdateOptions{Resources: &res}); err != nil {
		return fmt.Errorf("docker runtime: resize %s: %w", w.name, err)
	}
	return nil
}

// Provide implements runtime.Worker: the program is linked into the worker's
// program directory on the node, which the container sees, read-only, at
// ProgramDir.
func (w *worker) Provide(path string) (string, error) {
	name, err := w.dir.Provide(path)
	if err != nil || name == "" {
		return "", err
	}
	return ProgramDir + "/" + name, nil
}

// imageEnvNames returns the names of the variables img sets (its ENV), comma
// separated, from the engine once per image.
func (r *Runtime) imageEnvNames(ctx context.Context, img string) (string, error) {
	r.mu.Lock()
	names, ok := r.imageEnv[img]
	r.mu.Unlock()
	if ok {
		return names, nil
	}
	info, err := r.api.ImageInspect(ctx, img)
	if err != nil {
		return "", fmt.Errorf("docker runtime: inspect image %s: %w", img, err)
	}
	var list []string
	if info.Config != nil {
		for _, kv := range info.Config.Env {
			if name, _, ok := strings.Cut(kv, "="); ok && name != "" {
				list = append(list, name)
			}
		}
	}
	names = strings.Join(list, ",")
	r.mu.Lock()
	if r.imageEnv == nil {
		r.imageEnv = map[string]string{}
	}
	r.imageEnv[img] = names
	r.mu.Unlock()
	return names, nil
}
