package natsstore_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/burla-temporal/burla/blob"
	"github.com/burla-temporal/burla/store"
	"github.com/burla-temporal/burla/store/natsstore"
	"github.com/burla-temporal/burla/store/natsstore/natsserver"
	"github.com/burla-temporal/burla/store/storetest"
)

func newStore(t *testing.T) *natsstore.Store {
	t.Helper()
	srv, err := natsserver.Start(natsserver.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	s, err := natsstore.Connect(context.Background(), srv.URL(), "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return newStore(t) })
}

func TestBlobs(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if ok, err := s.Has(ctx, "bin-x"); ok || err != nil {
		t.Fatalf("Has before Put = %v, %v; want false", ok, err)
	}
	if _, err := s.Open(ctx, "bin-x"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Open before Put: %v; want ErrNotFound", err)
	}
	data := bytes.Repeat([]byte("burla"), 300_000) // several object-store chunks
	if err := s.Put(ctx, "bin-x", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Has(ctx, "bin-x"); !ok || err != nil {
		t.Fatalf("Has after Put = %v, %v; want true", ok, err)
	}
	r, err := s.Open(ctx, "bin-x")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes (%v); want the %d written", len(got), err, len(data))
	}
}
