package tenants

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/burla-temporal/burla/auth"
	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/tests/clustertest"
)

// big returns 8 MiB: an output that travels as a blob in its tenant's store.
var big = burla.Func("big", func(ctx context.Context, x int) (string, error) {
	return strings.Repeat("x", 8<<20), nil
})

// A tenant whose store is full (its account's --tenant-max-store-mb) gets a job
// that fails with ChunkFailed, naming the input and the full store, after a bounded
// number of deliveries instead of a chunk that goes round for ever; another
// tenant's job on the same node runs on.
func TestFullStoreFailsTheJobNotTheCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// The bound holds the program (this test binary, stored once in each
	// tenant's account) and 48 MiB more: six of the job's 8 MiB outputs.
	self, err := os.Stat(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	limitMB := int(self.Size()>>20) + 48
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.json")
	fullKey, err := auth.Add(keys, auth.RoleTenant, "full")
	if err != nil {
		t.Fatal(err)
	}
	roomyKey, err := auth.Add(keys, auth.RoleTenant, "roomy")
	if err != nil {
		t.Fatal(err)
	}
	d, err := clustertest.Start(ctx, clustertest.Options{Nodes: 1, CPUs: 2, Keys: keys, APIKey: fullKey, TenantMaxStoreMB: limitMB})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := d.Stop(); err != nil {
			t.Error(err)
		}
	}()
	roomy, err := d.Dial(ctx, roomyKey)
	if err != nil {
		t.Fatal(err)
	}
	defer roomy.Close()
	on := func(c *burla.Cluster) []burla.Option {
		return []burla.Option{burla.OnCluster(c), burla.Spinner(false), burla.OnLog(func(burla.LogLine) {}), burla.Lease(time.Second)}
	}

	start := time.Now()
	_, err = burla.RemoteParallelMap(ctx, big, make([]int, 16), on(d.Cluster)...)
	took := time.Since(start)
	var be *burla.Error
	if !errors.As(err, &be) || be.Kind != burla.KindChunkFailed {
		t.Fatalf("a job whose 128 MiB of outputs overflow its tenant's %d MB: %v (%T); want a ChunkFailed *burla.Error", limitMB, err, err)
	}
	t.Logf("failed after %v: %v", took.Round(100*time.Millisecond), be)
	for _, want := range []string{"tenant full's store is full", "5 deliveries", "--tenant-max-store-mb"} {
		if !strings.Contains(be.Msg, want) {
			t.Errorf("message %q does not say %q", be.Msg, want)
		}
	}
	if be.Index < 0 || be.Index >= 16 {
		t.Errorf("the error names input %d; want one of the job's 16", be.Index)
	}

	// The other tenant's job, on the same node and server, runs on.
	out, err := burla.RemoteParallelMap(ctx, double, []int{1, 2, 3}, on(roomy)...)
	if err != nil || !slices.Equal(out, []int{2, 4, 6}) {
		t.Fatalf("another tenant's job after one tenant filled its store: %v, %v; want [2 4 6]", out, err)
	}
}
