package docker_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/burla-temporal/burla/provider"
	"github.com/burla-temporal/burla/provider/docker"
)

// engine returns a Docker client, or skips loudly when no engine can be reached:
// .ci/run installs and starts one, so a skip there is a CI failure to look into.
func engine(t *testing.T) {
	t.Helper()
	api, err := client.New(client.FromEnv)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = api.Ping(ctx, client.PingOptions{})
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "\n*** SKIPPING DOCKER TESTS: no Docker engine (%v) ***\n\n", err)
		t.Skipf("no Docker engine: %v", err)
	}
}

func api(t *testing.T) *client.Client {
	t.Helper()
	c, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func buildBurla(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "burla")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/burla")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(out)))
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build burla: %v\n%s", err, out)
	}
	return bin
}

func TestProviderLifecycle(t *testing.T) {
	engine(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p, err := docker.New(ctx, docker.Config{Executable: buildBurla(t),
		// Nothing listens here: the agent exits, which is fine for this test of the
		// container's lifecycle.
		TemporalAddress: "127.0.0.1:1", Namespace: "default", StoreURL: "nats://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	cluster := fmt.Sprintf("t%d", time.Now().UnixNano()%1e9)
	t.Cleanup(func() { _ = p.RemoveAll(context.Background(), cluster) })
	n := provider.NodeSpec{ID: cluster + "-1", Cluster: cluster, CPUs: 1, RAMMB: 256}
	for range 2 { // the second create is a retry, and must not make a second node
		if err := p.Create(ctx, n); err != nil {
			t.Fatalf("Create: %v", err)
		}
	}
	ids, err := p.List(ctx, cluster)
	if err != nil || !slices.Equal(ids, []string{n.ID}) {
		t.Fatalf("List = %v, %v; want [%s]", ids, err, n.ID)
	}
	// The node's agent is root with the few capabilities it needs, not Docker's
	// default set (NET_RAW, on the host's network, would read its loopback).
	info, err := api(t).ContainerInspect(ctx, "burla-node-"+n.ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hc := info.Container.HostConfig
	// The engine names them CAP_X, sorted.
	added := make([]string, len(hc.CapAdd))
	for i, c := range hc.CapAdd {
		added[i] = strings.TrimPrefix(c, "CAP_")
	}
	slices.Sort(added)
	want := slices.Sorted(slices.Values(docker.NodeCapabilities))
	if !slices.Equal(hc.CapDrop, []string{"ALL"}) || !slices.Equal(added, want) || hc.Privileged ||
		!hc.ReadonlyRootfs || !slices.Contains(hc.SecurityOpt, "no-new-privileges") {
		t.Errorf("node container: cap drop %v, cap add %v, privileged %v, read-only %v, security %v; want every capability dropped but %v",
			hc.CapDrop, hc.CapAdd, hc.Privileged, hc.ReadonlyRootfs, hc.SecurityOpt, docker.NodeCapabilities)
	}
	for range 2 {
		if err := p.Delete(ctx, n); err != nil {
			t.Fatalf("Delete: %v", err)
		}
	}
	if ids, err := p.List(ctx, cluster); err != nil || len(ids) != 0 {
		t.Fatalf("List after Delete = %v, %v; want none", ids, err)
	}
}

func TestProviderRefusesDynamicBinary(t *testing.T) {
	engine(t)
	p, err := docker.New(context.Background(), docker.Config{Executable: "/bin/ls"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Image(context.Background()); err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
		t.Fatalf("Image from a dynamic binary: %v; want a refusal naming CGO_ENABLED=0", err)
	}
}
