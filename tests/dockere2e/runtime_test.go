package dockere2e

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/tests/clustertest"
)

var slow = burla.Func("slow", func(ctx context.Context, x int) (int, error) {
	time.Sleep(20 * time.Millisecond)
	return x, nil
})

// workerContainers lists the docker runtime's worker containers of a node.
func workerContainers(t *testing.T, node string) []container.Summary {
	t.Helper()
	cs, err := api.ContainerList(context.Background(), container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", "burla.node="+node), filters.Arg("label", "burla.role=worker"))})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// The docker runtime: each node's workers are hardened containers limited to one
// CPU each; a worker container killed mid-job loses nothing; a node agent starting
// where an earlier one died removes the containers it left.
func TestDockerRuntime(t *testing.T) {
	if dev == nil {
		t.Skip(skipMsg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// A container an agent of node default-1 left behind when it died.
	img, err := dockerImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.ContainerCreate(ctx, &container.Config{Image: img, Cmd: []string{"version"},
		Labels: map[string]string{"burla.cluster": "default", "burla.node": "default-1", "burla.role": "worker"}},
		nil, nil, nil, "burla-leftover-worker"); err != nil {
		t.Fatal(err)
	}
	d, err := clustertest.Start(ctx, clustertest.Options{Nodes: 1, CPUs: 2, Runtime: "docker"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := d.Stop(); err != nil {
			t.Error(err)
		}
		if left := workerContainers(t, "default-1"); len(left) != 0 {
			t.Errorf("%d worker containers left after burla dev stopped", len(left))
		}
	}()
	cs := workerContainers(t, "default-1")
	if len(cs) != 2 || slices.ContainsFunc(cs, func(c container.Summary) bool { return c.Names[0] == "/burla-leftover-worker" }) {
		t.Fatalf("worker containers %v; want the node's 2, and the leftover gone", cs)
	}
	for _, c := range cs {
		info, err := api.ContainerInspect(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		hc := info.HostConfig
		if hc.NanoCPUs != 1e9 || hc.Privileged || !hc.ReadonlyRootfs || info.Config.User != "65534:65534" || !slices.Contains(hc.SecurityOpt, "no-new-privileges") {
			t.Errorf("container %s: cpus %d, privileged %v, read-only %v, user %q, security %v; want 1 CPU, hardened",
				c.Names[0], hc.NanoCPUs, hc.Privileged, hc.ReadonlyRootfs, info.Config.User, hc.SecurityOpt)
		}
	}

	in := make([]int, 300) // 300 × 20ms on 2 workers: about 3s
	for i := range in {
		in[i] = i
	}
	seen := make([]int, len(in))
	killed := false
	for r, err := range burla.Stream(ctx, slow, in, burla.OnCluster(d.Cluster), burla.Spinner(false), burla.OnLog(func(burla.LogLine) {}), burla.Lease(time.Second)) {
		if err != nil {
			t.Fatal(err)
		}
		seen[r.Index]++
		if !killed {
			if err := api.ContainerKill(ctx, workerContainers(t, "default-1")[0].ID, "KILL"); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	for i, k := range seen {
		if k != 1 {
			t.Errorf("input %d delivered %d times; want exactly once", i, k)
		}
	}
}
