// Package hostile is a hostile tenant. On a `burla dev --keys` cluster shared by
// two tenants, acme and evil, evil's own programs try every way across the
// tenant boundary that a tenant has: from its functions running on the nodes (the
// machine's listening ports without a key, other processes' environments and
// memory, the cluster's files, its own environment's credentials), and from its
// client (jobs that claim acme's job, chunks that name acme's blobs, signals that
// grant nodes). Each attempt must be refused, with nothing of acme's read,
// changed or held: acme's job, running all along, ends with every result.
//
// It runs under the process runtime, and under the docker runtime where a Docker
// engine answers.
package hostile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	dockerclient "github.com/moby/moby/client"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/burla-temporal/burla/auth"
	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/job"
	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/ship"
	"github.com/burla-temporal/burla/store"
	"github.com/burla-temporal/burla/store/natsstore"
	"github.com/burla-temporal/burla/tests/clustertest"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestMain(m *testing.M) {
	burla.Main()
	os.Exit(m.Run())
}

// acmeSecret is in acme's job's environment; evil must never see it.
const acmeSecret = "acme-secret-7f3a9c"

var (
	// hold keeps its calls running until something listens at the address its
	// input names: a port on loopback, which workers reach in either runtime (a
	// file would not be in a container).
	hold = burla.Func("hold", func(ctx context.Context, gate string) (string, error) {
		for {
			if c, err := net.DialTimeout("tcp", gate, time.Second); err == nil {
				c.Close()
				return os.Getenv("ACME_SECRET"), nil
			}
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	// raw returns its input as it was loaded: evil's chunks make it one of acme's blobs.
	raw = burla.Func("raw", func(ctx context.Context, in json.RawMessage) (string, error) {
		return string(in), nil
	})
)

// keyed is a cluster shared by acme and evil.
type keyed struct {
	dev        *clustertest.Dev
	acme, evil *burla.Cluster
	// admin is the operator's, who knows the nodes' names: an attacker would
	// guess them, and the attacks are aimed at the real ones.
	admin *burla.Cluster
}

func start(t *testing.T, runtime string) *keyed {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// The cluster's directory is open to all, as a home directory often is: what
	// keeps its data from tenants' code is the data's own modes.
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	keys := filepath.Join(dir, "keys.json")
	acmeKey, err := auth.Add(keys, auth.RoleTenant, "acme")
	if err != nil {
		t.Fatal(err)
	}
	evilKey, err := auth.Add(keys, auth.RoleTenant, "evil")
	if err != nil {
		t.Fatal(err)
	}
	adminKey, err := auth.Add(keys, auth.RoleAdmin, "")
	if err != nil {
		t.Fatal(err)
	}
	// Two nodes: acme's job holds one while evil's run on the other, on the same
	// machine. (A node serves one job at a time.)
	dev, err := clustertest.Start(ctx, clustertest.Options{Nodes: 2, CPUs: 2, Dir: dir, Keys: keys, APIKey: acmeKey, Runtime: runtime})
	if err != nil {
		t.Fatal(err)
	}
	k := &keyed{dev: dev, acme: dev.Cluster}
	t.Cleanup(func() {
		for _, c := range []*burla.Cluster{k.evil, k.admin} {
			if c != nil {
				c.Close()
			}
		}
		if err := dev.Stop(); err != nil {
			t.Errorf("stop the cluster: %v", err)
		}
		if t.Failed() {
			t.Logf("burla dev's log:\n%s", dev.Log())
		}
	})
	if k.evil, err = dev.Dial(ctx, evilKey); err != nil {
		t.Fatal(err)
	}
	if k.admin, err = dev.Dial(ctx, adminKey); err != nil {
		t.Fatal(err)
	}
	return k
}

func TestHostileTenant(t *testing.T) {
	for _, rt := range []string{"process", "docker"} {
		t.Run(rt, func(t *testing.T) {
			if rt == "docker" {
				if err := dockerAnswers(); err != nil {
					t.Skipf("no Docker engine (%v): the docker runtime's attacks do not run", err)
				}
			}
			attack(t, start(t, rt))
		})
	}
}

func attack(t *testing.T, k *keyed) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// Acme's job runs throughout, with a secret in its environment.
	gate, open := newGate(t)
	acmeJob, err := burla.Submit(ctx, hold, []string{gate}, burla.OnCluster(k.acme), burla.Detach(), burla.Spinner(false),
		burla.Env(map[string]string{"ACME_SECRET": acmeSecret}), burla.OnLog(func(burla.LogLine) {}))
	if err != nil {
		t.Fatal(err)
	}
	acmeID := acmeJob.ID()
	waitRunning(t, ctx, k.acme, acmeID)

	t.Run("from a node", func(t *testing.T) { fromANode(t, ctx, k) })
	t.Run("a job under acme's ID", func(t *testing.T) { claimJob(t, ctx, k, acmeID) })
	t.Run("chunks naming acme's blobs", func(t *testing.T) { forgeChunks(t, ctx, k, acmeID) })
	t.Run("signals", func(t *testing.T) { signal(t, ctx, k, acmeID) })
	t.Run("grants", func(t *testing.T) { forgeGrants(t, ctx, k) })
	t.Run("acme's program", func(t *testing.T) { readProgram(t, ctx, k) })

	// None of it touched acme's job.
	open()
	outs, err := acmeJob.Outputs(ctx)
	if err != nil || !slices.Equal(outs, []string{acmeSecret}) {
		t.Fatalf("acme's job after the attacks: %q, %v; want its call to end with acme's secret", outs, err)
	}
}

// fromANode runs evil's probe on a node, twice at once (both its workers).
func fromANode(t *testing.T, ctx context.Context, k *keyed) {
	// The cluster's data directory (burla dev --data-dir): Temporal's database,
	// NATS's streams, the nodes' caches and their workers' directories.
	tg := Target{Namespace: k.dev.Addrs.Namespace, ClusterDir: filepath.Join(k.dev.Dir, "data")}
	reports, err := burla.RemoteParallelMap(ctx, probe, []Target{tg, tg}, burla.OnCluster(k.evil), burla.Spinner(false))
	if err != nil {
		t.Fatalf("evil's probe: %v", err)
	}
	for i, r := range reports {
		t.Logf("probe %d ran as uid %d, found %d listening ports, environment %v", i, r.UID, len(r.Listening), r.Env)
		if r.ProbeError != "" {
			t.Errorf("probe %d could not run: %s", i, r.ProbeError)
		}
		if len(r.Listening) == 0 {
			t.Errorf("probe %d found no listening port: the probe is blind", i)
		}
		for what, got := range map[string][]string{
			"Temporal without a key":                 r.Temporal,
			"NATS without a key":                     r.NATS,
			"credentials":                            r.Keys,
			"other processes' memory or environment": r.ProcReads,
			"the cluster's files":                    r.Files,
		} {
			if len(got) > 0 {
				t.Errorf("evil's function on the node reached %s:\n  %s", what, strings.Join(got, "\n  "))
			}
		}
	}
}

// claimJob starts a job of evil's whose spec names acme's running job.
func claimJob(t *testing.T, ctx context.Context, k *keyed, acmeID string) {
	own := evilSpec(t, ctx, k)
	forged := own
	forged.ID = acmeID
	forged.Tenant = ""
	id := job.NewID(time.Now(), "evil")
	run, err := k.evil.Temporal().ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: control.TaskQueueControl},
		control.WorkflowJob, control.JobInput{Spec: forged})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	err = run.Get(ctx, nil)
	if !strings.Contains(fmt.Sprint(err), string(control.ErrNotYours)) {
		t.Errorf("evil's job %s with acme's spec ID: %v; want a NotYours refusal", id, err)
	}
	// And an environment build of acme's program, named as evil's.
	bid := control.EnvBuildWorkflowID("evil", control.EnvDigest(own.Binary, ""))
	run, err = k.evil.Temporal().ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: bid, TaskQueue: control.TaskQueueControl,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL}, control.WorkflowEnvBuild, control.EnvBuildInput{Binary: own.Binary, Tenant: "acme"})
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		return // evil's own build of that ID ran already; the workflow test covers the rest
	}
	if err != nil {
		t.Fatalf("start build: %v", err)
	}
	if err := run.Get(ctx, nil); !strings.Contains(fmt.Sprint(err), string(control.ErrNotYours)) {
		t.Errorf("evil's build of acme's program: %v; want a NotYours refusal", err)
	}
}

