package containerworker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/burla-temporal/burla/blob"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/store"
)

// The shared directory (job.EnvSharedDir) holds the files of the job's tenant that
// every call of its jobs sees, kept in the blob store under job.SharedPrefix. The
// worker syncs it around the calls it runs (the SDK's sdk/shared.go documents what
// a call can rely on):
//
//   - before a run of calls (each chunk, and again after a program restart), it
//     uploads what changed locally and then downloads what is new or changed in
//     the store, and removes what the store no longer holds;
//   - after each call returns, before its result is handed on, it uploads the
//     files created or changed and deletes the files removed; and after the last
//     call of the run, before the chunk can be marked done, once more.
//
// A file is known by the digests of its content (blob.Digests), which a listing
// gives too (blob.Info.Digest), so that a worker never downloads a file it wrote.

// sharedStamp is what a local file's metadata says of its content: a file whose
// stamp is unchanged holds the content it held, unless it was rewritten within
// one tick of the filesystem's clock (see racyMargin).
type sharedStamp struct {
	size  int64
	mtime int64 // nanoseconds
	ino   uint64
}

func stampOf(fi fs.FileInfo) sharedStamp {
	s := sharedStamp{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ino = st.Ino
	}
	return s
}

// racyMargin: file times come from a clock that ticks every few milliseconds, so a
// file rewritten with the same size within a tick of the moment its stamp was
// taken keeps its stamp. A stamp taken less than racyMargin after the file's
// modification time is racy, and the content behind it is checked by its digest.
const racyMargin = 50 * time.Millisecond

// racyHashMax bounds the files whose racy stamp is checked after every call; a
// larger one is checked at the end of the run, when the program is idle.
const racyHashMax = 1 << 20

// syncedFile is a local file whose content is known to be the stored blob's.
type syncedFile struct {
	stamp sharedStamp
	racy  bool     // the stamp may hide a change (see racyMargin)
	sums  []string // digests of the content (blob.Digests)
	// listed is the blob as the last listing showed it; zero before.
	listed blob.Info
}

// holds reports whether the stored blob in is the content f has.
func (f *syncedFile) holds(in blob.Info) bool {
	if in.Digest != "" {
		return slices.Contains(f.sums, in.Digest)
	}
	// A store without digests: the blob is the one listed before.
	return f.listed.Key != "" && f.listed.Size == in.Size && f.listed.Modified.Equal(in.Modified)
}

// sharedDir syncs one worker's shared directory with its tenant's shared files. It
// is used by the worker's loop alone, one call at a time.
type sharedDir struct {
	dir    string
	prefix string // job.SharedPrefix of the tenant
	blobs  blob.Store
	log    *slog.Logger
	files  map[string]*syncedFile // by name (job.CheckSharedName)
	warned map[string]bool        // names refused, logged once each
	now    func() time.Time
	// synced is the store's count of changes (blob.Changes) when a pull last
	// brought every stored file here; while the count stays, a pull need not
	// list the store again. A pull that skipped a file leaves it unset, as does
	// a store that keeps no count.
	synced sharedCount
	// next is the count read as the chunk about to run was claimed (expect),
	// which its pull takes instead of reading it again.
	next sharedCount
}

// sharedCount is a store's count of the shared files' changes (blob.Changes),
// if it was read.
type sharedCount struct {
	n  uint64
	ok bool
}

// count reads the store's count of changes under the tenant's shared files; it
// has none for a store that keeps no count, or when the read fails (the pull
// then reads it itself, and fails if it must). It is safe to call while the
// worker's loop uses s, and on a nil s.
func (s *sharedDir) count(ctx context.Context) sharedCount {
	if s == nil {
		return sharedCount{}
	}
	c, ok := s.blobs.(blob.Changes)
	if !ok {
		return sharedCount{}
	}
	n, err := c.Changes(ctx, s.prefix)
	return sharedCount{n: n, ok: err == nil}
}

// expect hands the next pull the count read as its chunk was claimed: every
// change made before the claim is in it, and the chunk's calls start after.
func (s *sharedDir) expect(c sharedCount) {
	if s != nil {
		s.next = c
	}
}

