// Package blobtest is the contract every blob.Store implementation must meet. An
// implementation's tests call Run with a function that returns a fresh, empty store.
package blobtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
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
	t.Run("FailedPutKeepsValue", func(t *testing.T) { testFailedPutKeepsValue(t, newStore(t)) })
	t.Run("List", func(t *testing.T) { testList(t, newStore(t)) })
	t.Run("ListMany", func(t *testing.T) { testListMany(t, newStore(t)) })
	t.Run("Delete", func(t *testing.T) { testDelete(t, newStore(t)) })
	t.Run("Changes", func(t *testing.T) { testChanges(t, newStore(t)) })
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

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func testFailedPutKeepsValue(t *testing.T, s blob.Store) {
	ctx := ctxFor(t)
	put(t, ctx, s, "out-kept", []byte("earlier"))
	// Past the first chunk of every backend's upload, so that some of it was sent.
	r := io.MultiReader(bytes.NewReader(randomBytes(2, 1_200_000)), failingReader{})
	if err := s.Put(ctx, "out-kept", r); err == nil {
		t.Fatal("Put from a failing reader succeeded")
	}
	wantBlob(t, ctx, s, "out-kept", []byte("earlier"))
	if err := s.Put(ctx, "out-never", io.MultiReader(bytes.NewReader(randomBytes(3, 10)), failingReader{})); err == nil {
		t.Fatal("Put from a failing reader succeeded")
	}
	wantMissing(t, ctx, s, "out-never")
}

// list returns the listing of prefix by key.
func list(t *testing.T, ctx context.Context, s blob.Store, prefix string) map[string]blob.Info {
	t.Helper()
	infos, err := s.List(ctx, prefix)
	if err != nil {
		t.Fatalf("List %q: %v", prefix, err)
	}
	byKey := map[string]blob.Info{}
	for _, in := range infos {
		if _, dup := byKey[in.Key]; dup {
			t.Fatalf("List %q lists %q twice", prefix, in.Key)
		}
		byKey[in.Key] = in
	}
	return byKey
}

// wantInfo fails the test unless in describes data, written between from and to.
func wantInfo(t *testing.T, in blob.Info, data []byte, from, to time.Time) {
	t.Helper()
	if in.Size != int64(len(data)) {
		t.Errorf("%q listed with size %d; want %d", in.Key, in.Size, len(data))
	}
	// Clocks of a store and its client may differ a little.
	if in.Modified.Before(from.Add(-time.Minute)) || in.Modified.After(to.Add(time.Minute)) {
		t.Errorf("%q listed as modified at %v; want between %v and %v", in.Key, in.Modified, from, to)
	}
	d := blob.NewDigests()
	d.Write(data)
	if in.Digest != "" && !slices.Contains(d.Sums(), in.Digest) {
		t.Errorf("%q listed with digest %q; want one of %q", in.Key, in.Digest, d.Sums())
	}
}

func testList(t *testing.T, s blob.Store) {
	ctx := ctxFor(t)
	if got := list(t, ctx, s, "shared-acme/"); len(got) != 0 {
		t.Fatalf("empty store lists %v", slices.Collect(maps.Keys(got)))
	}
	values := map[string][]byte{
		"shared-acme/a.txt":       []byte("alpha"),
		"shared-acme/dir/b.bin":   randomBytes(4, 70_000),
		"shared-acme/dir/c/d":     nil,
		"shared-acme-two/a.txt":   []byte("another tenant's"),
		"shared-other/a.txt":      []byte("yet another"),
		"in-j-x-1":                []byte("an input"),
		"shared-acme/dir/b.bin2x": []byte("b2"),
	}
	from := time.Now()
	for k, v := range values {
		put(t, ctx, s, k, v)
	}
	// Replaced: the listing describes the second value only.
	values["shared-acme/a.txt"] = []byte("alpha, longer second version")
	put(t, ctx, s, "shared-acme/a.txt", values["shared-acme/a.txt"])
	to := time.Now()
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"shared-acme/", []string{"shared-acme/a.txt", "shared-acme/dir/b.bin", "shared-acme/dir/c/d", "shared-acme/dir/b.bin2x"}},
		{"shared-acme/dir/", []string{"shared-acme/dir/b.bin", "shared-acme/dir/c/d", "shared-acme/dir/b.bin2x"}},
		{"shared-acme/dir/b.bin", []string{"shared-acme/dir/b.bin", "shared-acme/dir/b.bin2x"}},
		{"shared-acme/a.txt", []string{"shared-acme/a.txt"}},
		{"shared-acme/nothing/", nil},
		{"shared-other/", []string{"shared-other/a.txt"}},
	} {
		got := list(t, ctx, s, tc.prefix)
		if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, slices.Sorted(slices.Values(tc.want))) {
			t.Errorf("List %q = %q; want %q", tc.prefix, keys, slices.Sorted(slices.Values(tc.want)))
			continue
		}
		for k, in := range got {
			wantInfo(t, in, values[k], from, to)
		}
	}
}

