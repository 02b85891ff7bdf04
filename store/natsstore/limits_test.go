package natsstore_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/burla-temporal/burla/auth"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/store"
	"github.com/burla-temporal/burla/store/natsstore"
	"github.com/burla-temporal/burla/store/natsstore/natsserver"
)

// limitedServer starts a server whose tenants' accounts have limits, and returns
// it with keys of tenants acme and other and of a node.
func limitedServer(t *testing.T, limits natsserver.TenantLimits) (srv *natsserver.Server, acmeKey, otherKey, nodeKey string) {
	t.Helper()
	keysFile := filepath.Join(t.TempDir(), "keys.json")
	var err error
	if acmeKey, err = auth.Add(keysFile, auth.RoleTenant, "acme"); err != nil {
		t.Fatal(err)
	}
	if otherKey, err = auth.Add(keysFile, auth.RoleTenant, "other"); err != nil {
		t.Fatal(err)
	}
	if nodeKey, err = auth.Add(keysFile, auth.RoleNode, ""); err != nil {
		t.Fatal(err)
	}
	keys, err := auth.Open(keysFile)
	if err != nil {
		t.Fatal(err)
	}
	srv, err = natsserver.Start(natsserver.Config{StoreDir: t.TempDir(), Keys: keys, TenantLimits: limits})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return srv, acmeKey, otherKey, nodeKey
}

// A tenant that fills its store has its next writes refused, through the
// cluster's router and on its own key, with an error that says its store is
// full; another tenant writes on; and the tenant writes again once it has
// deleted something.
func TestTenantStoreLimit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, acmeKey, otherKey, nodeKey := limitedServer(t, natsserver.TenantLimits{StoreMB: 1})
	router, err := natsstore.ConnectTenants(ctx, srv.URL(), "node", nodeKey)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(router.Close)
	own := func(key string) *natsstore.Store {
		s, err := natsstore.Connect(ctx, srv.URL(), "tenant", nats.Token(key))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	acme, other := own(acmeKey), own(otherKey)
	big := func() *bytes.Reader { return bytes.NewReader(bytes.Repeat([]byte("x"), 700<<10)) }

	first := job.SharedKey("acme", "first")
	if err := router.Put(ctx, first, big()); err != nil {
		t.Fatalf("acme's first 700 KB of its 1 MB: %v", err)
	}
	err = router.Put(ctx, job.SharedKey("acme", "second"), big())
	if !errors.Is(err, natsstore.ErrTenantLimit) || !strings.Contains(err.Error(), "tenant acme's store is full") {
		t.Fatalf("acme's next 700 KB through the router: %v; want ErrTenantLimit saying acme's store is full", err)
	}
	acmeJob := job.NewID(time.Now(), "acme")
	err = router.PutResults(ctx, acmeJob, []store.Result{{Index: 0, Output: bytes.Repeat([]byte("y"), 400<<10)}})
	if !errors.Is(err, natsstore.ErrTenantLimit) {
		t.Fatalf("acme's results through the router: %v; want ErrTenantLimit", err)
	}
	if err := acme.Put(ctx, job.SharedKey("acme", "own"), big()); err == nil || !strings.Contains(err.Error(), "resource limits exceeded for account") {
		t.Fatalf("acme's 700 KB on its own key: %v; want the server's account limit", err)
	}

	if err := router.Put(ctx, job.SharedKey("other", "first"), big()); err != nil {
		t.Fatalf("other's 700 KB through the router while acme is full: %v", err)
	}
	otherJob := job.NewID(time.Now(), "other")
	if err := other.PutResults(ctx, otherJob, []store.Result{{Index: 0, Output: []byte("ok")}}); err != nil {
		t.Fatalf("other's results on its own key while acme is full: %v", err)
	}

	if err := router.Delete(ctx, first); err != nil {
		t.Fatal(err)
	}
	if err := router.Put(ctx, job.SharedKey("acme", "second"), big()); err != nil {
		t.Fatalf("acme's 700 KB after deleting its first: %v; want room again", err)
	}
}

// A tenant's own key cannot go around the store's limits: it may make no
// stream in memory, and no stream beyond its bound.
func TestTenantCannotMakeStreamsPastItsLimits(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, acmeKey, _, _ := limitedServer(t, natsserver.TenantLimits{StoreMB: 1, Streams: natsserver.StoreStreams + 1})
	s, err := natsstore.Connect(ctx, srv.URL(), "tenant", nats.Token(acmeKey))
	if err != nil {
		t.Fatalf("the store in an account bounded to %d streams: %v", natsserver.StoreStreams+1, err)
	}
	t.Cleanup(s.Close)
	nc, err := nats.Connect(srv.URL(), nats.Token(acmeKey))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "hoard", Subjects: []string{"hoard.>"}, Storage: jetstream.MemoryStorage})
	var api *jetstream.APIError
	if !errors.As(err, &api) || api.ErrorCode != 10028 {
		t.Errorf("a stream in memory: %v; want it refused", err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "hoard", Subjects: []string{"hoard.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatalf("a stream on disk within the bound: %v", err)
	}
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "hoard2", Subjects: []string{"hoard2.>"}, Storage: jetstream.FileStorage})
	if !errors.As(err, &api) || api.ErrorCode != 10027 {
		t.Errorf("a stream past the bound: %v; want the streams limit", err)
	}
}

// natsserver.StoreStreams, the least a tenant's streams may be bounded to, is
// what the store makes in an account.
func TestStoreStreamsIsWhatTheStoreMakes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, js := rawServer(t)
	s, err := natsstore.Connect(ctx, srv.URL(), "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	var names []string
	for n := range js.StreamNames(ctx).Name() {
		names = append(names, n)
	}
	if len(names) != natsserver.StoreStreams {
		t.Errorf("the store made %d streams %q; natsserver.StoreStreams is %d", len(names), names, natsserver.StoreStreams)
	}
}
