// Package blobtest is the contract every blob.Store implementation must meet. An
// implementation's tests call Run with a function that returns a fresh, empty store.
package blobtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/burla-temporal/burla/blob"
)

// Run runs the contract suite against the stores newStore returns.
func Run(t *testing.T, newStore func(t *testing.T) blob.Store) {
	t.Run("Missing", func(t *testing.T) { testMissing(t, newStore(t)) })
	t.Run("Large", func(t *testing.T) { testLarge(t, newStore(t)) })
	t.Run("PutReplaces", func(t *testing.T) { testPutReplaces(t, newStore(t)) })
	t.Run("KeysWithSlashes", func(t *testing.T) { testKeysWithSlashes(t, newStore(t)) })
	t.Run("Empty", func(t *testing.T) { testEmpty(t, newStore(t)) })
	t.Run("ConcurrentPuts", func(t *testing.T) { testConcurrentPuts(t, newStore(t)) })
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// randomBytes returns n bytes that differ from one position to the next, so that a
// store which reorders, drops or repeats a chunk cannot read back the right value.
func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(b)
	return b
}

func put(t *testing.T, ctx context.Context, s blob.Store, key string, data []byte) {
	t.Helper()
	if err := s.Put(ctx, key, bytes.NewReader(data)); err != nil {
		t.Fatalf("Put %q: %v", key, err)
	}
}

// get reads the whole blob under key.
func get(ctx context.Context, s blob.Store, key string) ([]byte, error) {
	r, err := s.Open(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("Open %q: %w", key, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read %q: %w", key, err)
	}
	return b, nil
}

// wantBlob fails the test unless key holds exactly want.
func wantBlob(t *testing.T, ctx context.Context, s blob.Store, key string, want []byte) {
	t.Helper()
	if ok, err := s.Has(ctx, key); !ok || err != nil {
		t.Fatalf("Has %q = %v, %v; want true, nil", key, ok, err)
	}
	got, err := get(ctx, s, key)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%q read back %d bytes; want the %d written", key, len(got), len(want))
	}
}

// wantMissing fails the test unless key holds nothing.
func wantMissing(t *testing.T, ctx context.Context, s blob.Store, key string) {
	t.Helper()
	if ok, err := s.Has(ctx, key); ok || err != nil {
		t.Fatalf("Has %q = %v, %v; want false, nil", key, ok, err)
	}
	if r, err := s.Open(ctx, key); !errors.Is(err, blob.ErrNotFound) {
		if err == nil {
			r.Close()
		}
		t.Fatalf("Open %q: error %v; want one wrapping blob.ErrNotFound", key, err)
	}
}

func testMissing(t *testing.T, s blob.Store) {
	wantMissing(t, ctxFor(t), s, "bin-never-written")
}

func testLarge(t *testing.T, s blob.Store) {
	ctx := ctxFor(t)
	// Larger than one chunk of any backend's upload and read paths.
	data := randomBytes(1, 1_500_000)
	put(t, ctx, s, "bin-large", data)
	wantBlob(t, ctx, s, "bin-large", data)
}

func testPutReplaces(t *testing.T, s blob.Store) {
	ctx := ctxFor(t)
	put(t, ctx, s, "out-x", []byte("the first, longer value"))
	// Shorter than the first, so a store that overwrites in place without
	// truncating leaves a tail behind.
	second := []byte("second")
	put(t, ctx, s, "out-x", second)
	wantBlob(t, ctx, s, "out-x", second)
}

func testKeysWithSlashes(t *testing.T, s blob.Store) {
	ctx := ctxFor(t)
	keys := []string{"bin/abc", "in/job-1/7", "in/job-1/8"}
	for i, k := range keys {
		put(t, ctx, s, k, []byte(fmt.Sprintf("value %d of %s", i, k)))
	}
	for i, k := range keys {
		wantBlob(t, ctx, s, k, []byte(fmt.Sprintf("value %d of %s", i, k)))
	}
	// A key's leading segments are not keys themselves.
	for _, k := range []string{"bin", "bin/", "in/job-1"} {
		wantMissing(t, ctx, s, k)
	}
}

func testEmpty(t *testing.T, s blob.Store) {
	ctx := ctxFor(t)
	put(t, ctx, s, "out-empty", nil)
	wantBlob(t, ctx, s, "out-empty", []byte{})
}

func testConcurrentPuts(t *testing.T, s blob.Store) {
	ctx := ctxFor(t)
	const n = 8
	values := make([][]byte, n)
	for i := range values {
		values[i] = randomBytes(uint64(100+i), 64<<10+i)
	}
	key := func(i int) string { return fmt.Sprintf("in/job-c/%d", i) }
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if err := s.Put(ctx, key(i), bytes.NewReader(values[i])); err != nil {
				t.Errorf("Put %q: %v", key(i), err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for i := range n {
		wantBlob(t, ctx, s, key(i), values[i])
	}
}
