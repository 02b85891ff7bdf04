// Package blob is the contract for content too large for a store record: shipped
// executables, large inputs and large outputs. Keys are chosen by the writer and
// are content-addressed where the content allows, so writing a key twice is safe.
package blob

import (
	"context"
	"errors"
	"io"
)

// ErrNotFound is returned by Open for a key that was never written.
var ErrNotFound = errors.New("blob not found")

// Store holds blobs by key. Implementations are safe for concurrent use.
type Store interface {
	// Put stores everything r yields under key, replacing any earlier value.
	Put(ctx context.Context, key string, r io.Reader) error
	// Open returns the blob under key; the caller closes it.
	Open(ctx context.Context, key string) (io.ReadCloser, error)
	// Has reports whether key holds a blob.
	Has(ctx context.Context, key string) (bool, error)
}
