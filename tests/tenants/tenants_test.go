// Package tenants runs a `burla dev --keys` cluster, which admits callers by API
// key and keeps tenants apart, and checks each refusal: a tenant cannot list,
// attach to, cancel, or read the results or logs of another tenant's job, through
// the SDK, through Temporal and the store directly, or through the CLI.
package tenants

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/burla-temporal/burla/auth"
	"github.com/burla-temporal/burla/job"
	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/status"
	"github.com/burla-temporal/burla/store"
	"github.com/burla-temporal/burla/tests/clustertest"
)

var (
	dev                  *clustertest.Dev
	acmeKey, otherKey    string
	adminKey             string
	acme, other, admin   *burla.Cluster
	keysFile, clusterDir string
)

func TestMain(m *testing.M) {
	burla.Main()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "burla-tenants-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	clusterDir, keysFile = dir, filepath.Join(dir, "keys.json")
	for _, k := range []struct {
		key          *string
		role         auth.Role
		tenant, name string
	}{{&acmeKey, auth.RoleTenant, "acme", "acme"}, {&otherKey, auth.RoleTenant, "other", "other"}, {&adminKey, auth.RoleAdmin, "", "admin"}} {
		if *k.key, err = auth.Add(keysFile, k.role, k.tenant); err != nil {
			fmt.Fprintln(os.Stderr, "tenants: add key:", err)
			return 1
		}
	}
	dev, err = clustertest.Start(ctx, clustertest.Options{Nodes: 1, CPUs: 2, Dir: dir, Keys: keysFile, APIKey: acmeKey})
	if err != nil {
		fmt.Fprintln(os.Stderr, "tenants: start cluster:", err)
		return 1
	}
	acme = dev.Cluster
	if other, err = dev.Dial(ctx, otherKey); err == nil {
		admin, err = dev.Dial(ctx, adminKey)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tenants: dial:", err)
		dev.Stop()
		return 1
	}
	code := m.Run()
	other.Close()
	admin.Close()
	if err := dev.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "tenants: stop cluster:", err)
		code = 1
	}
	if code == 0 {
		os.RemoveAll(dir)
	} else {
		fmt.Fprintf(os.Stderr, "tenants: cluster state kept in %s\n", dir)
	}
	return code
}

