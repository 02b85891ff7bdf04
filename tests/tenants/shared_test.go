package tenants

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	burla "github.com/burla-temporal/burla/sdk"
)

// readShared reads the shared file its input names.
var readShared = burla.Func("readShared", func(_ context.Context, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(burla.SharedDir(), filepath.FromSlash(name)))
	return string(b), err
})

// A tenant's shared files are its own: its jobs read them, another tenant neither
// lists nor opens them, and that tenant's jobs do not find them.
func TestSharedFilesAreTheTenants(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const name = "tenants/secret.txt"
	if err := acme.Shared().Put(ctx, name, strings.NewReader("acme's only")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { acme.Shared().Remove(context.Background(), name) })

	outs, err := burla.RemoteParallelMap(ctx, readShared, []string{name}, burla.OnCluster(acme), burla.Spinner(false))
	if err != nil || outs[0] != "acme's only" {
		t.Fatalf("acme's job read %q (%v); want acme's file", outs, err)
	}

	if files, err := other.Shared().List(ctx, ""); err != nil || len(files) != 0 {
		t.Errorf("other lists %+v (%v); want none of acme's files", files, err)
	}
	if _, err := other.Shared().Open(ctx, name); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("other opens acme's file: %v; want fs.ErrNotExist", err)
	}
	_, err = burla.RemoteParallelMap(ctx, readShared, []string{name}, burla.OnCluster(other), burla.Spinner(false))
	var re *burla.RemoteError
	if !errors.As(err, &re) || !strings.Contains(re.Message, "no such file") {
		t.Fatalf("other's job reading acme's file: %v; want its call to find no such file", err)
	}
	// Other's own file of the same name is another file.
	if err := other.Shared().Put(ctx, name, strings.NewReader("other's")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Shared().Remove(context.Background(), name) })
	outs, err = burla.RemoteParallelMap(ctx, readShared, []string{name}, burla.OnCluster(acme), burla.Spinner(false))
	if err != nil || outs[0] != "acme's only" {
		t.Fatalf("after other wrote its own %s, acme's job read %q (%v)", name, outs, err)
	}
}
