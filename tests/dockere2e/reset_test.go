package dockere2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/burla-temporal/burla/auth"
	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/ship"
	"github.com/burla-temporal/burla/tests/clustertest"
)

// resetTrace is what a job leaves behind on its node, and where it ran.
type resetTrace struct {
	File      string   // a file the job wrote under /tmp
	Exe       string   // the path its program ran from (os.Executable)
	Programs  []string // what the directory of its program holds
	Container string   // the container the call ran in
	Cache     string   // the node's copy of the program, in the node's cache
	Read      map[string]string
}

// resetLeave writes a file under /tmp and reports where it ran, and whether it
// can read the node's cache at cache (the job's input).
var resetLeave = burla.Func("resetLeave", func(ctx context.Context, cache string) (resetTrace, error) {
	f, err := os.CreateTemp("/tmp", "left-by-job-1-")
	if err != nil {
		return resetTrace{}, err
	}
	fmt.Fprintln(f, "tenant A's secret")
	f.Close()
	tr, err := here()
	tr.File, tr.Cache = f.Name(), cache
	tr.Read = tryRead(tr.File, cache, filepath.Dir(cache))
	return tr, err
})

// resetLook reports where it runs and which of the traces of the job before it
// (prev) it can read.
var resetLook = burla.Func("resetLook", func(ctx context.Context, prev resetTrace) (resetTrace, error) {
	tr, err := here()
	tr.Read = tryRead(prev.File, prev.Exe, prev.Cache, filepath.Dir(prev.Cache), filepath.Dir(prev.File))
	return tr, err
})

var containerInMounts = regexp.MustCompile(`containers/([0-9a-f]{64})/`)

// here reports the calling program's path, what its directory holds, and the
// container it runs in (from the container's own files in its mounts: with host
// networking its hostname is the host's).
func here() (resetTrace, error) {
	var tr resetTrace
	exe, err := os.Executable()
	if err != nil {
		return tr, err
	}
	tr.Exe = exe
	entries, err := os.ReadDir(filepath.Dir(exe))
	if err != nil {
		return tr, err
	}
	for _, e := range entries {
		tr.Programs = append(tr.Programs, e.Name())
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return tr, err
	}
	if m := containerInMounts.FindSubmatch(mounts); m != nil {
		tr.Container = string(m[1])
	}
	return tr, nil
}

// tryRead says, for each path, what reading it (or listing it, for a directory)
// gave: "read" or the error.
func tryRead(paths ...string) map[string]string {
	got := map[string]string{}
	for _, p := range paths {
		if p == "" || p == "." {
			continue
		}
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			if _, err := os.ReadDir(p); err != nil {
				got[p] = err.Error()
			} else {
				got[p] = "read"
			}
			continue
		}
		if _, err := os.ReadFile(p); err != nil {
			got[p] = err.Error()
		} else {
			got[p] = "read"
		}
	}
	return got
}

// programDigest is the digest the SDK ships the executable at path under.
func programDigest(t *testing.T, path string) string {
	t.Helper()
	_, digest, err := ship.Digest(path)
	if err != nil {
		t.Fatal(err)
	}
	return digest
}