// forgeChunks writes a job of evil's whose chunks name acme's blobs as inputs.
func forgeChunks(t *testing.T, ctx context.Context, k *keyed, acmeID string) {
	spec := evilSpec(t, ctx, k)
	spec.ID = job.NewID(time.Now(), "evil")
	spec.Function = "raw"
	spec.ReturnErrors = true
	spec.Env = nil
	keys := []string{job.EnvKey(acmeID), job.InputKey(acmeID, 0), job.SharedKey("acme", "x")}
	spec.Inputs = len(keys)
	var c store.Chunk
	for i, key := range keys {
		c.Items = append(c.Items, store.Item{Index: int64(i), Blob: key})
	}
	st := k.evil.Store()
	if err := st.CreateJob(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if err := st.PutChunks(ctx, spec.ID, []store.Chunk{c}); err != nil {
		t.Fatal(err)
	}
	if err := st.Seal(ctx, spec.ID, 1); err != nil {
		t.Fatal(err)
	}
	run, err := k.evil.Temporal().ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: spec.ID, TaskQueue: control.TaskQueueControl},
		control.WorkflowJob, control.JobInput{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	if err := run.Get(ctx, nil); err != nil {
		t.Logf("evil's forged job ended with: %v", err)
	}
	var results []store.Result
	w, err := st.WatchResults(ctx, spec.ID, func(rs []store.Result) { results = append(results, rs...) })
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if len(results) != len(keys) {
		t.Errorf("evil's forged job has %d results; want %d refusals", len(results), len(keys))
	}
	for _, r := range results {
		if strings.Contains(string(r.Output), acmeSecret) || r.Err == nil || !strings.Contains(r.Err.Message, "refused") {
			t.Errorf("input %d naming %s: output %q, error %+v; want a refusal", r.Index, keys[r.Index], r.Output, r.Err)
		}
	}
}

// readProgram reads acme's program, shipped in chunks, through evil's store: its
// manifest and its packs, by their keys and by listing. This program is acme's.
func readProgram(t *testing.T, ctx context.Context, k *keyed) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	_, digest, err := ship.Digest(exe)
	if err != nil {
		t.Fatal(err)
	}
	man := job.ManifestKeyFor("acme", digest)
	r, err := k.acme.Store().Open(ctx, man)
	if err != nil {
		t.Fatalf("acme's own manifest, through acme's store: %v", err)
	}
	data, err := io.ReadAll(r)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	m, err := ship.ParseManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{man}
	for _, p := range m.PackDigests() {
		keys = append(keys, job.PackKeyFor("acme", p))
	}
	evil := k.evil.Store()
	for _, key := range keys {
		if r, err := evil.Open(ctx, key); err == nil {
			r.Close()
			t.Errorf("evil opened acme's %s", key)
		}
		if ok, err := evil.Has(ctx, key); err == nil && ok {
			t.Errorf("evil found acme's %s", key)
		}
	}
	for _, prefix := range []string{"man-acme.", "pack-acme.", "man-", "pack-", ""} {
		infos, _ := evil.List(ctx, prefix)
		for _, info := range infos {
			if job.BlobTenant(info.Key) == "acme" {
				t.Errorf("evil listed acme's %s under %q", info.Key, prefix)
			}
		}
	}
}

