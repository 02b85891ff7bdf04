package gce

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/burla-temporal/burla/provider"
)

const projectPath = "/compute/v1/projects/" + project

func zonePath(zone string) string { return projectPath + "/zones/" + zone }

func insertIn(zone string, check func(*testing.T, *http.Request, []byte), file string) exchange {
	return exchange{method: http.MethodPost, path: zonePath(zone) + "/instances", check: check, file: file}
}

func getOperationIn(zone, name, file string) exchange {
	return exchange{method: http.MethodGet, path: zonePath(zone) + "/operations/" + name, file: file}
}

func getInstanceIn(zone string, status int, file string) exchange {
	return exchange{method: http.MethodGet, path: zonePath(zone) + "/instances/burla-default-1", status: status, file: file}
}

// findInstanceCall is the aggregated list that looks for the node's VM in
// every zone.
func findInstanceCall(file string) exchange {
	return exchange{method: http.MethodGet, path: projectPath + "/aggregated/instances", file: file,
		check: checkFilter(`name = "burla-default-1"`)}
}

// zonesOfferingCall is the aggregated list of the zones that have accelerator.
func zonesOfferingCall(accelerator, file string) exchange {
	return exchange{method: http.MethodGet, path: projectPath + "/aggregated/acceleratorTypes", file: file,
		check: checkFilter(`name = "` + accelerator + `"`)}
}

func checkFilter(want string) func(*testing.T, *http.Request, []byte) {
	return func(t *testing.T, r *http.Request, _ []byte) {
		if got := r.URL.Query().Get("filter"); got != want {
			t.Errorf("filter %q; want %q", got, want)
		}
	}
}

// gpuInsert is what a GPU node's insert must carry.
type gpuInsert struct {
	zone, machineType string
	accelerator       string // attached accelerator type (N1); "" when the machine type carries the GPUs
	count             int32
	diskGB            int64
	image             string
}

func (w gpuInsert) check(t *testing.T, r *http.Request, body []byte) {
	checkRequestID(t, r, body)
	var inst computepb.Instance
	if err := protojson.Unmarshal(body, &inst); err != nil {
		t.Errorf("insert body is not an Instance: %v", err)
		return
	}
	if want := "zones/" + w.zone + "/machineTypes/" + w.machineType; inst.GetMachineType() != want {
		t.Errorf("machine type %q; want %q", inst.GetMachineType(), want)
	}
	accs := inst.GetGuestAccelerators()
	switch {
	case w.accelerator == "" && len(accs) != 0:
		t.Errorf("guest accelerators %v; want none: %s comes with its GPUs", accs, w.machineType)
	case w.accelerator != "" && (len(accs) != 1 || accs[0].GetAcceleratorType() != "zones/"+w.zone+"/acceleratorTypes/"+w.accelerator ||
		accs[0].GetAcceleratorCount() != w.count):
		t.Errorf("guest accelerators %v; want %d of zones/%s/acceleratorTypes/%s", accs, w.count, w.zone, w.accelerator)
	}
	if s := inst.GetScheduling(); s.GetOnHostMaintenance() != "TERMINATE" || !s.GetAutomaticRestart() {
		t.Errorf("scheduling %v; want TERMINATE on host maintenance (a VM with GPUs cannot migrate), restarted after", s)
	}
	disks := inst.GetDisks()
	if len(disks) != 1 || disks[0].GetInitializeParams().GetDiskSizeGb() != w.diskGB || disks[0].GetInitializeParams().GetSourceImage() != w.image ||
		disks[0].GetInitializeParams().GetDiskType() != "zones/"+w.zone+"/diskTypes/pd-balanced" {
		t.Errorf("disks %v; want one of %d GB from %s in %s", disks, w.diskGB, w.image, w.zone)
	}
	metadata := map[string]string{}
	for _, it := range inst.GetMetadata().GetItems() {
		metadata[it.GetKey()] = it.GetValue()
	}
	if metadata["install-nvidia-driver"] != "True" {
		t.Errorf("metadata %v; want install-nvidia-driver=True", metadata)
	}
	if !strings.Contains(metadata["startup-script"], "'--id' 'default-1'") {
		t.Errorf("startup script does not start node default-1's agent")
	}
}

