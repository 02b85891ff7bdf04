package job

import (
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	good := func() Spec {
		return Spec{ID: "j-acme-0123456789abcdefghij", Tenant: "acme", Function: "double",
			Binary: strings.Repeat("0", 64), Inputs: 3, FuncCPU: 1, Lease: 10 * time.Second}
	}
	for _, tc := range []struct {
		name   string
		change func(*Spec)
		want   string // in the error; "" for a spec that validates
	}{
		{"good", func(*Spec) {}, ""},
		{"no tenant", func(s *Spec) { s.Tenant = "" }, ""},
		{"command instead of binary", func(s *Spec) { s.Binary, s.Command = "", []string{"cat"} }, ""},
		{"bad ID", func(s *Spec) { s.ID = "j-ACME" }, `invalid job ID "j-ACME"`},
		{"ID without j-", func(s *Spec) { s.ID = "acme-0123456789abcdefghij" }, "invalid job ID"},
		{"other tenant", func(s *Spec) { s.Tenant = "other" }, `tenant "other" is not the tenant its ID names ("acme")`},
		{"no function", func(s *Spec) { s.Function = "" }, "no function name"},
		{"empty command", func(s *Spec) { s.Command = []string{""} }, "empty command"},
		{"short digest", func(s *Spec) { s.Binary = "abc" }, "binary digest"},
		{"negative inputs", func(s *Spec) { s.Inputs = -1 }, "negative input count -1"},
		{"no CPU", func(s *Spec) { s.FuncCPU = 0 }, "func_cpu 0"},
		{"negative parallelism", func(s *Spec) { s.MaxParallelism = -2 }, "negative max_parallelism -2"},
		{"no lease", func(s *Spec) { s.Lease = 0 }, "lease 0s is not positive"},
		{"GPU", func(s *Spec) { s.GPU, s.Region, s.DiskGB = "A100:2", "us-central1", 200 }, ""},
		{"unknown GPU", func(s *Spec) { s.GPU = "RTX4090" }, `gpu: unknown GPU "RTX4090"`},
		{"too many GPUs", func(s *Spec) { s.GPU = "T4:8" }, "no machine has more than 4 T4 GPUs"},
		{"zone for region", func(s *Spec) { s.Region = "us-central1-a" }, `region "us-central1-a" is not a region name`},
		{"region case", func(s *Spec) { s.Region = "US-CENTRAL1" }, "region"},
		{"small disk", func(s *Spec) { s.DiskGB = 5 }, "disk_gb 5 is outside 10 to 65536"},
		{"retries", func(s *Spec) { s.Retries, s.RetryBackoff = 3, time.Second }, ""},
		{"negative retries", func(s *Spec) { s.Retries = -1 }, "retries -1 is not between 0 and 100"},
		{"too many retries", func(s *Spec) { s.Retries = 101 }, "retries 101 is not between 0 and 100"},
		{"negative backoff", func(s *Spec) { s.RetryBackoff = -time.Second }, "negative retry_backoff"},
	} {
		s := good()
		tc.change(&s)
		err := s.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: Validate = %v; want nil", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: Validate = %v; want an error saying %q", tc.name, err, tc.want)
		}
	}
}

func TestValidRegion(t *testing.T) {
	for r, want := range map[string]bool{
		"us-central1": true, "europe-west4": true, "northamerica-northeast1": true, "me-central2": true,
		"": false, "us": false, "us-central1-a": false, "us-central": false, "-us1": false, "us--central1": false, "Us-central1": false,
	} {
		if got := ValidRegion(r); got != want {
			t.Errorf("ValidRegion(%q) = %v; want %v", r, got, want)
		}
	}
}

func TestTenantOf(t *testing.T) {
	for _, tc := range []struct {
		id, want string
	}{
		{"j-0123456789abcdefghij", DefaultTenant},
		{"j-acme-0123456789abcdefghij", "acme"},
		{"j-a-b-0123456789abcdefghij", "a-b"},
		{"j-default-0123456789abcdefghij", DefaultTenant},
		{"j-9x-0123456789abcdefghij", ""}, // a tenant starts with a letter
		{"j-" + strings.Repeat("t", 33) + "-0123456789abcdefghij", ""},
		{"x-acme-0123456789abcdefghij", ""},
		{"j-", DefaultTenant},
	} {
		if got := TenantOf(tc.id); got != tc.want {
			t.Errorf("TenantOf(%q) = %q; want %q", tc.id, got, tc.want)
		}
	}
}

func TestNewIDNamesItsTenant(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tenant := range []string{"", DefaultTenant, "acme", "a", strings.Repeat("z", 32)} {
		id := NewID(now, tenant)
		want := tenant
		if want == "" {
			want = DefaultTenant
		}
		if !ValidID(id) || TenantOf(id) != want {
			t.Errorf("NewID(%q) = %q: ValidID %v, TenantOf %q; want a valid ID of tenant %q", tenant, id, ValidID(id), TenantOf(id), want)
		}
	}
}

func TestBlobTenant(t *testing.T) {
	now := time.Now()
	acme, deflt := NewID(now, "acme"), NewID(now, "")
	digest := strings.Repeat("ab", 32)
	for key, want := range map[string]string{
		BinaryKeyFor("acme", digest):      "acme",
		BinaryKey(digest):                 DefaultTenant,
		EnvKey(acme):                      "acme",
		EnvKey(deflt):                     DefaultTenant,
		"in-" + acme + "-12":              "acme",
		"out-" + deflt + "-0":             DefaultTenant,
		"bin-Bad.x":                       "",
		ManifestKeyFor("acme", digest):    "acme",
		ManifestKeyFor("", digest):        DefaultTenant,
		PackKeyFor("acme", digest):        "acme",
		PackKeyFor(DefaultTenant, digest): DefaultTenant,
		"pack-Bad.x":                      "",
		"env-nonsense":                    "",
		"other":                           "",
	} {
		if got := BlobTenant(key); got != want {
			t.Errorf("BlobTenant(%q) = %q, want %q", key, got, want)
		}
	}
}

// A job needs the protocol of the newest thing it asks for: a cluster that
// predates retries runs every job that does not ask for them.
func TestNeeds(t *testing.T) {
	var s Spec
	if s.Needs() != 2 {
		t.Errorf("a plain job needs protocol %d; want 2", s.Needs())
	}
	s.Retries = 1
	if s.Needs() != 3 || s.Needs() > SpecVersion {
		t.Errorf("a job with retries needs protocol %d; want 3, at most SpecVersion %d", s.Needs(), SpecVersion)
	}
}
