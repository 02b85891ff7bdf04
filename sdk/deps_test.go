package burla_test

import (
	"os/exec"
	"strings"
	"testing"
)

// A program that imports only the SDK links no Google Cloud client and no
// Prometheus: the store backends it does not import, and the metrics of the
// cluster's own components, stay out of the binary every job ships.
func TestSDKLinksNoCloudClient(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	for _, p := range deps {
		for _, banned := range []string{"cloud.google.com/", "google.golang.org/api/", "github.com/burla-temporal/burla/store/firestorestore", "github.com/burla-temporal/burla/blob/gcsblob",
			"github.com/prometheus/", "github.com/burla-temporal/burla/activities/activitymetrics", "github.com/burla-temporal/burla/status/statusmetrics"} {
			if strings.HasPrefix(p, banned) {
				t.Errorf("the SDK links %s", p)
			}
		}
	}
	t.Logf("the SDK links %d packages", len(deps))
}
