package tenantbox

import (
	"slices"
	"testing"
)

// The docker runtime's workers pass on the variables their image sets, and only
// those of the worker's environment that are not Burla's own.
func TestUserEnvPassesTheImagesOwnVariables(t *testing.T) {
	saved := imageEnv
	t.Cleanup(func() { imageEnv = saved })
	imageEnv = map[string]bool{"PYTHONPATH": true, "BURLA_API_KEY": true}
	got := UserEnv([]string{"PYTHONPATH=/app", "BURLA_API_KEY=bk_node_cluster_x", "JAVA_HOME=/jdk"}, "")
	if !slices.Equal(got, []string{"PYTHONPATH=/app"}) {
		t.Errorf("UserEnv = %q; want the image's PYTHONPATH alone", got)
	}
}
