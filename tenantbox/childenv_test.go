package tenantbox_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/burla-temporal/burla/tenantbox"
	"github.com/burla-temporal/burla/tenantbox/tenantboxtest"
)

var credentials = tenantboxtest.Credentials

// A tenant's process gets the few variables of its worker's environment it needs,
// a HOME and TMPDIR of its own, its job's variables and the worker's for it; no
// credential of the node's, whatever its name.
func TestUserEnvPassesOnlyTheAllowList(t *testing.T) {
	parent := append([]string{
		"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "LC_ALL=C", "TZ=UTC",
		"HOME=/root", "TMPDIR=/var/tmp", "USER=root", "PWD=/root",
		"BURLA_SHARED_DIR=/w/shared", "CUDA_VISIBLE_DEVICES=1", "NVIDIA_VISIBLE_DEVICES=1",
		"GOMAXPROCS=2", "GOMEMLIMIT=1GiB", "LD_LIBRARY_PATH=/usr/local/cuda/lib64",
		"BURLA_WORKER=0", "malformed", "=nameless",
	}, credentials...)
	got := tenantbox.UserEnv(parent, "/w/scratch",
		[]string{"GREETING=hello", "API_TOKEN=the-job's-own", "PATH=/job/bin:/usr/bin"},
		[]string{"BURLA_WORKER=1", "BURLA_MARKER=0123"})
	want := []string{
		"PATH=/job/bin:/usr/bin", "LANG=C.UTF-8", "LC_ALL=C", "TZ=UTC",
		"BURLA_SHARED_DIR=/w/shared", "CUDA_VISIBLE_DEVICES=1", "NVIDIA_VISIBLE_DEVICES=1",
		"GOMAXPROCS=2", "GOMEMLIMIT=1GiB", "LD_LIBRARY_PATH=/usr/local/cuda/lib64",
		"HOME=/w/scratch", "TMPDIR=/w/scratch",
		"GREETING=hello", "API_TOKEN=the-job's-own",
		"BURLA_WORKER=1", "BURLA_MARKER=0123",
	}
	if !slices.Equal(got, want) {
		t.Errorf("UserEnv =\n\t%q\nwant\n\t%q", got, want)
	}
	for _, cred := range credentials {
		name, value, _ := strings.Cut(cred, "=")
		for _, kv := range got {
			if strings.HasPrefix(kv, name+"=") || strings.Contains(kv, value) {
				t.Errorf("%s reached the tenant's environment: %q", name, kv)
			}
		}
	}
}

// Without a job's variables, the program has only what the worker passes it.
func TestUserEnvWithoutJobVariables(t *testing.T) {
	got := tenantbox.UserEnv(append([]string{"PATH=/bin"}, credentials...), "/tmp")
	if want := []string{"PATH=/bin", "HOME=/tmp", "TMPDIR=/tmp"}; !slices.Equal(got, want) {
		t.Errorf("UserEnv = %q; want %q", got, want)
	}
}
