package gcsblob_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"github.com/fsouza/fake-gcs-server/fakestorage"
	"google.golang.org/api/option"

	"github.com/burla-temporal/burla/blob"
	"github.com/burla-temporal/burla/blob/blobtest"
	"github.com/burla-temporal/burla/blob/gcsblob"
)

const bucket = "burla-test"

// newServer starts an in-process fake Cloud Storage with an empty bucket.
func newServer(t *testing.T) *fakestorage.Server {
	t.Helper()
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme:     "http",
		Host:       "127.0.0.1",
		Port:       0, // any free port
		NoListener: false,
		// The client reads objects through the XML API, at <endpoint host>/<bucket>/<object>.
		// The fake serves that path only for its public host (compared without the
		// port); for any other host it takes the host for a bucket name and finds nothing.
		PublicHost: "127.0.0.1",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: bucket})
	return srv
}

// newStore returns a Store on srv that talks to it over HTTP, as to the real service.
func newStore(t *testing.T, srv *fakestorage.Server, prefix string) *gcsblob.Store {
	t.Helper()
	s, err := gcsblob.Dial(context.Background(), bucket, prefix,
		option.WithEndpoint(srv.URL()+"/storage/v1/"),
		option.WithoutAuthentication(),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestContract(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store { return newStore(t, newServer(t), "burla/") })
}

func TestPutHonoursCancel(t *testing.T) {
	srv := newServer(t)
	s := newStore(t, srv, "burla/")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Put(ctx, "bin/abc", strings.NewReader("never stored"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with a cancelled context: %v; want context.Canceled", err)
	}
	if _, err := srv.GetObject(bucket, "burla/bin/abc"); err == nil {
		t.Fatal("Put with a cancelled context stored an object")
	}
}

// Larger than Put's 8 MiB upload chunk, so the upload takes several requests.
const multiChunk = 17 << 20

func TestMultiChunkPut(t *testing.T) {
	s := newStore(t, newServer(t), "burla/")
	ctx := ctxFor(t)
	data := make([]byte, multiChunk)
	rand.NewChaCha8([32]byte{7}).Read(data)
	if err := s.Put(ctx, "bin/big", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	r, err := s.Open(ctx, "bin/big")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes (%v); want the %d written", len(got), err, len(data))
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestPutKeepsNothingOfAFailedRead(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    int // bytes read before the failure
	}{
		{"WithinFirstChunk", 20},
		{"AfterFirstChunk", multiChunk},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			s := newStore(t, srv, "burla/")
			ctx := ctxFor(t)
			if err := s.Put(ctx, "out/x", strings.NewReader("earlier")); err != nil {
				t.Fatal(err)
			}
			r := io.MultiReader(bytes.NewReader(make([]byte, tc.n)), failingReader{})
			if err := s.Put(ctx, "out/x", r); err == nil || !strings.Contains(err.Error(), "disk on fire") {
				t.Fatalf("Put from a failing reader: %v; want its error", err)
			}
			obj, err := srv.GetObject(bucket, "burla/out/x")
			if err != nil {
				t.Fatal(err)
			}
			if got := string(obj.Content); got != "earlier" {
				t.Fatalf("after a failed Put the object holds %d bytes; want the earlier %q", len(got), "earlier")
			}
		})
	}
}

func TestPrefix(t *testing.T) {
	srv := newServer(t)
	a := newStore(t, srv, "cluster-a/")
	b := newStore(t, srv, "cluster-b/")
	ctx := ctxFor(t)
	if err := a.Put(ctx, "bin/abc", strings.NewReader("from a")); err != nil {
		t.Fatal(err)
	}
	obj, err := srv.GetObject(bucket, "cluster-a/bin/abc")
	if err != nil {
		t.Fatalf("object cluster-a/bin/abc: %v", err)
	}
	if got := string(obj.Content); got != "from a" {
		t.Errorf("object cluster-a/bin/abc holds %q; want %q", got, "from a")
	}
	if obj.ContentType != "application/octet-stream" {
		t.Errorf("object cluster-a/bin/abc has content type %q; want application/octet-stream", obj.ContentType)
	}
	if _, err := srv.GetObject(bucket, "bin/abc"); err == nil {
		t.Error("object bin/abc exists; want the key only under the prefix")
	}
	if ok, err := b.Has(ctx, "bin/abc"); ok || err != nil {
		t.Errorf("other prefix: Has = %v, %v; want false, nil", ok, err)
	}
}

func TestInvalidKeys(t *testing.T) {
	srv := newServer(t)
	s := newStore(t, srv, "burla/")
	ctx := ctxFor(t)
	for _, key := range []string{
		"",
		"/bin/abc",
		"..",
		"in/../bin/abc",
		"bin/..",
		"bad\xffutf8",
		"line\nbreak",
		strings.Repeat("k", 1024-len("burla/")+1),
	} {
		if err := s.Put(ctx, key, strings.NewReader("x")); !errors.Is(err, gcsblob.ErrInvalidKey) {
			t.Errorf("Put %.20q: %v; want ErrInvalidKey", key, err)
		}
		if _, err := s.Open(ctx, key); !errors.Is(err, gcsblob.ErrInvalidKey) {
			t.Errorf("Open %.20q: %v; want ErrInvalidKey", key, err)
		}
		if _, err := s.Has(ctx, key); !errors.Is(err, gcsblob.ErrInvalidKey) {
			t.Errorf("Has %.20q: %v; want ErrInvalidKey", key, err)
		}
	}
	// Dots inside a segment and a name of exactly the limit are fine.
	for _, key := range []string{"bin/a..b", strings.Repeat("k", 1024-len("burla/"))} {
		if err := s.Put(ctx, key, bytes.NewReader(nil)); err != nil {
			t.Errorf("Put %.20q: %v; want success", key, err)
		}
	}
}

// A client made by New stays its owner's.
func TestNewLeavesClientOpen(t *testing.T) {
	srv := newServer(t)
	client, err := storage.NewClient(context.Background(),
		option.WithEndpoint(srv.URL()+"/storage/v1/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if err := gcsblob.New(client, bucket, "").Close(); err != nil {
		t.Fatal(err)
	}
	s := gcsblob.New(client, bucket, "")
	if ok, err := s.Has(ctxFor(t), "bin/abc"); ok || err != nil {
		t.Fatalf("Has after another Store's Close = %v, %v; want false, nil", ok, err)
	}
}
