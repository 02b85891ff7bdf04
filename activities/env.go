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

// EnvInfo is what an environment build learned about a program.
type EnvInfo struct {
	Functions []string
	GOOS      string
	GOARCH    string
}

// InspectInput names a program in the blob store.
type InspectInput struct {
	Binary string
}

// Inspector starts a program in worker mode and returns its hello. It is the
// container worker's, injected so that this package does not start processes.
type Inspector func(ctx context.Context, path string) (EnvInfo, error)

// Env holds the environment-build activities.
type Env struct {
	Blobs   blob.Store
	Dir     string // where programs are fetched to
	Inspect Inspector
}

// InspectBinary fetches a program, checks its digest and learns what it can run.
func (e *Env) InspectBinary(ctx context.Context, in InspectInput) (EnvInfo, error) {
	bad := func(msg string, err error) error {
		return temporal.NewNonRetryableApplicationError(msg, names.ErrBadBinary, err)
	}
	if len(in.Binary) != 64 {
		return EnvInfo{}, bad(fmt.Sprintf("binary digest %q is not a SHA-256", in.Binary), nil)
	}
	path, err := blob.FetchExecutable(ctx, e.Blobs, job.BinaryKey(in.Binary), in.Binary, e.Dir)
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
