package names

import (
	"strings"
	"testing"
)

func TestEnvBuildWorkflowIDRoundTrip(t *testing.T) {
	d := strings.Repeat("a", 64)
	for _, c := range []struct{ tenant, digest, wantTenant string }{
		{"", d, "default"},
		{"default", d, "default"},
		{"acme", d, "acme"},
		{"acme", EnvDigest(d, "python:3.12"), "acme"},
	} {
		tenant, digest, ok := ParseEnvBuildWorkflowID(EnvBuildWorkflowID(c.tenant, c.digest))
		if !ok || tenant != c.wantTenant || digest != c.digest {
			t.Errorf("%q, %q: parsed %q, %q, %v", c.tenant, c.digest, tenant, digest, ok)
		}
	}
	for _, id := range []string{"burla-env-", "burla-env-acme.", "burla-env-acme.xyz", "burla-env-ACME." + d, "burla-env-default." + d,
		"burla-env-acme." + d + ".x", "burla-env-image-zz", "burla-cluster-default", "j-acme-x"} {
		if tenant, digest, ok := ParseEnvBuildWorkflowID(id); ok {
			t.Errorf("%q parsed as %q, %q", id, tenant, digest)
		}
	}
	if EnvDigest(d, "") != d || EnvDigest(d, "x") == EnvDigest(d, "y") {
		t.Error("EnvDigest does not tell environments apart")
	}
}
