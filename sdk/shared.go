package burla

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/burla-temporal/burla/blob"
	"github.com/burla-temporal/burla/job"
)

// SharedDir is the directory of the tenant's shared files as the running call
// sees it: /workspace/shared in a container of the docker runtime, a directory of
// the worker's own on the process runtime. It is "" outside a call on a cluster
// (in a client, which reaches the files with Cluster.Shared).
//
// Shared files are Burla's /workspace/shared: a directory that every call of a
// tenant's jobs sees, for inputs too large to pass and outputs too large to
// return. They belong to the tenant (the API key's, or "default"), not to a job:
// they persist across jobs until removed, and no other tenant sees them. They are
// kept in the cluster's blob store, and each worker holds a copy of them in this
// directory, kept in sync around the calls it runs. What a call can rely on:
//
//   - Before a worker starts a chunk of calls, its copy gets every file that is
//     new or changed in the store since it last looked, and loses the files
//     removed from the store: a file the client put before the job, or that a
//     call on another node wrote and returned before, is there. Files that change
//     in the store while a chunk runs appear at a later chunk, not under a running
//     call.
//   - When a call returns, the files it created or changed in the directory are
//     uploaded, and the ones it removed are removed from the store, before its
//     result is stored: once the client has a call's result, the call's files are
//     in the store. (A file that a call leaves still changing, or that the next
//     call starts rewriting at once, goes up once it holds still, and at the
//     latest before its chunk counts as done.) Write each file in the call that
//     creates it, and close it before returning.
//   - Files are streamed both ways, never held in memory whole, and appear whole:
//     a download is written beside the file and renamed into place, and an upload
//     replaces the stored file only once all of it has been read, unchanged. Such
//     temporary files start with ".burla-"; no shared file's name may.
//   - Two calls or clients writing one name: the last upload wins, and a removal
//     counts as a write (removing the directory itself removes nothing). Only
//     regular files are shared, not empty directories, symbolic links or devices;
//     names are slash-separated paths relative to the directory (see
//     ErrBadSharedName).
//   - Each worker downloads every shared file before its first chunk, so a job's
//     start grows with the tenant's shared files: remove what jobs no longer need.
//     And each call's end looks at every file in the directory: thousands are
//     fine, millions are not.
func SharedDir() string { return os.Getenv(job.EnvSharedDir) }

// ErrBadSharedName is wrapped by the error for a shared file's name that is empty,
// absolute, has an empty, "." or ".." segment, is not UTF-8, holds NUL, CR or LF,
// is longer than 900 bytes, or has a segment starting with ".burla-".
var ErrBadSharedName = job.ErrBadSharedName

// SharedFiles is the tenant's shared files as a client reaches them, in the
// cluster's blob store. Its methods are safe for concurrent use.
type SharedFiles struct {
	blobs  blob.Store
	prefix string
}

// Shared returns the shared files of the connection's tenant (see Tenant).
func (c *Cluster) Shared() *SharedFiles {
	return &SharedFiles{blobs: c.st, prefix: job.SharedPrefix(c.tenant)}
}

// SharedFile describes a shared file.
type SharedFile struct {
	Name     string // relative to the shared directory, slash-separated
	Size     int64
	Modified time.Time // when it was last written, by the store's clock
}

func (s *SharedFiles) key(op, name string) (string, error) {
	if err := job.CheckSharedName(name); err != nil {
		return "", fmt.Errorf("burla: %s shared file: %w", op, err)
	}
	return s.prefix + name, nil
}

// Put stores everything r yields as the shared file name, replacing any file of
// that name once all of r has been read; an error from r leaves the earlier file.
func (s *SharedFiles) Put(ctx context.Context, name string, r io.Reader) error {
	key, err := s.key("put", name)
	if err != nil {
		return err
	}
	if err := s.blobs.Put(ctx, key, r); err != nil {
		return fmt.Errorf("burla: put shared file %s: %w", name, err)
	}
	return nil
}

// Open returns the shared file name; the caller closes it. A missing file's error
// wraps fs.ErrNotExist.
func (s *SharedFiles) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	key, err := s.key("open", name)
	if err != nil {
		return nil, err
	}
	r, err := s.blobs.Open(ctx, key)
	if errors.Is(err, blob.ErrNotFound) {
		return nil, fmt.Errorf("burla: open shared file %s: %w", name, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("burla: open shared file %s: %w", name, err)
	}
	return r, nil
}

// List returns the shared files whose names start with prefix ("" for all, "dir/"
// for a directory's), sorted by name.
func (s *SharedFiles) List(ctx context.Context, prefix string) ([]SharedFile, error) {
	// A prefix is fine if some name it starts is.
	if err := job.CheckSharedName(prefix + "x"); err != nil {
		return nil, fmt.Errorf("burla: list shared files under %q: it starts no valid name: %w", prefix, err)
	}
	infos, err := s.blobs.List(ctx, s.prefix+prefix)
	if err != nil {
		return nil, fmt.Errorf("burla: list shared files: %w", err)
	}
	files := make([]SharedFile, 0, len(infos))
	for _, in := range infos {
		files = append(files, SharedFile{Name: strings.TrimPrefix(in.Key, s.prefix), Size: in.Size, Modified: in.Modified})
	}
	slices.SortFunc(files, func(a, b SharedFile) int { return cmp.Compare(a.Name, b.Name) })
	return files, nil
}

// Remove removes the shared file name; removing a file that does not exist is not
// an error. Workers remove their copies before their next chunk.
func (s *SharedFiles) Remove(ctx context.Context, name string) error {
	key, err := s.key("remove", name)
	if err != nil {
		return err
	}
	if err := s.blobs.Delete(ctx, key); err != nil {
		return fmt.Errorf("burla: remove shared file %s: %w", name, err)
	}
	return nil
}

// Upload stores the local file at localPath as the shared file name, streamed.
func (s *SharedFiles) Upload(ctx context.Context, localPath, name string) error {
	if _, err := s.key("upload", name); err != nil {
		return err
	}
	f, err := os.Open(localPath)
	if err != nil {
		return fmt.Errorf("burla: upload shared file %s: %w", name, err)
	}
	defer f.Close()
	return s.Put(ctx, name, f)
}

// Download writes the shared file name to localPath, streamed into a temporary
// file beside it that replaces localPath only once whole. A missing file's error
// wraps fs.ErrNotExist.
func (s *SharedFiles) Download(ctx context.Context, name, localPath string) (err error) {
	r, err := s.Open(ctx, name)
	if err != nil {
		return err
	}
	defer r.Close()
	tmp, err := os.CreateTemp(filepath.Dir(localPath), "."+filepath.Base(localPath)+".part-*")
	if err != nil {
		return fmt.Errorf("burla: download shared file %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			os.Remove(tmp.Name())
		}
	}()
	_, err = io.Copy(tmp, r)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), localPath)
	}
	if err != nil {
		return fmt.Errorf("burla: download shared file %s to %s: %w", name, localPath, err)
	}
	return nil
}
