package natsstore_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/burla-temporal/burla/auth"
	"github.com/burla-temporal/burla/blob"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/store"
	"github.com/burla-temporal/burla/store/natsstore"
	"github.com/burla-temporal/burla/store/natsstore/natsserver"
)

func listKeys(t *testing.T, ctx context.Context, s blob.Store, prefix string) []string {
	t.Helper()
	infos, err := s.List(ctx, prefix)
	if err != nil {
		t.Fatalf("List %q: %v", prefix, err)
	}
	var keys []string
	for _, in := range infos {
		keys = append(keys, in.Key)
	}
	slices.Sort(keys)
	return keys
}

// Shared files live in an object store of their own, so that listing them does not
// read every executable, input and output, and a listing of any prefix still finds
// every key under it.
func TestSharedFilesHaveTheirOwnBucket(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := natsserver.Start(natsserver.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	s, err := natsstore.Connect(ctx, srv.URL(), "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	keys := []string{job.SharedKey("acme", "a.txt"), job.SharedKey("acme", "d/b"), "in-j-x-1", "bin-" + strings.Repeat("a", 64)}
	for _, k := range keys {
		if err := s.Put(ctx, k, strings.NewReader(k)); err != nil {
			t.Fatal(err)
		}
	}
	for prefix, want := range map[string][]string{
		"":                          keys,
		"s":                         {keys[0], keys[1]},
		job.SharedKeyPrefix:         {keys[0], keys[1]},
		job.SharedPrefix("acme"):    {keys[0], keys[1]},
		job.SharedKey("acme", "d/"): {keys[1]},
		"in-":                       {keys[2]},
	} {
		if got := listKeys(t, ctx, s, prefix); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
			t.Errorf("List %q = %q; want %q", prefix, got, slices.Sorted(slices.Values(want)))
		}
	}
	// Listings carry the content's digest, by which a worker knows a file it has.
	infos, err := s.List(ctx, job.SharedPrefix("acme"))
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range infos {
		d := blob.NewDigests()
		d.Write([]byte(in.Key))
		if !slices.Contains(d.Sums(), in.Digest) || !strings.HasPrefix(in.Digest, "sha256:") {
			t.Errorf("%s listed with digest %q; want its SHA-256, one of %q", in.Key, in.Digest, d.Sums())
		}
	}
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	for bucket, want := range map[string][]string{"burla-shared": {keys[0], keys[1]}, "burla-blobs": {keys[2], keys[3]}} {
		os, err := js.ObjectStore(bucket)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		infos, _ := os.List()
		for _, in := range infos {
			got = append(got, in.Name)
		}
		slices.Sort(got)
		if !slices.Equal(got, slices.Sorted(slices.Values(want))) {
			t.Errorf("object store %s holds %q; want %q", bucket, got, want)
		}
	}
}

// Through Tenants, the router of the cluster's own components, a tenant's shared
// files are in its account: the tenant sees them with its own key, another tenant
// does not, and Delete reaches them.
func TestTenantsRouteSharedFiles(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, keys := serverWithKeys(t, holder{auth.RoleTenant, "acme"}, holder{auth.RoleTenant, "other"}, holder{auth.RoleNode, ""})
	acmeKey, otherKey, nodeKey := keys[0], keys[1], keys[2]
	router, err := natsstore.ConnectTenants(ctx, srv.URL(), "node", nodeKey)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(router.Close)
	connect := func(key string) *natsstore.Store {
		s, err := natsstore.Connect(ctx, srv.URL(), "tenant", nats.Token(key))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	acme, other := connect(acmeKey), connect(otherKey)

	key := job.SharedKey("acme", "data/in.csv")
	if err := router.Put(ctx, key, strings.NewReader("a,b\n")); err != nil {
		t.Fatal(err)
	}
	if got := listKeys(t, ctx, acme, job.SharedPrefix("acme")); !slices.Equal(got, []string{key}) {
		t.Fatalf("acme lists %q; want the file the router put", got)
	}
	if got := listKeys(t, ctx, router, job.SharedPrefix("acme")); !slices.Equal(got, []string{key}) {
		t.Fatalf("the router lists %q for acme; want the file it put", got)
	}
	if got := listKeys(t, ctx, other, ""); len(got) != 0 {
		t.Fatalf("another tenant lists %q; want nothing", got)
	}
	if ok, err := other.Has(ctx, key); ok || err != nil {
		t.Fatalf("another tenant: Has = %v, %v; want false", ok, err)
	}
	if err := router.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if got := listKeys(t, ctx, acme, job.SharedPrefix("acme")); len(got) != 0 {
		t.Fatalf("after Delete acme lists %q", got)
	}
}

// The cluster's components see every tenant's blobs and jobs through Tenants, a
// fresh connection too (a control plane restarted): the collector lists them all.
func TestTenantsListEveryTenant(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, controlKey := keyedServer(t, "acme", "other")
	router, err := natsstore.ConnectTenants(ctx, srv.URL(), "control", controlKey)
	if err != nil {
		t.Fatal(err)
	}
	var wantKeys, wantJobs []string
	for _, tenant := range []string{"acme", "other"} {
		spec := job.Spec{ID: job.NewID(time.Now(), tenant), Function: "f", Binary: strings.Repeat("0", 64),
			Inputs: 1, FuncCPU: 1, Lease: time.Second, ClientTimeout: 10 * time.Second}
		if err := router.CreateJob(ctx, spec); err != nil {
			t.Fatal(err)
		}
		key := job.InputKey(spec.ID, 0)
		if err := router.Put(ctx, key, strings.NewReader("x")); err != nil {
			t.Fatal(err)
		}
		wantKeys, wantJobs = append(wantKeys, key), append(wantJobs, spec.ID)
	}
	router.Close()

	fresh, err := natsstore.ConnectTenants(ctx, srv.URL(), "control", controlKey)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fresh.Close)
	if got := listKeys(t, ctx, fresh, ""); !slices.Equal(got, slices.Sorted(slices.Values(wantKeys))) {
		t.Errorf("a fresh router lists blobs %q; want every tenant's %q", got, wantKeys)
	}
	recs, err := fresh.ListJobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var gotJobs []string
	for _, r := range recs {
		gotJobs = append(gotJobs, r.ID)
	}
	slices.Sort(gotJobs)
	if !slices.Equal(gotJobs, slices.Sorted(slices.Values(wantJobs))) {
		t.Errorf("a fresh router lists jobs %q; want every tenant's %q", gotJobs, wantJobs)
	}
	if err := fresh.DeleteJob(ctx, wantJobs[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := fresh.Job(ctx, wantJobs[0]); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("job after DeleteJob: %v; want ErrNotFound", err)
	}
}

// A server that lost the tenants' bucket (restarted without its data) costs a
// tenant's first use no more than a few seconds, and the bucket is made again.
func TestTenantsRecordSurvivesALostBucket(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, controlKey := keyedServer(t, "acme")
	router, err := natsstore.ConnectTenants(ctx, srv.URL(), "control", controlKey)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(router.Close)
	js, err := jetstream.New(router.Global().Conn())
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteKeyValue(ctx, "burla-tenants"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	spec := job.Spec{ID: job.NewID(time.Now(), "acme"), Function: "f", Binary: strings.Repeat("0", 64),
		Inputs: 1, FuncCPU: 1, Lease: time.Second, ClientTimeout: 10 * time.Second}
	if err := router.CreateJob(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("a tenant's first use took %v with the tenants' bucket lost; want a few seconds at most", took)
	}
	if got, err := router.Tenants(ctx); err != nil || !slices.Equal(got, []string{"acme"}) {
		t.Errorf("tenants after the bucket was lost: %v, %v; want [acme]", got, err)
	}
}

// keyedServer starts a server that admits keys of a keys file holding a key for
// each tenant, and returns it with a key of the control plane's.
func keyedServer(t *testing.T, tenants ...string) (*natsserver.Server, string) {
	t.Helper()
	var hs []holder
	for _, tenant := range tenants {
		hs = append(hs, holder{auth.RoleTenant, tenant})
	}
	srv, keys := serverWithKeys(t, append(hs, holder{auth.RoleControl, ""})...)
	return srv, keys[len(keys)-1]
}

// holder is who holds a key: its role, and its tenant if it is a tenant's.
type holder struct {
	role   auth.Role
	tenant string
}

// serverWithKeys starts a server that admits the keys of a keys file of its
// own, holding a key for each of hs, which it returns in their order.
func serverWithKeys(t *testing.T, hs ...holder) (*natsserver.Server, []string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "keys.json")
	var added []string
	for _, h := range hs {
		key, err := auth.Add(file, h.role, h.tenant)
		if err != nil {
			t.Fatal(err)
		}
		added = append(added, key)
	}
	keys, err := auth.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := natsserver.Start(natsserver.Config{StoreDir: t.TempDir(), Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return srv, added
}
