package activities

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/sdk/temporal"

	"github.com/burla-temporal/burla/blob"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/names"
)

// EnvInfo is what an environment build learned about a program, and the image it
// made for it.
type EnvInfo struct {
	Functions []string
	GOOS      string
	GOARCH    string
	// Image is the user's image with the container worker layered in, when the
	// environment names one.
	Image string `json:",omitempty"`
}

// ImageInput names a user's image to build an environment on.
type ImageInput struct {
	Image string
}

// ErrBadImage is the error type of an image that cannot be made an environment.
const ErrBadImage = names.ErrBadImage

// InspectInput names a program in the blob store.
type InspectInput struct {
	Binary string
	Tenant string // whose program it is; empty for the default tenant
}

// Inspector starts a program in worker mode and returns its hello. It is the
// container worker's, injected so that this package does not start processes.
type Inspector func(ctx context.Context, path string) (EnvInfo, error)

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
func (e *Env) BuildEnvImage(ctx context.Context, in ImageInput) (EnvInfo, error) {
	if e.BuildImage == nil {
		return EnvInfo{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("image %q: this cluster runs no Docker; start it with `burla dev --runtime docker` to run jobs in images", in.Image), ErrBadImage, nil)
	}
	tag, err := e.BuildImage(ctx, in.Image)
	if err != nil {
		return EnvInfo{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrBadImage, err)
	}
	return EnvInfo{Image: tag}, nil
}

// InspectBinary fetches a program, checks its digest and learns what it can run.
func (e *Env) InspectBinary(ctx context.Context, in InspectInput) (EnvInfo, error) {
	bad := func(msg string, err error) error {
		return temporal.NewNonRetryableApplicationError(msg, names.ErrBadBinary, err)
	}
	if !job.ValidDigest(in.Binary) {
		return EnvInfo{}, bad(fmt.Sprintf("binary digest %q is not a SHA-256", in.Binary), nil)
	}
	path, err := blob.FetchExecutable(ctx, e.Blobs, job.BinaryKeyFor(in.Tenant, in.Binary), in.Binary, e.Dir)
	switch {
	case errors.Is(err, blob.ErrNotFound):
		return EnvInfo{}, bad(fmt.Sprintf("binary %s is not in the blob store", in.Binary[:12]), err)
	case errors.Is(err, blob.ErrDigestMismatch):
		return EnvInfo{}, bad(err.Error(), err)
	case err != nil:
		return EnvInfo{}, err
	}
	info, err := e.Inspect(ctx, path)
	if err != nil {
		return EnvInfo{}, bad(fmt.Sprintf("binary %s: %v", in.Binary[:12], err), nil)
	}
	return info, nil
}
