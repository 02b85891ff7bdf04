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

	"github.com/burla-temporal/burla/store"
)

// countingStore counts the programs put, each taking a while, as a large one does.
type countingStore struct {
	store.Backend
	puts atomic.Int32
	mu   sync.Mutex
	has  map[string]bool
}

func (s *countingStore) Has(_ context.Context, key string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.has[key], nil
}

func (s *countingStore) Put(_ context.Context, key string, r io.Reader) error {
	s.puts.Add(1)
	time.Sleep(50 * time.Millisecond)
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.has[key] = true
	return nil
}

// Jobs started at once from one program share one upload of it.
func TestJobsStartedAtOnceUploadTheProgramOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "prog")
	if err := os.WriteFile(path, []byte("a program"), 0o755); err != nil {
		t.Fatal(err)
	}
	st := &countingStore{has: map[string]bool{}}
	c := &Cluster{st: st, uploaded: map[string]bool{}, uploading: map[string]chan struct{}{}}
	digest := strings.Repeat("a", 64)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if err := c.upload(context.Background(), path, digest); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := st.puts.Load(); n != 1 {
		t.Errorf("20 jobs at once put the program %d times; want once", n)
	}
}
