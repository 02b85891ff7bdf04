package burla

import (
	"strings"
	"testing"
)

func TestPlacementOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    []Option
		wantErr string // empty: accepted
		gpu     string // the canonical GPU the job asks for
	}{
		{name: "none"},
		{name: "one A100", opts: []Option{FuncGPU("a100")}, gpu: "A100"},
		{name: "alias with count", opts: []Option{FuncGPU("H100_80G:2"), Region("europe-west4"), DiskGB(200)}, gpu: "H100:2"},
		{name: "unknown GPU", opts: []Option{FuncGPU("RTX4090")},
			wantErr: `burla: FuncGPU: unknown GPU "RTX4090": want one of A100, A100_80G, H100, L4, T4, V100`},
		{name: "too many", opts: []Option{FuncGPU("L4:16")}, wantErr: "no machine has more than 8 L4 GPUs"},
		{name: "zone, not region", opts: []Option{Region("us-central1-a")}, wantErr: `Region("us-central1-a"): not a region name`},
		{name: "small disk", opts: []Option{DiskGB(4)}, wantErr: "DiskGB(4): want 10 to 65536 GB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := buildOptions(tt.opts)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("buildOptions: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("buildOptions: %v; want an error saying %q", err, tt.wantErr)
			case tt.wantErr == "" && o.funcGPU != tt.gpu:
				t.Errorf("GPU %q; want %q", o.funcGPU, tt.gpu)
			}
		})
	}
}
