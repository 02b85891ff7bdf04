package activities

import (
	"context"
	"errors"
	"fmt"

	"github.com/burla-temporal/burla/blob"
	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/ship"
)

// Inspector starts a program in worker mode and returns its hello. It is the
// container worker's, injected so that this package does not start processes.
type Inspector func(ctx context.Context, path string) (control.EnvInfo, error)

// Env holds the environment-build activities.
type Env struct {
	Blobs   blob.Store
	Dir     string // where programs are fetched to
	Inspect Inspector
	// BuildImage layers the container worker onto a user's image and returns the
	// result's tag; nil when the cluster runs no Docker.
	BuildImage func(ctx context.Context, base string) (string, error)
}

// BuildEnvImage makes a user's image runnable by workers: the container worker is
// layered in. The image must be on the cluster's Docker engine already.
func (e *Env) BuildEnvImage(ctx context.Context, in control.ImageInput) (control.EnvInfo, error) {
	if e.BuildImage == nil {
		return control.EnvInfo{}, control.ErrBadImage.New(
			fmt.Sprintf("image %q: this cluster runs no Docker; start it with `burla dev --runtime docker` to run jobs in images", in.Image), nil)
	}
	tag, err := e.BuildImage(ctx, in.Image)
	if err != nil {
		return control.EnvInfo{}, control.ErrBadImage.New(err.Error(), err)
	}
	return control.EnvInfo{Image: tag}, nil
}

// InspectBinary fetches a program, checks its digest and learns what it can run.
func (e *Env) InspectBinary(ctx context.Context, in control.InspectInput) (control.EnvInfo, error) {
	bad := func(msg string, err error) error {
		return control.ErrBadBinary.New(msg, err)
	}
	if !job.ValidDigest(in.Binary) {
		return control.EnvInfo{}, bad(fmt.Sprintf("binary digest %q is not a SHA-256", in.Binary), nil)
	}
	path, err := ship.Fetch(ctx, e.Blobs, in.Tenant, in.Binary, e.Dir)
	switch {
	case errors.Is(err, blob.ErrNotFound):
		return control.EnvInfo{}, bad(fmt.Sprintf("binary %s is not in the blob store", in.Binary[:12]), err)
	case errors.Is(err, blob.ErrDigestMismatch), errors.Is(err, ship.ErrBadManifest):
		return control.EnvInfo{}, bad(err.Error(), err)
	case err != nil:
		return control.EnvInfo{}, err
	}
	info, err := e.Inspect(ctx, path)
	if err != nil {
		return control.EnvInfo{}, bad(fmt.Sprintf("binary %s: %v", in.Binary[:12], err), nil)
	}
	return info, nil
}
