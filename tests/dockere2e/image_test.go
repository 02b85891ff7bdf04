package dockere2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/tests/clustertest"
)

// busyboxImage builds a small local image with a shell (Debian's static busybox),
// since no registry can be pulled from.
func busyboxImage(t *testing.T) string {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("this test needs Debian's busybox-static (make test installs it): %v", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, data := range map[string][]byte{
		"Dockerfile": []byte("FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nENV IMAGE_GREETING=hello-from-the-image\n"),
		"busybox":    bb,
	} {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(data))})
		tw.Write(data)
	}
	tw.Close()
	const tag = "burla-test-busybox:latest"
	resp, err := api.ImageBuild(context.Background(), &buf, client.ImageBuildOptions{Tags: []string{tag}, Remove: true})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.Contains(sc.Text(), `"error"`) {
			t.Fatalf("build %s: %s", tag, sc.Text())
		}
	}
	return tag
}

// Jobs in a user's image: a command (a shell one-liner) and a Go function, each
// run by workers started from the image with the container worker layered in.
func TestJobsInAUserImage(t *testing.T) {
	if dev == nil {
		t.Skip(skipMsg)
	}
	img := busyboxImage(t)
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
	on := []burla.Option{burla.OnCluster(d.Cluster), burla.Spinner(false)}

	var lines []string
	triple := burla.Command(img, "sh", "-c", `read x; echo "tripling $x in $(cat /etc/os-release 2>/dev/null || echo busybox) $IMAGE_GREETING" >&2; echo $((x * 3))`)
	out, err := burla.RemoteParallelMap(ctx, triple, []string{"1", "2", "3"},
		append(on, burla.OnLog(func(l burla.LogLine) { lines = append(lines, l.Text) }))...)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out, []string{"3", "6", "9"}) {
		t.Errorf("command outputs %q; want [3 6 9]", out)
	}
	if !slices.ContainsFunc(lines, func(s string) bool { return strings.HasPrefix(s, "tripling 2 in busybox hello-from-the-image") }) {
		t.Errorf("command logged %q; want its stderr, from inside the busybox image, with the image's own variable", lines)
	}

	got, err := burla.RemoteParallelMap(ctx, tripleGo, []int{1, 2, 3}, append(on, burla.Image(img), burla.OnLog(func(burla.LogLine) {}))...)
	if err != nil || !slices.Equal(got, []int{3, 6, 9}) {
		t.Errorf("Go function in the image: %v, %v; want [3 6 9]", got, err)
	}

	_, err = burla.RemoteParallelMap(ctx, triple, []string{"1"}, append(on, burla.OnLog(func(burla.LogLine) {}))...)
	if err != nil {
		t.Fatalf("a second command job in the same image: %v", err)
	}
	missing := burla.Command("burla-test-no-such-image:latest", "sh")
	if _, err := burla.RemoteParallelMap(ctx, missing, []string{"1"}, on...); !burla.IsKind(err, burla.KindBadImage) || !strings.Contains(err.Error(), "no-such-image") {
		t.Errorf("job in a missing image: %v; want BadImage naming it", err)
	}
}

var tripleGo = burla.Func("tripleGo", func(ctx context.Context, x int) (int, error) { return 3 * x, nil })

// A node keeps warm workers in each environment of the standby spec, one per CPU:
// a job in that environment runs on them as they are, without restarting any.
func TestWarmEnvironment(t *testing.T) {
	if dev == nil {
		t.Skip(skipMsg)
	}
	img := busyboxImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	d, err := clustertest.Start(ctx, clustertest.Options{Nodes: 1, CPUs: 2, Runtime: "docker", Envs: []string{img}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		d.Keep = t.Failed()
		if err := d.Stop(); err != nil {
			t.Error(err)
		}
	}()
	images := func() map[string]string { // running worker container ID → image
		m := map[string]string{}
		for _, c := range workerContainers(t, "default-1") {
			if c.State == "running" {
				m[c.ID] = c.Image
			}
		}
		return m
	}
	before := images()
	envWarm := 0
	for _, image := range before {
		if strings.HasPrefix(image, "burla-env:") {
			envWarm++
		}
	}
	if len(before) != 4 || envWarm != 2 {
		t.Fatalf("warm workers %v; want 2 in the default environment and 2 in %s", before, img)
	}
	quad := burla.Command(img, "sh", "-c", `read x; sleep 0.2; echo $((x * 4))`)
	var during map[string]string
	var outs []string
	for r, err := range burla.Stream(ctx, quad, []string{"1", "2", "3", "4", "5", "6"}, burla.OnCluster(d.Cluster), burla.Spinner(false), burla.OnLog(func(burla.LogLine) {})) {
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, r.Output)
		if during == nil {
			during = images()
		}
	}
	if len(outs) != 6 {
		t.Fatalf("%d outputs; want 6", len(outs))
	}
	if len(during) != 2 {
		t.Errorf("during the job %d workers ran; want the environment's 2", len(during))
	}
	for id, image := range during {
		if before[id] != image || !strings.HasPrefix(image, "burla-env:") {
			t.Errorf("during the job worker %.12s ran %s; want one of the environment's warm workers, not restarted", id, image)
		}
	}
}
