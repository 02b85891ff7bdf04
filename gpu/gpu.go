// Package gpu names the GPUs a job can ask for (burla.FuncGPU) and the machine
// shapes that carry them. It is the one catalog the SDK (which refuses a name it
// does not know before a job starts), the cluster workflow (which sizes the nodes
// it starts for a GPU job) and the gce provider (which turns a node's GPUs into a
// machine type and accelerators) share, so that they agree on what "A100:2" means.
//
// The catalog is data, with no I/O: workflow code reads it.
package gpu

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Model is a GPU model a job can ask for.
type Model struct {
	// Name is how jobs name it ("A100"); names are matched without regard to case.
	Name string
	// Aliases are other names for it ("A100_40G").
	Aliases []string
	// MemoryGB is each GPU's memory.
	MemoryGB int
	// Accelerator is Compute Engine's accelerator type ("nvidia-tesla-a100").
	Accelerator string
	// Attached says the GPUs are attached to a general-purpose (N1) machine as
	// guest accelerators; otherwise the machine type carries them (A2, A3, G2).
	Attached bool
	// Shapes are the machines with this GPU, fewest GPUs first.
	Shapes []Shape
}

// Shape is a machine with GPUs.
type Shape struct {
	MachineType string // Compute Engine machine type, "a2-highgpu-1g"
	GPUs        int
	CPUs        int
	RAMMB       int
}

const gb = 1024

// models is the catalog, from Compute Engine's GPU machine types: A2 Standard
// (A100 40GB), A2 Ultra (A100 80GB), A3 High (H100 80GB), G2 (L4), and N1 with
// attached T4 or V100.
var models = []*Model{{
	Name: "A100", Aliases: []string{"A100_40G"}, MemoryGB: 40, Accelerator: "nvidia-tesla-a100",
	Shapes: []Shape{
		{"a2-highgpu-1g", 1, 12, 85 * gb}, {"a2-highgpu-2g", 2, 24, 170 * gb}, {"a2-highgpu-4g", 4, 48, 340 * gb},
		{"a2-highgpu-8g", 8, 96, 680 * gb}, {"a2-megagpu-16g", 16, 96, 1360 * gb},
	},
}, {
	Name: "A100_80G", MemoryGB: 80, Accelerator: "nvidia-a100-80gb",
	Shapes: []Shape{
		{"a2-ultragpu-1g", 1, 12, 170 * gb}, {"a2-ultragpu-2g", 2, 24, 340 * gb}, {"a2-ultragpu-4g", 4, 48, 680 * gb},
		{"a2-ultragpu-8g", 8, 96, 1360 * gb},
	},
}, {
	Name: "H100", Aliases: []string{"H100_80G"}, MemoryGB: 80, Accelerator: "nvidia-h100-80gb",
	Shapes: []Shape{
		{"a3-highgpu-1g", 1, 26, 234 * gb}, {"a3-highgpu-2g", 2, 52, 468 * gb}, {"a3-highgpu-4g", 4, 104, 936 * gb},
		{"a3-highgpu-8g", 8, 208, 1872 * gb},
	},
}, {
	Name: "L4", MemoryGB: 24, Accelerator: "nvidia-l4",
	Shapes: []Shape{
		{"g2-standard-4", 1, 4, 16 * gb}, {"g2-standard-24", 2, 24, 96 * gb}, {"g2-standard-48", 4, 48, 192 * gb},
		{"g2-standard-96", 8, 96, 384 * gb},
	},
}, {
	Name: "T4", MemoryGB: 16, Accelerator: "nvidia-tesla-t4", Attached: true,
	Shapes: []Shape{
		{"n1-standard-4", 1, 4, 15 * gb}, {"n1-standard-8", 2, 8, 30 * gb}, {"n1-standard-16", 4, 16, 60 * gb},
	},
}, {
	Name: "V100", MemoryGB: 16, Accelerator: "nvidia-tesla-v100", Attached: true,
	Shapes: []Shape{
		{"n1-standard-8", 1, 8, 30 * gb}, {"n1-standard-16", 2, 16, 60 * gb}, {"n1-standard-32", 4, 32, 120 * gb},
		{"n1-standard-64", 8, 64, 240 * gb},
	},
}}

// Names returns the models' names, in catalog order.
func Names() []string {
	out := make([]string, len(models))
	for i, m := range models {
		out[i] = m.Name
	}
	return out
}

// Lookup returns the model named name (or one of its aliases), in any case.
func Lookup(name string) (*Model, bool) {
	for _, m := range models {
		if strings.EqualFold(m.Name, name) || slices.ContainsFunc(m.Aliases, func(a string) bool { return strings.EqualFold(a, name) }) {
			return m, true
		}
	}
	return nil, false
}

// MaxGPUs is the most GPUs of the model one machine has.
func (m *Model) MaxGPUs() int { return m.Shapes[len(m.Shapes)-1].GPUs }

// Shape returns the machine with the fewest GPUs of the model, at least n.
func (m *Model) Shape(n int) (Shape, bool) {
	for _, s := range m.Shapes {
		if s.GPUs >= n {
			return s, true
		}
	}
	return Shape{}, false
}

// ShapeOf returns the machine of the model with exactly n GPUs.
func (m *Model) ShapeOf(n int) (Shape, bool) {
	s, ok := m.Shape(n)
	return s, ok && s.GPUs == n
}

// Spec is some GPUs of one model: what one call needs (a job's FuncGPU), or what
// a node has.
type Spec struct {
	Model *Model
	Count int
}

// Parse reads "MODEL" (one GPU) or "MODEL:N" (N GPUs), the model named as Lookup
// finds it. The empty string is the zero Spec: no GPU. N must be at least 1 and
// no more than a machine of the model has.
func Parse(s string) (Spec, error) {
	if s == "" {
		return Spec{}, nil
	}
	name, n, hasCount := strings.Cut(s, ":")
	m, ok := Lookup(name)
	if !ok {
		return Spec{}, fmt.Errorf("unknown GPU %q: want one of %s, optionally with a count (\"A100:2\")", name, strings.Join(Names(), ", "))
	}
	count := 1
	if hasCount {
		var err error
		if count, err = strconv.Atoi(n); err != nil || count < 1 {
			return Spec{}, fmt.Errorf("GPU %q: count %q is not a whole number of at least 1", s, n)
		}
	}
	if count > m.MaxGPUs() {
		return Spec{}, fmt.Errorf("GPU %q: no machine has more than %d %s GPUs", s, m.MaxGPUs(), m.Name)
	}
	return Spec{Model: m, Count: count}, nil
}

// IsZero reports whether s is no GPU.
func (s Spec) IsZero() bool { return s.Model == nil || s.Count == 0 }

// String is s in the form Parse reads, with the model's own name: "A100",
// "A100:2", or "" for no GPU.
func (s Spec) String() string {
	switch {
	case s.IsZero():
		return ""
	case s.Count == 1:
		return s.Model.Name
	}
	return s.Model.Name + ":" + strconv.Itoa(s.Count)
}

// Fits reports whether a node with GPUs have can run at least one call that
// needs want, and if so how many at once. No GPU wanted fits every node, with no
// bound from GPUs (-1).
func Fits(have, want Spec) (calls int, ok bool) {
	if want.IsZero() {
		return -1, true
	}
	if have.IsZero() || have.Model != want.Model || have.Count < want.Count {
		return 0, false
	}
	return have.Count / want.Count, true
}

// Count is the number of GPUs s names; 0 for "" or a spec Parse refuses.
func Count(s string) int {
	spec, err := Parse(s)
	if err != nil {
		return 0
	}
	return spec.Count
}
