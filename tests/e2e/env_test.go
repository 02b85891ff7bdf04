package e2e

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	burla "github.com/burla-temporal/burla/sdk"
)

// getenv returns the variable its input names, as the call sees it.
var getenv = burla.Func("getenv", func(_ context.Context, name string) (string, error) {
	return os.Getenv(name), nil
})

// TestEnv gives a job variables of its own and forwarded ones: the calls see them,
// and their values are nowhere in the job's workflow history or its record.
func TestEnv(t *testing.T) {
	t.Setenv("E2E_FORWARDED", "from the client")
	const secret = "s3cr3t-token-value"
	ctx := testCtx(t, time.Minute)
	var jobID string
	outs, err := burla.RemoteParallelMap(ctx, getenv, []string{"GREETING", "API_TOKEN", "E2E_FORWARDED", "HOME_NOT_SET_HERE"},
		opts(burla.Env(map[string]string{"GREETING": "hello", "API_TOKEN": secret}), burla.ForwardEnv("E2E_FORWARDED"),
			burla.OnStart(func(id string) { jobID = id }))...)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"hello", secret, "from the client", ""}; !slices.Equal(outs, want) {
		t.Fatalf("calls saw %q; want %q", outs, want)
	}
	// A job without Env, on the same program, sees none of them (workers are
	// fresh, and a prewarmed program has the worker's environment only).
	outs, err = burla.RemoteParallelMap(ctx, getenv, []string{"GREETING", "API_TOKEN"}, opts()...)
	if err != nil || !slices.Equal(outs, []string{"", ""}) {
		t.Fatalf("a later job without Env saw %q (%v)", outs, err)
	}

	it := dev.Cluster.Temporal().GetWorkflowHistory(ctx, jobID, "", false, 0)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(e)
		if strings.Contains(string(b), secret) || strings.Contains(string(b), "from the client") {
			t.Fatalf("job %s's history holds a variable's value: %s", jobID, b)
		}
	}
	spec, err := dev.Cluster.Store().Job(ctx, jobID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(spec.Env, []string{"API_TOKEN", "E2E_FORWARDED", "GREETING"}) {
		t.Errorf("the job's spec names %q", spec.Env)
	}
	if b, _ := json.Marshal(spec); strings.Contains(string(b), secret) {
		t.Errorf("the job's record holds a value: %s", b)
	}

	for name, o := range map[string]burla.Option{
		"reserved name":   burla.Env(map[string]string{"BURLA_API_KEY": "x"}),
		"bad name":        burla.Env(map[string]string{"1BAD": "x"}),
		"unset forwarded": burla.ForwardEnv("E2E_NOT_SET_ANYWHERE"),
	} {
		if _, err := burla.RemoteParallelMap(ctx, getenv, []string{"X"}, opts(o)...); err == nil {
			t.Errorf("%s: the job ran", name)
		} else if !strings.Contains(err.Error(), "Env") {
			t.Errorf("%s: %v does not name the option", name, err)
		}
	}
}
