package control

import (
	"strings"
	"testing"
	"time"

	"github.com/burla-temporal/burla/job"
)

// A job's summary says what runs over how many inputs, and whose; its details
// add the resources and modes asked for, and nothing secret.
func TestJobSummary(t *testing.T) {
	spec := job.Spec{ID: "j-acme-0123456789abcdefghij", Tenant: "acme", Function: "double", Binary: strings.Repeat("ab", 32),
		Inputs: 3, FuncCPU: 2, FuncRAMMB: 512, GPU: "A100:2", Region: "us-central1", MaxParallelism: 4,
		Retries: 2, RetryBackoff: time.Second, Grow: true, ReturnErrors: true, Env: []string{"TOKEN"}}
	summary, details := JobSummary(spec)
	if summary != "acme: double over 3 inputs" {
		t.Errorf("summary %q", summary)
	}
	for _, want := range []string{"**tenant** acme", "**function** double", "**program** sha256 abababababab", "**inputs** 3",
		"**each call** 2 CPU, 512 MB, GPU A100:2", "**region** us-central1", "**parallelism** at most 4",
		"**retries** 2, the first after 1s", "**mode** grows, returns errors", "**environment** TOKEN"} {
		if !strings.Contains(details, want) {
			t.Errorf("details lack %q:\n%s", want, details)
		}
	}
	spec = job.Spec{ID: "j-default-0123456789abcdefghij", Function: "command:cat", Command: []string{"cat", "-n"}, Inputs: 1, FuncCPU: 1}
	if summary, details = JobSummary(spec); summary != "command cat -n over 1 input" || !strings.Contains(details, "**command** `cat -n`") || strings.Contains(details, "program") {
		t.Errorf("a command's summary %q, details:\n%s", summary, details)
	}
}

func TestJobProgressDetails(t *testing.T) {
	for p, want := range map[JobProgress]string{
		{State: job.StatePlacing}:                               "Placing",
		{State: job.StateRunning, Working: 1, Used: 1}:          "Running on 1 node",
		{State: job.StateRunning, Working: 2, Used: 3, Lost: 1}: "Running on 2 nodes (1 lost)",
		{State: job.StateSucceeded, Used: 2}:                    "Succeeded after running on 2 nodes",
		{State: job.StateFailed}:                                "Failed",
	} {
		if got := p.Details(); got != want {
			t.Errorf("%+v: %q; want %q", p, got, want)
		}
	}
}

func TestClusterDetails(t *testing.T) {
	st := ClusterState{Standby: StandbySpec{Nodes: 2, CPUs: 4, Provider: "gce"}, Lost: 3,
		Nodes:    map[string]*ClusterNode{"a": {State: NodeReady}, "b": {State: NodeAssigned}, "c": {State: NodeAssigned}, "d": {State: NodeProvisioning}},
		Jobs:     map[string]*JobClaim{"j1": {Nodes: []string{"b", "c"}}, "j2": {}},
		LastLost: []LostNode{{ID: "x", Reason: "its agent stopped answering"}}}
	want := "**standby** 2 nodes × 4 CPUs (gce)  \n**nodes** 4: 1 ready, 2 assigned, 1 provisioning  \n**jobs** 2 (1 waiting for nodes)  \n**lost** 3 nodes, the last x: its agent stopped answering"
	if got := st.Details(); got != want {
		t.Errorf("details\n%q; want\n%q", got, want)
	}
}
