// Package docker is the runtime whose workers are Docker containers: one per slot,
// from the node image (FROM scratch, the static burla binary), limited to their share
// of the node's CPUs and memory, labelled so that an agent finds exactly its own
// after a crash, and hardened: not privileged, no new privileges, a non-root user, a
// read-only root with a writable /tmp, no Docker socket, the node's program cache
// mounted read-only. Host networking reaches the store on the host's loopback.
package docker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/burla-temporal/burla/runtime"
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

// Runtime starts workers as containers.
type Runtime struct {
	api   *client.Client
	image func(context.Context) (string, error)
}

// New returns a runtime on the local Docker engine whose containers run the image
// that image returns (built once, on first use).
func New(ctx context.Context, image func(context.Context) (string, error)) (*Runtime, error) {
	api, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker runtime: %w", err)
	}
	if _, err := api.Ping(ctx); err != nil {
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
	if err := r.api.ContainerRemove(ctx, name, container.RemoveOptions{Force: true}); err != nil && !client.IsErrNotFound(err) {
		return nil, fmt.Errorf("docker runtime: clear slot %s: %w", name, err)
	}
	res := container.Resources{NanoCPUs: int64(spec.CPUs * 1e9)}
	if spec.MemoryMB > 0 {
		res.Memory = int64(spec.MemoryMB) << 20
	}
	var mounts []mount.Mount
	if spec.CacheDir != "" {
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: spec.CacheDir, Target: spec.CacheDir, ReadOnly: true})
	}
	_, err := r.api.ContainerCreate(ctx, &container.Config{
		Image:       img,
		Cmd:         spec.Argv[1:], // the image's entry point is the burla binary
		User:        User,
		OpenStdin:   true,
		StdinOnce:   true,
		AttachStdin: true, AttachStdout: true, AttachStderr: true,
		Labels: map[string]string{LabelCluster: spec.Cluster, LabelNode: spec.Node, LabelSlot: strconv.Itoa(spec.Slot),
			LabelEnv: cmp.Or(spec.Image, "default"), LabelRole: "worker"},
	}, &container.HostConfig{
		NetworkMode:    "host",
		ReadonlyRootfs: true,
		Tmpfs:          map[string]string{"/tmp": "mode=1777"},
		SecurityOpt:    []string{"no-new-privileges"},
		CapDrop:        []string{"ALL"},
		Mounts:         mounts,
		Resources:      res,
	}, nil, nil, name)
	if err != nil {
		return nil, fmt.Errorf("docker runtime: create %s: %w", name, err)
	}
	att, err := r.api.ContainerAttach(ctx, name, container.AttachOptions{Stream: true, Stdin: true, Stdout: true, Stderr: true})
	if err != nil {
		_ = r.api.ContainerRemove(context.WithoutCancel(ctx), name, container.RemoveOptions{Force: true})
		return nil, fmt.Errorf("docker runtime: attach %s: %w", name, err)
	}
	waitC, waitErr := r.api.ContainerWait(context.WithoutCancel(ctx), name, container.WaitConditionNextExit)
	if err := r.api.ContainerStart(ctx, name, container.StartOptions{}); err != nil {
		att.Close()
		_ = r.api.ContainerRemove(context.WithoutCancel(ctx), name, container.RemoveOptions{Force: true})
		return nil, fmt.Errorf("docker runtime: start %s: %w", name, err)
	}
	// The attached stream multiplexes stdout and stderr; split them.
	outR, outW := io.Pipe()
	w := &worker{api: r.api, name: name, att: att, stdout: outR, done: make(chan struct{})}
	go func() {
		// The worker's stderr is its own log: it goes to the agent's.
		_, err := stdcopy.StdCopy(outW, os.Stderr, att.Reader)
		outW.CloseWithError(err)
	}()
	go func() {
		select {
		case res := <-waitC:
			if res.StatusCode != 0 {
				w.err = fmt.Errorf("container %s exited with status %d", name, res.StatusCode)
			}
		case err := <-waitErr:
			w.err = err
		}
		att.Close()
		// The container is gone for good: its slot gets a fresh one.
		_ = r.api.ContainerRemove(context.Background(), name, container.RemoveOptions{Force: true})
		close(w.done)
	}()
	return w, nil
}

// Cleanup implements runtime.Runtime: it removes every worker container labelled
// with the node, which an agent that crashed left behind.
func (r *Runtime) Cleanup(ctx context.Context, cluster, node string) error {
	cs, err := r.api.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", LabelCluster+"="+cluster), filters.Arg("label", LabelNode+"="+node), filters.Arg("label", LabelRole+"=worker"))})
	if err != nil {
		return fmt.Errorf("docker runtime: list old workers of %s: %w", node, err)
	}
	var errs []error
	for _, c := range cs {
		if err := r.api.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !client.IsErrNotFound(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

type worker struct {
	api    *client.Client
	name   string
	att    types.HijackedResponse
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
	_ = w.api.ContainerKill(context.Background(), w.name, "KILL")
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
	if _, err := w.api.ContainerUpdate(ctx, w.name, container.UpdateConfig{Resources: res}); err != nil {
		return fmt.Errorf("docker runtime: resize %s: %w", w.name, err)
	}
	return nil
}
