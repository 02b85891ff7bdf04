// Package gcsblob implements the blob contract on a Google Cloud Storage bucket, the
// blob store of clusters that run on Google Cloud.
//
// Each blob is one object named prefix+key, so one bucket can serve several
// clusters, each under its own prefix ("burla/", "burla-staging/").
package gcsblob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"cloud.google.com/go/storage"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"

	"github.com/burla-temporal/burla/blob"
)

const (
	// chunkSize is how much of a blob one upload request carries. Every Put holds
	// one chunk in memory so that it can resend it after a transient error; 8 MiB
	// (half the client's default) still sends a typical executable in a few
	// requests while bounding the memory of many concurrent Puts.
	chunkSize = 8 << 20
	// maxNameLen is Cloud Storage's limit on an object name, in bytes.
	maxNameLen = 1024
)

// ErrInvalidKey is returned for a key that cannot name an object.
var ErrInvalidKey = errors.New("invalid blob key")

var _ blob.Store = (*Store)(nil)

// Store is a blob.Store on one Cloud Storage bucket. It is safe for concurrent use.
type Store struct {
	client     *storage.Client
	bucket     *storage.BucketHandle
	prefix     string
	ownsClient bool // Dial made the client, so Close closes it
}

// New returns a Store that keeps blobs in bucket under prefix, using client,
// which stays the caller's: Close leaves it open.
func New(client *storage.Client, bucket, prefix string) *Store {
	return &Store{client: client, bucket: client.Bucket(bucket), prefix: prefix}
}

// Dial creates a Cloud Storage client with opts (by default, Application Default
// Credentials) and returns a Store on it that keeps blobs in bucket under prefix.
// The Store owns the client; Close closes it.
//
// Dial does not check that the bucket exists: that needs storage.buckets.get,
// which a service account limited to objects (roles/storage.objectAdmin) lacks.
// A missing bucket shows up as an error from the first Put, Open or Has.
func Dial(ctx context.Context, bucket, prefix string, opts ...option.ClientOption) (*Store, error) {
	client, err := storage.NewClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("create Cloud Storage client for bucket %s: %w", bucket, err)
	}
	s := New(client, bucket, prefix)
	s.ownsClient = true
	return s, nil
}

// Close closes the client if Dial made it.
func (s *Store) Close() error {
	if !s.ownsClient {
		return nil
	}
	return s.client.Close()
}

// Put implements blob.Store. The object appears only once all of r has been
// uploaded: an error from r or a cancelled ctx leaves any earlier value in place.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) error {
	o, err := s.object(key)
	if err != nil {
		return err
	}
	// Cancelling the writer's context is the only way to abandon an upload;
	// closing the writer would commit whatever part of r it had been given.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The client retries an upload only if it carries a precondition, as
	// replacing an object is not idempotent in general. It is here: keys are
	// content-addressed or have a single writer, so a resent upload writes the
	// same bytes.
	w := o.Retryer(storage.WithPolicy(storage.RetryAlways)).NewWriter(ctx)
	w.ChunkSize = chunkSize
	w.ContentType = "application/octet-stream"
	if _, err := io.Copy(w, r); err != nil {
		cancel()
		w.Close()
		return fmt.Errorf("put blob %s in %s: %w", key, url(o), err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("put blob %s in %s: %w", key, url(o), err)
	}
	return nil
}

// Open implements blob.Store. The returned reader stops with ctx.
func (s *Store) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	o, err := s.object(key)
	if err != nil {
		return nil, err
	}
	r, err := o.NewReader(ctx)
	if errors.Is(err, storage.ErrObjectNotExist) {
		return nil, fmt.Errorf("blob %s in %s: %w", key, url(o), blob.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open blob %s in %s: %w", key, url(o), err)
	}
	return r, nil
}

// Has implements blob.Store.
func (s *Store) Has(ctx context.Context, key string) (bool, error) {
	o, err := s.object(key)
	if err != nil {
		return false, err
	}
	_, err = o.Attrs(ctx)
	if errors.Is(err, storage.ErrObjectNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up blob %s in %s: %w", key, url(o), err)
	}
	return true, nil
}

// List implements blob.Store with one listing request per thousand blobs.
func (s *Store) List(ctx context.Context, prefix string) ([]blob.Info, error) {
	q := &storage.Query{Prefix: s.prefix + prefix}
	if err := q.SetAttrSelection([]string{"Name", "Size", "Updated", "MD5"}); err != nil {
		return nil, err
	}
	var infos []blob.Info
	it := s.bucket.Objects(ctx, q)
	for {
		a, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return infos, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list blobs %s* in gs://%s/%s: %w", prefix, s.bucket.BucketName(), s.prefix, err)
		}
		info := blob.Info{Key: strings.TrimPrefix(a.Name, s.prefix), Size: a.Size, Modified: a.Updated}
		if len(a.MD5) > 0 { // composite objects have none
			info.Digest = blob.MD5Digest(a.MD5)
		}
		infos = append(infos, info)
	}
}

// Delete implements blob.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	o, err := s.object(key)
	if err != nil {
		return err
	}
	// Deleting twice removes the same object, so a retry after a lost reply is safe.
	err = o.Retryer(storage.WithPolicy(storage.RetryAlways)).Delete(ctx)
	if err != nil && !errors.Is(err, storage.ErrObjectNotExist) {
		return fmt.Errorf("delete blob %s in %s: %w", key, url(o), err)
	}
	return nil
}

// object returns the handle of the object that holds key, or an error wrapping
// ErrInvalidKey if key cannot name one.
func (s *Store) object(key string) (*storage.ObjectHandle, error) {
	var problem string
	switch name := s.prefix + key; {
	case key == "":
		problem = "it is empty"
	case strings.HasPrefix(key, "/"):
		problem = "it starts with /"
	case slices.Contains(strings.Split(key, "/"), ".."):
		// Cloud Storage would accept it, but tools that map object names to
		// paths would take it out of the prefix.
		problem = `it has a ".." segment`
	case !utf8.ValidString(key) || strings.ContainsAny(key, "\r\n"):
		problem = "Cloud Storage names must be UTF-8 without CR or LF"
	case len(name) > maxNameLen:
		return nil, fmt.Errorf("%w: %d bytes with prefix %q; Cloud Storage allows %d", ErrInvalidKey, len(name), s.prefix, maxNameLen)
	default:
		return s.bucket.Object(name), nil
	}
	return nil, fmt.Errorf("%w %q: %s", ErrInvalidKey, key, problem)
}

// url names an object for error messages.
func url(o *storage.ObjectHandle) string {
	return "gs://" + o.BucketName() + "/" + o.ObjectName()
}