// newSharedDir returns the sync of the worker's shared directory for spec's
// tenant, or nil when the worker has none (Config.SharedDir).
func (w *Worker) newSharedDir(spec job.Spec, log *slog.Logger) *sharedDir {
	if w.cfg.SharedDir == "" {
		return nil
	}
	return &sharedDir{
		dir:    w.cfg.SharedDir,
		prefix: job.SharedPrefix(job.TenantOf(spec.ID)),
		blobs:  w.cfg.Blobs,
		log:    log.With("shared_dir", w.cfg.SharedDir),
		files:  map[string]*syncedFile{},
		warned: map[string]bool{},
		now:    time.Now,
	}
}

// wrap returns c, started by start, with its calls synced with the shared
// directory; start's error and a nil s pass c through as it is.
func (s *sharedDir) wrap(c caller, err error) (caller, error) {
	if s == nil || err != nil {
		return c, err
	}
	return &sharedCaller{caller: c, shared: s}, nil
}

// sharedCaller syncs the shared directory around the runs and calls of a caller.
type sharedCaller struct {
	caller
	shared *sharedDir
}

// run implements caller: the shared directory is synced both ways before the
// calls, each call's files are uploaded before its outcome goes to done, and the
// directory once more after the last call. A sync that fails for the store's sake
// abandons the run with an error, which leaves the chunk to its lease.
func (c *sharedCaller) run(ctx context.Context, fn string, items []store.Item, timeout time.Duration, load loader, done func(callOutcome) bool) (int, error) {
	if len(items) == 0 {
		return c.caller.run(ctx, fn, items, timeout, load, done)
	}
	// The program is idle: nothing it writes can be caught half-way.
	if err := c.shared.push(ctx, time.Time{}); err != nil {
		return 0, err
	}
	if err := c.shared.pull(ctx); err != nil {
		return 0, err
	}
	var syncErr error
	n, err := c.caller.run(ctx, fn, items, timeout, load, func(oc callOutcome) bool {
		// A call that died or timed out may still be writing; its files go up
		// once the program is gone, after the run.
		if !oc.died {
			// The program may have started the next call already: files that
			// changed after this call's result came are that call's.
			if syncErr = c.shared.push(ctx, c.shared.now()); syncErr != nil {
				return false
			}
		}
		return done(oc)
	})
	if syncErr != nil {
		return n, syncErr
	}
	if err != nil {
		return n, err
	}
	return n, c.shared.push(ctx, time.Time{})
}

// errStoreSync marks a sync's failures that are the store's (and so may pass),
// unlike a local file that cannot be read or written, which is logged and skipped
// so that one bad file does not stop the job.
var errStoreSync = errors.New("shared directory: blob store")

// push uploads the files that are new or changed and deletes the blobs of files
// that are gone. With a cutoff, files changed after it are left for a later push:
// a call still running may be writing them.
func (s *sharedDir) push(ctx context.Context, cutoff time.Time) error {
	final := cutoff.IsZero()
	seen := map[string]bool{}
	// A file that cannot be seen is not taken for removed: removals go up only
	// after a walk that read every directory.
	complete := true
	err := filepath.WalkDir(s.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			complete = false
			if p == s.dir && errors.Is(err, fs.ErrNotExist) {
				// The directory itself was removed: make it again, for the next
				// call, but remove nothing from the store for it.
				if err := os.MkdirAll(s.dir, 0o755); err != nil {
					s.log.Warn("shared directory: cannot make it", "error", err)
				}
				return nil
			}
			s.log.Warn("shared directory: cannot read; its files are not uploaded", "path", p, "error", err)
			if d != nil && d.IsDir() && p != s.dir {
				return fs.SkipDir
			}
			return nil
		}
		if p == s.dir || d.IsDir() || !d.Type().IsRegular() || job.IsSharedTemp(d.Name()) {
			return nil // symbolic links and devices are not files to share
		}
		rel, err := filepath.Rel(s.dir, p)
		if err != nil {
			return nil
		}
		name := filepath.ToSlash(rel)
		if err := job.CheckSharedName(name); err != nil {
			s.warnOnce(name, "shared directory: file not uploaded", err)
			return nil
		}
		seen[name] = true
		fi, err := d.Info()
		if err != nil {
			return nil // gone since the directory was read
		}
		return s.pushFile(ctx, p, name, fi, cutoff, final)
	})
	if err != nil {
		if !errors.Is(err, errStoreSync) {
			err = fmt.Errorf("shared directory %s: %w", s.dir, err)
		}
		return err
	}
	if !complete {
		return nil
	}
	for name := range s.files {
		if seen[name] {
			continue
		}
		// Removed here, so removed from the store: the last write or removal wins.
		if err := s.blobs.Delete(ctx, s.prefix+name); err != nil {
			return fmt.Errorf("%w: delete %s: %w", errStoreSync, name, err)
		}
		delete(s.files, name)
	}
	return nil
}