const dlvm = "projects/deeplearning-platform-release/global/images/family/common-cu128-ubuntu-2204-nvidia-570"

func TestCreateGPUNode(t *testing.T) {
	const (
		gpuOp = "operation-1767232800000-646f58f2b7a14-2e8c5d19-7f3a1b04"
		t4Op  = "operation-1767240000000-646f75bb1e036-0d4a9c72-3e8b5f17"
		euOp  = "operation-1767243600000-646f841f73147-6a2e8d05-9b1c7f43"
	)
	tests := []struct {
		name    string
		node    provider.NodeSpec
		cfg     func(*Config)
		script  []exchange
		wantErr string
	}{{
		// The provider's zone, us-central1-a, has no A100s: the first zone of
		// its region that has them is chosen.
		name: "A100s carried by the machine type, in a zone of the provider's region that has them",
		node: provider.NodeSpec{ID: "default-1", Cluster: "default", CPUs: 24, RAMMB: 170 * 1024, GPU: "A100:2", DiskGB: 200},
		cfg:  func(c *Config) { c.GPUDiskImage = dlvm },
		script: []exchange{
			findInstanceCall("aggregated-instances-none.json"),
			zonesOfferingCall("nvidia-tesla-a100", "accelerator-types-a100.json"),
			insertIn("us-central1-b", gpuInsert{zone: "us-central1-b", machineType: "a2-highgpu-2g", diskGB: 200, image: dlvm}.check, "insert-operation-gpu.json"),
			getOperationIn("us-central1-b", gpuOp, "insert-operation-gpu-done.json"),
			getInstanceIn("us-central1-b", 0, "instance-gpu.json"),
		},
	}, {
		name: "T4 attached to an N1 machine in the region asked for, default GPU disk",
		node: provider.NodeSpec{ID: "default-1", Cluster: "default", CPUs: 4, RAMMB: 15 * 1024, GPU: "T4", Region: "europe-west4"},
		script: []exchange{
			findInstanceCall("aggregated-instances-none.json"),
			zonesOfferingCall("nvidia-tesla-t4", "accelerator-types-t4.json"),
			insertIn("europe-west4-b", gpuInsert{zone: "europe-west4-b", machineType: "n1-standard-4", accelerator: "nvidia-tesla-t4", count: 1,
				diskGB: DefaultGPUDiskGB, image: DefaultDiskImage}.check, "insert-operation-t4-done.json"),
			getOperationIn("europe-west4-b", t4Op, "insert-operation-t4-done.json"),
			getInstanceIn("europe-west4-b", 0, "instance-gpu.json"),
		},
	}, {
		name: "H100s in the provider's own zone, which has them",
		node: provider.NodeSpec{ID: "default-1", Cluster: "default", CPUs: 104, GPU: "H100:4"},
		script: []exchange{
			findInstanceCall("aggregated-instances-none.json"),
			zonesOfferingCall("nvidia-h100-80gb", "accelerator-types-h100.json"),
			insertIn(zone, gpuInsert{zone: zone, machineType: "a3-highgpu-4g", diskGB: DefaultGPUDiskGB, image: DefaultDiskImage}.check, "insert-operation.json"),
			getOperation(insertOp, "insert-operation-done.json"),
			getInstance(0, "instance.json"),
		},
	}, {
		name: "no zone of the region has the GPU",
		node: provider.NodeSpec{ID: "default-1", Cluster: "default", CPUs: 26, GPU: "H100", Region: "southamerica-east1"},
		script: []exchange{
			findInstanceCall("aggregated-instances-none.json"),
			zonesOfferingCall("nvidia-h100-80gb", "accelerator-types-h100.json"),
		},
		wantErr: "no zone of region southamerica-east1 offers H100 GPUs (nvidia-h100-80gb) to project burla-test; regions that do: europe-west4, us-central1, us-east4",
	}, {
		name:   "a retried create finds the VM where the first made it",
		node:   provider.NodeSpec{ID: "default-1", Cluster: "default", CPUs: 24, GPU: "A100:2"},
		script: []exchange{findInstanceCall("aggregated-instances-gpu.json")},
	}, {
		name: "plain node in another region: a zone of that region",
		node: provider.NodeSpec{ID: "default-1", Cluster: "default", CPUs: 4, Region: "europe-west4", DiskGB: 30},
		script: []exchange{
			findInstanceCall("aggregated-instances-none.json"),
			{method: http.MethodGet, path: projectPath + "/regions/europe-west4", file: "region-europe-west4.json"},
			insertIn("europe-west4-a", func(t *testing.T, r *http.Request, body []byte) {
				var inst computepb.Instance
				if err := protojson.Unmarshal(body, &inst); err != nil {
					t.Fatal(err)
				}
				if inst.GetMachineType() != "zones/europe-west4-a/machineTypes/e2-standard-4" || inst.GetScheduling() != nil ||
					len(inst.GetGuestAccelerators()) != 0 || inst.GetDisks()[0].GetInitializeParams().GetDiskSizeGb() != 30 {
					t.Errorf("instance %v; want a plain e2-standard-4 with a 30 GB disk in europe-west4-a", &inst)
				}
			}, "insert-operation-eu-done.json"),
			getOperationIn("europe-west4-a", euOp, "insert-operation-eu-done.json"),
			getInstanceIn("europe-west4-a", 0, "instance-gpu.json"),
		},
	}, {
		name: "a GPU node with a zone of its own goes there",
		node: provider.NodeSpec{ID: "default-1", Cluster: "default", CPUs: 12, GPU: "A100", Zone: zone},
		script: []exchange{
			insertIn(zone, gpuInsert{zone: zone, machineType: "a2-highgpu-1g", diskGB: DefaultGPUDiskGB, image: DefaultDiskImage}.check, "insert-operation.json"),
			getOperation(insertOp, "insert-operation-done.json"),
			getInstance(0, "instance.json"),
		},
	}, {
		name:    "a disk too small for the image, refused before any call",
		node:    provider.NodeSpec{ID: "default-1", Cluster: "default", CPUs: 4, DiskGB: 8},
		wantErr: "a boot disk of 8 GB is too small: the node's image needs 10 GB or more",
	}, {
		name:    "a GPU count no machine has, refused before any call",
		node:    provider.NodeSpec{ID: "default-1", Cluster: "default", CPUs: 4, GPU: "A100:3"},
		wantErr: "no machine has exactly 3 A100 GPUs (machines have 1, 2, 4, 8, 16)",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			p, f := newProvider(t, cfg, tt.script...)
			err := p.Create(t.Context(), tt.node)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Create: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Create: %v; want an error saying %q", err, tt.wantErr)
			}
			if ids := f.seenRequestIDs(); len(slices.Compact(ids)) > 1 {
				t.Errorf("request IDs %v; want at most one", ids)
			}
		})
	}
}

