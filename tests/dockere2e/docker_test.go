// Package dockere2e runs jobs on a `burla dev` cluster whose nodes are containers on
// the local Docker engine (the docker provider). Run it with CGO_ENABLED=0: the test
// binary is the program the nodes run, FROM scratch.
package dockere2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/burla-temporal/burla/execfile"
	"github.com/burla-temporal/burla/provider/docker"
	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/tests/clustertest"
)

var triple = burla.Func("triple", func(ctx context.Context, x int) (int, error) {
	fmt.Println("in a container:", x)
	return 3 * x, nil
})

var (
	dev     *clustertest.Dev
	api     *client.Client
	skipMsg string
)

func TestMain(m *testing.M) {
	burla.Main()
	var err error
	api, err = client.New(client.FromEnv)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = api.Ping(ctx, client.PingOptions{})
		cancel()
	}
	if err != nil {
		skipMsg = fmt.Sprintf("no Docker engine: %v", err)
		fmt.Fprintf(os.Stderr, "\n*** SKIPPING DOCKER END-TO-END TESTS: %s ***\n\n", skipMsg)
		os.Exit(m.Run())
	}
	if exe, _ := os.Executable(); isDynamic(exe) {
		fmt.Fprintln(os.Stderr, "dockere2e: the test binary is dynamically linked and cannot run FROM scratch; run with CGO_ENABLED=0")
		os.Exit(1)
	}
	dev, err = clustertest.Start(context.Background(), clustertest.Options{Nodes: 1, CPUs: 2, Provider: "docker"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "dockere2e: start cluster:", err)
		os.Exit(1)
	}
	code := m.Run()
	dev.Keep = code != 0
	if err := dev.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "dockere2e: stop cluster:", err)
		code = 1
	}
	if left := nodeContainers(); len(left) != 0 {
		fmt.Fprintf(os.Stderr, "dockere2e: node containers left after burla dev stopped: %v\n", left)
		code = 1
	}
	os.Exit(code)
}

func nodeContainers() []string {
	cs, err := api.ContainerList(context.Background(), client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", docker.LabelCluster+"=default")})
	if err != nil {
		return []string{err.Error()}
	}
	var names []string
	for _, c := range cs.Items {
		names = append(names, c.Names...)
	}
	return names
}

func TestJobOnDockerNodes(t *testing.T) {
	if dev == nil {
		t.Skip(skipMsg)
	}
	if running := nodeContainers(); len(running) != 1 {
		t.Fatalf("node containers %v; want the one standby node", running)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var lines []burla.LogLine
	in := make([]int, 200)
	for i := range in {
		in[i] = i
	}
	out, err := burla.RemoteParallelMap(ctx, triple, in, burla.OnCluster(dev.Cluster), burla.Spinner(false),
		burla.OnLog(func(l burla.LogLine) { lines = append(lines, l) }))
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range out {
		if o != 3*i {
			t.Fatalf("output %d = %d; want %d", i, o, 3*i)
		}
	}
	if len(lines) != len(in) || !slices.ContainsFunc(lines, func(l burla.LogLine) bool { return l.Text == "in a container: 7" && l.Index == 7 }) {
		t.Errorf("%d lines printed; want one per input, attributed", len(lines))
	}
}

// dockerImage is the node image the cluster's docker code builds from its burla binary.
func dockerImage(ctx context.Context) (string, error) {
	p := docker.NewWithAPI(api, docker.Config{Executable: dev.Binary})
	return p.Image(ctx)
}

// isDynamic reports whether path cannot run FROM scratch (or is no executable at all).
func isDynamic(path string) bool {
	dyn, err := execfile.Dynamic(path)
	return err != nil || dyn
}
