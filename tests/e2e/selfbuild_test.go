package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// qemuARM64 runs a linux/arm64 program on this amd64 machine; its child
// processes (the go command) run natively. `make qemu` installs it.
const qemuARM64 = "/usr/bin/qemu-aarch64-static"

// A program built for another platform than the nodes' (here linux/arm64, run
// under qemu, as a Mac's `go run .` would be darwin/arm64) runs its job with no
// option: the SDK builds it for the nodes with the local Go toolchain, says so
// once, and keeps the build under the digest of its sources and settings. Run
// again unchanged it builds nothing; changed by one line it builds again; with
// no toolchain it fails saying what to do instead.
func TestProgramBuildsItselfForTheNodes(t *testing.T) {
	if _, err := os.Stat(qemuARM64); err != nil {
		t.Fatalf("%v: install Debian's qemu-user-static (`make qemu`, as root; `make test` runs it)", err)
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "prog")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile(filepath.Join(repo, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, src, "go.sum", string(sum))
	writeFile(t, src, "go.mod", "module example.com/prog\n\ngo 1.26\n\nrequire github.com/burla-temporal/burla v0.0.0\n\nreplace github.com/burla-temporal/burla => "+repo+"\n")
	main := writeFile(t, src, "main.go", `package main

import (
	"context"
	"fmt"
	"log"
	"runtime"

	burla "github.com/burla-temporal/burla/sdk"
)

var where = burla.Func("where", func(ctx context.Context, x int) (string, error) {
	return fmt.Sprintf("%d on %s/%s", x, runtime.GOOS, runtime.GOARCH), nil
})

func main() {
	burla.Main()
	out, err := burla.RemoteParallelMap(context.Background(), where, []int{1, 2, 3}, burla.Spinner(false))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%q\n", out)
}
`)
	goCache, err := exec.Command("go", "env", "GOCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	// The module's requirements as the SDK's build will see them.
	tidy := exec.Command("go", "mod", "tidy")
	tidy.Dir, tidy.Env = src, append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	if b, err := tidy.CombinedOutput(); err != nil {
		t.Fatalf("go mod tidy: %v\n%s", err, b)
	}
	arm := filepath.Join(dir, "prog-arm64")
	buildARM := func() {
		t.Helper()
		cmd := exec.Command("go", "build", "-o", arm, ".")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build the program for linux/arm64: %v\n%s", err, b)
		}
	}
	cache := filepath.Join(dir, "cache")
	run := func(path string) (stdout, stderr string, err error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, qemuARM64, arm)
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "BURLA_TEMPORAL_ADDRESS="+dev.Addrs.Temporal, "BURLA_STORE_URL="+dev.Addrs.Store,
			"XDG_CACHE_HOME="+cache, "GOCACHE="+strings.TrimSpace(string(goCache)), "GOFLAGS=", "GOWORK=off", "PATH="+path)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err = cmd.Run()
		return o.String(), e.String(), err
	}
	builds := func() []string {
		names, _ := filepath.Glob(filepath.Join(cache, "burla", "programs", "*"))
		return names
	}
	const want = `["1 on linux/amd64" "2 on linux/amd64" "3 on linux/amd64"]`
	said := "this program is linux/arm64 and the cluster's nodes run linux/amd64: "

	buildARM()
	start := time.Now()
	out, errOut, err := run(os.Getenv("PATH"))
	if err != nil || strings.TrimSpace(out) != want {
		t.Fatalf("the arm64 program: %v; printed %q; want %s\n%s", err, out, want, errOut)
	}
	if !strings.Contains(errOut, said+"built example.com/prog for them in ") || strings.Count(errOut, "burla: ") != 1 {
		t.Errorf("the arm64 program said %q; want it to say, once, that it built itself for the nodes", errOut)
	}
	t.Logf("first run, building: %v", time.Since(start).Round(time.Millisecond))
	if n := len(builds()); n != 1 {
		t.Fatalf("%d builds kept; want 1", n)
	}

	start = time.Now()
	out, errOut, err = run(os.Getenv("PATH"))
	if err != nil || strings.TrimSpace(out) != want {
		t.Fatalf("the arm64 program run again: %v; printed %q\n%s", err, out, errOut)
	}
	if !strings.Contains(errOut, said+"shipping the build of it for them made before") {
		t.Errorf("run again unchanged, it said %q; want it to ship the build it made before", errOut)
	}
	t.Logf("second run, unchanged: %v", time.Since(start).Round(time.Millisecond))
	if n := len(builds()); n != 1 {
		t.Errorf("%d builds kept after an unchanged run; want 1", n)
	}

	// One line changed: a new build, of the new sources.
	b, _ := os.ReadFile(main)
	os.WriteFile(main, bytes.Replace(b, []byte(`"%d on %s/%s"`), []byte(`"%d, on %s/%s"`), 1), 0o644)
	buildARM()
	before := shippedBlobs(t)
	out, errOut, err = run(os.Getenv("PATH"))
	if want := strings.ReplaceAll(want, " on ", ", on "); err != nil || strings.TrimSpace(out) != want {
		t.Fatalf("the changed program: %v; printed %q; want %s\n%s", err, out, want, errOut)
	}
	if !strings.Contains(errOut, said+"built ") {
		t.Errorf("changed, it said %q; want a new build", errOut)
	}
	if n := len(builds()); n != 2 {
		t.Errorf("%d builds kept after a change; want 2", n)
	}
	// The nodes ran the changed build, and only its changes were shipped: the
	// store gained a pack and a manifest of at most a tenth of its size.
	var shipped, size int64
	for key, n := range shippedBlobs(t) {
		if _, ok := before[key]; !ok {
			shipped += n
		}
	}
	for _, name := range builds() {
		if fi, err := os.Stat(name); err == nil && fi.ModTime().After(start) {
			size = fi.Size()
		}
	}
	t.Logf("the changed build of %d bytes shipped %d bytes", size, shipped)
	if shipped == 0 || size == 0 || shipped > size/10 {
		t.Errorf("the changed build of %d bytes shipped %d bytes; want some, at most a tenth", size, shipped)
	}

	// No toolchain, and no build of these sources yet.
	os.WriteFile(main, append(b, []byte("\n// changed again\n")...), 0o644)
	_, errOut, err = run("/nonexistent")
	for _, w := range []string{"this program is linux/arm64 and the cluster's nodes run linux/amd64, and building it for them failed",
		`burla.Binary("prog-linux")`, "no Go toolchain on PATH"} {
		if err == nil || !strings.Contains(errOut, w) {
			t.Errorf("with no Go toolchain: %v, %q; want it to fail saying %q", err, errOut, w)
		}
	}
}

// shippedBlobs are the sizes of the store's programs shipped in chunks, their
// manifests and packs, by key.
func shippedBlobs(t *testing.T) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, prefix := range []string{"man-", "pack-"} {
		infos, err := dev.Cluster.Store().List(context.Background(), prefix)
		if err != nil {
			t.Fatal(err)
		}
		for _, info := range infos {
			out[info.Key] = info.Size
		}
	}
	return out
}