// pushFile uploads the file at p, named name, if it may have changed since it was
// last synced.
func (s *sharedDir) pushFile(ctx context.Context, p, name string, fi fs.FileInfo, cutoff time.Time, final bool) error {
	stamp := stampOf(fi)
	f := s.files[name]
	if f != nil && f.stamp == stamp {
		if !f.racy {
			return nil
		}
		if !final && stamp.size > racyHashMax {
			return nil // checked once the run is over
		}
		sums, err := digestFile(p)
		if err != nil {
			return nil // changing, or gone: the next push sees it
		}
		if slices.Equal(sums, f.sums) {
			f.racy = s.now().Sub(fi.ModTime()) < racyMargin
			return nil
		}
	} else if !final && fi.ModTime().After(cutoff) {
		return nil
	}
	up, err := s.upload(ctx, p, name)
	switch {
	case errors.Is(err, errStoreSync):
		return err
	case err != nil:
		s.log.Debug("shared file not uploaded; a later push retries", "file", name, "error", err)
		return nil
	}
	s.files[name] = up
	return nil
}

// errChanged is a file that changed while it was uploaded; the upload is abandoned
// so that no half-written file is published.
var errChanged = errors.New("file changed while it was read")

// upload puts the file at p in the store, streamed, provided it holds still from
// the first byte to the last, and returns what is then known of it. An error
// wrapping errStoreSync is the store's; any other, the file's.
func (s *sharedDir) upload(ctx context.Context, p, name string) (*syncedFile, error) {
	r, fi, err := openStable(p)
	if err != nil {
		return nil, err
	}
	defer r.f.Close()
	if err := s.blobs.Put(ctx, s.prefix+name, r); err != nil {
		if r.err != nil {
			return nil, r.err // the file's failure, not the store's
		}
		return nil, fmt.Errorf("%w: upload %s: %w", errStoreSync, name, err)
	}
	s.log.Debug("shared file uploaded", "file", name, "bytes", r.stamp.size)
	return &syncedFile{stamp: r.stamp, sums: r.sums.Sums(), racy: s.now().Sub(fi.ModTime()) < racyMargin}, nil
}

// stableReader reads a file for upload and fails at its end if the file changed
// meanwhile, which makes the store keep its earlier value (blob.Store.Put).
type stableReader struct {
	f     *os.File
	stamp sharedStamp
	sums  *blob.Digests
	n     int64
	err   error // the file's own failure, if any
}

func (r *stableReader) Read(b []byte) (int, error) {
	n, err := r.f.Read(b)
	r.sums.Write(b[:n])
	r.n += int64(n)
	switch {
	case err == io.EOF:
		fi, serr := r.f.Stat()
		if serr == nil && (stampOf(fi) != r.stamp || r.n != r.stamp.size) {
			serr = errChanged
		}
		if serr != nil {
			r.err = serr
			return n, serr
		}
	case err != nil:
		r.err = err
	}
	return n, err
}

// openStable opens the file at p for a stableReader; the caller closes r.f.
func openStable(p string) (*stableReader, os.FileInfo, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return &stableReader{f: f, stamp: stampOf(fi), sums: blob.NewDigests()}, fi, nil
}

// digestFile returns the digests of the file at p, or errChanged if it changed
// while it was read.
func digestFile(p string) ([]string, error) {
	r, _, err := openStable(p)
	if err != nil {
		return nil, err
	}
	defer r.f.Close()
	if _, err := io.Copy(io.Discard, r); err != nil {
		return nil, err
	}
	return r.sums.Sums(), nil
}

