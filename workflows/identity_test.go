package workflows_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"

	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/workflows"
)

// A tenant that starts a job of its own with another tenant's job in the spec
// gets a refusal at once: no node is asked for or runs it, and nothing of the
// other job is cleaned up or released (its queue, its environment blob, its nodes).
func TestJobRunsOnlyAsItself(t *testing.T) {
	var ran atomic.Bool
	e := newEnv(t, twoNodes(), func(context.Context, control.RunInput) (control.RunOutput, error) {
		ran.Store(true)
		return control.RunOutput{Drained: true}, nil
	})
	var reserved atomic.Bool
	e.RegisterActivityWithOptions(func(context.Context, control.ReserveRequest) (control.ReserveResponse, error) {
		reserved.Store(true)
		return control.ReserveResponse{}, nil
	}, activity.RegisterOptions{Name: control.ActivityReserveNodes, DisableAlreadyRegisteredCheck: true})
	var released atomic.Bool
	e.OnSignalExternalWorkflow(mock.Anything, mock.Anything, mock.Anything, control.SignalRelease, mock.Anything).
		Return(func(string, string, string, string, any) error { released.Store(true); return nil })

	victim := job.NewID(time.Now(), "acme")
	s := spec(3, true)
	s.ID, s.Tenant = victim, "acme"
	e.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: job.NewID(time.Now(), "evil")})
	e.ExecuteWorkflow(workflows.Job, control.JobInput{Spec: s})

	err := e.GetWorkflowError()
	if typ, msg := appTypeMessage(err); typ != control.ErrNotYours || !strings.Contains(msg, victim) {
		t.Fatalf("workflow error %v; want NotYours naming %s", err, victim)
	}
	if ran.Load() || reserved.Load() {
		t.Errorf("the foreign spec reserved nodes (%v) or ran (%v)", reserved.Load(), ran.Load())
	}
	if released.Load() || e.st.deleted.Load() != 0 {
		t.Errorf("the foreign spec released %s's nodes (%v) or deleted its queue (%d times)", victim, released.Load(), e.st.deleted.Load())
	}
}

// An environment build runs only the program its own ID names, of the tenant
// its ID names: another tenant's program, or an input that disagrees with the
// ID in any way, is refused before anything is fetched.
func TestEnvBuildRunsOnlyItsOwnProgram(t *testing.T) {
	mine, theirs := strings.Repeat("a", 64), strings.Repeat("b", 64)
	for _, c := range []struct {
		name string
		id   string
		in   control.EnvBuildInput
		ok   bool
	}{
		{"own program", control.EnvBuildWorkflowID("evil", mine), control.EnvBuildInput{Binary: mine, Tenant: "evil"}, true},
		{"another tenant's program", control.EnvBuildWorkflowID("evil", mine), control.EnvBuildInput{Binary: mine, Tenant: "acme"}, false},
		{"another digest", control.EnvBuildWorkflowID("evil", mine), control.EnvBuildInput{Binary: theirs, Tenant: "evil"}, false},
		{"the default tenant's program", control.EnvBuildWorkflowID("evil", mine), control.EnvBuildInput{Binary: mine}, false},
		{"an image the ID does not name", control.EnvBuildWorkflowID("evil", mine), control.EnvBuildInput{Binary: mine, Tenant: "evil", Image: "x"}, false},
		{"own image", control.EnvBuildWorkflowID("evil", control.EnvDigest(mine, "x")), control.EnvBuildInput{Binary: mine, Tenant: "evil", Image: "x"}, true},
		{"another image", control.EnvBuildWorkflowID("evil", control.EnvDigest(mine, "x")), control.EnvBuildInput{Binary: mine, Tenant: "evil", Image: "y"}, false},
		{"not a build's ID", "burla-cluster-default", control.EnvBuildInput{Binary: mine}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var s testsuite.WorkflowTestSuite
			e := s.NewTestWorkflowEnvironment()
			e.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: c.id})
			var fetched atomic.Bool
			e.RegisterActivityWithOptions(func(context.Context, control.InspectInput) (control.EnvInfo, error) {
				fetched.Store(true)
				return control.EnvInfo{Functions: []string{"double"}}, nil
			}, activity.RegisterOptions{Name: control.ActivityInspectBin})
			e.RegisterActivityWithOptions(func(context.Context, control.ImageInput) (control.EnvInfo, error) {
				return control.EnvInfo{Image: "built"}, nil
			}, activity.RegisterOptions{Name: control.ActivityBuildEnvImage})
			e.ExecuteWorkflow(workflows.EnvBuild, c.in)
			err := e.GetWorkflowError()
			if c.ok {
				if err != nil || !fetched.Load() {
					t.Fatalf("error %v, fetched %v; want the build to run", err, fetched.Load())
				}
				return
			}
			if typ, _ := appTypeMessage(err); typ != control.ErrNotYours || fetched.Load() {
				t.Fatalf("error %v, fetched %v; want NotYours before any fetch", err, fetched.Load())
			}
		})
	}
}
