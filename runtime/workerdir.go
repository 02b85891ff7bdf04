package runtime

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// WorkerDir is one worker's own directory on the node, under WorkerSpec.Dir: a
// program directory that holds at most the one program the worker was given (see
// Provide), and whatever else its runtime keeps there for the worker. Runtimes make
// one per worker they start and remove it when the worker exits.
type WorkerDir struct {
	// Path is the directory; its program directory is ProgramDir.
	Path string

	mu      sync.Mutex
	src     string // the program provided, as the cache names it; "" for none
	program string // its name in the program directory
}

// NewWorkerDir makes a fresh directory for a worker of spec under spec.Dir (the
// system's temporary directory if that is empty). The directory itself is readable
// by its owner alone; its program directory has mode programMode, which a runtime
// that mounts it into a worker running as another user opens up.
func NewWorkerDir(spec WorkerSpec, programMode fs.FileMode) (*WorkerDir, error) {
	if spec.Dir != "" {
		if err := os.MkdirAll(spec.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("worker directory: %w", err)
		}
	}
	path, err := os.MkdirTemp(spec.Dir, "worker-"+spec.Node+"-"+strconv.Itoa(spec.Slot)+"-")
	if err != nil {
		return nil, fmt.Errorf("worker directory: %w", err)
	}
	d := &WorkerDir{Path: path}
	if err := os.Mkdir(d.ProgramDir(), programMode); err == nil {
		err = os.Chmod(d.ProgramDir(), programMode) // past the umask
	}
	if err != nil {
		d.Remove()
		return nil, fmt.Errorf("worker directory: %w", err)
	}
	return d, nil
}

// ProgramDir is the directory that holds the worker's program.
func (d *WorkerDir) ProgramDir() string { return filepath.Join(d.Path, "program") }

// Provide puts the program at src into the program directory, in place of the one
// there before, and returns its name there; an empty src empties the directory. The
// program is a hard link to src when it can be (no copy on a job's path), else a
// copy: either way the worker reaches no other file of the cache through it.
func (d *WorkerDir) Provide(src string) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if src != "" && src == d.src {
		return d.program, nil
	}
	if d.program != "" {
		if err := os.Remove(filepath.Join(d.ProgramDir(), d.program)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("withdraw program %s: %w", d.program, err)
		}
		d.src, d.program = "", ""
	}
	if src == "" {
		return "", nil
	}
	name := filepath.Base(src)
	dst := filepath.Join(d.ProgramDir(), name)
	if err := os.Link(src, dst); err != nil {
		if err := copyFile(src, dst); err != nil {
			return "", fmt.Errorf("provide program %s: %w", name, err)
		}
	}
	d.src, d.program = src, name
	return name, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst)
	}
	return err
}

// Remove deletes the directory and everything in it, even directories a function
// made unwritable.
func (d *WorkerDir) Remove() error {
	err := os.RemoveAll(d.Path)
	if err == nil {
		return nil
	}
	_ = filepath.WalkDir(d.Path, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	if err := os.RemoveAll(d.Path); err != nil {
		return fmt.Errorf("remove worker directory: %w", err)
	}
	return nil
}
