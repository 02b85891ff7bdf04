package gpu

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in       string
		want     string // the spec's String; "" with wantErr empty: no GPU
		wantErr  string
		accel    string
		machine1 string // the smallest machine with the spec's GPUs
	}{
		{in: "", want: ""},
		{in: "A100", want: "A100", accel: "nvidia-tesla-a100", machine1: "a2-highgpu-1g"},
		{in: "a100_40g:2", want: "A100:2", accel: "nvidia-tesla-a100", machine1: "a2-highgpu-2g"},
		{in: "A100:16", want: "A100:16", accel: "nvidia-tesla-a100", machine1: "a2-megagpu-16g"},
		{in: "A100_80G:4", want: "A100_80G:4", accel: "nvidia-a100-80gb", machine1: "a2-ultragpu-4g"},
		{in: "H100", want: "H100", accel: "nvidia-h100-80gb", machine1: "a3-highgpu-1g"},
		{in: "h100_80g:8", want: "H100:8", accel: "nvidia-h100-80gb", machine1: "a3-highgpu-8g"},
		{in: "L4:2", want: "L4:2", accel: "nvidia-l4", machine1: "g2-standard-24"},
		{in: "T4:3", want: "T4:3", accel: "nvidia-tesla-t4", machine1: "n1-standard-16"},
		{in: "V100", want: "V100", accel: "nvidia-tesla-v100", machine1: "n1-standard-8"},
		{in: "RTX4090", wantErr: `unknown GPU "RTX4090": want one of A100, A100_80G, H100, L4, T4, V100`},
		{in: "A100:0", wantErr: "not a whole number of at least 1"},
		{in: "A100:x", wantErr: "not a whole number"},
		{in: "H100:9", wantErr: "no machine has more than 8 H100 GPUs"},
		{in: "T4:8", wantErr: "no machine has more than 4 T4 GPUs"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			s, err := Parse(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q) = %v, %v; want an error saying %q", tt.in, s, err, tt.wantErr)
				}
				return
			}
			if err != nil || s.String() != tt.want {
				t.Fatalf("Parse(%q) = %q, %v; want %q", tt.in, s, err, tt.want)
			}
			if tt.want == "" {
				if !s.IsZero() {
					t.Errorf("Parse(%q) is not the zero spec", tt.in)
				}
				return
			}
			if s.Model.Accelerator != tt.accel {
				t.Errorf("accelerator %q; want %q", s.Model.Accelerator, tt.accel)
			}
			if sh, ok := s.Model.Shape(s.Count); !ok || sh.MachineType != tt.machine1 || sh.GPUs < s.Count {
				t.Errorf("Shape(%d) = %+v, %v; want %s", s.Count, sh, ok, tt.machine1)
			}
			if again, err := Parse(s.String()); err != nil || again != s {
				t.Errorf("Parse(String()) = %v, %v; want %v", again, err, s)
			}
		})
	}
}

// Every shape's GPU count grows, and CPUs and memory are set, so that the cluster
// can size a node from it.
func TestCatalogShapes(t *testing.T) {
	for _, m := range models {
		if len(m.Shapes) == 0 || m.Accelerator == "" {
			t.Errorf("%s: no shapes or no accelerator", m.Name)
			continue
		}
		for i, s := range m.Shapes {
			if s.CPUs < 1 || s.RAMMB < 1024 || s.GPUs < 1 || i > 0 && s.GPUs <= m.Shapes[i-1].GPUs {
				t.Errorf("%s: shape %+v out of order or empty", m.Name, s)
			}
		}
		if _, ok := m.ShapeOf(3); ok {
			t.Errorf("%s has a machine with 3 GPUs", m.Name)
		}
	}
}

func TestFits(t *testing.T) {
	a100x4, _ := Parse("A100:4")
	a100x2, _ := Parse("A100:2")
	a80, _ := Parse("A100_80G")
	tests := []struct {
		have, want Spec
		calls      int
		ok         bool
	}{
		{Spec{}, Spec{}, -1, true},
		{a100x4, Spec{}, -1, true},
		{Spec{}, a100x2, 0, false},
		{a100x4, a100x2, 2, true},
		{a100x2, a100x4, 0, false},
		{a100x4, a80, 0, false},
	}
	for _, tt := range tests {
		if calls, ok := Fits(tt.have, tt.want); calls != tt.calls || ok != tt.ok {
			t.Errorf("Fits(%q, %q) = %d, %v; want %d, %v", tt.have, tt.want, calls, ok, tt.calls, tt.ok)
		}
	}
}
