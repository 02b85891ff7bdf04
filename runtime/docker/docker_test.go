package docker

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/burla-temporal/burla/runtime"
)

// shellImage builds an image whose entry point runs its command as a shell script
// (Debian's static busybox; no registry is pulled from), laid out as the node image
// is: a file at /burla.
func shellImage(t *testing.T, api *client.Client) string {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("no /bin/busybox to build a test image with: %v", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, data := range map[string][]byte{
		"Dockerfile": []byte("FROM scratch\nCOPY busybox /bin/busybox\nCOPY busybox /burla\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nENTRYPOINT [\"/bin/sh\", \"-c\"]\n"),
		"busybox":    bb,
	} {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(data))})
		tw.Write(data)
	}
	tw.Close()
	const tag = "burla-test-runtime-shell:2"
	resp, err := api.ImageBuild(context.Background(), &buf, client.ImageBuildOptions{Tags: []string{tag}, Remove: true})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if bytes.Contains(out, []byte(`"error"`)) {
		t.Fatalf("build %s: %s", tag, out)
	}
	return tag
}

// workerScript says whether the container's /tmp is fresh, leaves a file there,
// then answers each line on stdin: "ls" lists the program directory, anything else
// is a path whose first line it prints (or "unreadable").
const workerScript = `if [ -e /tmp/left ]; then echo dirty; else echo fresh; fi; echo x > /tmp/left
while read p; do
  if [ "$p" = ls ]; then echo $(ls ` + ProgramDir + `); else head -n 1 "$p" 2>/dev/null || echo unreadable; fi
done`

// A worker container sees no file of the node's but the one program it was given,
// read-only; a worker started after it in the same slot is a new container with a
// fresh /tmp; and each worker's directory on the node goes with its container.
func TestWorkerSeesOnlyItsProgram(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	api, err := client.New(client.FromEnv)
	if err == nil {
		_, err = api.Ping(ctx, client.PingOptions{})
	}
	if err != nil {
		t.Skipf("no Docker engine: %v", err)
	}
	img := shellImage(t, api)
	rt, err := New(ctx, func(context.Context) (string, error) { return img, nil })
	if err != nil {
		t.Fatal(err)
	}
	// The cache is readable by all here, as an older agent's was: the container
	// must not reach it, whatever its mode (the agent makes it 0700 too).
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	cache := filepath.Join(dir, "bin")
	os.Mkdir(cache, 0o755)
	progA, progB := filepath.Join(cache, "aaaa"), filepath.Join(cache, "bbbb")
	os.WriteFile(progA, []byte("program a\n"), 0o755)
	os.WriteFile(progB, []byte("program b\n"), 0o755)
	spec := runtime.WorkerSpec{Cluster: "test", Node: "runtime-test", CPUs: 1, Dir: filepath.Join(dir, "workers"),
		Argv: []string{"burla", workerScript}}
	var ids []string
	for i := range 2 {
		w, err := rt.Start(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		info, err := rt.api.ContainerInspect(ctx, ContainerName(spec.Node, spec.Slot), client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, info.Container.ID)
		out := bufio.NewScanner(w.Stdout())
		ask := func(line string) string {
			t.Helper()
			if _, err := io.WriteString(w.Stdin(), line+"\n"); err != nil {
				t.Fatal(err)
			}
			if !out.Scan() {
				t.Fatalf("worker ended: %v", out.Err())
			}
			return out.Text()
		}
		if !out.Scan() || out.Text() != "fresh" {
			t.Fatalf("worker %d: /tmp is %q; want fresh", i, out.Text())
		}
		a, err := w.Provide(progA)
		if err != nil {
			t.Fatal(err)
		}
		if got := ask(a); got != "program a" {
			t.Errorf("worker %d reads its program %s as %q; want program a", i, a, got)
		}
		for _, p := range []string{progA, progB, cache, spec.Dir} {
			if got := ask(p); got != "unreadable" {
				t.Errorf("worker %d reads the node's %s: %q", i, p, got)
			}
		}
		if _, err := w.Provide(progB); err != nil {
			t.Fatal(err)
		}
		if got := ask("ls"); got != "bbbb" {
			t.Errorf("worker %d's program directory holds %q; want only the program it was given last", i, got)
		}
		if got := ask(a); got != "unreadable" {
			t.Errorf("worker %d still reads the program it was given first: %q", i, got)
		}
		w.Stdin().Close()
		select {
		case <-w.Done():
		case <-ctx.Done():
			t.Fatal("worker did not exit when its stdin closed")
		}
		if entries, _ := os.ReadDir(spec.Dir); len(entries) != 0 {
			t.Errorf("worker %d's directory left on the node: %v", i, entries)
		}
		if _, err := rt.api.ContainerInspect(ctx, info.Container.ID, client.ContainerInspectOptions{}); !cerrdefs.IsNotFound(err) {
			t.Errorf("worker %d's container left after it exited: %v", i, err)
		}
	}
	if ids[0] == ids[1] {
		t.Errorf("two workers in one container %s", ids[0])
	}
	if _, err := os.Stat(progA); errors.Is(err, fs.ErrNotExist) {
		t.Error("the cache's program went with the worker")
	}
	_ = rt.Cleanup(context.Background(), spec.Cluster, spec.Node)
}
