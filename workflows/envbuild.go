package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/burla-temporal/burla/activities"
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
