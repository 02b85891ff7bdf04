package containerworker

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/burla-temporal/burla/blob"
	"github.com/burla-temporal/burla/blob/memblob"
	"github.com/burla-temporal/burla/job"
)

// countingBlobs counts a store's uploads and downloads, and can run a hook in the
// middle of an upload.
type countingBlobs struct {
	blob.Store
	puts, opens atomic.Int64
	// midPut, if set, runs once an upload has read its first byte.
	midPut func()
}

func (b *countingBlobs) Put(ctx context.Context, key string, r io.Reader) error {
	b.puts.Add(1)
	if b.midPut != nil {
		var first [1]byte
		n, err := io.ReadFull(r, first[:])
		if err != nil && n == 0 {
			return b.Store.Put(ctx, key, r)
		}
		b.midPut()
		r = io.MultiReader(bytes.NewReader(first[:n]), r)
	}
	return b.Store.Put(ctx, key, r)
}

func (b *countingBlobs) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	b.opens.Add(1)
	return b.Store.Open(ctx, key)
}

func newTestShared(t *testing.T, blobs blob.Store) *sharedDir {
	t.Helper()
	return &sharedDir{
		dir: t.TempDir(), prefix: job.SharedPrefix("acme"), blobs: blobs,
		log: slog.New(slog.DiscardHandler), files: map[string]*syncedFile{}, warned: map[string]bool{}, now: time.Now,
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func putBlob(t *testing.T, b blob.Store, key, data string) {
	t.Helper()
	if err := b.Put(context.Background(), key, strings.NewReader(data)); err != nil {
		t.Fatal(err)
	}
}

func blobString(t *testing.T, b blob.Store, key string) (string, bool) {
	t.Helper()
	r, err := b.Open(context.Background(), key)
	if errors.Is(err, blob.ErrNotFound) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(data), true
}

func writeFile(t *testing.T, s *sharedDir, name, data string) string {
	t.Helper()
	p := filepath.Join(s.dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func localFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestSharedPullDownloadsNewAndChangedOnly(t *testing.T) {
	ctx := ctxFor(t)
	blobs := &countingBlobs{Store: &memblob.Store{}}
	s := newTestShared(t, blobs)
	putBlob(t, blobs, job.SharedKey("acme", "a.txt"), "alpha")
	putBlob(t, blobs, job.SharedKey("acme", "d/e/b.bin"), "beta")
	putBlob(t, blobs, job.SharedKey("other", "secret"), "another tenant's")
	if err := s.pull(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a.txt": "alpha", "d/e/b.bin": "beta"}
	if got := localFiles(t, s.dir); !maps.Equal(got, want) {
		t.Fatalf("after the first pull the directory holds %v; want %v", got, want)
	}
	// Nothing new: nothing downloaded, nothing uploaded back.
	opens := blobs.opens.Load()
	if err := s.push(ctx, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := s.pull(ctx); err != nil {
		t.Fatal(err)
	}
	if n := blobs.opens.Load() - opens; n != 0 {
		t.Errorf("a pull with nothing new downloaded %d files", n)
	}
	if n := blobs.puts.Load(); n != 3 {
		t.Errorf("%d uploads; want only the test's 3: downloaded files went back up", n)
	}
	// Changed and removed in the store: replaced and removed here.
	putBlob(t, blobs, job.SharedKey("acme", "a.txt"), "alpha two")
	if err := blobs.Delete(ctx, job.SharedKey("acme", "d/e/b.bin")); err != nil {
		t.Fatal(err)
	}
	if err := s.pull(ctx); err != nil {
		t.Fatal(err)
	}
	if got := localFiles(t, s.dir); !maps.Equal(got, map[string]string{"a.txt": "alpha two"}) {
		t.Fatalf("after a change and a removal in the store the directory holds %v", got)
	}
}

// countedBlobs is a store that counts its changes (blob.Changes), and counts the
// listings it is asked for.
type countedBlobs struct {
	*memblob.Store
	lists, counts atomic.Int64
}

func (b *countedBlobs) Changes(ctx context.Context, prefix string) (uint64, error) {
	b.counts.Add(1)
	return b.Store.Changes(ctx, prefix)
}

func (b *countedBlobs) List(ctx context.Context, prefix string) ([]blob.Info, error) {
	b.lists.Add(1)
	return b.Store.List(ctx, prefix)
}

// A store that counts its changes is listed only when the count moved since the
// last pull that brought every file: a worker pulls before every chunk, and a
// listing reads every stored file's record. Every change is still seen.
func TestSharedPullListsOnlyWhenTheStoreChanged(t *testing.T) {
	ctx := ctxFor(t)
	blobs := &countedBlobs{Store: &memblob.Store{}}
	s := newTestShared(t, blobs)
	pull := func(wantLists int64, want map[string]string) {
		t.Helper()
		if err := s.pull(ctx); err != nil {
			t.Fatal(err)
		}
		if n := blobs.lists.Load(); n != wantLists {
			t.Errorf("%d listings; want %d", n, wantLists)
		}
		if got := localFiles(t, s.dir); !maps.Equal(got, want) {
			t.Errorf("the directory holds %v; want %v", got, want)
		}
	}
	putBlob(t, blobs, job.SharedKey("acme", "a.txt"), "alpha")
	pull(1, map[string]string{"a.txt": "alpha"})
	pull(1, map[string]string{"a.txt": "alpha"}) // nothing changed: no listing
	pull(1, map[string]string{"a.txt": "alpha"})
	putBlob(t, blobs, job.SharedKey("acme", "b.txt"), "beta") // another worker's
	pull(2, map[string]string{"a.txt": "alpha", "b.txt": "beta"})
	putBlob(t, blobs, job.SharedKey("acme", "a.txt"), "alpha two")
	pull(3, map[string]string{"a.txt": "alpha two", "b.txt": "beta"})
	if err := blobs.Delete(ctx, job.SharedKey("acme", "b.txt")); err != nil {
		t.Fatal(err)
	}
	pull(4, map[string]string{"a.txt": "alpha two"})
	pull(4, map[string]string{"a.txt": "alpha two"})
	// A file changed here and not yet pushed leaves the pull incomplete: the
	// next one lists again, though the store did not change.
	writeFile(t, s, "a.txt", "local")
	putBlob(t, blobs, job.SharedKey("acme", "c.txt"), "gamma")
	pull(5, map[string]string{"a.txt": "local", "c.txt": "gamma"})
	pull(6, map[string]string{"a.txt": "local", "c.txt": "gamma"})
	// Pushed, but within a tick of the file system's clock of its writing (a
	// racy stamp, see racyMargin), it may still change unseen: pulls list until
	// a push after the margin vouches for it.
	if err := s.push(ctx, time.Time{}); err != nil {
		t.Fatal(err)
	}
	pull(7, map[string]string{"a.txt": "local", "c.txt": "gamma"})
	time.Sleep(racyMargin)
	if err := s.push(ctx, time.Time{}); err != nil {
		t.Fatal(err)
	}
	pull(8, map[string]string{"a.txt": "local", "c.txt": "gamma"})
	pull(8, map[string]string{"a.txt": "local", "c.txt": "gamma"})
}

// The count read as a chunk is claimed (count, then expect) serves the pull
// before its calls: no round trip of its own, and a change made before the claim
// is still seen.
func TestSharedPullTakesTheCountReadAtTheClaim(t *testing.T) {
	ctx := ctxFor(t)
	blobs := &countedBlobs{Store: &memblob.Store{}}
	s := newTestShared(t, blobs)
	putBlob(t, blobs, job.SharedKey("acme", "a.txt"), "alpha")
	for i, want := range []map[string]string{{"a.txt": "alpha"}, {"a.txt": "alpha"}, {"a.txt": "alpha", "b.txt": "beta"}} {
		if i == 2 {
			putBlob(t, blobs, job.SharedKey("acme", "b.txt"), "beta") // before the claim
		}
		s.expect(s.count(ctx)) // the claim's
		counts := blobs.counts.Load()
		if err := s.pull(ctx); err != nil {
			t.Fatal(err)
		}
		if n := blobs.counts.Load() - counts; n != 0 {
			t.Errorf("chunk %d: the pull read the count %d more times", i, n)
		}
		if got := localFiles(t, s.dir); !maps.Equal(got, want) {
			t.Errorf("chunk %d: the directory holds %v; want %v", i, got, want)
		}
	}
	if n := blobs.lists.Load(); n != 2 {
		t.Errorf("%d listings; want 2 (the first chunk's, and after the change)", n)
	}
	// A pull with no count handed over (a program restarted mid-chunk) reads it.
	counts := blobs.counts.Load()
	if err := s.pull(ctx); err != nil {
		t.Fatal(err)
	}
	if n := blobs.counts.Load() - counts; n != 1 {
		t.Errorf("a pull with no count handed over read it %d times; want once", n)
	}
}

func TestSharedPullKeepsLocalChanges(t *testing.T) {
	ctx := ctxFor(t)
	blobs := &memblob.Store{}
	s := newTestShared(t, blobs)
	putBlob(t, blobs, job.SharedKey("acme", "a.txt"), "stored")
	if err := s.pull(ctx); err != nil {
		t.Fatal(err)
	}
	// Changed here and in the store, and not yet pushed: the local change stays.
	writeFile(t, s, "a.txt", "changed here, longer")
	putBlob(t, blobs, job.SharedKey("acme", "a.txt"), "changed in the store")
	// Here only, never pushed: not removed although the store lacks it.
	writeFile(t, s, "mine.txt", "mine")
	if err := s.pull(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a.txt": "changed here, longer", "mine.txt": "mine"}
	if got := localFiles(t, s.dir); !maps.Equal(got, want) {
		t.Fatalf("directory holds %v; want %v", got, want)
	}
}

func TestSharedPushUploadsChangesAndRemovals(t *testing.T) {
	ctx := ctxFor(t)
	blobs := &countingBlobs{Store: &memblob.Store{}}
	s := newTestShared(t, blobs)
	writeFile(t, s, "out/1.txt", "one")
	big := bytes.Repeat([]byte("0123456789abcdef"), 300_000) // 4.8 MB, streamed
	writeFile(t, s, "big.bin", string(big))
	if err := os.Symlink("/etc/passwd", filepath.Join(s.dir, "link")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, s, "bad\nname", "refused")
	if err := s.push(ctx, time.Time{}); err != nil {
		t.Fatal(err)
	}
	infos, err := blobs.List(ctx, s.prefix)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, in := range infos {
		keys = append(keys, in.Key)
	}
	slices.Sort(keys)
	if want := []string{job.SharedKey("acme", "big.bin"), job.SharedKey("acme", "out/1.txt")}; !slices.Equal(keys, want) {
		t.Fatalf("store holds %q; want %q (no link, no bad name)", keys, want)
	}
	if got, _ := blobString(t, blobs, job.SharedKey("acme", "big.bin")); got != string(big) {
		t.Fatalf("big.bin stored as %d bytes; want %d", len(got), len(big))
	}
	puts := blobs.puts.Load()
	if err := s.push(ctx, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if n := blobs.puts.Load() - puts; n != 0 {
		t.Fatalf("a push with nothing changed uploaded %d files", n)
	}
	writeFile(t, s, "out/1.txt", "one, changed")
	if err := os.Remove(filepath.Join(s.dir, "big.bin")); err != nil {
		t.Fatal(err)
	}
	if err := s.push(ctx, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := blobString(t, blobs, job.SharedKey("acme", "out/1.txt")); got != "one, changed" {
		t.Errorf("out/1.txt stored as %q after a change", got)
	}
	if _, ok := blobString(t, blobs, job.SharedKey("acme", "big.bin")); ok {
		t.Error("big.bin is still stored after its removal")
	}
	// A file changed after the cutoff is a later call's, not yet finished.
	cutoff := time.Now()
	time.Sleep(20 * time.Millisecond)
	writeFile(t, s, "later.txt", "a later call's")
	if err := s.push(ctx, cutoff); err != nil {
		t.Fatal(err)
	}
	if _, ok := blobString(t, blobs, job.SharedKey("acme", "later.txt")); ok {
		t.Error("a file changed after the cutoff was uploaded")
	}
	if err := s.push(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, ok := blobString(t, blobs, job.SharedKey("acme", "later.txt")); !ok {
		t.Error("a file changed before the cutoff was not uploaded")
	}
}

// A file that changes while it is uploaded is not published: the store keeps what
// it had, and a later push uploads the file once it holds still.
func TestSharedPushPublishesNoHalfFile(t *testing.T) {
	ctx := ctxFor(t)
	blobs := &countingBlobs{Store: &memblob.Store{}}
	s := newTestShared(t, blobs)
	p := writeFile(t, s, "grow.txt", "first half")
	blobs.midPut = func() {
		f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Error(err)
			return
		}
		f.WriteString(", second half")
		f.Close()
	}
	if err := s.push(ctx, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if got, ok := blobString(t, blobs, job.SharedKey("acme", "grow.txt")); ok {
		t.Fatalf("a file that changed during its upload was published as %q", got)
	}
	blobs.midPut = nil
	if err := s.push(ctx, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := blobString(t, blobs, job.SharedKey("acme", "grow.txt")); got != "first half, second half" {
		t.Fatalf("once still, the file was stored as %q", got)
	}
}

// A file rewritten with the same size within one tick of the filesystem's clock
// keeps its stamp; its content still goes up.
func TestSharedPushSeesRewriteWithinAClockTick(t *testing.T) {
	ctx := ctxFor(t)
	blobs := &memblob.Store{}
	s := newTestShared(t, blobs)
	p := writeFile(t, s, "progress", "step 1")
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	// The push comes within a tick of the write, however slow the test machine.
	s.now = func() time.Time { return fi.ModTime().Add(time.Millisecond) }
	if err := s.push(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	// In place (same inode), same size, and the same time, as a coarse clock gives.
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("step 2"), 0)
	f.Close()
	if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if err := s.push(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if got, _ := blobString(t, blobs, job.SharedKey("acme", "progress")); got != "step 2" {
		t.Fatalf("stored %q; want the rewrite, step 2", got)
	}
}

// failingBlobs fails every write and listing: the store is down.
type failingBlobs struct{ blob.Store }

func (failingBlobs) Put(context.Context, string, io.Reader) error { return errors.New("store down") }
func (failingBlobs) List(context.Context, string) ([]blob.Info, error) {
	return nil, errors.New("store down")
}

// The store's failures end the sync with an error (the chunk goes back to its
// lease); a local file that cannot be read does not.
func TestSharedSyncErrors(t *testing.T) {
	ctx := ctxFor(t)
	s := newTestShared(t, failingBlobs{&memblob.Store{}})
	writeFile(t, s, "x", "x")
	if err := s.push(ctx, time.Time{}); !errors.Is(err, errStoreSync) {
		t.Errorf("push to a store that is down: %v; want errStoreSync", err)
	}
	if err := s.pull(ctx); !errors.Is(err, errStoreSync) {
		t.Errorf("pull from a store that is down: %v; want errStoreSync", err)
	}
	if os.Getuid() == 0 {
		return // root reads anything
	}
	blobs := &memblob.Store{}
	s = newTestShared(t, blobs)
	p := writeFile(t, s, "locked", "x")
	writeFile(t, s, "open", "y")
	if err := os.Chmod(p, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.push(ctx, time.Time{}); err != nil {
		t.Errorf("push with an unreadable file: %v; want the others uploaded and no error", err)
	}
	if _, ok := blobString(t, blobs, job.SharedKey("acme", "open")); !ok {
		t.Error("a readable file was not uploaded beside an unreadable one")
	}
}
