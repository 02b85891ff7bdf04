package workflows_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/workflows"
)

func TestEnvBuild(t *testing.T) {
	for _, tc := range []struct {
		name     string
		inspect  func(context.Context, control.InspectInput) (control.EnvInfo, error)
		attempts int32
		wantErr  string
	}{
		{name: "inspects once", attempts: 1, inspect: func(context.Context, control.InspectInput) (control.EnvInfo, error) {
			return control.EnvInfo{Functions: []string{"double"}, GOOS: "linux", GOARCH: "amd64"}, nil
		}},
		{name: "bad binary is not retried", attempts: 1, wantErr: string(control.ErrBadBinary), inspect: func(context.Context, control.InspectInput) (control.EnvInfo, error) {
			return control.EnvInfo{}, control.ErrBadBinary.New("not a program", nil)
		}},
		{name: "flaky fetch is retried", attempts: 3, wantErr: "blob store down", inspect: func(context.Context, control.InspectInput) (control.EnvInfo, error) {
			return control.EnvInfo{}, temporal.NewApplicationError("blob store down", "Unavailable")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s testsuite.WorkflowTestSuite
			e := s.NewTestWorkflowEnvironment()
			e.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: control.EnvBuildWorkflowID("", strings.Repeat("a", 64))})
			var calls atomic.Int32
			e.RegisterActivityWithOptions(func(ctx context.Context, in control.InspectInput) (control.EnvInfo, error) {
				calls.Add(1)
				return tc.inspect(ctx, in)
			}, activity.RegisterOptions{Name: control.ActivityInspectBin})
			e.ExecuteWorkflow(workflows.EnvBuild, control.EnvBuildInput{Binary: strings.Repeat("a", 64)})
			err := e.GetWorkflowError()
			if tc.wantErr == "" {
				var info control.EnvInfo
				if err != nil || e.GetWorkflowResult(&info) != nil || info.Functions[0] != "double" {
					t.Fatalf("result %+v, %v; want double registered", info, err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v; want %s", err, tc.wantErr)
			}
			if calls.Load() != tc.attempts {
				t.Errorf("inspected %d times; want %d", calls.Load(), tc.attempts)
			}
		})
	}
}
