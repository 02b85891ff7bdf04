package runtime

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// SharedDir makes the worker's shared directory, which holds its copy of the
// tenant's shared files (kept in sync by the worker, see job.EnvSharedDir), with
// mode past the umask, and returns its path. It lives in the worker's directory,
// on the node's disk rather than in memory, and goes with it.
func (d *WorkerDir) SharedDir(mode fs.FileMode) (string, error) {
	p := filepath.Join(d.Path, "shared")
	if err := os.Mkdir(p, mode); err != nil && !os.IsExist(err) {
		return "", fmt.Errorf("worker shared directory: %w", err)
	}
	if err := os.Chmod(p, mode); err != nil {
		return "", fmt.Errorf("worker shared directory: %w", err)
	}
	return p, nil
}