func testListMany(t *testing.T, s blob.Store) {
	ctx := ctxFor(t)
	// More than one page of a listing (Cloud Storage's pages hold 1000).
	const n = 1005
	key := func(i int) string { return fmt.Sprintf("shared-many/f%04d", i) }
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range next {
				if err := s.Put(ctx, key(i), bytes.NewReader([]byte(key(i)))); err != nil {
					t.Errorf("Put %q: %v", key(i), err)
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if t.Failed() {
		return
	}
	got := list(t, ctx, s, "shared-many/")
	if len(got) != n {
		t.Fatalf("List of %d blobs returned %d", n, len(got))
	}
	for i := range n {
		if in, ok := got[key(i)]; !ok || in.Size != int64(len(key(i))) {
			t.Fatalf("List: %q listed as %+v (%v); want size %d", key(i), in, ok, len(key(i)))
		}
	}
}

func testDelete(t *testing.T, s blob.Store) {
	ctx := ctxFor(t)
	put(t, ctx, s, "shared-acme/gone", []byte("soon gone"))
	put(t, ctx, s, "shared-acme/kept", []byte("kept"))
	for range 2 { // the second time, there is nothing to delete
		if err := s.Delete(ctx, "shared-acme/gone"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		wantMissing(t, ctx, s, "shared-acme/gone")
	}
	if err := s.Delete(ctx, "shared-acme/never-written"); err != nil {
		t.Fatalf("Delete of a key never written: %v", err)
	}
	if got := slices.Sorted(maps.Keys(list(t, ctx, s, "shared-acme/"))); !slices.Equal(got, []string{"shared-acme/kept"}) {
		t.Fatalf("after Delete, List = %q; want only the blob kept", got)
	}
	wantBlob(t, ctx, s, "shared-acme/kept", []byte("kept"))
	// A deleted key can be written again.
	put(t, ctx, s, "shared-acme/gone", []byte("back"))
	wantBlob(t, ctx, s, "shared-acme/gone", []byte("back"))
	if got := list(t, ctx, s, "shared-acme/gone"); len(got) != 1 || got["shared-acme/gone"].Size != 4 {
		t.Fatalf("List after rewriting a deleted key = %+v; want it, of 4 bytes", got)
	}
}

// testChanges: a store that counts its changes (blob.Changes) counts every Put
// and Delete under a prefix, and nothing while nothing is written, so that a
// reader that lists only when the count moved misses no change.
func testChanges(t *testing.T, s blob.Store) {
	c, ok := s.(blob.Changes)
	if !ok {
		t.Skipf("%T does not count its changes: its readers list every time", s)
	}
	ctx := ctxFor(t)
	changes := func() uint64 {
		t.Helper()
		n, err := c.Changes(ctx, "shared-acme/")
		if err != nil {
			t.Fatalf("Changes: %v", err)
		}
		return n
	}
	n0 := changes()
	if again := changes(); again != n0 {
		t.Fatalf("Changes moved from %d to %d with nothing written", n0, again)
	}
	put(t, ctx, s, "shared-acme/a", []byte("a"))
	n1 := changes()
	if n1 <= n0 {
		t.Fatalf("Changes after a Put = %d; want more than %d", n1, n0)
	}
	put(t, ctx, s, "shared-acme/a", []byte("a again"))
	n2 := changes()
	if n2 <= n1 {
		t.Fatalf("Changes after a Put that replaces = %d; want more than %d", n2, n1)
	}
	if again := changes(); again != n2 {
		t.Fatalf("Changes moved from %d to %d with nothing written", n2, again)
	}
	if err := s.Delete(ctx, "shared-acme/a"); err != nil {
		t.Fatal(err)
	}
	if n3 := changes(); n3 <= n2 {
		t.Fatalf("Changes after a Delete = %d; want more than %d", n3, n2)
	}
}
