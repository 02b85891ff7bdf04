package gcpe2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/burla-temporal/burla/control"
	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/temporalserver"
)

// TestControlPlaneOnGCE runs `burla control-plane` with the gce provider against a
// Temporal server of its own, the Firestore emulator and fake GCS, and a fake
// Compute Engine API that "boots" each VM it is asked for by starting the node
// agent the VM's startup script would start. `burla cluster up --provider gce`
// brings standby up, a job runs on the VM, and `burla cluster down` deletes it.
func TestControlPlaneOnGCE(t *testing.T) {
	ctx := testCtx(t, 4*time.Minute)
	ts, err := temporalserver.Start(ctx, temporalserver.Config{UIPort: -1, SearchAttributes: map[string]enumspb.IndexedValueType{
		control.SearchJobState: enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		control.SearchFunction: enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		control.SearchInputs:   enumspb.INDEXED_VALUE_TYPE_INT,
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Stop()
	dir := t.TempDir()
	storeURL := fmt.Sprintf("firestore://%s?bucket=%s&prefix=gce", project, bucket)
	compute := &fakeCompute{t: t, bin: dev.Binary, dir: dir, temporal: ts.FrontendHostPort(), store: storeURL, vms: map[string]*exec.Cmd{}}
	// A VM a crash left behind: labelled as the cluster's node, unknown to it.
	compute.instances = append(compute.instances, &instance{Name: "burla-default-99", Status: "RUNNING",
		Labels: map[string]string{"burla-cluster": "default", "burla-node": "default-99", "burla-role": "node"}})
	api := httptest.NewServer(compute)
	defer api.Close()
	defer compute.stopAll()

	cp := exec.Command(dev.Binary, "control-plane", "--temporal", ts.FrontendHostPort(), "--namespace", ts.Namespace(),
		"--store", storeURL, "--data-dir", filepath.Join(dir, "control"), "--metrics-addr", "127.0.0.1:0",
		"--gce-project", "burla-proj", "--gce-zone", "us-central1-a", "--gce-endpoint", api.URL,
		"--gce-binary-url", "gs://"+bucket+"/burla/bin/burla", "--orphan-sweep", "500ms")
	cpLog, _ := os.Create(filepath.Join(dir, "control-plane.log"))
	cp.Stdout, cp.Stderr = cpLog, cpLog
	cp.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cp.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cp.Process.Signal(os.Interrupt); cp.Wait() }()
	showLog := func() {
		b, _ := os.ReadFile(filepath.Join(dir, "control-plane.log"))
		t.Logf("control plane log:\n%s", b)
	}

	cluster := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, dev.Binary, append([]string{"cluster", args[0], "--temporal", ts.FrontendHostPort(), "--namespace", ts.Namespace()}, args[1:]...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			showLog()
			t.Fatalf("burla cluster %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	cluster("up", "--provider", "gce", "--project", "burla-proj", "--zone", "us-central1-a", "--nodes", "1", "--cpus", "2", "--timeout", "2m")

	c, err := burla.Dial(ctx, burla.Config{TemporalAddress: ts.FrontendHostPort(), Namespace: ts.Namespace(), StoreURL: storeURL})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out, err := burla.RemoteParallelMap(ctx, square, []int{1, 2, 3, 4}, burla.OnCluster(c), burla.Spinner(false), burla.OnLog(func(burla.LogLine) {}))
	if err != nil || !slices.Equal(out, []int{1, 4, 9, 16}) {
		showLog()
		t.Fatalf("job on the GCE node: %v, %v; want [1 4 9 16]", out, err)
	}

	if !gcsHas(t, "burla/bin/burla") {
		t.Error("the control plane did not upload itself to gs://" + bucket + "/burla/bin/burla")
	}
	// While a job runs, the cluster starts replacements to keep standby full, so
	// more than one VM may have been made; the first is the standby node.
	insert := compute.firstInsert()
	if insert == nil || insert.Name != "burla-default-1" {
		t.Fatalf("first instance inserted: %+v; want burla-default-1", insert)
	}
	if l := insert.Labels; l["burla-cluster"] != "default" || l["burla-node"] != "default-1" || l["burla-role"] != "node" {
		t.Errorf("instance labels %v; want burla-cluster=default, burla-node=default-1, burla-role=node", l)
	}
	if !strings.HasSuffix(insert.MachineType, "/e2-standard-2") {
		t.Errorf("machine type %s; want e2-standard-2 for a 2-CPU node", insert.MachineType)
	}
	if s := insert.startupScript(); !strings.Contains(s, "gce") || !strings.Contains(s, "--store") || !strings.Contains(s, "/b/"+bucket+"/o/burla%2Fbin%2Fburla") {
		t.Errorf("startup script does not run the node agent on the cluster's store with the uploaded binary:\n%s", s)
	}

	deadline := time.Now().Add(30 * time.Second)
	for !compute.deleted("burla-default-99") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if !compute.deleted("burla-default-99") {
		showLog()
		t.Error("the orphaned VM burla-default-99 was not deleted")
	}

	cluster("down")
	if left := compute.running(); len(left) > 0 {
		t.Errorf("instances left after cluster down: %v", left)
	}
	if !compute.deleted("burla-default-1") {
		t.Error("burla-default-1 was never deleted")
	}
}

// fakeCompute plays the Compute Engine instances API. Operations finish at once.
type fakeCompute struct {
	t               *testing.T
	bin, dir        string
	temporal, store string
	mu              sync.Mutex
	instances       []*instance // those that exist
	inserts         []*instance // every insert, in order
	deletes         []string
	vms             map[string]*exec.Cmd
}

type instance struct {
	Name        string            `json:"name"`
	MachineType string            `json:"machineType"`
	Labels      map[string]string `json:"labels"`
	Metadata    struct {
		Items []struct{ Key, Value string } `json:"items"`
	} `json:"metadata"`
	Status string `json:"status,omitempty"`
}

func (i *instance) startupScript() string {
	for _, it := range i.Metadata.Items {
		if it.Key == "startup-script" {
			return it.Value
		}
	}
	return ""
}

func (f *fakeCompute) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	const base = "/compute/v1/projects/burla-proj/zones/us-central1-a/"
	if !strings.HasPrefix(r.URL.Path, base) {
		f.t.Errorf("request outside the project and zone: %s %s", r.Method, r.URL.Path)
		http.Error(w, `{"error":{"code":404,"message":"not found"}}`, http.StatusNotFound)
		return
	}
	path := strings.TrimPrefix(r.URL.Path, base)
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	op := func(kind, name string) {
		json.NewEncoder(w).Encode(map[string]any{"kind": "compute#operation", "name": "op-" + kind + "-" + name,
			"status": "DONE", "operationType": kind, "zone": "us-central1-a", "targetLink": base + "instances/" + name, "progress": 100})
	}
	switch {
	case r.Method == http.MethodPost && path == "instances":
		var inst instance
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &inst); err != nil {
			f.t.Errorf("insert body: %v", err)
		}
		if f.find(inst.Name) != nil {
			http.Error(w, `{"error":{"code":409,"message":"already exists","errors":[{"reason":"alreadyExists"}]}}`, http.StatusConflict)
			return
		}
		inst.Status = "RUNNING"
		f.instances = append(f.instances, &inst)
		f.inserts = append(f.inserts, &inst)
		f.boot(&inst)
		op("insert", inst.Name)
	case r.Method == http.MethodGet && strings.HasPrefix(path, "instances/"):
		inst := f.find(strings.TrimPrefix(path, "instances/"))
		if inst == nil {
			http.Error(w, `{"error":{"code":404,"message":"not found"}}`, http.StatusNotFound)
			return
		}
		json.NewEncoder(w).Encode(inst)
	case r.Method == http.MethodDelete && strings.HasPrefix(path, "instances/"):
		name := strings.TrimPrefix(path, "instances/")
		if f.find(name) == nil {
			http.Error(w, `{"error":{"code":404,"message":"not found"}}`, http.StatusNotFound)
			return
		}
		f.instances = slices.DeleteFunc(f.instances, func(i *instance) bool { return i.Name == name })
		f.deletes = append(f.deletes, name)
		if vm := f.vms[name]; vm != nil {
			vm.Process.Kill()
			vm.Wait()
			delete(f.vms, name)
		}
		op("delete", name)
	case r.Method == http.MethodGet && path == "instances":
		json.NewEncoder(w).Encode(map[string]any{"items": f.instances})
	case r.Method == http.MethodGet && strings.HasPrefix(path, "operations/"):
		op("get", strings.TrimPrefix(path, "operations/op-"))
	default:
		f.t.Errorf("unexpected request %s %s", r.Method, r.URL.Path)
		http.Error(w, `{"error":{"code":400,"message":"unexpected"}}`, http.StatusBadRequest)
	}
}

// boot starts the node agent the VM's startup script starts.
func (f *fakeCompute) boot(inst *instance) {
	id := inst.Labels["burla-node"]
	cpus := strings.TrimPrefix(inst.MachineType[strings.LastIndex(inst.MachineType, "/")+1:], "e2-standard-")
	if _, err := strconv.Atoi(cpus); err != nil {
		f.t.Errorf("machine type %s", inst.MachineType)
		return
	}
	cmd := exec.Command(f.bin, "node-agent", "--id", id, "--cluster", inst.Labels["burla-cluster"], "--cpus", cpus,
		"--temporal", f.temporal, "--store", f.store, "--cache-dir", filepath.Join(f.dir, id))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.t.Errorf("boot %s: %v", inst.Name, err)
		return
	}
	f.vms[inst.Name] = cmd
}

func (f *fakeCompute) find(name string) *instance {
	for _, i := range f.instances {
		if i.Name == name {
			return i
		}
	}
	return nil
}

func (f *fakeCompute) firstInsert() *instance {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.inserts) == 0 {
		return nil
	}
	return f.inserts[0]
}

func (f *fakeCompute) running() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var names []string
	for _, i := range f.instances {
		names = append(names, i.Name)
	}
	return names
}

func (f *fakeCompute) deleted(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Contains(f.deletes, name)
}

func (f *fakeCompute) stopAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, vm := range f.vms {
		vm.Process.Kill()
		vm.Wait()
	}
}
