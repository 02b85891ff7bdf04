package e2e

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/burla-temporal/burla/control"
	burla "github.com/burla-temporal/burla/sdk"
)

// A job that needs GPUs, on the local dev cluster (whose nodes have none and
// whose provider cannot start any), fails at once, not after the minutes a job
// waits for busy nodes, with an error that names the GPU, what the nodes have
// and what to do; and the cluster goes on running other jobs.
func TestGPUJobWithoutGPUNodesFailsFast(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	start := time.Now()
	_, err := burla.RemoteParallelMap(ctx, square, []int{1, 2, 3}, opts(burla.FuncGPU("A100"), burla.Grow())...)
	took := time.Since(start)
	if err == nil {
		t.Fatal("a job asking for an A100 ran on nodes without GPUs")
	}
	t.Logf("refused after %v: %v", took, err)
	if took > 30*time.Second {
		t.Errorf("refused after %v; want at once (a reserve waits 5 minutes for busy nodes)", took)
	}
	var be *burla.Error
	if !errors.As(err, &be) {
		t.Fatalf("error %v (%T); want a *burla.Error", err, err)
	}
	if be.Kind != burla.KindNoCompatibleNodes {
		t.Errorf("error kind %q; want %s", be.Kind, control.ErrNoCompatibleNodes)
	}
	for _, want := range []string{"no compatible nodes", "GPU A100 per call", "no GPU", "local provider", "burla.Grow()", "drop burla.FuncGPU"} {
		if !strings.Contains(be.Msg, want) {
			t.Errorf("message %q does not say %q", be.Msg, want)
		}
	}
	// An unknown GPU never reaches the cluster.
	if _, err := burla.RemoteParallelMap(ctx, square, []int{1}, opts(burla.FuncGPU("RTX4090"))...); err == nil ||
		!strings.Contains(err.Error(), "unknown GPU \"RTX4090\": want one of A100, A100_80G, H100, L4, T4, V100") {
		t.Errorf("job with an unknown GPU: %v; want it refused naming the known ones", err)
	}
	checkHealthy(t)
}
