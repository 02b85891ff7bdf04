// Package blob is the contract for content too large for a store record: shipped
// executables, large inputs and large outputs, and tenants' shared files. Keys are
// chosen by the writer and are content-addressed where the content allows, so
// writing a key twice is safe.
package blob

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrNotFound is returned by Open for a key that was never written.
var ErrNotFound = errors.New("blob not found")

// Store holds blobs by key. Implementations are safe for concurrent use.
type Store interface {
	// Put stores everything r yields under key, replacing any earlier value. The
	// new value appears whole or not at all: a reader opens the old value or the
	// new one, and an error from r or a cancelled ctx leaves the old one in place.
	Put(ctx context.Context, key string, r io.Reader) error
	// Open returns the blob under key; the caller closes it.
	Open(ctx context.Context, key string) (io.ReadCloser, error)
	// Has reports whether key holds a blob.
	Has(ctx context.Context, key string) (bool, error)
	// List returns every blob whose key starts with prefix, in no particular
	// order. A store that keeps tenants apart finds a tenant's blobs only by a
	// prefix that names the tenant (see job.BlobTenant).
	List(ctx context.Context, prefix string) ([]Info, error)
	// Delete removes the blob under key; removing a key that holds none is not an
	// error.
	Delete(ctx context.Context, key string) error
}

// Changes is what a Store may also do: count the changes under a prefix in one
// cheap round trip, so that a reader that keeps a listing (a worker's shared
// directory) lists again only when something may have changed.
type Changes interface {
	// Changes returns a number that grows with every Put and Delete of a key
	// under prefix (and may grow with others). A listing taken after Changes
	// returned n holds every change that n counts: while Changes returns n
	// again, that listing is current.
	Changes(ctx context.Context, prefix string) (uint64, error)
}

// Info describes a stored blob.
type Info struct {
	Key  string
	Size int64
	// Modified is when the blob was last written, by the store's clock.
	Modified time.Time
	// Digest is a hash of the content, "<algorithm>:<hex>" with an algorithm that
	// Digests computes ("sha256" or "md5"), or "" when the store does not know one.
	// Two values with equal digests are equal.
	Digest string
}
