package burla_test

import (
	"os/exec"
	"strings"
	"testing"
)

// A program that imports only the SDK links no Google Cloud client, no Prometheus
// and none of the control plane: the store backends it does not import, the
// metrics of the cluster's own components, and the workflows and activities it
// reaches through the control contract alone, stay out of the binary every job
// ships.
func TestSDKLinksNoCloudClient(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	for _, p := range deps {
		for _, banned := range []string{"cloud.google.com/", "google.golang.org/api/", "github.com/burla-temporal/burla/store/firestorestore", "github.com/burla-temporal/burla/blob/gcsblob",
			"github.com/prometheus/", "github.com/burla-temporal/burla/activities", "github.com/burla-temporal/burla/status/statusmetrics",
			"github.com/burla-temporal/burla/workflows", "github.com/burla-temporal/burla/placement", "github.com/burla-temporal/burla/provider/"} {
			if p == banned || strings.HasPrefix(p, banned+"/") || strings.HasSuffix(banned, "/") && strings.HasPrefix(p, banned) {
				t.Errorf("the SDK links %s", p)
			}
		}
	}
	t.Logf("the SDK links %d packages", len(deps))
}
