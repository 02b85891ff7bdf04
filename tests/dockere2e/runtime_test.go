package dockere2e

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

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
	cs, err := api.ContainerList(context.Background(), client.ContainerListOptions{All: true, Filters: make(client.Filters).Add(
		"label", "burla.node="+node, "burla.role=worker")})
	if err != nil {
		t.Fatal(err)
	}
	return cs.Items
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
	if _, err := api.ContainerCreate(ctx, client.ContainerCreateOptions{Name: "burla-leftover-worker", Config: &container.Config{Image: img, Cmd: []string{"version"},
		Labels: map[string]string{"burla.cluster": "default", "burla.node": "default-1", "burla.role": "worker"}}}); err != nil {
		t.Fatal(err)
	}
	d, err := clustertest.Start(ctx, clustertest.Options{Nodes: 1, CPUs: 4, Runtime: "docker"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		d.Keep = t.Failed()
		if err := d.Stop(); err != nil {
			t.Error(err)
		}
		if left := workerContainers(t, "default-1"); len(left) != 0 {
			t.Errorf("%d worker containers left after burla dev stopped", len(left))
		}
	}()
	cs := workerContainers(t, "default-1")
	if len(cs) != 4 || slices.ContainsFunc(cs, func(c container.Summary) bool { return c.Names[0] == "/burla-leftover-worker" }) {
		t.Fatalf("worker containers %v; want the node's 4, and the leftover gone", cs)
	}
	for _, c := range cs {
		res, err := api.ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		info := res.Container
		if info.Config.Labels["burla.env"] != "default" || info.Config.Labels["burla.cluster"] != "default" {
			t.Errorf("container %s labels %v; want its cluster and environment", c.Names[0], info.Config.Labels)
		}
		hc := info.HostConfig
		if hc.NanoCPUs != 1e9 || hc.Privileged || !hc.ReadonlyRootfs || info.Config.User != "65534:65534" || !slices.Contains(hc.SecurityOpt, "no-new-privileges") {
			t.Errorf("container %s: cpus %d, privileged %v, read-only %v, user %q, security %v; want 1 CPU, hardened",
				c.Names[0], hc.NanoCPUs, hc.Privileged, hc.ReadonlyRootfs, info.Config.User, hc.SecurityOpt)
		}
	}

	in := make([]int, 600) // 600 × 20ms on 4 workers: about 3s
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
			if _, err := api.ContainerKill(ctx, workerContainers(t, "default-1")[0].ID, client.ContainerKillOptions{Signal: "KILL"}); err != nil {
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

// running returns the node's running worker containers and their CPU limits.
func running(t *testing.T, node string) []float64 {
	t.Helper()
	var cpus []float64
	for _, c := range workerContainers(t, node) {
		if c.State != "running" {
			continue
		}
		info, err := api.ContainerInspect(context.Background(), c.ID, client.ContainerInspectOptions{})
		if err != nil {
			continue // gone between list and inspect
		}
		cpus = append(cpus, float64(info.Container.HostConfig.NanoCPUs)/1e9)
	}
	slices.Sort(cpus)
	return cpus
}

// A func_cpu=2 job on a 4-CPU node runs on exactly 2 containers with 2 CPUs each;
// after it, the node is reset to 4 containers of 1 CPU.
func TestFuncCPUResizesWorkers(t *testing.T) {
	if dev == nil {
		t.Skip(skipMsg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	d, err := clustertest.Start(ctx, clustertest.Options{Nodes: 1, CPUs: 4, Runtime: "docker"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		d.Keep = t.Failed()
		if err := d.Stop(); err != nil {
			t.Error(err)
		}
	}()
	in := make([]int, 200) // 200 × 20ms on 2 workers: about 2s
	var during []float64
	for r, err := range burla.Stream(ctx, slow, in, burla.OnCluster(d.Cluster), burla.Spinner(false), burla.OnLog(func(burla.LogLine) {}), burla.FuncCPU(2)) {
		if err != nil {
			t.Fatal(err)
		}
		if r.Index >= 0 && during == nil {
			// The job is running: its containers are resized and the rest stopped.
			deadline := time.Now().Add(5 * time.Second)
			for during = running(t, "default-1"); !slices.Equal(during, []float64{2, 2}) && time.Now().Before(deadline); during = running(t, "default-1") {
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	if !slices.Equal(during, []float64{2, 2}) {
		t.Errorf("during a func_cpu=2 job the node ran containers with CPUs %v; want exactly [2 2]", during)
	}
	deadline := time.Now().Add(time.Minute)
	after := running(t, "default-1")
	for ; !slices.Equal(after, []float64{1, 1, 1, 1}) && time.Now().Before(deadline); after = running(t, "default-1") {
		time.Sleep(50 * time.Millisecond)
	}
	if !slices.Equal(after, []float64{1, 1, 1, 1}) {
		t.Errorf("after the job the node runs containers with CPUs %v; want [1 1 1 1]", after)
	}
}
