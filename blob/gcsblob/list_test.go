package gcsblob_test

import (
	"strings"
	"testing"

	"github.com/burla-temporal/burla/blob"
)

// Listings carry the content's MD5, by which a worker knows a shared file it has,
// and keys without the store's prefix.
func TestListGivesDigestsAndKeys(t *testing.T) {
	srv := newServer(t)
	s := newStore(t, srv, "burla/")
	other := newStore(t, srv, "burla-other/")
	ctx := ctxFor(t)
	for _, key := range []string{"shared-acme/a", "shared-acme/b/c"} {
		if err := s.Put(ctx, key, strings.NewReader(key)); err != nil {
			t.Fatal(err)
		}
	}
	if err := other.Put(ctx, "shared-acme/x", strings.NewReader("other prefix")); err != nil {
		t.Fatal(err)
	}
	infos, err := s.List(ctx, "shared-acme/")
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 {
		t.Fatalf("List = %+v; want the 2 blobs under this store's prefix", infos)
	}
	for _, in := range infos {
		d := blob.NewDigests()
		d.Write([]byte(in.Key))
		if want := d.Sums()[1]; in.Digest != want {
			t.Errorf("%q listed with digest %q; want its MD5 %q", in.Key, in.Digest, want)
		}
	}
	if err := s.Delete(ctx, "shared-acme/a"); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.GetObject(bucket, "burla/shared-acme/a"); err == nil {
		t.Error("object burla/shared-acme/a is still there after Delete")
	}
	if _, err := srv.GetObject(bucket, "burla-other/shared-acme/x"); err != nil {
		t.Errorf("Delete under one prefix touched another: %v", err)
	}
	if err := s.Delete(ctx, "../x"); err == nil {
		t.Error(`Delete "../x" succeeded; want ErrInvalidKey`)
	}
}