// pull downloads the stored files that are new or changed since the worker last
// looked, and removes the local copies of files removed from the store. A local
// file changed since it was synced is left alone: the next push uploads it.
//
// A store that counts its changes (blob.Changes) is asked first, in one round
// trip, and listed only when something may have changed since the last pull that
// brought every file: a listing reads every stored file's record, and a worker
// pulls before each chunk it runs (with one-input chunks of 10 ms calls, listing
// each time took a third of the job's time).
func (s *sharedDir) pull(ctx context.Context) error {
	count := s.next
	s.next = sharedCount{} // a pull after a program restart reads it anew
	if !count.ok {
		count = s.count(ctx) // none if the read failed: the listing says why
	}
	if count.ok && count == s.synced {
		return nil
	}
	infos, err := s.blobs.List(ctx, s.prefix)
	if err != nil {
		return fmt.Errorf("%w: list: %w", errStoreSync, err)
	}
	complete := true // every stored file is here as stored
	listed := map[string]bool{}
	for _, in := range infos {
		name := in.Key[len(s.prefix):]
		if err := job.CheckSharedName(name); err != nil {
			s.warnOnce(name, "shared directory: stored file not downloaded", err)
			continue
		}
		listed[name] = true
		p := filepath.Join(s.dir, filepath.FromSlash(name))
		f := s.files[name]
		if !s.unchanged(p, f) {
			complete = false
			continue // changed here: ours wins, at the next push
		}
		if f != nil && f.holds(in) {
			f.listed = in
			continue
		}
		got, err := s.download(ctx, p, name, in)
		switch {
		case errors.Is(err, blob.ErrNotFound):
			continue // deleted since the listing
		case errors.Is(err, errStoreSync):
			return err
		case err != nil:
			s.log.Warn("shared directory: stored file not downloaded", "file", name, "error", err)
			complete = false
			continue
		}
		got.listed = in
		s.files[name] = got
	}
	for name, f := range s.files {
		if listed[name] {
			continue
		}
		p := filepath.Join(s.dir, filepath.FromSlash(name))
		if !s.unchanged(p, f) {
			complete = false // ours, at the next push
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("shared directory: cannot remove a file removed from the store", "file", name, "error", err)
			complete = false
			continue
		}
		delete(s.files, name)
	}
	s.synced = sharedCount{}
	if complete {
		s.synced = count
	}
	return nil
}

// unchanged reports whether the local file at p is as it was when f was synced,
// or, with f nil, does not exist.
func (s *sharedDir) unchanged(p string, f *syncedFile) bool {
	fi, err := os.Lstat(p)
	if f == nil {
		return errors.Is(err, fs.ErrNotExist)
	}
	return err == nil && fi.Mode().IsRegular() && stampOf(fi) == f.stamp && !f.racy
}

// download writes the stored file name to p, streamed into a temporary file beside
// it that is renamed into place once whole, so that no call sees half of it.
func (s *sharedDir) download(ctx context.Context, p, name string, in blob.Info) (*syncedFile, error) {
	r, err := s.blobs.Open(ctx, s.prefix+name)
	if errors.Is(err, blob.ErrNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("%w: download %s: %w", errStoreSync, name, err)
	}
	defer r.Close()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), job.SharedTempPattern)
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name()) // once renamed, a no-op
	sums := blob.NewDigests()
	_, err = io.Copy(io.MultiWriter(tmp, sums), readOnly{r})
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	var re readError
	if errors.As(err, &re) {
		return nil, fmt.Errorf("%w: download %s: %w", errStoreSync, name, re.err)
	}
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return nil, err
	}
	// The file's time is the blob's, as far back as it takes for a call's rewrite of
	// the file to show in its stamp (see racyMargin).
	mtime := s.now().Add(-racyMargin)
	if !in.Modified.IsZero() && in.Modified.Before(mtime) {
		mtime = in.Modified
	}
	if err := os.Chtimes(tmp.Name(), time.Time{}, mtime); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return nil, err
	}
	fi, err := os.Lstat(p)
	if err != nil {
		return nil, err
	}
	s.log.Debug("shared file downloaded", "file", name, "bytes", fi.Size())
	return &syncedFile{stamp: stampOf(fi), sums: sums.Sums(), racy: s.now().Sub(fi.ModTime()) < racyMargin}, nil
}

// readOnly tells the store's read errors from the local file's write errors.
type readOnly struct{ r io.Reader }

type readError struct{ err error }

func (e readError) Error() string { return e.err.Error() }

func (r readOnly) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	if err != nil && err != io.EOF {
		err = readError{err}
	}
	return n, err
}

func (s *sharedDir) warnOnce(name, msg string, err error) {
	if s.warned[name] {
		return
	}
	s.warned[name] = true
	s.log.Warn(msg, "file", path.Clean(name), "error", err)
}