// forgeGrants puts grants, through evil's store and raw on the nodes' grant
// subjects, for a job of evil's that has inputs but no workflow: a node that
// took them would run its calls.
func forgeGrants(t *testing.T, ctx context.Context, k *keyed) {
	spec := evilSpec(t, ctx, k)
	spec.ID = job.NewID(time.Now(), "evil")
	spec.Inputs = 1
	st := k.evil.Store()
	if err := st.CreateJob(ctx, spec); err != nil {
		t.Fatal(err)
	}
	in := store.Chunk{Items: []store.Item{{Index: 0, Data: []byte(`1`)}}}
	if err := st.PutChunks(ctx, spec.ID, []store.Chunk{in}); err != nil {
		t.Fatal(err)
	}
	if err := st.Seal(ctx, spec.ID, 1); err != nil {
		t.Fatal(err)
	}
	g, ok := st.(store.Grants)
	if !ok {
		t.Fatalf("evil's store %T has no grants to forge", st)
	}
	ns, ok := st.(*natsstore.Store)
	if !ok {
		t.Fatalf("evil's store is %T; want the NATS store, whose subjects it publishes on", st)
	}
	// Aimed at a node the cluster holds ready (on no job, reset after its last),
	// which would take a grant; acme's job holds the other.
	cc := control.NewClient(k.admin.Temporal())
	if err := cc.WaitReady(ctx, control.DefaultCluster, 1, time.Minute); err != nil {
		t.Fatalf("no node came ready for the forged grants: %v", err)
	}
	cs, err := cc.Status(ctx, control.DefaultCluster)
	if err != nil {
		t.Fatal(err)
	}
	var ready []string
	for id, n := range cs.Nodes {
		if n.State == control.NodeReady {
			ready = append(ready, id)
		}
	}
	if len(ready) == 0 {
		t.Fatalf("no node of %+v is ready for the forged grants", cs.Nodes)
	}
	grant, _ := json.Marshal(store.Grant{Spec: spec, Workers: 2})
	for _, node := range ready {
		if err := g.PutGrant(ctx, node, store.Grant{Spec: spec, Workers: 2}); err != nil {
			t.Fatal(err)
		}
		if err := ns.Conn().Publish("burla.grant."+node, grant); err != nil {
			t.Fatal(err)
		}
	}
	if err := ns.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // a node begins a job on its grant in milliseconds
	p, err := st.Progress(ctx, spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if p.InFlight > 0 || p.Waiting != 1 {
		t.Errorf("evil's job without a workflow, after its forged grants: %+v; want its one chunk untouched", p)
	}
}

// signal sends the signals a job gets from its cluster to a running job of evil's.
func signal(t *testing.T, ctx context.Context, k *keyed, acmeID string) {
	gate, open := newGate(t)
	j, err := burla.Submit(ctx, hold, []string{gate}, burla.OnCluster(k.evil), burla.Detach(), burla.Spinner(false),
		burla.OnLog(func(burla.LogLine) {}))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		open()
		if _, err := j.Outputs(ctx); err != nil {
			t.Errorf("evil's own job after its signals: %v", err)
		}
	}()
	for _, name := range []string{control.SignalNodesAdded, control.SignalNodeLost} {
		err := k.evil.Temporal().SignalWorkflow(ctx, j.ID(), "", name, control.NodesAdded{})
		var denied *serviceerror.PermissionDenied
		if !errors.As(err, &denied) {
			t.Errorf("evil signals %s to its own job: %v; want permission denied", name, err)
		}
		if err != nil && strings.Contains(err.Error(), acmeID) {
			t.Errorf("the refusal names acme's job: %v", err)
		}
	}
}

// evilSpec runs a small job of evil's and returns its spec: evil's own program,
// uploaded by the SDK.
func evilSpec(t *testing.T, ctx context.Context, k *keyed) job.Spec {
	t.Helper()
	var id string
	if _, err := burla.RemoteParallelMap(ctx, raw, []json.RawMessage{json.RawMessage(`1`)}, burla.OnCluster(k.evil), burla.Spinner(false),
		burla.OnStart(func(s string) { id = s })); err != nil {
		t.Fatal(err)
	}
	spec, err := k.evil.Store().Job(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

func waitRunning(t *testing.T, ctx context.Context, c *burla.Cluster, id string) {
	t.Helper()
	for {
		if p, err := c.Store().Progress(ctx, id); err == nil && p.InFlight > 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("job %s never ran", id)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func dockerAnswers() error {
	api, err := dockerclient.New(dockerclient.FromEnv)
	if err != nil {
		return err
	}
	defer api.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = api.Ping(ctx, dockerclient.PingOptions{})
	return err
}

// newGate returns a free loopback address and a function that starts listening
// there, which lets hold's calls end.
func newGate(t *testing.T) (string, func()) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr, func() {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("open the gate at %s: %v", addr, err)
			return
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
}
