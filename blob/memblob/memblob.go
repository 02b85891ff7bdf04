// Package memblob is a blob.Store in memory, for tests of the components that use
// blobs: it meets the same contract (blob/blobtest) as the stores clusters run on.
package memblob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/burla-temporal/burla/blob"
)

var (
	_ blob.Store   = (*Store)(nil)
	_ blob.Changes = (*Store)(nil)
)

// Store is an in-memory blob.Store, safe for concurrent use. Its zero value is
// empty and ready.
type Store struct {
	mu      sync.Mutex
	blobs   map[string]entry
	changes uint64 // Puts and Deletes so far
}

type entry struct {
	data     []byte
	modified time.Time
}

// Put implements blob.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) error {
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(r); err != nil {
		return fmt.Errorf("put blob %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put blob %s: %w", key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.blobs == nil {
		s.blobs = map[string]entry{}
	}
	s.blobs[key] = entry{data: buf.Bytes(), modified: time.Now()}
	s.changes++
	return nil
}

// Open implements blob.Store.
func (s *Store) Open(_ context.Context, key string) (io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.blobs[key]
	if !ok {
		return nil, fmt.Errorf("blob %s: %w", key, blob.ErrNotFound)
	}
	return io.NopCloser(bytes.NewReader(e.data)), nil
}

// Has implements blob.Store.
func (s *Store) Has(_ context.Context, key string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.blobs[key]
	return ok, nil
}

// List implements blob.Store.
func (s *Store) List(_ context.Context, prefix string) ([]blob.Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var infos []blob.Info
	for k, e := range s.blobs {
		if strings.HasPrefix(k, prefix) {
			sum := sha256.Sum256(e.data)
			infos = append(infos, blob.Info{Key: k, Size: int64(len(e.data)), Modified: e.modified, Digest: blob.SHA256Digest(sum[:])})
		}
	}
	return infos, nil
}

// Delete implements blob.Store.
func (s *Store) Delete(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.blobs, key)
	s.changes++
	return nil
}

// Changes implements blob.Changes: it counts every Put and Delete, whatever
// their keys.
func (s *Store) Changes(context.Context, string) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changes, nil
}
