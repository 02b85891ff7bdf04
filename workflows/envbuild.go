package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/job"
)

// EnvBuild prepares an environment once for every job that uses it: its workflow ID
// is derived from the environment's digest, so concurrent jobs share one build and
// later ones read its result. For the process runtime the environment is the program
// itself: the build fetches it, checks its digest, and starts it in worker mode once
// to learn what it can run, so that a job naming a function the program lacks is
// refused before any node is touched.
func EnvBuild(ctx workflow.Context, in control.EnvBuildInput) (control.EnvInfo, error) {
	// The build's ID, which the server checked against its caller's tenant, names
	// the tenant and the environment; an input that names others is refused, so
	// that no tenant has another's program fetched or run. Builds recorded before
	// this check replay without it.
	if workflow.GetVersion(ctx, "env-identity", workflow.DefaultVersion, 1) >= 1 {
		if err := checkEnvIdentity(workflow.GetInfo(ctx).WorkflowExecution.ID, in); err != nil {
			return control.EnvInfo{}, err
		}
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:           control.TaskQueueControl,
		StartToCloseTimeout: 5 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 3,
			NonRetryableErrorTypes: control.NonRetryable(control.ErrBadBinary)},
	})
	var info control.EnvInfo
	if in.Binary != "" {
		if err := workflow.ExecuteActivity(actx, control.ActivityInspectBin, control.InspectInput{Binary: in.Binary, Tenant: in.Tenant}).Get(ctx, &info); err != nil {
			return info, unwrapActivity(err)
		}
	}
	if in.Image != "" {
		ictx := workflow.WithActivityOptions(actx, workflow.ActivityOptions{
			TaskQueue:           control.TaskQueueControl,
			StartToCloseTimeout: 10 * time.Minute,
			RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 3,
				NonRetryableErrorTypes: control.NonRetryable(control.ErrBadImage)},
		})
		var img control.EnvInfo
		if err := workflow.ExecuteActivity(ictx, control.ActivityBuildEnvImage, control.ImageInput{Image: in.Image}).Get(ctx, &img); err != nil {
			return info, unwrapActivity(err)
		}
		info.Image = img.Image
	}
	return info, nil
}

// checkEnvIdentity refuses an input that is not the environment its build's ID
// names.
func checkEnvIdentity(id string, in control.EnvBuildInput) error {
	tenant, digest, ok := control.ParseEnvBuildWorkflowID(id)
	inTenant := in.Tenant
	if inTenant == "" {
		inTenant = job.DefaultTenant
	}
	switch {
	case !ok:
		return control.ErrNotYours.New(fmt.Sprintf("environment build %q: not an environment build's ID", id), nil)
	case inTenant != tenant:
		return control.ErrNotYours.New(
			fmt.Sprintf("environment build %s is tenant %s's, but its input names tenant %q", id, tenant, in.Tenant), nil)
	case control.EnvDigest(in.Binary, in.Image) != digest:
		return control.ErrNotYours.New(
			fmt.Sprintf("environment build %s: its input (program %.12s, image %q) is not the environment its ID names", id, in.Binary, in.Image), nil)
	}
	return nil
}