// A GPU node's zone was the provider's choice: Delete finds it there.
func TestDeleteGPUNodeWhereverItIs(t *testing.T) {
	const deleteGPUOp = "operation-1767236400000-646f6756c9d25-5b0f7e3a-1c9d4e68"
	node := provider.NodeSpec{ID: "default-1", Cluster: "default", CPUs: 24, GPU: "A100:2"}
	t.Run("found", func(t *testing.T) {
		p, _ := newProvider(t, testConfig(),
			findInstanceCall("aggregated-instances-gpu.json"),
			exchange{method: http.MethodDelete, path: zonePath("us-central1-b") + "/instances/burla-default-1", check: checkRequestID, file: "delete-operation-gpu.json"},
			getOperationIn("us-central1-b", deleteGPUOp, "delete-operation-gpu-done.json"),
			getInstanceIn("us-central1-b", http.StatusNotFound, "not-found.json"),
		)
		if err := p.Delete(t.Context(), node); err != nil {
			t.Fatalf("Delete: %v", err)
		}
	})
	t.Run("gone", func(t *testing.T) {
		p, _ := newProvider(t, testConfig(), findInstanceCall("aggregated-instances-none.json"))
		if err := p.Delete(t.Context(), node); err != nil {
			t.Fatalf("Delete: %v", err)
		}
	})
}
