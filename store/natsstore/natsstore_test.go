package natsstore_test

import (
	"context"
	"testing"

	"github.com/burla-temporal/burla/blob"
	"github.com/burla-temporal/burla/blob/blobtest"
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
	blobtest.Run(t, func(t *testing.T) blob.Store { return newStore(t) })
}

func BenchmarkDrain(b *testing.B) {
	srv, err := natsserver.Start(natsserver.Config{StoreDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Stop()
	s, err := natsstore.Connect(context.Background(), srv.URL(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchmarkDrain(b, s)
}
