package workflows_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"go.temporal.io/sdk/temporal"

	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/workflows"
)

// A job from a client newer than the cluster fails at once, before any node is
// asked for, with a VersionMismatch that names both versions; a spec from before
// versions (0) runs.
func TestJobRefusesANewerClient(t *testing.T) {
	// The test environment runs activities on goroutines of their own.
	var ran atomic.Bool
	run := func(context.Context, control.RunInput) (control.RunOutput, error) {
		ran.Store(true)
		return control.RunOutput{Drained: true}, nil
	}
	e := newEnv(t, twoNodes(), run)
	s := spec(3, true)
	s.Version = job.SpecVersion + 1
	e.ExecuteWorkflow(workflows.Job, control.JobInput{Spec: s})
	var app *temporal.ApplicationError
	if err := e.GetWorkflowError(); !errors.As(err, &app) || control.ErrorType(app.Type()) != control.ErrVersionMismatch ||
		!strings.Contains(app.Message(), "upgrade the cluster") {
		t.Fatalf("workflow error %v; want a VersionMismatch saying to upgrade the cluster", err)
	}
	if ran.Load() {
		t.Error("a node ran the job")
	}

	e = newEnv(t, twoNodes(), run)
	s = spec(3, true)
	s.Version = 0
	e.ExecuteWorkflow(workflows.Job, control.JobInput{Spec: s})
	if err := e.GetWorkflowError(); err != nil {
		t.Fatalf("a spec from before versions: %v", err)
	}
}
