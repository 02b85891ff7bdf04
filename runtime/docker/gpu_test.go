package docker

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/burla-temporal/burla/runtime"
)

func TestResources(t *testing.T) {
	gpu := [][]string{{"gpu"}}
	tests := []struct {
		name string
		spec runtime.WorkerSpec
		want container.Resources
	}{
		{"CPU and memory", runtime.WorkerSpec{CPUs: 1.5, MemoryMB: 512},
			container.Resources{NanoCPUs: 1_500_000_000, Memory: 512 << 20}},
		{"two GPUs", runtime.WorkerSpec{CPUs: 1, GPUs: 2},
			container.Resources{NanoCPUs: 1e9, DeviceRequests: []container.DeviceRequest{{Driver: "nvidia", Count: 2, Capabilities: gpu}}}},
		{"named GPUs", runtime.WorkerSpec{CPUs: 1, GPUs: 2, GPUDevices: []string{"2", "3"}},
			container.Resources{NanoCPUs: 1e9, DeviceRequests: []container.DeviceRequest{{Driver: "nvidia", DeviceIDs: []string{"2", "3"}, Capabilities: gpu}}}},
	}
	for _, tt := range tests {
		if got := resources(tt.spec); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: resources = %+v; want %+v", tt.name, got, tt.want)
		}
	}
}

// fakeEngine answers the Docker API calls of Start up to the container's
// create, which it records and refuses, so that the request the runtime makes
// can be read without an engine (or a GPU).
type fakeEngine struct {
	mu     sync.Mutex
	create []byte
}

func (f *fakeEngine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodDelete && strings.Contains(r.URL.Path, "/containers/"):
		http.Error(w, `{"message":"No such container"}`, http.StatusNotFound)
	case r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/images/") && strings.HasSuffix(r.URL.Path, "/json"):
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"Id":"sha256:0","Config":{"Env":["PATH=/bin"]}}`))
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/containers/create"):
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.create = body
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte(`{"message":"could not select device driver \"nvidia\" with capabilities: [[gpu]]"}`))
	default:
		http.Error(w, `{"message":"unexpected"}`, http.StatusTeapot)
	}
}

// A GPU worker's container is created with a request for the job's GPUs from
// NVIDIA's runtime; an engine without one refuses it, and Start says so.
func TestStartAsksForTheJobsGPUs(t *testing.T) {
	f := &fakeEngine{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	api, err := client.New(client.WithHost("tcp://"+strings.TrimPrefix(srv.URL, "http://")), client.WithAPIVersion("1.47"))
	if err != nil {
		t.Fatal(err)
	}
	defer api.Close()
	rt := &Runtime{api: api, image: func(context.Context) (string, error) { return "burla-node:test", nil }}
	spec := runtime.WorkerSpec{Cluster: "c", Node: "c-1", Slot: 0, CPUs: 1, MemoryMB: 1024, GPUs: 2,
		Argv: []string{"/burla", "container-worker"}, Dir: t.TempDir()}
	_, err = rt.Start(t.Context(), spec)
	if err == nil || !strings.Contains(err.Error(), "create burla-worker-c-1-0") || !strings.Contains(err.Error(), "nvidia") {
		t.Fatalf("Start: %v; want the engine's refusal of the GPU request", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var req struct {
		Image      string
		Env        []string
		HostConfig struct {
			NanoCpus       int64
			Memory         int64
			DeviceRequests []container.DeviceRequest
			CapDrop        []string
		}
	}
	if err := json.Unmarshal(f.create, &req); err != nil {
		t.Fatalf("create request %s: %v", f.create, err)
	}
	want := []container.DeviceRequest{{Driver: "nvidia", Count: 2, Capabilities: [][]string{{"gpu"}}}}
	if !reflect.DeepEqual(req.HostConfig.DeviceRequests, want) {
		t.Errorf("device requests %+v; want %+v\nrequest: %s", req.HostConfig.DeviceRequests, want, f.create)
	}
	if req.Image != "burla-node:test" || req.HostConfig.NanoCpus != 1e9 || req.HostConfig.Memory != 1<<30 || len(req.HostConfig.CapDrop) != 1 {
		t.Errorf("create request %s; want the node image, 1 CPU, 1 GB and every capability dropped", f.create)
	}
	// The worker is told which variables are the image's own, to pass on to its calls.
	if !slices.Contains(req.Env, "BURLA_IMAGE_ENV=PATH") {
		t.Errorf("the worker's environment %q does not name the image's variables", req.Env)
	}
}
