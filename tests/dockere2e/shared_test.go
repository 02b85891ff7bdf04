package dockere2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/tests/clustertest"
)

// inWorkspace reads /workspace/shared/<name>.in, as a Burla user's code does, and
// writes what it read, with the directory's name, to <name>.out beside it.
var inWorkspace = burla.Func("inWorkspace", func(_ context.Context, name string) (string, error) {
	in, err := os.ReadFile("/workspace/shared/" + name + ".in")
	if err != nil {
		return "", err
	}
	out := fmt.Sprintf("%s read %q", burla.SharedDir(), in)
	return out, os.WriteFile(path.Join("/workspace/shared", name+".out"), []byte(out), 0o644)
})

// On the docker runtime the shared directory is /workspace/shared in every worker
// container, as in Burla: the client's files are there, and what calls write there
// comes back.
func TestSharedDirInWorkerContainers(t *testing.T) {
	if dev == nil {
		t.Skip(skipMsg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	d, err := clustertest.Start(ctx, clustertest.Options{Nodes: 1, CPUs: 2, Runtime: "docker"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		d.Keep = t.Failed()
		if err := d.Stop(); err != nil {
			t.Error(err)
		}
	}()
	files := d.Cluster.Shared()
	names := []string{"docker/a", "docker/b", "docker/c", "docker/d"}
	for _, n := range names {
		if err := files.Put(ctx, n+".in", strings.NewReader("client's "+n)); err != nil {
			t.Fatal(err)
		}
	}
	outs, err := burla.RemoteParallelMap(ctx, inWorkspace, names, burla.OnCluster(d.Cluster), burla.Spinner(false), burla.OnLog(func(burla.LogLine) {}))
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range names {
		want := fmt.Sprintf("/workspace/shared read %q", "client's "+n)
		if outs[i] != want {
			t.Errorf("call %d returned %q; want %q", i, outs[i], want)
		}
		r, err := files.Open(ctx, n+".out")
		if err != nil {
			t.Fatalf("the call's file %s.out: %v", n, err)
		}
		got, _ := io.ReadAll(r)
		r.Close()
		if string(got) != want {
			t.Errorf("%s.out holds %q; want %q", n, got, want)
		}
	}
	for _, c := range workerContainers(t, "default-1") {
		res, err := api.ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{})
		if err != nil {
			continue // replaced since the listing
		}
		info := res.Container
		found := false
		for _, m := range info.Mounts {
			if m.Destination == "/workspace/shared" {
				found = m.RW && strings.HasPrefix(m.Source, d.Dir)
			}
		}
		if !found {
			t.Errorf("container %s mounts %+v; want a writable directory of the node's at /workspace/shared", c.Names[0], info.Mounts)
		}
	}
}