// otherProgram writes a second program: this test binary with bytes appended, so
// that it runs the same but has a digest of its own, and the next job's program is
// not the last one's.
func otherProgram(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "other-program")
	if err := os.WriteFile(path, append(b, "\nanother program\n"...), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// A node serves one job at a time and is reset between jobs, on a cluster that
// keeps tenants apart by API key: the next job, another tenant's, runs in a new
// container, not even in the one prewarmed with the last tenant's program, finds
// no file the last job wrote, and can read neither the last job's program nor the
// node's program cache; a job sees its own program alone. The next job of the same
// tenant runs in the container prewarmed for it.
func TestNodeResetBetweenJobs(t *testing.T) {
	if dev == nil {
		t.Skip(skipMsg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	keys := filepath.Join(t.TempDir(), "keys.json")
	var acmeKey, globexKey, adminKey string
	for _, k := range []struct {
		key    *string
		role   auth.Role
		tenant string
	}{{&acmeKey, auth.RoleTenant, "acme"}, {&globexKey, auth.RoleTenant, "globex"}, {&adminKey, auth.RoleAdmin, ""}} {
		var err error
		if *k.key, err = auth.Add(keys, k.role, k.tenant); err != nil {
			t.Fatal(err)
		}
	}
	// One CPU, one worker container: without a reset, the next job would run in
	// the container the last one did.
	d, err := clustertest.Start(ctx, clustertest.Options{Nodes: 1, CPUs: 1, Runtime: "docker", Keys: keys, APIKey: acmeKey})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		d.Keep = t.Failed()
		if err := d.Stop(); err != nil {
			t.Error(err)
		}
	}()
	globex, err := d.Dial(ctx, globexKey)
	if err != nil {
		t.Fatal(err)
	}
	defer globex.Close()
	admin, err := d.Dial(ctx, adminKey)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	quiet := []burla.Option{burla.Spinner(false), burla.OnLog(func(burla.LogLine) {})}

	// replaced waits for a running worker container other than old and returns it.
	replaced := func(old string, since time.Time) string {
		t.Helper()
		for time.Since(since) < time.Minute {
			for _, c := range workerContainers(t, "default-1") {
				if c.State == "running" && c.ID != old {
					t.Logf("a new worker container %.12s runs %v after the job returned to its caller", c.ID, time.Since(since).Round(time.Millisecond))
					return c.ID
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Errorf("container %.12s was not replaced within a minute of its job's end", old)
		return ""
	}

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	digest1 := programDigest(t, exe)
	cache := filepath.Join(d.Dir, "data", "nodes", "default-1", "bin")
	out, err := burla.RemoteParallelMap(ctx, resetLeave, []string{filepath.Join(cache, digest1)}, append(quiet, burla.OnCluster(d.Cluster))...)
	if err != nil {
		t.Fatal(err)
	}
	ended := time.Now()
	first := out[0]
	t.Logf("job 1 (acme) ran %s in container %.12s and left %s", first.Exe, first.Container, first.File)
	if first.Container == "" {
		t.Fatalf("job 1 cannot tell the container it ran in (%+v)", first)
	}
	// The node fetched job 1's program into its cache, which job 1 cannot read.
	if _, err := os.Stat(first.Cache); err != nil {
		t.Fatalf("job 1's program is not in the node's cache where this test looks: %v", err)
	}
	if first.Read[first.File] != "read" {
		t.Fatalf("job 1 could not read its own file back: %v", first.Read)
	}
	for _, p := range []string{first.Cache, filepath.Dir(first.Cache)} {
		if first.Read[p] == "read" {
			t.Errorf("job 1 read the node's cache at %s", p)
		}
	}
	if !slices.Equal(first.Programs, []string{digest1}) {
		t.Errorf("job 1's program directory holds %v; want its own program alone, %s", first.Programs, digest1[:12])
	}
	// The container that ran job 1 is replaced, in the background, as it ends; the
	// new one prewarms acme's program.
	warmForAcme := replaced(first.Container, ended)

	// The next job: globex's, with another program.
	other := otherProgram(t)
	digest2 := programDigest(t, other)
	got, err := burla.RemoteParallelMap(ctx, resetLook, []resetTrace{first}, append(quiet, burla.OnCluster(globex), burla.Binary(other))...)
	if err != nil {
		t.Fatal(err)
	}
	ended = time.Now()
	second := got[0]
	t.Logf("job 2 (globex) ran %s in container %.12s and read %v", second.Exe, second.Container, second.Read)
	switch second.Container {
	case "", first.Container:
		t.Errorf("job 2 ran in container %q; want a new one, not job 1's", second.Container)
	case warmForAcme:
		t.Errorf("job 2, globex's, ran in container %.12s, prewarmed with acme's program", second.Container)
	}
	if _, err := api.ContainerInspect(ctx, first.Container, client.ContainerInspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Errorf("job 1's container %.12s is still there after job 2 (%v)", first.Container, err)
	}
	for _, p := range []string{first.File, filepath.Dir(first.File), first.Exe, first.Cache, filepath.Dir(first.Cache)} {
		switch r, ok := second.Read[p]; {
		case !ok:
			t.Errorf("job 2 did not try %s", p)
		case r == "read" && p == filepath.Dir(first.File):
			// /tmp itself is there, and job 1's file in it is checked on its own.
		case r == "read":
			t.Errorf("job 2 read job 1's %s", p)
		}
	}
	if !slices.Equal(second.Programs, []string{digest2}) {
		t.Errorf("job 2's program directory holds %v; want its own program alone, %s (not job 1's %s)", second.Programs, digest2[:12], digest1[:12])
	}

	// globex's next job runs in the container prewarmed for it.
	warmForGlobex := replaced(second.Container, ended)
	got, err = burla.RemoteParallelMap(ctx, resetLook, []resetTrace{second}, append(quiet, burla.OnCluster(globex), burla.Binary(other))...)
	if err != nil {
		t.Fatal(err)
	}
	if third := got[0]; third.Container != warmForGlobex {
		t.Errorf("job 3, globex's again, ran in container %.12s; want %.12s, prewarmed with its program", third.Container, warmForGlobex)
	}

	// How long the node's resets took, as the node measures them.
	deadline := time.Now().Add(30 * time.Second)
	for {
		sum, count := resetSeconds(t, admin)
		if count >= 3 || time.Now().After(deadline) {
			if count == 0 {
				t.Fatal("the node measured no reset")
			}
			t.Logf("the node reset %v times, in %v on average (burla_node_reset_seconds)", count,
				time.Duration(sum/count*float64(time.Second)).Round(time.Millisecond))
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// resetSeconds reads burla_node_reset_seconds' sum and count from the metrics of
// the cluster's one node.
func resetSeconds(t *testing.T, c *burla.Cluster) (sum, count float64) {
	t.Helper()
	nodes, err := c.Store().ListNodes(context.Background())
	if err != nil || len(nodes) != 1 || nodes[0].Metrics == "" {
		t.Fatalf("nodes %+v, %v; want one with metrics", nodes, err)
	}
	resp, err := http.Get(nodes[0].Metrics)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		v, _ := strconv.ParseFloat(value, 64)
		switch name {
		case "burla_node_reset_seconds_sum":
			sum = v
		case "burla_node_reset_seconds_count":
			count = v
		}
	}
	return sum, count
}