var (
	double = burla.Func("double", func(ctx context.Context, x int) (int, error) {
		fmt.Println("doubling", x)
		return 2 * x, nil
	})
	// slow holds its calls until the file named by its input exists, so that a
	// job stays running while another tenant tries to reach it.
	slow = burla.Func("slow", func(ctx context.Context, gate string) (string, error) {
		fmt.Println("waiting for", gate)
		for {
			if _, err := os.Stat(gate); err == nil {
				return "done", nil
			}
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
)

func TestNoKeyNoEntry(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	unknown, err := auth.NewKey(auth.RoleTenant, "acme") // well formed, not in the file
	if err != nil {
		t.Fatal(err)
	}
	for name, key := range map[string]string{"no key": "", "unknown key": unknown} {
		_, err := dev.Dial(ctx, key)
		var be *burla.Error
		if !errors.As(err, &be) || be.Kind != burla.KindUnauthorized {
			t.Errorf("%s: Dial = %v, want an error of kind Unauthorized", name, err)
		}
	}
	// The store refuses too, on its own: without a key, with an unknown one, and
	// with a tenant's key used to enter another tenant's account.
	for name, opts := range map[string][]nats.Option{
		"no key":                     nil,
		"unknown key":                {nats.Token(unknown)},
		"acme's key as tenant other": {nats.UserInfo("other", acmeKey)},
	} {
		nc, err := nats.Connect(dev.Addrs.Store, opts...)
		if err == nil {
			nc.Close()
			t.Errorf("NATS with %s: connected", name)
		} else if !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("NATS with %s: %v, want an authorization violation", name, err)
		}
	}
}

func TestTenantsAreApart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	gate := filepath.Join(clustertest.OpenDir(t), "gate")
	j, err := burla.Submit(ctx, slow, []string{gate, gate}, burla.OnCluster(acme), burla.Detach(), burla.Spinner(false),
		burla.OnLog(func(burla.LogLine) {}))
	if err != nil {
		t.Fatal(err)
	}
	id := j.ID()
	if job.TenantOf(id) != "acme" || !strings.HasPrefix(id, "j-acme-") {
		t.Fatalf("acme's job ID %q does not name its tenant", id)
	}
	// The job runs: both calls have printed.
	waitFor(t, ctx, "acme's job to print its two lines", func() bool { return len(logs(t, ctx, acme.Store(), id)) == 2 })

	t.Run("list", func(t *testing.T) {
		if !slices.Contains(listed(t, ctx, acme, status.Filter{}), id) {
			t.Errorf("acme does not see its own job %s", id)
		}
		if !slices.Contains(listed(t, ctx, admin, status.Filter{Tenant: "acme"}), id) {
			t.Errorf("the admin does not see acme's job %s", id)
		}
		for _, f := range []status.Filter{{}, {Tenant: "acme"}, {Function: "slow"}} {
			if got := listed(t, ctx, other, f); slices.Contains(got, id) {
				t.Errorf("other lists acme's job with filter %+v: %v", f, got)
			}
		}
		// A query that tries to close the parentheses around it.
		_, err := other.Temporal().ListWorkflow(ctx, listRequest("WorkflowId = 'x') OR (BurlaTenant = 'acme'"))
		if !isDenied(err) {
			t.Errorf("a query escaping its tenant clause: %v, want permission denied", err)
		}
	})
	t.Run("attach", func(t *testing.T) {
		_, err := burla.Attach[string](ctx, id, burla.OnCluster(other))
		var be *burla.Error
		if !errors.As(err, &be) || be.Kind != burla.KindUnauthorized {
			t.Errorf("other attaches to acme's job: %v, want an error of kind Unauthorized", err)
		}
		// Past the SDK: Temporal will not describe the job or give its history.
		if _, err := other.Temporal().DescribeWorkflowExecution(ctx, id, ""); !isDenied(err) {
			t.Errorf("other describes acme's job: %v, want permission denied", err)
		}
		it := other.Temporal().GetWorkflowHistory(ctx, id, "", false, 0)
		if _, err := it.Next(); !isDenied(err) {
			t.Errorf("other reads acme's job's history: %v, want permission denied", err)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		if err := other.Temporal().CancelWorkflow(ctx, id, ""); !isDenied(err) {
			t.Errorf("other cancels acme's job: %v, want permission denied", err)
		}
		if err := other.Temporal().TerminateWorkflow(ctx, id, "", "mine now"); !isDenied(err) {
			t.Errorf("other terminates acme's job: %v, want permission denied", err)
		}
		if err := other.Temporal().SignalWorkflow(ctx, id, "", "node-lost", nil); !isDenied(err) {
			t.Errorf("other signals acme's job: %v, want permission denied", err)
		}
		// Nor may it start a job under an ID of acme's, or run a cluster.
		_, err := other.Temporal().ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: job.NewID(time.Now(), "acme"), TaskQueue: "burla-control"}, "JobWorkflow")
		if !isDenied(err) {
			t.Errorf("other starts a job under acme's name: %v, want permission denied", err)
		}
		_, err = other.Temporal().ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "burla-cluster-mine", TaskQueue: "burla-control"}, "ClusterWorkflow")
		if !isDenied(err) {
			t.Errorf("other starts a cluster: %v, want permission denied", err)
		}
	})
	t.Run("results and logs", func(t *testing.T) {
		if _, err := other.Store().Job(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("other reads acme's job record: %v, want not found", err)
		}
		if got := logs(t, ctx, other.Store(), id); len(got) != 0 {
			t.Errorf("other reads acme's logs: %q", got)
		}
		if got := logs(t, ctx, admin.Store(), id); len(got) != 2 {
			t.Errorf("the admin reads %d of acme's 2 lines", len(got))
		}
	})
	t.Run("CLI", func(t *testing.T) {
		for _, args := range [][]string{{"jobs", "show", id}, {"jobs", "logs", id}, {"jobs", "cancel", id}} {
			out, code := cli(t, otherKey, args...)
			if code != 5 {
				t.Errorf("burla %s with other's key: exit %d, want 5:\n%s", strings.Join(args, " "), code, out)
			}
		}
		out, code := cli(t, otherKey, "jobs", "ls", "--json")
		if code != 0 || strings.Contains(out, id) {
			t.Errorf("burla jobs ls with other's key: exit %d, lists acme's job:\n%s", code, out)
		}
		if out, code := cli(t, acmeKey, "jobs", "show", "--json", id); code != 0 || !strings.Contains(out, id) {
			t.Errorf("burla jobs show with acme's key: exit %d:\n%s", code, out)
		}
	})

	t.Run("dashboard", func(t *testing.T) {
		for _, c := range []struct {
			key, path string
			code      int
		}{
			{"", "/api/jobs", http.StatusUnauthorized},
			{"bk_tenant_acme_nonsense", "/api/jobs", http.StatusUnauthorized},
			{otherKey, "/api/jobs/" + id, http.StatusForbidden},
			{otherKey, "/api/jobs/" + id + "/logs", http.StatusForbidden},
			{acmeKey, "/api/jobs/" + id, http.StatusOK},
			{adminKey, "/api/jobs/" + id, http.StatusOK},
		} {
			if code, body := get(t, c.key, c.path); code != c.code {
				t.Errorf("GET %s with key %.16s…: %d, want %d: %s", c.path, c.key, code, c.code, body)
			}
		}
		if code, body := get(t, otherKey, "/api/jobs"); code != http.StatusOK || strings.Contains(body, id) {
			t.Errorf("other's job list: %d, has acme's job: %s", code, body)
		}
		if code, body := get(t, acmeKey, "/api/jobs"); code != http.StatusOK || !strings.Contains(body, id) {
			t.Errorf("acme's job list: %d, lacks its job: %s", code, body)
		}
	})

	// None of it touched the job: let it finish, and read its results as acme.
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	outs, err := j.Outputs(ctx)
	if err != nil || len(outs) != 2 || outs[0] != "done" {
		t.Fatalf("acme's job: %q, %v", outs, err)
	}
	if got := results(t, ctx, other.Store(), id); got != 0 {
		t.Errorf("other reads %d of acme's results", got)
	}
	if got := results(t, ctx, acme.Store(), id); got != 2 {
		t.Errorf("acme reads %d of its 2 results", got)
	}
}

