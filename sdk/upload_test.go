package burla

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/burla-temporal/burla/blob/memblob"
	"github.com/burla-temporal/burla/ship"
	"github.com/burla-temporal/burla/store"
)

// countingStore counts the programs shipped, each taking a while, as a large
// one does.
type countingStore struct {
	store.Backend // the blob store's methods alone are called
	blobs         memblob.Store
	shipped       atomic.Int32
}

func (s *countingStore) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	return s.blobs.Open(ctx, key)
}

func (s *countingStore) Has(ctx context.Context, key string) (bool, error) {
	return s.blobs.Has(ctx, key)
}

func (s *countingStore) Put(ctx context.Context, key string, r io.Reader) error {
	if strings.HasPrefix(key, "man-") {
		s.shipped.Add(1)
	}
	time.Sleep(50 * time.Millisecond)
	return s.blobs.Put(ctx, key, r)
}

// Jobs started at once from one program share one upload of it.
func TestJobsStartedAtOnceUploadTheProgramOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "prog")
	if err := os.WriteFile(path, []byte("a program"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, digest, err := ship.Digest(path)
	if err != nil {
		t.Fatal(err)
	}
	st := &countingStore{}
	c := &Cluster{st: st, uploaded: map[string]bool{}, uploading: map[string]chan struct{}{}}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if err := c.upload(context.Background(), path, digest); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := st.shipped.Load(); n != 1 {
		t.Errorf("20 jobs at once shipped the program %d times; want once", n)
	}
}
