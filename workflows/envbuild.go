package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/burla-temporal/burla/activities"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/names"
)

// EnvBuildInput names an environment by what defines it.
type EnvBuildInput struct {
	Binary string // SHA-256 of the program; empty for a command
	Image  string // the user's image, if any
	Tenant string // whose program it is; empty for the default tenant
}

// EnvBuild prepares an environment once for every job that uses it: its workflow ID
// is derived from the environment's digest, so concurrent jobs share one build and
// later ones read its result. For the process runtime the environment is the program
// itself: the build fetches it, checks its digest, and starts it in worker mode once
// to learn what it can run, so that a job naming a function the program lacks is
// refused before any node is touched.
func EnvBuild(ctx workflow.Context, in EnvBuildInput) (activities.EnvInfo, error) {
	// The build's ID, which the server checked against its caller's tenant, names
	// the tenant and the environment; an input that names others is refused, so
	// that no tenant has another's program fetched or run. Builds recorded before
	// this check replay without it.
	if workflow.GetVersion(ctx, "env-identity", workflow.DefaultVersion, 1) >= 1 {
		if err := checkEnvIdentity(workflow.GetInfo(ctx).WorkflowExecution.ID, in); err != nil {
			return activities.EnvInfo{}, err
		}
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:           names.TaskQueueControl,
		StartToCloseTimeout: 5 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 3,
			NonRetryableErrorTypes: []string{names.ErrBadBinary}},
	})
	var info activities.EnvInfo
	if in.Binary != "" {
		if err := workflow.ExecuteActivity(actx, names.ActivityInspectBin, activities.InspectInput{Binary: in.Binary, Tenant: in.Tenant}).Get(ctx, &info); err != nil {
			return info, unwrapActivity(err)
		}
	}
	if in.Image != "" {
		ictx := workflow.WithActivityOptions(actx, workflow.ActivityOptions{
			TaskQueue:           names.TaskQueueControl,
			StartToCloseTimeout: 10 * time.Minute,
			RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 3,
				NonRetryableErrorTypes: []string{activities.ErrBadImage}},
		})
		var img activities.EnvInfo
		if err := workflow.ExecuteActivity(ictx, names.ActivityBuildEnvImage, activities.ImageInput{Image: in.Image}).Get(ctx, &img); err != nil {
			return info, unwrapActivity(err)
		}
		info.Image = img.Image
	}
	return info, nil
}

// checkEnvIdentity refuses an input that is not the environment its build's ID
// names.
func checkEnvIdentity(id string, in EnvBuildInput) error {
	tenant, digest, ok := names.ParseEnvBuildWorkflowID(id)
	inTenant := in.Tenant
	if inTenant == "" {
		inTenant = job.DefaultTenant
	}
	switch {
	case !ok:
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("environment build %q: not an environment build's ID", id), names.ErrNotYours, nil)
	case inTenant != tenant:
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("environment build %s is tenant %s's, but its input names tenant %q", id, tenant, in.Tenant), names.ErrNotYours, nil)
	case names.EnvDigest(in.Binary, in.Image) != digest:
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("environment build %s: its input (program %.12s, image %q) is not the environment its ID names", id, in.Binary, in.Image), names.ErrNotYours, nil)
	}
	return nil
}