// TestEachTenantRuns checks that both tenants' jobs run, on the same nodes, one
// after the other.
func TestEachTenantRuns(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, c := range []*burla.Cluster{acme, other, acme} {
		var lines atomic.Int64
		outs, err := burla.RemoteParallelMap(ctx, double, []int{1, 2, 3}, burla.OnCluster(c), burla.Spinner(false),
			burla.OnLog(func(burla.LogLine) { lines.Add(1) }))
		if err != nil || !slices.Equal(outs, []int{2, 4, 6}) || lines.Load() != 3 {
			t.Fatalf("tenant %s: %v, %v, %d lines", c.Tenant(), outs, err, lines.Load())
		}
	}
}

func listed(t *testing.T, ctx context.Context, c *burla.Cluster, f status.Filter) []string {
	t.Helper()
	jobs, err := status.List(ctx, c.Temporal(), f)
	if err != nil {
		t.Fatalf("list as %s: %v", c.Tenant(), err)
	}
	var ids []string
	for _, j := range jobs {
		ids = append(ids, j.ID)
	}
	return ids
}

func logs(t *testing.T, ctx context.Context, st store.Store, id string) []string {
	t.Helper()
	var got []string
	w, err := st.WatchLogs(ctx, id, func(ls []store.LogLine) {
		for _, l := range ls {
			got = append(got, l.Text)
		}
	})
	if err != nil {
		t.Fatalf("watch logs: %v", err)
	}
	defer w.Close()
	if err := w.Sync(ctx); err != nil {
		t.Fatalf("watch logs: %v", err)
	}
	return got
}

func results(t *testing.T, ctx context.Context, st store.Store, id string) int {
	t.Helper()
	n := 0
	w, err := st.WatchResults(ctx, id, func(rs []store.Result) { n += len(rs) })
	if err != nil {
		t.Fatalf("watch results: %v", err)
	}
	defer w.Close()
	if err := w.Sync(ctx); err != nil {
		t.Fatalf("watch results: %v", err)
	}
	return n
}

func listRequest(q string) *workflowservice.ListWorkflowExecutionsRequest {
	return &workflowservice.ListWorkflowExecutionsRequest{Query: q}
}

func isDenied(err error) bool {
	var denied *serviceerror.PermissionDenied
	return errors.As(err, &denied)
}

func waitFor(t *testing.T, ctx context.Context, what string, ok func() bool) {
	t.Helper()
	for !ok() {
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting for %s", what)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// get fetches path from the dashboard with key and returns the status and body.
func get(t *testing.T, key, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", dev.Addrs.Dashboard+path, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, string(body)
}

// cli runs the burla binary with key and returns its output and exit status.
func cli(t *testing.T, key string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(dev.Binary, args...)
	cmd.Env = append(auth.ChildEnv(os.Environ(), key),
		"BURLA_TEMPORAL_ADDRESS="+dev.Addrs.Temporal, "BURLA_NAMESPACE="+dev.Addrs.Namespace, "BURLA_STORE_URL="+dev.Addrs.Store)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("burla %v: %v", args, err)
	}
	return string(out), cmd.ProcessState.ExitCode()
}
