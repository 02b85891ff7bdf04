package activities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

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
	if err := os.MkdirAll(e.Dir, 0o755); err != nil {
		return EnvInfo{}, err
	}
	path := filepath.Join(e.Dir, in.Binary)
	if _, err := os.Stat(path); err != nil {
		r, err := e.Blobs.Open(ctx, job.BinaryKey(in.Binary))
		if errors.Is(err, blob.ErrNotFound) {
			return EnvInfo{}, bad(fmt.Sprintf("binary %s is not in the blob store", in.Binary[:12]), err)
		}
		if err != nil {
			return EnvInfo{}, err
		}
		defer r.Close()
		tmp, err := os.CreateTemp(e.Dir, in.Binary+".tmp*")
		if err != nil {
			return EnvInfo{}, err
		}
		defer os.Remove(tmp.Name())
		h := sha256.New()
		_, err = io.Copy(io.MultiWriter(tmp, h), r)
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return EnvInfo{}, fmt.Errorf("fetch binary %s: %w", in.Binary[:12], err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != in.Binary {
			return EnvInfo{}, bad(fmt.Sprintf("binary %s arrived with digest %s", in.Binary[:12], got[:12]), nil)
		}
		if err := os.Chmod(tmp.Name(), 0o755); err != nil {
			return EnvInfo{}, err
		}
		if err := os.Rename(tmp.Name(), path); err != nil {
			return EnvInfo{}, err
		}
	}
	info, err := e.Inspect(ctx, path)
	if err != nil {
		return EnvInfo{}, bad(fmt.Sprintf("binary %s: %v", in.Binary[:12], err), nil)
	}
	return info, nil
}
