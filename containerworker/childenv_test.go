package containerworker_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/burla-temporal/burla/containerworker"
)

// credentials are variables a node's environment may hold that no tenant may see.
var credentials = []string{
	"BURLA_API_KEY=node-key", "BURLA_NODE_API_KEY=node-key-2", "BURLA_TEMPORAL_API_KEY=temporal-key",
	"BURLA_TEMPORAL_TLS_CERT=/etc/burla/tls.crt", "BURLA_TEMPORAL_TLS_KEY=/etc/burla/tls.key", "BURLA_TEMPORAL_TLS_CA=/etc/burla/ca.crt",
	"GOOGLE_APPLICATION_CREDENTIALS=/etc/burla/gcp.json", "AWS_ACCESS_KEY_ID=AKIAEXAMPLE",
	"AWS_SECRET_ACCESS_KEY=aws-secret", "AWS_SESSION_TOKEN=aws-session", "GITHUB_TOKEN=ghp_example",
	"SSH_AUTH_SOCK=/tmp/ssh-agent.sock", "DOCKER_HOST=unix:///var/run/docker.sock",
	"BURLA_STORE_URL=nats://user:pass@127.0.0.1:4222", "FIRESTORE_EMULATOR_HOST=127.0.0.1:8080",
}

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
	got := containerworker.UserEnv(parent, "/w/scratch",
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
	got := containerworker.UserEnv(append([]string{"PATH=/bin"}, credentials...), "/tmp")
	if want := []string{"PATH=/bin", "HOME=/tmp", "TMPDIR=/tmp"}; !slices.Equal(got, want) {
		t.Errorf("UserEnv = %q; want %q", got, want)
	}
}
