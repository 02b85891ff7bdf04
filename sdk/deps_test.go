package burla_test

import (
	"os"
	"os/exec"
	"path/filepath"
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

// The quick-start, built as `make demo` builds it (static, without the symbol
// table and DWARF, which the stack traces of remote errors do not need), is at
// most 25 MB: the binary every job of it uploads and every node fetches.
func TestQuickStartShipsUnder25MB(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the quick-start")
	}
	bin := filepath.Join(t.TempDir(), "quickstart")
	cmd := exec.Command("go", "build", "-ldflags=-s -w", "-o", bin, "../examples/quickstart")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	fi, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	const mb = 1e6
	if mbs := float64(fi.Size()) / mb; mbs > 25 {
		t.Errorf("the quick-start is %.1f MB; at most 25 MB", mbs)
	} else {
		t.Logf("the quick-start is %.1f MB", mbs)
	}
}
