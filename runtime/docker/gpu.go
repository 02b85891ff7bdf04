package docker

import (
	"github.com/moby/moby/api/types/container"

	"github.com/burla-temporal/burla/runtime"
)

// resources is what a worker container may use: its share of the node's CPUs and
// memory, and the GPUs it is given, requested of NVIDIA's container runtime
// (the node needs NVIDIA's driver and container toolkit).
func resources(spec runtime.WorkerSpec) container.Resources {
	res := container.Resources{NanoCPUs: int64(spec.CPUs * 1e9)}
	if spec.MemoryMB > 0 {
		res.Memory = int64(spec.MemoryMB) << 20
	}
	switch {
	case len(spec.GPUDevices) > 0:
		res.DeviceRequests = []container.DeviceRequest{{Driver: "nvidia", DeviceIDs: spec.GPUDevices, Capabilities: [][]string{{"gpu"}}}}
	case spec.GPUs > 0:
		res.DeviceRequests = []container.DeviceRequest{{Driver: "nvidia", Count: spec.GPUs, Capabilities: [][]string{{"gpu"}}}}
	}
	return res
}
