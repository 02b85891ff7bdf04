package blob_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/burla-temporal/burla/blob"
)

// mem is an in-memory blob store.
type mem map[string][]byte

func (m mem) Put(_ context.Context, key string, r io.Reader) error {
	b, err := io.ReadAll(r)
	m[key] = b
	return err
}
func (m mem) Open(_ context.Context, key string) (io.ReadCloser, error) {
	b, ok := m[key]
	if !ok {
		return nil, blob.ErrNotFound
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}
func (m mem) Has(_ context.Context, key string) (bool, error)   { _, ok := m[key]; return ok, nil }
func (m mem) List(context.Context, string) ([]blob.Info, error) { return nil, errors.New("not used") }
func (m mem) Delete(_ context.Context, key string) error        { delete(m, key); return nil }

func TestFetchExecutable(t *testing.T) {
	ctx := context.Background()
	data := []byte("#!/bin/true\n")
	sum := sha256.Sum256(data)
	digest := hex.EncodeToString(sum[:])
	store := mem{"bin-good": data, "bin-bad": []byte("tampered")}
	dir := t.TempDir()

	path, err := blob.FetchExecutable(ctx, store, "bin-good", digest, dir)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm()&0o111 == 0 {
		t.Fatalf("fetched %s: %v, mode %v; want an executable file", path, err, info.Mode())
	}
	delete(store, "bin-good")
	if again, err := blob.FetchExecutable(ctx, store, "bin-good", digest, dir); err != nil || again != path {
		t.Errorf("second fetch = %s, %v; want the file already there", again, err)
	}
	if _, err := blob.FetchExecutable(ctx, store, "bin-bad", digest, t.TempDir()); !errors.Is(err, blob.ErrDigestMismatch) {
		t.Errorf("tampered blob: %v; want ErrDigestMismatch", err)
	}
	if _, err := blob.FetchExecutable(ctx, store, "bin-none", digest, t.TempDir()); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("missing blob: %v; want ErrNotFound", err)
	}
}
