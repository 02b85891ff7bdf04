package e2e

import (
	"errors"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/job"
)

// TestVersionMismatch starts a job as a client of a newer burla would: the cluster
// refuses it at once with a VersionMismatch that says what to do, and no node runs it.
func TestVersionMismatch(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	spec := job.Spec{ID: job.NewID(time.Now(), job.DefaultTenant), Function: "square", Binary: strings.Repeat("a", 64),
		Inputs: 1, FuncCPU: 1, Lease: 5 * time.Second, Detached: true, Version: job.SpecVersion + 1, Created: time.Now()}
	run, err := dev.Cluster.Temporal().ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: spec.ID, TaskQueue: control.TaskQueueControl},
		control.WorkflowJob, control.JobInput{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = run.Get(ctx, nil)
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || !control.ErrVersionMismatch.Is(err) || !strings.Contains(app.Message(), "upgrade the cluster") {
		t.Fatalf("job of a newer client ended with %v; want a VersionMismatch saying to upgrade the cluster", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the refusal took %v", took)
	}
}
